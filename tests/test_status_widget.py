"""%burst_status as a live widget table: real local jobs, real ipywidgets objects (no browser).

The refresh is driven by calling `refresh()` (what the background thread calls), except in the tests
of the thread itself. Jobs block on gate files the test creates, so "running" is never a race.
"""

from __future__ import annotations

import threading
from pathlib import Path

import ipywidgets as widgets
import pytest
from helpers import pid_alive, wait_for, worker_pids
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from ipywidgets.widgets.widget import _instances

from starburst_jupyter.core.config import Config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.display.status_widget import CANCEL_REASON, StatusWidget
from starburst_jupyter.protocol.programs import CallProgram
from starburst_jupyter.stores.records import JobStore

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def gated(path):
    """An item that runs until the test creates its gate file (then prints and returns its name)."""
    import os
    import time as _time

    while not os.path.exists(path):
        _time.sleep(0.02)
    print(f"passed gate {os.path.basename(path)}")
    return os.path.basename(path)


def noisy(x):
    print(f"hello from item {x}")
    if x == 1:
        raise ValueError("item one is bad")
    return x


def submit(items, fn=gated, workers=1, name=None):
    config = Config(local_concurrency=2)
    spec = build_spec(config, mode="map", workers=workers, name=name)
    return Launcher(config).submit(spec, CallProgram(fn), items)


def gates(tmp_path: Path, count: int, tag: str = "g") -> list[str]:
    folder = tmp_path / f"gates-{tag}"
    folder.mkdir()
    return [str(folder / f"{tag}{n}") for n in range(count)]


def open_gate(path: str) -> None:
    Path(path).touch()


def refreshed(status: StatusWidget, job_id: str, predicate):
    """Refresh (as the thread would) until predicate(row) holds; generous timeout for a loaded machine."""

    def check():
        status.refresh()
        row = status.rows.get(job_id)
        return row is not None and predicate(row)

    return wait_for(check, timeout=30.0)


class Session:
    """What a test starts, closed and cancelled when it ends (no stray workers or refresh threads)."""

    def __init__(self):
        self.tables: list[StatusWidget] = []
        self.handles: list = []

    def running(self, items, **options):
        """Submit a job and wait until the job store says it runs."""
        handle = submit(items, **options)
        self.handles.append(handle)
        wait_for(lambda: JobStore().read(handle.id)["state"] == "running", timeout=30)
        return handle

    def table(self, *args, **options) -> StatusWidget:
        status = StatusWidget(*args, **options)
        self.tables.append(status)
        return status

    def end(self) -> None:
        for status in self.tables:
            status.close()
        for handle in self.handles:
            handle.cancel("test ended")
            handle.wait(timeout=30)


@pytest.fixture
def session():
    made = Session()
    yield made
    made.end()


def test_rows_running_first_and_progress_updates_as_the_job_runs(tmp_path, session):
    paths = gates(tmp_path, 2)  # one worker, two items: two one-item blocks, each reported when it ends
    running = session.running(paths, name="gated")
    finished = submit([1, 2, 3], fn=abs)  # newer, but finished: listed after the running job
    assert finished.wait(timeout=60).state == "done"

    status = session.table(autostart=False)
    assert status.root._dom_classes == ("starburst-status",)
    order = list(status.table.children)
    assert order == [status.rows[running.id].root, status.rows[finished.id].root]
    assert all("starburst-status-row" in child._dom_classes for child in order)
    row, done_row = status.rows[running.id], status.rows[finished.id]
    assert "gated" in row.label.value and running.id in row.label.value
    assert row.backend.value == "local" and "running" in row.state.value
    assert (row.progress.value, row.progress.max, row.progress.description) == (0, 2, "0/0/2")
    assert not row.cancel.disabled and running.id in row.cancel.tooltip
    assert "Fargate estimate" in row.cost.value and row.cost.value.startswith("$")
    assert (done_row.progress.value, done_row.progress.description, done_row.progress.bar_style) == (
        3,
        "3/0/3",
        "success",
    )
    assert done_row.cancel.disabled and done_row.cancel.description == "done"
    assert "1 active" in status.header.value

    open_gate(paths[0])
    refreshed(status, running.id, lambda r: r.progress.value == 1)
    assert row.progress.description == "1/0/2" and "running" in row.state.value
    open_gate(paths[1])
    refreshed(status, running.id, lambda r: "done" in r.state.value)
    assert (row.progress.value, row.progress.description, row.progress.bar_style) == (2, "2/0/2", "success")
    assert row.cancel.disabled and row.cancel.description == "done"
    assert status.refresh() is False  # nothing active: the thread would stop


def test_refresh_thread_updates_then_stops_when_all_ended(tmp_path, session):
    paths = gates(tmp_path, 2)
    handle = session.running(paths)
    status = session.table(interval=0.05)
    thread = status.thread
    assert thread is not None and thread.is_alive()
    before = status.refreshes
    for path in paths:
        open_gate(path)
    # no refresh() here: only the thread can move the row to "done"
    wait_for(lambda: status.rows[handle.id].record["state"] == "done", timeout=30)
    assert status.refreshes > before and status.rows[handle.id].progress.value == 2
    wait_for(lambda: not thread.is_alive(), timeout=10)
    assert status.thread is None


@pytest.mark.parametrize("closer", ["close", "front end"])
def test_refresh_thread_stops_when_the_widget_is_closed(tmp_path, session, closer):
    handle = session.running(gates(tmp_path, 1))
    status = session.table(interval=0.05)
    thread = status.thread
    assert thread is not None and thread.is_alive()
    row = status.rows[handle.id]
    if closer == "close":
        status.close()
    else:  # the front end closing the root widget closes its comm
        status.root.close()
    wait_for(lambda: not thread.is_alive(), timeout=10)
    assert status.root.comm is None and row.cancel.comm is None and row.progress.comm is None
    assert status.refresh() is False
    status.start()  # a closed table never starts again
    assert status.thread is None
    assert not [t for t in threading.enumerate() if t.name == "starburst-status"]


def test_cancel_button_cancels_a_running_job_and_ends_its_workers(tmp_path, session):
    handle = session.running(gates(tmp_path, 4), workers=2)
    record = wait_for(
        lambda: (r := JobStore().read(handle.id))["state"] == "running" and len(worker_pids(r)) == 2 and r, timeout=30
    )
    pids = worker_pids(record)
    assert all(pid_alive(p) for p in pids)
    status = session.table(autostart=False)
    row = status.rows[handle.id]
    row.cancel.click()
    assert row.cancel.disabled  # set by the click handler itself, before the cancel thread's outcome
    assert row.cancel.description in ("cancelling...", "cancelled")
    result = handle.wait(timeout=30)
    assert result.state == "cancelled"
    refreshed(status, handle.id, lambda r: "cancelled" in r.state.value)
    assert row.cancel.description == "cancelled" and row.cancel.disabled
    assert CANCEL_REASON in JobStore().read(handle.id)["message"]
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=30)
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("starburst-cancel-")], timeout=30)


def test_details_show_the_job_detail_and_worker_log_tails(session):
    handle = submit([0, 1, 2], fn=noisy)
    assert handle.wait(timeout=60).state == "failed"
    status = session.table(autostart=False)
    row = status.rows[handle.id]
    assert row.detail.layout.display == "none" and row.detail.children == ()
    row.details.click()
    assert row.detail.layout.display is None and row.details.description == "Hide"
    text = row.detail_text.value
    assert row.detail.children == (row.detail_text,)
    assert handle.id in text and "2/1/3" in text and "item 1 failed: ValueError: item one is bad" in text
    assert "worker 0" in text and "hello from item 2" in text  # the tail of the worker's log
    assert f"%burst_logs {handle.id}" in text
    row.details.click()
    assert row.detail.layout.display == "none" and row.details.description == "Details"


def test_details_of_a_job_running_in_this_kernel_is_its_live_widget(tmp_path, session):
    paths = gates(tmp_path, 2)
    handle = session.running(paths)
    status = session.table(handle.id, autostart=False)  # one job: its row opens expanded
    assert list(status.rows) == [handle.id]
    row = status.rows[handle.id]
    assert row.expanded and row.live is not None
    live_root = row.detail.children[0]
    assert "starburst-job" in live_root._dom_classes
    live = row.live[0]
    open_gate(paths[0])
    wait_for(lambda: live.progress.value == 1, timeout=30)  # the live widget follows the job's events
    open_gate(paths[1])
    refreshed(status, handle.id, lambda r: r.live is None and r.detail.children == (r.detail_text,))
    assert "2/0/2" in row.detail_text.value and "passed gate g1" in row.detail_text.value
    assert live_root.comm is None  # the live widget was closed when the job ended


def test_magic_in_a_kernel_displays_the_live_table(ip, monkeypatch):
    first, second = submit([1], fn=abs), submit([1, 2], fn=abs)
    assert first.wait(timeout=60).state == second.wait(timeout=60).state == "done"
    monkeypatch.setattr(ip, "kernel", object(), raising=False)
    with capture_output() as captured:
        ip.run_line_magic("burst_status", "")
    [output] = captured.outputs
    root = _instances[output.data[WIDGET_MIME]["model_id"]]
    assert "starburst-status" in root._dom_classes
    assert first.id in output.data["text/plain"] and "done/failed/total" in output.data["text/plain"]
    rows = root.children[-1].children  # (after the header line and the column headers)
    assert len(rows) == 2 and all(len(r.children) == 1 for r in rows)  # collapsed: the line alone, no detail yet
    root.close()

    with capture_output() as captured:
        ip.run_line_magic("burst_status", second.id[:-2])  # a unique prefix
    [output] = captured.outputs
    root = _instances[output.data[WIDGET_MIME]["model_id"]]
    [row] = root.children[-1].children
    assert row.children[1].layout.display is None  # expanded
    assert second.id in row.children[1].children[0].value and "2/0/2" in output.data["text/plain"]
    root.close()

    with pytest.raises(UsageError, match="No job matches 'bj-nope'"):
        ip.run_line_magic("burst_status", "bj-nope")


def test_magic_without_a_kernel_prints_the_text_table(ip):
    handle = submit([1, 2], fn=abs)
    assert handle.wait(timeout=60).state == "done"
    assert getattr(ip, "kernel", None) is None
    with capture_output() as captured:
        ip.run_line_magic("burst_status", "")
    assert captured.outputs == []  # no widget
    assert handle.id in captured.stdout and "done/failed/total" in captured.stdout and "2/0/2" in captured.stdout
    with capture_output() as captured:
        ip.run_line_magic("burst_status", handle.id)
    assert captured.outputs == [] and "waves:" in captured.stdout and handle.id in captured.stdout
    with pytest.raises(UsageError, match="No job matches 'bj-nope'"):
        ip.run_line_magic("burst_status", "bj-nope")


def failing(x):
    if x == 2:
        raise ValueError("two is bad")
    return x


def test_table_has_column_headers_rate_and_no_button_on_ended_rows(tmp_path, session):
    paths = gates(tmp_path, 3, "r")
    running = session.running(paths, name="gated")
    config = Config(local_concurrency=2)
    kept = Launcher(config).submit(
        build_spec(config, mode="map", workers=1, on_error="keep", name="kept"), CallProgram(failing), [1, 2, 3]
    )
    assert kept.wait(timeout=60).state == "failed"
    open_gate(paths[0])
    open_gate(paths[1])  # (items come back by blocks: item 2 keeps the job running)
    status = session.table(autostart=False)
    assert refreshed(status, running.id, lambda row: row.progress.value >= 1)
    headers = [cell.value for cell in status.columns.children]
    assert headers[:4] == ["<b>job</b>", "<b>backend</b>", "<b>state</b>", "<b>done/failed/total</b>"]
    assert "rate, time left" in headers[4] and "cost" in headers[5]
    row, ended = status.rows[running.id], status.rows[kept.id]
    assert row.cancel in row.line.children and "left" in row.elapsed.value  # "2.1s · 0.9 items/s, 0:01 left"
    assert "items/s" in row.elapsed.value or "s/item" in row.elapsed.value
    # an ended row: no red disabled "done"/"failed" button, and --on-error keep reads "done with 1 failed"
    assert ended.cancel not in ended.line.children and not any(
        isinstance(c, widgets.Button) and c.button_style == "danger" for c in ended.line.children
    )
    assert "done with 1 failed" in ended.state.value and ended.progress.bar_style == "warning"
    assert "left" not in ended.elapsed.value and "nowrap" in ended.cost.value
    open_gate(paths[2])


def test_text_table_has_rate_and_time_left_and_the_kept_wording():
    from starburst_jupyter.display.status import format_jobs

    config = Config(local_concurrency=2)
    kept = Launcher(config).submit(
        build_spec(config, mode="map", workers=1, on_error="keep"), CallProgram(failing), [1, 2, 3]
    )
    kept.wait(timeout=60)
    text = format_jobs([JobStore().read(kept.id)])
    header, rule, line = text.splitlines()[:3]
    assert "rate" in header and "left" in header and "est. cost" in header and set(rule) <= {"-", " "}
    assert "done with 1 failed" in line and "items/s" in line or "s/item" in line

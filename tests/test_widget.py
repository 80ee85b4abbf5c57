"""The widget face: a JobView rendered into ipywidgets, buttons wired to the job's handle."""

from __future__ import annotations

import json

import comm
from comm.base_comm import BaseComm
from ipywidgets import Widget
from ipywidgets.widgets.widget import _instances

from starburst_jupyter.core import events as ev
from starburst_jupyter.display.progress import JobView
from starburst_jupyter.display.summary import (
    failure_groups,
    failures_html,
    summary_html,
    waves_html,
    worker_rows,
    workers_table,
)
from starburst_jupyter.display.widget import WIDGETS_PER_JOB, JobWidget, close_all

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def test_widget_renders_progress_workers_logs_failures_and_cost():
    j = "bj-w"
    view = JobView(j, total=10, name="sims", backend="local")
    for event in (
        ev.JobStateChanged(j, state="running"),
        ev.WaveStarted(j, wave=1, waves=2, workers=2),
        ev.WorkerStarted(j, worker=0, wave=1),
        ev.WorkerStarted(j, worker=1, wave=1),
        ev.TaskStarted(j, worker=0, indices=(0, 1, 2)),
        ev.TaskFinished(j, index=0, worker=0, duration=0.1),
        ev.TaskFailed(j, index=1, worker=0, error="ValueError: <bad>", traceback="Traceback: line 3"),
        ev.LogLine(j, worker=1, line="hello from 1"),
        ev.CostTick(j, accrued=0.002, projected=0.01, cap=0.5, label="estimate for the same work"),
    ):
        view.apply(event)
    cancels, stops = [], []
    widget = JobWidget(view, lambda: cancels.append(True), stops.append, size="1 vCPU / 2GB")
    widget.render(view)
    assert "sims" in widget.header.value and "running" in widget.header.value
    assert widget.waves.value.startswith("wave 1 of 2: 2/2 workers up")
    # one failure is a warning and a red sliver of the bar, not a red bar
    assert widget.progress.value == 2 and widget.progress.bar_style == "warning"
    stats = widget.stats.value
    assert "1/10 ok" in stats and "1 failed" in stats and "starburst-bar-failed" in stats
    assert "items/s" in widget.stats.value or "s/item" in widget.stats.value
    assert "<th" in widget.workers.value and widget.workers.value.count("starburst-worker ") == 2
    assert "&lt;bad&gt;" in widget.failures.value and "Traceback: line 3" in widget.failures.value  # escaped
    assert "hello from 1" in widget.logs.value
    widget.log_choice.value = 0
    assert "hello from 1" not in widget.logs.value
    assert "cap $0.5" in widget.cost.value and "estimate" in widget.cost.value
    widget.cancel_button.click()
    assert cancels == [True] and widget.cancel_button.disabled
    widget.stop_choice.value = 1
    widget.stop_button.click()
    assert stops == [1]
    view.apply(
        ev.JobFinished(
            j, state="cancelled", done=1, failed=1, total=10, duration=2.0, cost=0.003, message="interrupted"
        )
    )
    widget.settle(view)
    assert widget.closed and all(w.comm is None for w in (widget.root, widget.header, widget.progress))
    summary = widget.summary
    assert "cancelled" in summary and "1/10 ok" in summary and "interrupted" in summary


def test_log_viewer_is_capped():
    view = JobView("j", total=1)
    view.apply(ev.WorkerStarted("j", worker=0, wave=1))
    for n in range(5000):
        view.apply(ev.LogLine("j", worker=0, line=f"line {n}"))
    widget = JobWidget(view, lambda: None, lambda i: None)
    widget.render(view)
    assert widget.logs.value.count("\n") < 250 and "line 4999" in widget.logs.value


def test_all_workers_log_reads_by_time_and_the_box_follows_the_newest_line():
    view = JobView("j", total=4)
    for worker in (0, 1):
        view.apply(ev.WorkerStarted("j", worker=worker, wave=1))
    for n, worker in enumerate([0, 1, 0, 1, 1, 0]):
        view.apply(ev.LogLine("j", worker=worker, line=f"step {n}"))
    widget = JobWidget(view, lambda: None, lambda i: None)
    widget.render(view)
    text = widget.logs.value
    shown = [text.index(f"[{w}] step {n}") for n, w in enumerate([0, 1, 0, 1, 1, 0])]
    assert shown == sorted(shown), "lines of all workers in the order they came, not grouped by worker"
    assert (widget.logs.layout.display, widget.logs.layout.flex_flow) == ("flex", "column-reverse")


def test_image_progress_shows_steps_and_pushed_bytes_and_counts_chatter():
    from starburst_jupyter.display.widget import ImageProgressWidget

    widget = ImageProgressWidget(min_interval=0.0)
    progress = lambda phase, message, current=None, total=None: ev.ImageBuildProgress(
        "j", phase=phase, message=message, current=current, total=total
    )
    widget.update(progress("context", "Collecting cloudpickle"))
    widget.update(progress("context", "Building wheel for mylib"))
    assert "2 lines of output" in widget.line.value
    widget.update(progress("build", "Step 3/9 : RUN pip install", 3, 9))
    assert (widget.bar.value, widget.bar.max, widget.bar.layout.visibility) == (3, 9, "visible")
    assert "Step 3/9" in widget.line.value
    widget.update(progress("push", "pushing", 50 * 2**20, 100 * 2**20))
    assert widget.bar.description == "pushed" and widget.bar.value == 50 * 2**20
    widget.update(progress("done", "built starburst-worker:abc in 42 s (139 MB)"))
    assert "built starburst-worker:abc" in widget.line.value and widget.bar.layout.visibility == "hidden"


# ----- at scale: the widget count is fixed by the layout, and nothing stays open -------------------------------
class CountingComm(BaseComm):
    """A comm that records what a kernel would send to the front end (type and JSON size)."""

    sent: list[tuple[str, int]] = []

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        CountingComm.sent.append((msg_type, len(json.dumps(data, default=str))))


def count_comms(monkeypatch) -> None:
    """Make every widget's comm a counting one: ipywidgets >= 8.0.5 calls comm.create_comm; older ones (the
    lowest we support, 8.0.3) construct ipykernel's Comm, and their `comm` trait must hold one."""
    import ipywidgets.widgets.widget as widget_module

    if hasattr(widget_module, "Comm"):
        from ipykernel.comm import Comm as KernelComm

        class CountingKernelComm(KernelComm):
            def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
                CountingComm.sent.append((msg_type, len(json.dumps(data, default=str))))

        monkeypatch.setattr(widget_module, "Comm", CountingKernelComm)
    else:
        monkeypatch.setattr(comm, "create_comm", lambda *a, **k: CountingComm(*a, **k))


def synthetic_job(job="bj-s", workers=32, items=2000, waves=2, fail_every=97):
    """Events of a job of `workers` workers over `waves` waves, each worker one task of items/workers items."""
    t = 1000.0
    yield ev.JobStateChanged(job, state="running", at=t)
    per_wave, chunk = workers // waves, items // workers
    for wave in range(1, waves + 1):
        yield ev.WaveStarted(job, wave=wave, waves=waves, workers=per_wave, at=t)
        members = range((wave - 1) * per_wave, wave * per_wave)
        for k in members:
            yield ev.WorkerStarted(job, worker=k, wave=wave, at=t)
            yield ev.TaskStarted(job, worker=k, indices=tuple(range(k * chunk, (k + 1) * chunk)), at=t)
        for step in range(chunk):
            t += 0.05
            for k in members:
                i = k * chunk + step
                yield ev.LogLine(job, worker=k, line=f"working on item {i}", at=t)
                if i % fail_every == 5:
                    yield ev.TaskFailed(job, index=i, worker=k, error=f"ValueError: bad item {i}", at=t)
                else:
                    yield ev.TaskFinished(job, index=i, worker=k, duration=0.05, at=t)
        for k in members:
            yield ev.WorkerExited(job, worker=k, exit_code=0, at=t)
        yield ev.WaveFinished(job, wave=wave, waves=waves, at=t)
    failed = len([i for i in range(items) if i % fail_every == 5])
    yield ev.JobFinished(job, state="failed", done=items - failed, failed=failed, total=items, duration=t, cost=0.01)


def drive(widget: JobWidget, view: JobView, every: int) -> int:
    """Apply the job's events, rendering every `every` events (a long job's refreshes); the peak model count."""
    peak = 0
    for n, event in enumerate(synthetic_job()):
        view.apply(event)
        if isinstance(event, ev.JobFinished):
            widget.settle(view)
        elif n % every == 0:
            widget.render(view)
        peak = max(peak, len(_instances))
    return peak


def test_a_32_worker_2000_item_job_opens_a_fixed_number_of_widgets_and_closes_them_all(monkeypatch):
    # Before (the widget of a row and a bar per worker per refresh): this job opened 25,502 models (18 MB of
    # comm_open) and closed none; now 45 at most, all closed when the job's view settles.
    count_comms(monkeypatch)
    CountingComm.sent = []
    baseline = len(_instances)
    view = JobView("bj-s", total=2000)
    widget = JobWidget(view, lambda: None, lambda i: None)
    peak = drive(widget, view, every=20)  # ~210 renders: a 50 s job at 4 renders/s
    opened = sum(1 for kind, _ in CountingComm.sent if kind == "comm_open")
    closed = sum(1 for kind, _ in CountingComm.sent if kind == "comm_close")
    updates = [size for kind, size in CountingComm.sent if kind == "comm_msg"]
    assert opened == peak - baseline <= WIDGETS_PER_JOB
    assert closed == opened and len(_instances) == baseline  # nothing left open in the kernel
    assert len(updates) < 8 * 220 and sum(updates) < 4_000_000  # a few changed traits per render
    assert "1979/2000 ok" in widget.summary and "21 failed" in widget.summary


def test_the_widget_count_does_not_grow_with_refreshes():
    view = JobView("bj-s", total=2000)
    counts = []
    for every in (200, 5):  # ~20 renders, then ~850
        view = JobView("bj-s", total=2000)
        before = len(_instances)
        widget = JobWidget(view, lambda: None, lambda i: None)
        counts.append(drive(widget, view, every) - before)
    assert counts[0] == counts[1] <= WIDGETS_PER_JOB


def test_settle_replaces_the_display_by_a_persistent_summary(monkeypatch):
    import IPython.display

    shown, updated = [], []

    class Handle:
        display_id = "d-1"

    monkeypatch.setattr(IPython.display, "display", lambda bundle, **kw: shown.append((bundle, kw)) or Handle())
    monkeypatch.setattr(IPython.display, "update_display", lambda bundle, **kw: updated.append((bundle, kw)))
    view = JobView("bj-d", total=3, name="sims")
    widget = JobWidget(view, lambda: None, lambda i: None)
    assert widget.display() == "d-1"
    bundle, kw = shown[0]
    assert WIDGET_MIME in bundle and "bj-d" in bundle["text/html"] and kw["display_id"] is True
    for event in (
        ev.WorkerStarted("bj-d", worker=0, wave=1),
        ev.TaskFinished("bj-d", index=0, worker=0, duration=0.1),
        ev.TaskFinished("bj-d", index=1, worker=0, duration=0.1),
        ev.TaskFailed("bj-d", index=2, worker=0, error="KeyError: 'x'", traceback="Traceback ..."),
        ev.JobFinished("bj-d", state="failed", done=2, failed=1, total=3, duration=1.0, cost=0.001),
    ):
        view.apply(event)
    widget.settle(view)
    bundle, kw = updated[-1]
    assert kw == {"display_id": "d-1", "raw": True} and WIDGET_MIME not in bundle  # no widget left to load
    assert "starburst-summary" in bundle["text/html"] and "2/3 ok" in bundle["text/html"]
    assert "1 x KeyError: 'x' (items 2)" in bundle["text/plain"]
    view.apply(ev.JobStateChanged("bj-d", state="failed", message="2 of 3 results in r"))
    widget.settle(view)  # a detached job's landing note: the same display again
    assert len(updated) == 2 and "2 of 3 results in r" in updated[-1][0]["text/html"]


def test_failures_are_grouped_by_error_with_counts_and_items():
    view = JobView("bj-f", total=10)
    view.apply(ev.WorkerStarted("bj-f", worker=0, wave=1))
    for i in (7, 3, 5):
        view.apply(ev.TaskFailed("bj-f", index=i, worker=0, error=f"KeyError: {i}", traceback=f"tb {i}"))
    view.apply(ev.TaskFailed("bj-f", index=1, worker=0, error="ZeroDivisionError: division by zero"))
    groups = failure_groups(view.failures)
    assert [(e, items) for e, items, _ in groups] == [
        ("KeyError: 7", [3, 5, 7]),
        ("ZeroDivisionError: division by zero", [1]),
    ]
    html = failures_html(view)
    assert "4 failed</b> (2 kinds of error)" in html and "3 &times; KeyError: 7" in html and "items 3, 5, 7" in html


def test_a_job_that_kept_its_failures_reads_done_with_n_failed():
    view = JobView("bj-k", total=3)
    view.on_error = "keep"
    view.apply(ev.JobFinished("bj-k", state="failed", done=2, failed=1, total=3, duration=1.0, cost=0.0))
    assert view.state_label() == "done with 1 failed"
    assert "done with 1 failed" in summary_html(view) and "#c62828'><b>" not in summary_html(view)
    raised = JobView("bj-r", total=3)  # --on-error raise: the cell raises, the job failed
    raised.apply(ev.JobFinished("bj-r", state="failed", done=2, failed=1, total=3, duration=1.0, cost=0.0))
    assert raised.state_label() == "failed"


def test_worker_table_shows_the_interesting_rows_first_and_the_rest_behind_show_all():
    j = "bj-t"
    view = JobView(j, total=100)
    now = 1000.0
    for k in range(12):
        view.apply(ev.WorkerStarted(j, worker=k, wave=1, at=now - 20))
        view.apply(ev.TaskStarted(j, worker=k, indices=(k * 2, k * 2 + 1), at=now - 20))
        view.apply(ev.TaskFinished(j, index=k * 2, worker=k, duration=1.0, at=now - 19))
    view.apply(ev.TaskFinished(j, index=11, worker=5, duration=1.0, at=now - 18))
    view.apply(ev.WorkerExited(j, worker=5, exit_code=0, at=now - 18))
    view.apply(ev.WorkerExited(j, worker=9, exit_code=-15, reason="stopped by user", at=now - 5))
    view.apply(ev.WorkerExited(j, worker=10, exit_code=1, reason="exit 1", at=now - 5))
    kinds = [(kind, w.index) for kind, w in worker_rows(view, now)]
    assert kinds[:2] == [("failed", 10), ("stopped", 9)]  # stopped by the user is not a failure
    assert kinds[-1] == ("exited", 5)
    assert view.workers[3].current == (7,)  # "now" is the item it works on: item 6 is done
    table, left_out = workers_table(view, now, show_all=False)
    assert table.count("starburst-worker ") == 8 and left_out == 4 and "<th" in table
    widget = JobWidget(view, lambda: None, lambda i: None)
    widget.render(view)
    assert widget.show_all.description == "show all (4 more)"
    widget.show_all.value = True
    assert widget.workers.value.count("starburst-worker ") == 12 and widget.show_all.description == "show fewer"


def test_a_view_restored_by_a_reloaded_page_ends_on_the_summary_too():
    """A reloaded page gets no update_display: its restored widget keeps the summary (5 models), not nothing."""
    baseline = len(_instances)
    view = JobView("bj-re", total=2)
    widget = JobWidget(view, lambda: None, lambda i: None)
    widget.root.get_state(key="children")  # a live display's change: not a restore
    assert not widget.root.restored
    Widget.get_manager_state()  # what a reloaded page's widget manager asks for (every model's whole state)
    assert widget.root.restored
    view.apply(ev.JobFinished("bj-re", state="done", done=2, failed=0, total=2, duration=1.0, cost=0.0))
    widget.settle(view)
    assert len(_instances) - baseline == 5 and widget.root.children == (widget.kept,)
    assert "2/2 ok" in widget.kept.value
    view.apply(ev.JobStateChanged("bj-re", state="done", message="2 of 2 results in r"))
    widget.settle(view)
    assert "2 of 2 results in r" in widget.kept.value
    close_all(widget.root)
    assert len(_instances) == baseline


def test_waves_line_counts_workers_that_carry_on_into_the_next_wave():
    j = "bj-c"
    view = JobView(j, total=8, state="running")
    view.apply(ev.WaveStarted(j, wave=1, waves=2, workers=2))
    for k in (0, 1):
        view.apply(ev.WorkerStarted(j, worker=k, wave=1))
    for i in range(5):
        view.apply(ev.TaskFinished(j, index=i, worker=i % 2, duration=0.1))
    view.apply(ev.WaveFinished(j, wave=1, waves=2))
    view.apply(ev.WaveStarted(j, wave=2, waves=2, workers=2))  # the same two workers go on
    line = waves_html(view)
    assert line.startswith("wave 2 of 2: 2/2 workers up") and "1 finished" in line
    assert "#43a047 100%" in line and "#43a047 25%" in line  # wave 1 full; wave 2 a quarter (1 of its 4 items)
    assert "wave 2/2: 2/2 workers up" in view.line()

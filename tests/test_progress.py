"""The view model: events in, the state a widget or progress line shows out."""

from __future__ import annotations

import io

from starburst_jupyter.core import events as ev
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.display.progress import JobView, TextProgress, Throttled
from starburst_jupyter.protocol.programs import CallProgram


def feed(view: JobView, *events: ev.Event) -> JobView:
    for event in events:
        view.apply(event)
    return view


def test_view_tracks_waves_workers_tasks_logs_and_cost():
    j = "bj-x"
    view = feed(
        JobView(j, total=4, backend="local"),
        ev.JobStateChanged(j, state="running"),
        ev.WaveStarted(j, wave=1, waves=2, workers=2),
        ev.WorkerStarted(j, worker=0, wave=1),
        ev.WorkerStarted(j, worker=1, wave=1),
        ev.TaskStarted(j, worker=0, indices=(0, 1)),
        ev.TaskFinished(j, index=0, worker=0, duration=0.1),
        ev.TaskFailed(j, index=1, worker=0, error="ValueError: bad", traceback="Traceback..."),
        ev.LogLine(j, worker=1, line="hello"),
        ev.WorkerExited(j, worker=1, exit_code=-9, reason="killed by SIGKILL"),
        ev.TaskRetried(j, index=2, attempt=2, reason="worker 1: killed by SIGKILL"),
        ev.CostTick(j, accrued=0.01, projected=0.02, cap=0.5, label="estimate"),
    )
    assert (view.done, view.failed, view.retried, view.wave, view.waves) == (1, 1, 1, 1, 2)
    assert view.workers[0].done == 2 and view.workers[0].error == "item 1: ValueError: bad"
    assert view.workers[1].state == "failed" and view.workers[1].error == "killed by SIGKILL"
    assert view.workers[1].last_line == "hello" and view.workers_up(1) == 1
    assert view.failures == [(1, "ValueError: bad", "Traceback...")]
    line = view.line()
    assert "2/4 items, 1 failed" in line and "wave 1/2: 1/2 workers up" in line and "cap $0.5" in line


def test_logs_are_capped_per_worker():
    view = feed(JobView("j", total=1), ev.WorkerStarted("j", worker=0, wave=1))
    for n in range(1000):
        view.apply(ev.LogLine("j", worker=0, line=f"line {n}"))
    assert len(view.workers[0].logs) == 200 and view.workers[0].logs[-1] == "line 999"


def test_throttle_renders_rarely_and_always_the_end():
    view = JobView("j", total=1000)
    rendered: list[int] = []
    throttled = Throttled(view, lambda v: rendered.append(v.done), interval=10.0)
    for n in range(1000):
        throttled(ev.TaskFinished("j", index=n, worker=0, duration=0.0))
    throttled(ev.JobFinished("j", state="done", done=1000, failed=0, total=1000, duration=1.0, cost=0.0))
    assert rendered == [1, 1000]  # the first event, then the final state: not 1001 renders


def test_text_progress_follows_a_real_job():
    config = Config(local_concurrency=2)
    out = io.StringIO()
    view = JobView("", total=50)
    handle = Launcher(config).submit(
        build_spec(config, mode="map", workers=4),
        CallProgram(abs),
        list(range(50)),
        subscribers=[Throttled(view, TextProgress(out, in_place=False), interval=0.0)],
    )
    view.job_id = handle.id
    handle.result()
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith(f"{handle.id} done: 50/50 items")
    assert view.waves == 2 and len(view.workers) == 4

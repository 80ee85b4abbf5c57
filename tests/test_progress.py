"""The view model: events in, the state a widget or progress line shows out."""

from __future__ import annotations

import io

import pytest

from starburst_jupyter.core import events as ev
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.display.progress import JobView, TextProgress, Throttled
from starburst_jupyter.display.rate import RateMeter, average_rate, eta, format_eta, format_rate, rate_and_eta
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
    assert view.waves == 2 and len(view.workers) == 2  # a worker carries on from one wave into the next


# ----- rate and time left (tqdm-style), pure -------------------------------------------------------------------
def test_rate_meter_smooths_like_tqdm_and_merges_close_samples():
    meter = RateMeter()
    assert meter.update(0, 0.0) is None  # one sample: no rate yet
    assert meter.update(10, 0.1) is None  # closer than MIN_INTERVAL: merged into the next
    assert meter.update(10, 1.0) == pytest.approx(10.0)  # bias-corrected: the first interval, not 3/s
    assert meter.update(30, 2.0) == pytest.approx((0.3 * 20 + 0.7 * 0.3 * 10) / (0.3 * 1 + 0.7 * 0.3 * 1))
    steady = RateMeter()
    for second in range(60):
        steady.update(second * 5, float(second))
    assert steady.rate == pytest.approx(5.0)


def test_eta_and_its_words():
    assert eta(100, 4.0) == 25.0 and eta(0, None) == 0.0 and eta(5, None) is None and eta(5, 0.0) is None
    assert format_eta(None) == "?" and format_eta(42.4) == "0:42" and format_eta(3723) == "1:02:03"
    assert format_rate(None) == "? items/s" and format_rate(12.34) == "12.3 items/s"
    assert format_rate(0.25) == "4.0 s/item" and format_rate(512.0) == "512 items/s"
    assert average_rate(0, 10.0) is None and average_rate(50, 10.0) == 5.0
    assert rate_and_eta(2.0, 10) == "2.0 items/s, 0:05 left"


def test_the_line_shows_rate_and_time_left_and_the_average_at_the_end():
    view = JobView("bj-r", total=100, started=0.0)
    view.apply(ev.JobStateChanged("bj-r", state="running"))
    view.apply(ev.WorkerStarted("bj-r", worker=0, wave=1))
    assert "? items/s, ? left" in view.line(now=1.0)
    for n in range(20):
        view.apply(ev.TaskFinished("bj-r", index=n, worker=0, duration=0.1))
    assert "20.0 items/s, 0:04 left" in view.line(now=2.0)  # 20 items in the second since the last sample
    view.apply(ev.JobFinished("bj-r", state="done", done=100, failed=0, total=100, duration=4.0, cost=0.0, at=4.0))
    assert view.line().endswith("| 4.0s | 25.0 items/s | $0.0000 est.")


def test_the_terminal_line_pads_over_a_longer_one():
    out = io.StringIO()
    progress = TextProgress(out, in_place=True)
    view = JobView("bj-p", total=2, waves=2, wave=1, state="launching")
    view.wave_workers[1] = 2
    progress(view)
    long = out.getvalue()
    view.state, view.waves = "running", 1
    progress(view)
    short = out.getvalue()[len(long) :]
    assert short.startswith("\r") and len(short) == len(long)  # "...est.kers up" is written over

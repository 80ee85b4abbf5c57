"""The core launcher on the local backend, through the Python face: real worker processes."""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import wait as wait_futures

import pytest
from helpers import latest_record, pid_alive, wait_for, worker_pids

from starburst_jupyter import (
    BurstCancelled,
    BurstCaptureError,
    BurstError,
    BurstExecutor,
    BurstTimeout,
    BurstValidationError,
    WorkerLost,
    burst_map,
)
from starburst_jupyter.core import events as ev
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.protocol.programs import CallProgram
from starburst_jupyter.stores.records import JobStore


def square(x):
    return x * x


def sleepy(seconds):
    time.sleep(seconds)
    return seconds


def test_results_in_item_order_and_recorded():
    assert burst_map(square, range(300), workers=2) == [x * x for x in range(300)]
    record = latest_record()
    assert (record["state"], record["done"], record["failed"], record["total"]) == ("done", 300, 0, 300)
    assert record["cost"]["accrued"] > 0 and "estimate" in record["cost"]["label"]
    assert not any(pid_alive(p) for p in worker_pids(record))


def test_uneven_durations_keep_every_worker_busy():
    """One long item first: a static half split would leave its worker with half the short ones too."""
    durations = [0.5] + [0.02] * 40
    config = Config(local_concurrency=2)
    handle = Launcher(config).submit(build_spec(config, mode="map", workers=2), CallProgram(sleepy), durations)
    seen: list[ev.Event] = []
    handle.events.subscribe(seen.append, ev.TaskFinished, ev.TasksFinished)
    assert handle.result().values == durations
    # (a flushed batch of more than 16 items is one TasksFinished)
    finished = [(e.worker, i) for e in seen for i in (e.indices if isinstance(e, ev.TasksFinished) else [e.index])]
    by_worker: dict[int, float] = {}
    for worker, index in finished:
        by_worker[worker] = by_worker.get(worker, 0.0) + durations[index]
    long_worker = next(w for w, i in finished if i == 0)
    other = next(w for w in by_worker if w != long_worker)
    assert by_worker[other] > 0.5 * by_worker[long_worker]  # the other worker took most short items
    assert sum(1 for w, _ in finished if w == long_worker) < 21


def test_events_stream_waves_tasks_and_cost():
    config = Config(local_concurrency=2)
    spec = build_spec(config, mode="map", workers=4)
    seen: list[ev.Event] = []
    handle = Launcher(config).submit(spec, CallProgram(square), list(range(40)))
    handle.events.subscribe(seen.append)
    result = handle.result()
    assert result.values == [x * x for x in range(40)]
    waves = [e for e in seen if isinstance(e, ev.WaveStarted)]
    assert [w.wave for w in waves] == [1, 2] and all(w.waves == 2 for w in waves)
    assert sum(isinstance(e, ev.WaveFinished) for e in seen) == 2
    finished = {e.index for e in seen if isinstance(e, ev.TaskFinished)}
    assert finished <= set(range(40))
    assert isinstance(seen[-1], ev.JobFinished) and seen[-1].state == "done"
    assert any(isinstance(e, ev.CostTick) for e in seen)
    assert len(latest_record()["workers"]) == 2  # two workers, carrying on from wave 1 into wave 2


def die_at(x, marker_dir=None):
    if x == 3:
        os._exit(7)
    return x


def kill_once(x, marker):
    if x == 5 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), 9)
    return -x


def test_killed_worker_item_is_retried_on_another_worker(tmp_path):
    marker = str(tmp_path / "killed")
    assert burst_map(lambda x: kill_once(x, marker), range(12), workers=2) == [-x for x in range(12)]
    record = latest_record()
    assert record["state"] == "done"
    assert any(w["reason"] == "killed by SIGKILL" for w in record["workers"].values())


def test_item_that_always_kills_its_worker_fails_after_one_retry():
    results = burst_map(die_at, range(8), workers=2, on_error="keep")
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5, 6, 7]
    assert isinstance(results[3], WorkerLost)
    assert "tried 2 times" in str(results[3]) and "exited with code 7" in str(results[3])
    assert latest_record()["state"] == "failed"


def segfault(x):
    if x == 1:
        import ctypes

        ctypes.string_at(0)
    return x


def test_segfault_is_reported_not_hung():
    with pytest.raises(BurstError) as info:
        burst_map(segfault, range(4), workers=2)
    message = str(info.value)
    assert "item 1" in message and "SIGSEGV" in message
    assert info.value.results[0] == 0 and info.value.results[2:] == [2, 3]


def test_a_finished_jobs_driver_thread_can_be_joined():
    """The driver is a Thread: none of its methods may shadow Thread's own (a `_stop` did, and join raised)."""
    handle = Launcher(Config()).submit(build_spec(Config(), mode="map"), CallProgram(abs), [-1, -2])
    assert handle.wait(timeout=60).values == [1, 2]
    handle._driver.join(timeout=10)
    assert not handle._driver.is_alive()


def test_failures_name_every_item_with_remote_traceback():
    def picky(x):
        if x in (2, 5):
            raise KeyError(f"no key {x}")
        return x

    with pytest.raises(BurstError) as info:
        burst_map(picky, range(7), workers=2)
    text = str(info.value)
    assert "2 of 7 items failed" in text and "item 2" in text and "item 5" in text
    assert "raise KeyError" in text and "no key 5" in text
    assert [i for i, _ in info.value.failures] == [2, 5]
    assert isinstance(info.value.results[2], KeyError) and info.value.results[6] == 6


def test_interrupt_cancels_job_and_ends_every_worker():
    # (interrupt_main does nothing while SIGINT is not Python's to handle, e.g. ignored in a background job)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(1.0, _thread.interrupt_main)
        timer.start()
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            burst_map(sleepy, [30] * 4, workers=2)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - start < 10
    record = latest_record()
    assert record["state"] == "cancelled" and "interrupted" in record["message"]
    assert worker_pids(record) and not any(pid_alive(p) for p in worker_pids(record))


def test_timeout_cancels_with_clear_error():
    with pytest.raises(BurstTimeout, match="passed its --timeout of 1 s"):
        burst_map(sleepy, [0.1, 30, 30], workers=2, timeout=1)
    record = latest_record()
    assert record["state"] == "cancelled"
    assert not any(pid_alive(p) for p in worker_pids(record))


def test_max_cost_refused_before_launch_and_enforced_while_running(tmp_path):
    with pytest.raises(BurstValidationError, match="below the minimum charge"):
        burst_map(square, range(4), workers=2, max_cost=0.0001)
    assert JobStore().list() == []  # nothing was launched
    # 16 vCPU / 120 GB workers, a cap just above one worker's one-minute minimum: three waves fit, as the
    # worker carries on from wave to wave (no second minimum) ...
    big = dict(cpu=16, memory="120GB", max_cost=0.03, config=Config(local_concurrency=1))
    assert burst_map(sleepy, [0.2] * 6, workers=3, **big) == [0.2] * 6
    assert latest_record()["waves"]["finished"] == 3 and len(latest_record()["workers"]) == 1
    # ... but replacing a worker that died would start a second minimum: the job stops instead
    marker = str(tmp_path / "killed")
    with pytest.raises(BurstCancelled, match="max-cost"):
        burst_map(lambda x: kill_once(x, marker), range(6), workers=3, **big)
    assert latest_record()["state"] == "cancelled"


def test_unpicklable_function_stopped_before_launch():
    lock = threading.Lock()
    with pytest.raises(BurstCaptureError, match="'fn'"):
        burst_map(lambda x: lock, range(3))
    with pytest.raises(BurstValidationError, match="--workers 0 must be at least 1"):
        burst_map(square, range(3), workers=0)
    with pytest.raises(BurstValidationError, match="fargate backend is not set up in us-east-1.*%burst_setup"):
        burst_map(square, range(3), backend="fargate")  # nothing set up in this fresh STARBURST_HOME
    assert JobStore().list() == []


def test_unpicklable_item_stopped_before_launch():
    with pytest.raises(BurstCaptureError, match="Every item must be picklable; nothing was launched"):
        burst_map(square, [1, threading.Lock()])
    assert JobStore().list() == []


def test_executor_futures_resolve_as_tasks_finish():
    with BurstExecutor(workers=2, config=Config(local_concurrency=2)) as pool:
        slow = pool.submit(sleepy, 2.0)
        fast = pool.submit(square, 7)
        assert fast.result(timeout=20) == 49
        assert not slow.done()  # futures resolve one by one, not at the end
        bad = pool.submit(int, "x")
        with pytest.raises(ValueError, match="invalid literal"):
            bad.result(timeout=20)
        assert list(pool.map(square, range(5))) == [0, 1, 4, 9, 16]
        assert slow.result(timeout=20) == 2.0
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(square, 1)
    assert latest_record()["state"] in ("done", "failed")


def test_executor_shutdown_cancels_pending_futures():
    pool = BurstExecutor(workers=1, config=Config(local_concurrency=1))
    running = pool.submit(sleepy, 1.0)
    wait_for(lambda: running.running(), timeout=20)
    queued = [pool.submit(sleepy, 5.0) for _ in range(3)]
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result() == 1.0
    assert all(f.cancelled() for f in queued)
    done, _ = wait_futures(queued, timeout=1)
    assert len(done) == 3


LAUNCH_AND_WAIT = """
import sys, time
from starburst_jupyter import burst_map
def nap(x):
    time.sleep(60)
burst_map(nap, range(2), workers=2)
"""


def test_cancel_job_whose_kernel_is_gone(starburst_home):
    kernel = subprocess.Popen([sys.executable, "-c", LAUNCH_AND_WAIT], env={**os.environ})
    try:
        record = wait_for(
            lambda: (
                (JobStore().list() or [None])[0]
                if JobStore().list() and len(JobStore().list()[0]["workers"]) == 2
                else None
            ),
            timeout=30,
        )
        kernel.kill()  # the launching kernel dies hard; its workers keep running (detached job)
        kernel.wait()
        pids = worker_pids(record)
        assert all(pid_alive(p) for p in pids)
        final = Launcher().cancel_job(record["id"][:12] + record["id"][12:], "cancelled from a test")
        assert final["state"] == "cancelled"
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=10)
        again = Launcher().cancel_job(record["id"])  # idempotent
        assert again["state"] == "cancelled"
    finally:
        if kernel.poll() is None:
            kernel.kill()


def test_cli_status_cancel_and_config(capsys):
    from starburst_jupyter.cli import main

    burst_map(square, range(3), workers=1, name="cli check")
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "cli check" in out and "3/0/3" in out
    job = latest_record()["id"]
    assert main(["status", job[:15]]) == 0 and "waves:" in capsys.readouterr().out
    assert main(["cancel", job]) == 0 and "done" in capsys.readouterr().out  # a finished job stays done
    assert main(["status", "bj-nope"]) == 2 and "No job matches" in capsys.readouterr().err
    assert main(["config", "workers=zero"]) == 2 and "workers='zero' refused" in capsys.readouterr().err


def test_executor_survives_an_unpicklable_submit():
    with BurstExecutor(workers=1, config=Config(local_concurrency=1)) as pool:
        with pytest.raises(BurstCaptureError, match="'args'"):
            pool.submit(square, threading.Lock())
        assert pool.submit(square, 3).result(timeout=20) == 9
    assert latest_record()["state"] == "done"  # the refused call left nothing pending


def _explode():
    raise ImportError("no module named 'only_in_the_kernel'")


class LoadsOnlyHere:
    """Unpickling it fails, as a value from a package the worker lacks would."""

    def __reduce__(self):
        return (_explode, ())


def test_workers_that_cannot_load_the_program_fail_the_job_clearly():
    thing = LoadsOnlyHere()
    with pytest.raises(BurstError) as info:
        burst_map(lambda x: (thing, x), range(3), workers=2, config=Config(local_concurrency=2))
    message = str(info.value)
    assert "ended before taking any work" in message and "only_in_the_kernel" in message
    record = latest_record()
    assert record["state"] == "failed" and len(record["workers"]) <= 4  # not relaunched forever
    assert not any(pid_alive(p) for p in worker_pids(record))


def test_items_that_never_ran_are_not_blamed_for_a_crash():
    results = burst_map(die_at, range(8), workers=1, on_error="keep", config=Config(retries=0))
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5, 6, 7]
    assert isinstance(results[3], WorkerLost)


def test_cancel_from_another_face_keeps_its_reason():
    config = Config(local_concurrency=2)
    handle = Launcher(config).submit(build_spec(config, mode="map", workers=2), CallProgram(sleepy), [30, 30])
    wait_for(lambda: len(latest_record()["workers"]) == 2, timeout=20)
    record = Launcher(config).cancel_job(handle.id, "cancelled with %burst_cancel")
    assert record["state"] == "cancelled" and record["message"] == "cancelled with %burst_cancel"
    assert not any(pid_alive(p) for p in worker_pids(record))
    with pytest.raises(KeyError, match="Give a job id"):
        JobStore().find("")


def test_stopping_one_worker_moves_its_items_to_another():
    config = Config(local_concurrency=2)
    handle = Launcher(config).submit(build_spec(config, mode="map", workers=2), CallProgram(sleepy), [0.3] * 8)
    wait_for(lambda: len(latest_record()["workers"]) == 2 and latest_record()["done"] >= 1, timeout=30)
    handle.stop_worker(0)
    result = handle.result()
    assert result.values == [0.3] * 8 and not result.failures
    workers = latest_record()["workers"]
    assert workers["0"]["reason"] == "stopped by user"
    # worker 0 hands its block back on SIGTERM: worker 1 or a replacement (when work is left to start one) runs it
    assert len(workers) in (2, 3)

"""Detached jobs on the local backend: the job's driver runs apart from the process that launched it, so the job
finishes when that process is SIGKILLed, and any process with the same STARBURST_HOME follows it, collects
what finished so far or all of it, cancels it or gives it more time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import starburst_jupyter as sj
from starburst_jupyter.core import events as ev
from starburst_jupyter.core.decisions import Timings
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.errors import BurstError, TaskCancelled
from tests.helpers import pid_alive, wait_for

REPO = Path(__file__).resolve().parents[1]


def slow_square(x):
    import time

    time.sleep(0.4)
    return x * x


def _lease_epochs(job_id: str) -> list[int]:
    from starburst_jupyter.protocol import keys

    _, files = Launcher().job_record(job_id)
    return sorted(keys.lease_epoch(k) for k in files.store.list(keys.leases_prefix(files.prefix)))


def _driver_pid(job_id: str) -> int:
    record, _ = Launcher().job_record(job_id)
    return int(record.owner.pid or 0)


def _worker_pids(job_id: str) -> list[int]:
    record, _ = Launcher().job_record(job_id)
    return [int(w.pid) for w in record.workers.values() if w.pid]


def test_a_detached_map_returns_at_once_gives_partial_results_then_all(starburst_home):
    started = time.monotonic()
    job = sj.burst_map(slow_square, range(10), wait=False, workers=2)
    assert time.monotonic() - started < 5, "wait=False must not wait for the job"
    assert isinstance(job, sj.DetachedJob)
    assert job.status().owner.detached
    wait_for(lambda: job.status().owner.pid, timeout=20, interval=0.1)
    assert job.status().owner.pid != os.getpid(), "the driver is a process of its own"

    wait_for(lambda: 0 < job.status().done < 10, timeout=30, interval=0.1)
    partial = job.results(partial=True)
    assert len(partial) == 10
    finished = [i for i, v in enumerate(partial) if v is not sj.PENDING]
    assert finished and len(finished) < 10, partial
    assert all(partial[i] == i * i for i in finished)
    assert repr(sj.PENDING) == "PENDING"

    result = job.wait(timeout=60)
    assert result.state == "done"
    assert job.results() == [i * i for i in range(10)]
    record = job.status()
    assert record.state.value == "done" and record.done == 10
    wait_for(lambda: not pid_alive(record.owner.pid), timeout=10)  # the driver process ends with its job

    again = sj.attach(job.id[:15])  # the start of the id, as users type it
    assert again.wait(timeout=30).values == [i * i for i in range(10)]


def test_the_follower_replays_the_drivers_events(starburst_home):
    seen: list[ev.Event] = []
    job = Launcher().follow(sj.burst_map(slow_square, range(6), wait=False, workers=2).id, start=False)
    job.events.subscribe(seen.append)
    job.start().wait(timeout=60)
    assert sum(isinstance(e, ev.TaskFinished) for e in seen) == 6
    finished = [e for e in seen if isinstance(e, ev.JobFinished)]
    assert len(finished) == 1 and finished[0].done == 6 and finished[0].state == "done"
    assert any(isinstance(e, ev.WorkerStarted) for e in seen)


LAUNCH = textwrap.dedent(
    """
    import sys, time
    import starburst_jupyter as sj

    SECONDS = float(sys.argv[2])

    def slow(x, seconds=SECONDS):
        import time
        time.sleep(seconds)
        return x + 100

    job = sj.burst_map(slow, range(int(sys.argv[1])), wait=False, workers=2)
    print(job.id, flush=True)
    time.sleep(600)
    """
)


def _launch_and_kill(tmp_path: Path, items: int, seconds: float) -> str:
    """A separate 'kernel' launches a detached job and is SIGKILLed right after: returns the job id."""
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(items), str(seconds)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        job_id = proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert job_id.startswith("bj-"), job_id
    return job_id


def test_the_job_finishes_after_its_launching_process_is_sigkilled(starburst_home, tmp_path):
    job_id = _launch_and_kill(tmp_path, items=8, seconds=0.3)
    job = sj.attach(job_id)
    result = job.wait(timeout=60)
    assert result.state == "done", result.failure_report()
    assert result.values == [i + 100 for i in range(8)]
    assert not any(pid_alive(p) for p in _worker_pids(job_id))


def test_cancel_from_another_process_ends_the_driver_and_every_worker(starburst_home, tmp_path):
    job_id = _launch_and_kill(tmp_path, items=40, seconds=1.0)
    job = sj.attach(job_id)
    wait_for(lambda: job.status().workers, timeout=30, interval=0.1)
    driver = _driver_pid(job_id)
    job.cancel("enough")
    result = job.wait(timeout=60)
    assert result.state == "cancelled" and "enough" in result.message
    assert any(v is not None and isinstance(v, BaseException) for v in result.values)
    wait_for(lambda: not pid_alive(driver), timeout=10)
    assert not any(pid_alive(p) for p in _worker_pids(job_id)), "no worker of a cancelled job is left"
    with pytest.raises(sj.BurstCancelled, match="enough"):
        sj.attach(job_id).result()


def test_a_job_whose_driver_died_gets_a_new_driver_when_attached(starburst_home, tmp_path, monkeypatch):
    monkeypatch.setattr(Launcher, "timings", Timings(driver_silent=1.0))
    job = sj.burst_map(slow_square, range(12), wait=False, workers=2)
    wait_for(lambda: job.status().done >= 2, timeout=30, interval=0.1)
    first = _driver_pid(job.id)
    os.kill(first, signal.SIGKILL)
    time.sleep(1.5)
    again = sj.attach(job.id)  # the first follower (this process's job) or this attach starts the new driver
    assert again.wait(timeout=60).values == [i * i for i in range(12)]
    assert job.wait(timeout=60).values == [i * i for i in range(12)]
    assert _driver_pid(job.id) != first
    assert _lease_epochs(job.id) == [1, 2], "exactly one new driver, under the next lease"


def test_extend_gives_a_detached_job_more_time(starburst_home):
    def sleepy(x):
        import time

        time.sleep(1.0)
        return x

    job = sj.burst_map(sleepy, range(6), wait=False, workers=1, timeout=3)
    new_deadline = job.extend(1)
    assert new_deadline > time.time() + 55
    result = job.wait(timeout=60)
    assert result.state == "done", result.message
    assert result.values == list(range(6))
    with pytest.raises(BurstError, match="already ended"):
        job.extend(1)


def test_without_extend_the_timeout_ends_it(starburst_home):
    def sleepy(x):
        import time

        time.sleep(1.0)
        return x

    job = sj.burst_map(sleepy, range(6), wait=False, workers=1, timeout=3)
    result = job.wait(timeout=60)
    assert result.state == "cancelled" and result.cancelled_by == "timeout", result.message
    with pytest.raises(sj.BurstTimeout):
        job.result()


def test_no_wait_cell_returns_its_handle_and_the_results_land_in_out(ip, starburst_home):
    ip.user_ns["items"] = list(range(6))
    ip.user_ns["slow_square"] = slow_square
    started = time.monotonic()
    handle = ip.run_cell_magic("burst", "--map x in items --no-wait --handle job --out squares", "slow_square(x)")
    assert time.monotonic() - started < 5
    assert ip.user_ns["job"] is handle and "squares" not in ip.user_ns
    wait_for(lambda: "squares" in ip.user_ns, timeout=60, interval=0.1)
    assert ip.user_ns["squares"] == [i * i for i in range(6)]


def test_no_wait_single_cell_sets_its_names_when_it_ends(ip, starburst_home):
    handle = ip.run_cell_magic("burst", "--no-wait", "import time\ntime.sleep(0.5)\nanswer = 6 * 7")
    assert "answer" not in ip.user_ns
    handle.wait(timeout=60)
    wait_for(lambda: "answer" in ip.user_ns, timeout=10)
    assert ip.user_ns["answer"] == 42


def test_handle_without_no_wait_is_refused(ip):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="--no-wait"):
        ip.run_cell_magic("burst", "--handle job", "x = 1")


EXECUTOR = textwrap.dedent(
    """
    import time
    import starburst_jupyter as sj

    def triple(x):
        return 3 * x

    ex = sj.BurstExecutor(workers=1, detach=True)
    futures = [ex.submit(triple, i) for i in range(3)]
    print(ex.job_id, [f.result(timeout=60) for f in futures], flush=True)
    time.sleep(600)
    """
)


def test_a_detached_executor_outlives_its_process_and_takes_more_work_after_attach(starburst_home, tmp_path):
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    try:
        line = proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    job_id, first = line.split(" ", 1)
    assert first == "[0, 3, 6]"

    ex = sj.BurstExecutor.attach(job_id)
    futures = [ex.submit(lambda x: x + 1000, i) for i in range(4)]
    assert [f.result(timeout=60) for f in futures] == [1000, 1001, 1002, 1003]
    assert ex.job.results(partial=True)[:3] == [0, 3, 6], "what the first process submitted is still there"
    ex.shutdown(wait=True)
    record = ex.job.status()
    assert record.state.value == "done" and record.total == 7
    with pytest.raises(BurstError, match="takes no more items"):
        ex.job.add_items([1])


def test_attach_refuses_a_map_job_as_an_executor(starburst_home):
    job = sj.burst_map(slow_square, range(2), wait=False, workers=1)
    with pytest.raises(BurstError, match="not a BurstExecutor"):
        sj.BurstExecutor.attach(job.id)
    job.wait(timeout=60)


def test_a_driver_that_dies_while_followed_is_replaced_once_by_one_follower(starburst_home):
    """Issue 22: with the driver and its workers killed 2 items into a job, two attach().wait() at once timed
    out after 600 s with 4 of 16 items run. Now the job's lease lapses (its holder's pid is gone), one follower
    takes it and starts one new driver; every follower gets every value."""
    import threading

    job = sj.burst_map(slow_square, range(16), wait=False, workers=2)
    wait_for(lambda: job.status().done >= 2, timeout=30, interval=0.05)
    driver, workers = job.status().owner.pid, _worker_pids(job.id)
    for pid in [driver, *workers]:
        os.kill(pid, signal.SIGKILL)
    got: list = []
    followers = [threading.Thread(target=lambda: got.append(sj.attach(job.id).wait(timeout=60).values)) for _ in "ab"]
    for follower in followers:
        follower.start()
    assert job.wait(timeout=60).values == [i * i for i in range(16)]
    for follower in followers:
        follower.join(60)
    assert got == [[i * i for i in range(16)]] * 2
    assert _lease_epochs(job.id) == [1, 2], "exactly one new driver"


def test_a_driver_that_keeps_dying_is_reported_not_restarted_forever(starburst_home):
    from starburst_jupyter.core.detached import MAX_RESTARTS

    job = sj.burst_map(slow_square, range(30), wait=False, workers=1)
    wait_for(lambda: job.status().owner.pid, timeout=20, interval=0.1)
    job.files.store.put(job.files.prefix + "spec.json", [b"{damaged"])  # every new driver fails at its start
    os.kill(job.status().owner.pid, signal.SIGKILL)
    reported = rf"driver of job .* ended \(exit code 1\) .* {MAX_RESTARTS} times.*driver\.log"
    with pytest.raises(BurstError, match=reported):
        job.wait(timeout=60)
    sj.attach(job.id).cancel("test over")


FEEDER = textwrap.dedent(
    """
    import json, sys
    import starburst_jupyter as sj

    job_id, tag, go = sys.argv[1], sys.argv[2], sys.argv[3]
    ex = sj.BurstExecutor.attach(job_id)
    import os, time
    while not os.path.exists(go):  # both feeders submit at the same moment
        time.sleep(0.005)
    futures = [ex.submit(lambda t: t, (tag, i)) for i in range(40)]
    got = [f.result(timeout=120) for f in futures]
    print(json.dumps([[list(g) for g in got], [f"{tag}-{i}" for i in range(40)]]), flush=True)
    """
)


def test_two_processes_feeding_one_detached_executor_each_get_their_own_results(starburst_home, tmp_path):
    """Issue 22: two feeders that both counted N items each queued an item N, and 22 of 80 futures resolved
    with the other process's call's result. Each index is now taken by an exclusive create."""
    ex = sj.BurstExecutor(workers=2, detach=True)
    script, go = tmp_path / "feeder.py", tmp_path / "go"
    script.write_text(FEEDER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    feeders = [
        subprocess.Popen([sys.executable, str(script), ex.job_id, tag, str(go)], stdout=subprocess.PIPE, text=True,
                         env=env)
        for tag in ("a", "b")
    ]  # fmt: skip
    time.sleep(2.0)  # both attached (an attach takes well under a second here)
    go.write_text("")
    outputs = [proc.communicate(timeout=180)[0] for proc in feeders]
    assert all(proc.returncode == 0 for proc in feeders), outputs
    for tag, out in zip(("a", "b"), outputs):
        import json

        got, _ = json.loads(out.strip().splitlines()[-1])
        assert got == [[tag, i] for i in range(40)], f"feeder {tag} got others' results: {got}"
    ex.shutdown(wait=True)
    record = ex.job.status()
    assert record.state.value == "done" and record.total == 80, (record.state, record.total)
    assert sorted(ex.job.results()) == sorted((t, i) for t in "ab" for i in range(40))


def test_a_number_taken_but_never_written_does_not_keep_the_executor_open(starburst_home):
    ex = sj.BurstExecutor(workers=1, detach=True)
    first = ex.submit(lambda: 1)
    ex.job.files.take_index(1)  # a feeder that took number 1 and died before writing its task
    ex.job._open_ledger().discover()
    later = ex.submit(lambda: 3)  # number 2: 1 is taken
    assert (first.result(timeout=60), later.result(timeout=60)) == (1, 3)
    ex.shutdown(wait=True)
    result = ex.job.wait(timeout=60)
    assert result.values[0] == 1 and result.values[2] == 3, result.values
    assert isinstance(result.values[1], TaskCancelled), result.values[1]  # ended, not waited for

"""One driver per job (issue 22): the job's lease (core/lease.py) is taken by an exclusive create, so attaches
at once start one driver, and a driver that wakes after losing its lease writes nothing more."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from helpers import pid_alive, wait_for

import starburst_jupyter as sj
from starburst_jupyter.core.decisions import Timings
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.lease import DriverLease, LeaseInfo, expired
from starburst_jupyter.protocol import keys
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.stores.objects import LocalFolderStore

pytestmark = pytest.mark.timeout(300)


def counted(x):
    """Sleeps a little and leaves a mark per run, so a test can count how often each item ran."""
    import os
    import time

    time.sleep(0.3)
    with open(os.path.join(os.environ["RUNS_DIR"], f"{x}-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    return x * 10


def _runs(folder: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    for path in folder.iterdir():
        item = int(path.name.split("-")[0])
        out[item] = out.get(item, 0) + 1
    return out


def _epochs(job_id: str) -> list[int]:
    _, files = Launcher().job_record(job_id)
    return sorted(keys.lease_epoch(k) for k in files.store.list(keys.leases_prefix(files.prefix)))


def _journal(job_id: str) -> list[int]:
    _, files = Launcher().job_record(job_id)
    return [seq for seq, _ in files.read_events()]


# ----- the lease itself ------------------------------------------------------------------------------
def test_of_many_takers_at_once_exactly_one_gets_the_lease(tmp_path):
    files = JobFiles(LocalFolderStore(tmp_path), "bj-lease")
    barrier = threading.Barrier(20)
    won: list[DriverLease] = []

    def take() -> None:
        barrier.wait()
        lease = DriverLease.take(files, 30.0)
        if lease is not None:
            won.append(lease)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and won[0].epoch == 1
    assert DriverLease.take(files, 30.0) is None, "held and renewed: nobody else takes it"


def test_a_lease_lapses_by_its_ttl_or_with_its_holder_on_this_machine():
    alive = {10: True, 11: False}.get
    held = LeaseInfo(3, "pid 10 on here", 10, "here", renewed=100.0, ttl=30.0)
    assert not expired(held, 120.0, "here", alive)
    assert expired(held, 131.0, "here", alive)  # not renewed within its ttl (stopped, suspended, elsewhere)
    gone = LeaseInfo(3, "pid 11 on here", 11, "here", renewed=100.0, ttl=30.0)
    assert expired(gone, 101.0, "here", alive)  # its process is gone: no need to wait
    assert not expired(gone, 101.0, "elsewhere", alive)  # another machine cannot see that pid: the ttl decides
    starting = LeaseInfo(4, "a driver being started", None, "here", renewed=100.0, ttl=300.0)
    assert not expired(starting, 350.0, "here", alive)  # a Fargate driver's cold start is covered
    assert expired(None, 0.0, "here", alive)


def test_a_holder_that_lost_its_lease_is_fenced(tmp_path):
    files = JobFiles(LocalFolderStore(tmp_path), "bj-fence")
    first = DriverLease.take(files, 1.0)
    assert first is not None
    time.sleep(1.1)  # (a ttl is at least a second)
    second = DriverLease.take(files, 30.0)
    assert second is not None and second.epoch == 2
    with pytest.raises(sj.BurstError, match="another driver took over"):
        first.renew()


# ----- whole jobs ---------------------------------------------------------------------------------------
def test_ten_attaches_at_once_to_a_dead_drivers_job_start_exactly_one_driver(starburst_home, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv("RUNS_DIR", str(runs))
    job = sj.burst_map(counted, range(16), wait=False, workers=2, retries=0)
    wait_for(lambda: job.status().done >= 3, timeout=60, interval=0.05)
    record = job.status()
    for pid in [record.owner.pid, *(w["pid"] for w in record.to_json()["workers"].values() if w.get("pid"))]:
        os.kill(pid, signal.SIGKILL)
    done_before = {i for i, letter in enumerate(job.status().outcomes) if letter == "D"}
    barrier = threading.Barrier(10)
    results: list = []

    def attach() -> None:
        barrier.wait()
        results.append(sj.attach(job.id).wait(timeout=120))

    threads = [threading.Thread(target=attach) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert len(results) == 10
    assert _epochs(job.id) == [1, 2], "one new driver, whoever of the ten (or the first follower) took the lease"
    outcome = results[0]
    assert all(r.values == outcome.values for r in results)
    ran = _runs(runs)
    assert all(ran[i] == 1 for i in done_before), f"finished items ran again: {ran}"
    assert all(count <= 2 for count in ran.values()), f"an item ran more than once more: {ran}"
    # items killed with their worker: redone alone once (a block of several: which one ran is unknown), else
    # reported lost; every other item ran exactly once
    assert sum(count == 2 for count in ran.values()) <= 2, ran
    journal = _journal(job.id)
    assert journal == sorted(set(journal)), f"two drivers wrote the same journal numbers: {journal}"
    assert job.status().state.value in ("done", "failed")


def test_a_stopped_driver_that_wakes_after_losing_its_lease_writes_nothing(starburst_home, monkeypatch):
    monkeypatch.setattr(Launcher, "timings", Timings(lease_ttl=2.0, driver_silent=2.0))
    job = sj.burst_map(counted_slow, range(8), wait=False, workers=1)
    wait_for(lambda: job.status().done >= 1, timeout=60, interval=0.05)
    stopped = job.status().owner.pid
    os.kill(stopped, signal.SIGSTOP)  # a suspended laptop, a paused container
    try:
        result = job.wait(timeout=120)  # its lease lapses: the follower starts a new driver, which finishes
        assert result.values == [i * 10 for i in range(8)]
        assert _epochs(job.id) == [1, 2]
        _, files = Launcher().job_record(job.id)
        record_file = Path(files.store.path(keys.record_key(files.prefix)))
        before = (record_file.stat().st_mtime_ns, record_file.read_bytes(), _journal(job.id))
    finally:
        os.kill(stopped, signal.SIGCONT)
    wait_for(lambda: not pid_alive(stopped), timeout=30, interval=0.1)  # it finds epoch 2 and ends
    after = (record_file.stat().st_mtime_ns, record_file.read_bytes(), _journal(job.id))
    assert after == before, "the stopped driver wrote after it woke"
    assert json.loads(before[1])["state"] == "done"


def counted_slow(x):
    import time

    time.sleep(0.5)
    return x * 10

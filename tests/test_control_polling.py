"""Issue 14 item 6: a worker's reads of the cancel marker scale with the job. The driver writes a pace that
keeps the whole job within CONTROL_READS_PER_SECOND (core/decisions.worker_timing); a worker jitters its
reads around it, and neither its deadline nor SIGTERM's grace waits for the next read."""

from __future__ import annotations

import threading
import time

from starburst_jupyter.backends.local import LocalBackend
from starburst_jupyter.core import decisions
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.protocol.programs import CallProgram
from starburst_jupyter.protocol.workerspec import Timing, WorkerSpec
from starburst_jupyter.worker import runner


class _Files:
    """What the control thread reads and writes, counted."""

    def __init__(self) -> None:
        self.reads: list[float] = []
        self.beats = 0

    def cancel_requested(self) -> bool:
        self.reads.append(time.monotonic())
        return False

    def deadline(self, current: float) -> float:
        return current

    def write_heartbeat(self, worker: int, info: dict) -> None:
        self.beats += 1


def _control(poll: float, heartbeat: float = 100.0) -> tuple[runner.Control, _Files]:
    files = _Files()
    spec = WorkerSpec("job-x", time.time() + 600, 1000, Timing(0.5, poll, heartbeat))
    return runner.Control(files, 0, spec), files  # type: ignore[arg-type]


def _run_for(control: runner.Control, seconds: float) -> None:
    control.start()
    time.sleep(seconds)
    control.active = False
    control.join(5)


def test_reads_follow_the_specs_pace_with_jitter():
    control, files = _control(poll=0.1)
    _run_for(control, 1.5)
    assert 7 <= len(files.reads) <= 25, files.reads  # ~15 at 0.1 s, never one per loop turn
    gaps = [b - a for a, b in zip(files.reads, files.reads[1:])]
    assert max(gaps) - min(gaps) > 0.02  # jittered, so workers started together do not read in lockstep


def test_a_slow_poll_does_not_delay_sigterms_hand_back():
    """At 5,000 workers a worker reads the marker every 50 s; SIGTERM's grace (ECS kills 30 s after it) must
    still run on its own timer."""
    control, files = _control(poll=50.0)
    control.stop_grace = 0.3
    left = threading.Event()
    control.on_stop = left.set
    runner._STOP.at = time.time()  # (in a worker the signal also wakes the control thread through its pipe)
    control.start()
    try:
        assert left.wait(3.0), "the worker did not leave within its stop grace"
        assert len(files.reads) <= 1
    finally:
        control.active = False
        runner._STOP.at = None
        control.join(5)


def test_the_driver_writes_the_scaled_pace_into_the_spec(monkeypatch):
    """The pace in spec.json is the job's: workers x reads per worker stays within the budget."""
    monkeypatch.setattr(decisions, "CONTROL_READS_PER_SECOND", 1.0)  # 2 workers sharing 1 read/s: 2 s each
    config = Config(local_concurrency=2)
    handle = Launcher(config).submit(build_spec(config, mode="map", workers=2), CallProgram(abs), [-1, -2, 3])
    assert handle.result().values == [1, 2, 3]
    spec = LocalBackend(config).job_files(handle.id).read_spec()
    assert spec.timing.control_poll_seconds == 2.0
    assert spec.timing.heartbeat_seconds == LocalBackend.timing["heartbeat_seconds"]

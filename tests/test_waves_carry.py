"""Issue 14 item 7: no cold start per wave. A worker that finished its share of a wave carries on into its
share of the next, so a job of k waves starts `concurrency` workers, not `workers`; the waves still start and
finish in the record and the events, as progress."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import cloudpickle
from helpers import latest_record

from starburst_jupyter.backends.base import WorkerRef, capabilities_of
from starburst_jupyter.core import events as ev
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.decisions import CostRule, Timings
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.plan import make_plan
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.core.workforce import Workforce
from starburst_jupyter.protocol.programs import CallProgram

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # (so each worker pays SlowToLoad's load)
COLD_START = 1.5  # seconds each worker spends loading the job's program (a stand-in for a task's cold start)


def _slow_restore() -> SlowToLoad:
    time.sleep(COLD_START)
    return SlowToLoad()


class SlowToLoad:
    """Unpickling it takes COLD_START seconds: every worker pays it once, when it loads the program."""

    def __reduce__(self):
        return _slow_restore, ()


def nap(x, _load=SlowToLoad()):
    time.sleep(0.05)
    return x


def test_a_three_wave_job_starts_only_concurrency_workers_and_still_shows_its_waves():
    config = Config(local_concurrency=2)
    spec = build_spec(config, mode="map", workers=6)  # three waves of two
    started = time.monotonic()
    handle = Launcher(config).submit(spec, CallProgram(nap), list(range(40)))
    seen: list[tuple[float, ev.Event]] = []
    handle.events.subscribe(lambda e: seen.append((time.monotonic(), e)))
    result = handle.result()
    wall = time.monotonic() - started
    assert result.values == list(range(40)) and handle.plan.waves == 3
    events = [e for _, e in seen]
    starts = [t for t, e in seen if isinstance(e, ev.WorkerStarted)]
    assert len(starts) == 2, f"{len(starts)} worker processes were started for a 3-wave job of concurrency 2"
    record = latest_record()
    assert len(record["workers"]) == 2
    assert (record["waves"]["count"], record["waves"]["started"], record["waves"]["finished"]) == (3, 3, 3)
    waves = [(type(e).__name__, e.wave) for e in events if isinstance(e, (ev.WaveStarted, ev.WaveFinished))]
    assert waves == [
        ("WaveStarted", 1), ("WaveFinished", 1), ("WaveStarted", 2), ("WaveFinished", 2), ("WaveStarted", 3),
        ("WaveFinished", 3),
    ]  # fmt: skip
    # no start-up once work has begun: every worker started before the first item finished ...
    first_item = min(t for t, e in seen if isinstance(e, ev.TaskFinished))
    assert all(t < first_item for t in starts)
    # ... so the wall time holds one cold start (not three) and the work (40 x 0.05 s over 2 workers)
    work = 40 * 0.05 / 2
    assert wall < work + 2 * COLD_START + 1.0, f"wall {wall:.1f} s: per-wave start-ups ({COLD_START} s each)"


class _StoppingTasks:
    """A backend whose tasks stop as Fargate's do: the container exits, then the task is DEPROVISIONING for a
    while (still counted against the vCPU quota) before ECS reports it STOPPED."""

    name = "fake"

    def __init__(self) -> None:
        self.started: list[int] = []
        self.polled: list[list[int]] = []
        self.exit: set[int] = set()  # workers whose container exits at the next poll
        self.stopped: set[int] = set()  # workers whose task ECS reports STOPPED

    def start_workers(self, files, spec, starts):
        self.started += [s.index for s in starts]
        return [WorkerRef(s.index, s.wave, time.time(), handle=s.index) for s in starts], []

    def poll_workers(self, refs):
        self.polled.append([r.index for r in refs])
        ended = []
        for ref in refs:
            if ref.index in self.exit | self.stopped:
                ref.exit_code, ref.ended = 137, ref.ended or time.time()
                ref.info["holds_quota"] = ref.index not in self.stopped
                ended.append(ref)
        return ended


def test_no_worker_starts_in_a_slot_whose_task_is_still_stopping():
    backend = _StoppingTasks()
    spec = build_spec(Config(), mode="map", workers=6)
    plan = make_plan(60, workers=6, concurrency=2)
    files = SimpleNamespace(job_id="job-stopping")
    force = Workforce(backend, capabilities_of(backend), files, spec, plan, ev.EventBus(), Timings())  # type: ignore[arg-type]
    free = CostRule(cap=None, per_second=0.0)
    force.launch(unclaimed=20, accrued=0.0, cost=free)
    assert backend.started == [0, 1]
    backend.exit.add(0)  # worker 0 dies (say, a Spot interruption): its task is still deprovisioning
    assert [r.index for r in force.poll()] == [0]
    force.launch(unclaimed=20, accrued=0.0, cost=free)
    assert backend.started == [0, 1], "a worker was started in a slot the quota still counts"
    backend.stopped.add(0)  # ECS: STOPPED (the stopping task rides along in the one batched poll)
    assert force.poll() == [] and backend.polled[-1] == [1, 0]
    force.launch(unclaimed=20, accrued=0.0, cost=free)
    assert backend.started == [0, 1, 2]

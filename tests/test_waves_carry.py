"""Issue 14 item 7: no cold start per wave. A worker that finished its share of a wave carries on into its
share of the next, so a job of k waves starts `concurrency` workers, not `workers`; the waves still start and
finish in the record and the events, as progress."""

from __future__ import annotations

import sys
import time

import cloudpickle
from helpers import latest_record

from starburst_jupyter.core import events as ev
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
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

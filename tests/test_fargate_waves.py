"""Issue 14 item 7 on the moto Fargate harness: a job of three waves runs RunTask once per slot of the quota
(`concurrency` tasks), not once per planned worker, and its record still shows three waves started and
finished."""

from __future__ import annotations

import sys

import cloudpickle
import pytest
from test_fargate import account, fargate  # noqa: F401  (the module's set-up account and running agent)

from starburst_jupyter.core import events as ev
from starburst_jupyter.core.config import load_config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.stores.records import JobStore

pytestmark = pytest.mark.slow
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class _Square:
    def run(self, item):
        import time as t

        t.sleep(0.1)
        return item * item


def test_three_waves_run_on_concurrency_tasks_not_one_per_worker(fargate):  # noqa: F811
    config = load_config()
    spec = build_spec(config, mode="map", workers=12, cpu=1, memory="2GB")  # quota 4 vCPUs: 3 waves of 4
    handle = Launcher(config).submit(spec, _Square(), list(range(36)), start=False)
    waves: list[tuple[str, int]] = []
    handle.events.subscribe(lambda e: waves.append((type(e).__name__, e.wave)), ev.WaveStarted, ev.WaveFinished)
    handle.start()
    assert handle.wait(timeout=120).values == [x * x for x in range(36)]
    assert (handle.plan.waves, handle.plan.concurrency, handle.plan.workers) == (3, 4, 12)
    record = JobStore().read(handle.id)
    assert record["api_calls"]["ecs.RunTask"] == 4, record["api_calls"]  # one per slot, not 12
    assert len(record["workers"]) == 4 and len(fargate.launched_env) == 4
    assert (record["waves"]["started"], record["waves"]["finished"]) == (3, 3)
    assert [w for kind, w in waves if kind == "WaveStarted"] == [1, 2, 3]
    assert [w for kind, w in waves if kind == "WaveFinished"] == [1, 2, 3]

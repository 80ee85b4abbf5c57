"""Issue 12 item 12 on the moto harness: a cancel by record stops only tasks ECS says belong to the job."""

from __future__ import annotations

import pytest
from helpers import wait_for
from test_fargate import _Sleepy, account, ecs_tasks, fargate  # noqa: F401 (fixtures of the harness)

from starburst_jupyter.core.config import load_config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.stores.records import JobStore

pytestmark = pytest.mark.slow


def test_a_record_naming_another_jobs_task_does_not_stop_it(fargate, moto_server):  # noqa: F811
    config = load_config()
    handle = Launcher(config).submit(build_spec(config, mode="map", workers=2), _Sleepy(), list(range(30)))
    try:
        wait_for(lambda: len(fargate.running()) == 2, timeout=60)
        victim = JobStore().read(handle.id)
        arns = sorted(w["task_arn"] for w in victim["workers"].values())
        # a stale or forged record of another job that names the running job's tasks, its kernel gone
        forged = {
            "id": "bj-20260101-000000-0f0f0f",
            "backend": "fargate",
            "workers": {str(i): {"task_arn": arn, "exit_code": None} for i, arn in enumerate(arns)},
        }
        assert Launcher().backend("fargate").stop_recorded(forged) == 0
        assert sorted(ecs_tasks(moto_server, startedBy=handle.id, desiredStatus="RUNNING")) == arns
        # the job's own record still stops them
        assert Launcher().backend("fargate").stop_recorded(victim) == 2
        assert ecs_tasks(moto_server, startedBy=handle.id, desiredStatus="RUNNING") == []
    finally:
        handle.cancel()
        handle.wait(timeout=60)

"""Issue 14 item 2 on the moto harness: DescribeTasks right after RunTask may answer MISSING (ECS is
eventually consistent). A young task ECS does not know yet is unknown, not dead."""

from __future__ import annotations

import sys

import cloudpickle
import pytest
from fargate_agent import DescribeMissing
from helpers import latest_record, wait_for
from test_fargate import _Sleepy, account, ecs_tasks, fargate  # noqa: F401 (fixtures of the harness)

from starburst_jupyter.backends.fargate.backend import FargateBackend
from starburst_jupyter.core.config import load_config
from starburst_jupyter.core.decisions import UnknownTaskRule
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec

pytestmark = pytest.mark.slow
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_tasks_ecs_does_not_know_yet_are_waited_for_and_the_job_succeeds(fargate, moto_server):  # noqa: F811
    config = load_config()
    spec = build_spec(config, mode="map", workers=2, retries=0)
    with DescribeMissing(polls=3) as missing:
        handle = Launcher(config).submit(spec, _Sleepy(), list(range(6)))
        result = handle.wait(timeout=120)
    assert result.state == "done", latest_record()["message"]
    assert result.values == [x * 10 for x in range(6)]
    assert missing.hits >= 6  # every task was MISSING three times
    record = latest_record()
    assert record["state"] == "done" and set(record["outcomes"]) == {"D"}, record
    assert not any("ECS" in w.get("reason", "") for w in record["workers"].values()), record["workers"]
    assert len(record["workers"]) == 2  # no worker was replaced: none was taken for dead
    assert ecs_tasks(moto_server, startedBy=record["id"], desiredStatus="RUNNING") == []


def test_a_task_still_unknown_past_the_grace_is_reported_as_such(fargate, moto_server, monkeypatch):  # noqa: F811
    monkeypatch.setattr(FargateBackend, "unknown_task", UnknownTaskRule(grace=3.0, confirmations=3))
    config = load_config()
    spec = build_spec(config, mode="map", workers=2, retries=1)
    with DescribeMissing(polls=10**6, tasks=1):  # the first task launched stays unknown to DescribeTasks
        handle = Launcher(config).submit(spec, _Sleepy(), list(range(6)))
        result = handle.wait(timeout=120)
    assert result.state == "done" and result.values == [x * 10 for x in range(6)]
    record = latest_record()
    reasons = [w["reason"] for w in record["workers"].values() if "ECS has not known task" in w.get("reason", "")]
    assert len(reasons) == 1, record["workers"]
    assert "since RunTask returned it (DescribeTasks answered MISSING" in reasons[0]
    assert "could not start" not in (record.get("message") or "")
    # the task ECS would not describe still ran; the job's end stopped it with the others
    wait_for(lambda: not ecs_tasks(moto_server, startedBy=record["id"], desiredStatus="RUNNING"), timeout=30)

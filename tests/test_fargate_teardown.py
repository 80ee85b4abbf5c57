"""Issue 14 items 1 and 5 against moto: teardown removes our task definitions (and only those), lists them in
its dry run, and refuses with one line, not a traceback, while our cluster runs a task."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from starburst_jupyter.backends.fargate.setup import set_up
from starburst_jupyter.backends.fargate.taskdef import TaskShape, ensure_task_definition
from starburst_jupyter.core.config import load_config

pytestmark = pytest.mark.slow
JOB = "bj-20260101-000000-abcdef"


def _shape(settings: dict, memory: int) -> TaskShape:
    return TaskShape(
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:test",
        cpu_units=1024,
        memory_mib=memory,
        execution_role_arn=settings["execution_role_arn"],
        task_role_arn=settings["task_role_arn"],
        log_group=settings["log_group"],
        region=settings["region"],
        arch="x86_64",
    )


def _cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m starburst_jupyter.cli ...` in a fresh process, as a user runs it (environment: moto's)."""
    return subprocess.run(
        [sys.executable, "-m", "starburst_jupyter.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


def _arns(ecs, family: str, status: str) -> list[str]:
    return ecs.list_task_definitions(familyPrefix=family, status=status)["taskDefinitionArns"]


def test_teardown_deletes_our_task_definitions_and_keeps_others(moto_server, moto_env):
    moto_server.reset()
    _, settings = set_up(load_config())
    ecs = moto_server.client("ecs")
    ours = [ensure_task_definition(ecs, _shape(settings, memory)) for memory in (2048, 4096)]
    # a revision an earlier deregistration left INACTIVE: still ours, still listed by AWS until deleted
    stale_family = _shape(settings, 8192).family
    stale = ensure_task_definition(ecs, _shape(settings, 8192))
    ecs.deregister_task_definition(taskDefinition=stale)
    # someone else's, in a family of our prefix but without our tag, and one of another family
    foreign = ecs.register_task_definition(
        family="starburst-worker-not-ours",
        containerDefinitions=[{"name": "x", "image": "busybox", "memory": 128}],
    )["taskDefinition"]["taskDefinitionArn"]
    other = ecs.register_task_definition(
        family="other-app", containerDefinitions=[{"name": "x", "image": "busybox", "memory": 128}]
    )["taskDefinition"]["taskDefinitionArn"]

    dry = _cli("teardown", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    for arn in ours + [stale]:
        assert f"delete  task definition  {arn.rsplit('/', 1)[-1]}" in dry.stdout
    assert "keep (not ours)  task definition  starburst-worker-not-ours:1" in dry.stdout
    assert "other-app" not in dry.stdout
    assert sorted(_arns(ecs, _shape(settings, 2048).family, "ACTIVE")) == [ours[0]]  # the dry run changed nothing

    done = _cli("teardown", "--yes")
    assert done.returncode == 0, done.stderr
    for arn in ours + [stale]:
        assert f"deleted  task definition  {arn.rsplit('/', 1)[-1]}" in done.stdout
    assert "deleted 11 resource(s), 3 of them task definitions" in done.stdout, done.stdout
    for arn in ours + [stale]:
        family = arn.rsplit("/", 1)[-1].split(":")[0]
        assert _arns(ecs, family, "ACTIVE") == [] and _arns(ecs, family, "INACTIVE") == []
    assert _arns(ecs, stale_family, "INACTIVE") == []
    assert _arns(ecs, "starburst-worker-not-ours", "ACTIVE") == [foreign]
    assert _arns(ecs, "other-app", "ACTIVE") == [other]
    # a second teardown finds nothing of ours
    again = _cli("teardown", "--dry-run")
    assert "delete " not in again.stdout and "keep (not ours)  task definition" in again.stdout


def test_teardown_while_a_task_runs_is_one_line_and_deletes_nothing(moto_server, moto_env):
    from moto.moto_api import state_manager

    moto_server.reset()
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    _, settings = set_up(load_config())
    ecs = moto_server.client("ecs")
    taskdef = ensure_task_definition(ecs, _shape(settings, 2048))
    ecs.run_task(
        cluster=settings["cluster"],
        taskDefinition=taskdef,
        launchType="FARGATE",
        startedBy=JOB,
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": settings["subnets"][:1], "securityGroups": settings["security_groups"]}
        },
    )

    dry = _cli("teardown", "--dry-run")
    assert dry.returncode == 0 and "still runs 1 task(s): teardown refuses until they end" in dry.stdout

    refused = _cli("teardown", "--yes")
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0] == (
        f"starburst teardown: ECS cluster starburst in us-east-1 still runs 1 task(s) (started by job {JOB}); "
        "nothing was deleted. Cancel their jobs (`starburst status` lists them, `starburst cancel JOB` cancels "
        "one) or wait for them to end (a worker kept warm ends by itself), then run `starburst teardown` again."
    )
    # nothing was deleted: the cluster, the bucket, the task definition are all still there
    assert ecs.describe_clusters(clusters=["starburst"])["clusters"][0]["status"] == "ACTIVE"
    moto_server.client("s3").head_bucket(Bucket=settings["bucket"])
    assert _arns(ecs, _shape(settings, 2048).family, "ACTIVE") == [taskdef]
    assert load_config().bucket == settings["bucket"]

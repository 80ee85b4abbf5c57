"""Issue 13, the Fargate side: a detached job's driver runs as a small on-demand ECS task (start_driver), with the
driver role `starburst setup` makes and teardown removes; on moto, with tests/fargate_agent.py running tasks."""

from __future__ import annotations

import json
import sys
import time

import pytest
from fargate_agent import FargateAgent, RunTaskFailures
from helpers import wait_for

from starburst_jupyter.backends.base import capabilities_of
from starburst_jupyter.backends.fargate.backend import FargateBackend
from starburst_jupyter.backends.fargate.setup import DRIVER_ROLE, set_up, tear_down
from starburst_jupyter.backends.fargate.taskdef import log_stream
from starburst_jupyter.core.config import load_config, save_values
from starburst_jupyter.errors import BurstError

pytestmark = pytest.mark.slow
REGION = "us-east-1"
JOB = "bj-20260101-000000-d41e12"
DRIVER_ARGV = ["-c", "import os,sys; print('driver', os.environ['STARBURST_ROLE']); sys.exit(0)"]


def test_setup_makes_the_driver_role_and_teardown_removes_it(moto_server, moto_env):
    moto_server.reset()
    iam = moto_server.client("iam")
    _, settings = set_up(load_config())
    role = iam.get_role(RoleName=DRIVER_ROLE)["Role"]
    assert settings["driver_role_arn"] == role["Arn"] == load_config().driver_role_arn
    assert {"Key": "starburst:managed", "Value": "true"} in iam.list_role_tags(RoleName=DRIVER_ROLE)["Tags"]
    assert "ecs-tasks.amazonaws.com" in json.dumps(role["AssumeRolePolicyDocument"])
    policy = iam.get_role_policy(RoleName=DRIVER_ROLE, PolicyName="starburst-drive-jobs")["PolicyDocument"]
    allowed = {
        a: s for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    cluster_arn = f"arn:aws:ecs:{REGION}:123456789012:cluster/starburst"
    assert allowed["ecs:RunTask"]["Condition"] == {"ArnEquals": {"ecs:cluster": cluster_arn}}
    assert allowed["ecs:RunTask"]["Resource"].endswith(":task-definition/starburst-worker-*")
    assert allowed["ecs:StopTask"]["Resource"].endswith(":task/starburst/*")
    for action in ("ecs:DescribeTasks", "ecs:ListTasks", "ecs:DescribeTaskDefinition"):
        assert action in allowed
    assert sorted(allowed["iam:PassRole"]["Resource"]) == sorted(
        f"arn:aws:iam::123456789012:role/{name}" for name in ("starburst-execution", "starburst-task", DRIVER_ROLE)
    )
    bucket = settings["bucket"]
    assert allowed["s3:PutObject"]["Resource"] == [f"arn:aws:s3:::{bucket}/jobs/*", f"arn:aws:s3:::{bucket}/warm/*"]
    assert {"s3:GetObject", "s3:DeleteObject", "s3:ListBucket", "logs:FilterLogEvents"} <= set(allowed)
    assert "/starburst/workers" in allowed["logs:FilterLogEvents"]["Resource"]
    scoped = [s["Resource"] for a, s in allowed.items() if a.startswith(("s3:", "iam:", "logs:", "ecs:RunTask"))]
    assert "*" not in [r for resource in scoped for r in ([resource] if isinstance(resource, str) else resource)]

    # an account set up before drivers existed gets the driver role, and nothing else, from a second setup
    iam.delete_role_policy(RoleName=DRIVER_ROLE, PolicyName="starburst-drive-jobs")
    iam.delete_role(RoleName=DRIVER_ROLE)
    save_values({"driver_role_arn": "none"})
    steps, _ = set_up(load_config())
    assert [(s.kind, s.name) for s in steps if s.action == "create"] == [("iam role", DRIVER_ROLE)]
    assert load_config().driver_role_arn == iam.get_role(RoleName=DRIVER_ROLE)["Role"]["Arn"]

    dry = tear_down(load_config(), dry_run=True)
    assert any((s.kind, s.name, s.action) == ("iam role", DRIVER_ROLE, "delete") for s in dry)
    assert iam.get_role(RoleName=DRIVER_ROLE)  # a dry run deletes nothing
    tear_down(load_config())
    assert not [r for r in iam.list_roles()["Roles"] if r["RoleName"] == DRIVER_ROLE]
    assert load_config().driver_role_arn is None


@pytest.fixture
def fargate(moto_server, moto_env):
    """An account set up by our own setup code, a config pointing at it, and the agent running its tasks."""
    from moto.moto_api import state_manager

    moto_server.reset()
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    _, settings = set_up(load_config())
    moto_server.client("s3").delete_bucket_policy(Bucket=settings["bucket"])  # TLS-only; moto serves plain HTTP
    save_values({"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:test", "backend": "fargate"})
    config = load_config()
    agent = FargateAgent(dict(moto_env), REGION, config.cluster, config.log_group)
    agent.start()
    yield agent
    agent.stop()
    assert not agent.errors, agent.errors


def _task(moto_server, arn: str) -> dict:
    ecs = moto_server.client("ecs")
    return ecs.describe_tasks(cluster="starburst", tasks=[arn], include=["TAGS"])["tasks"][0]


def test_start_driver_runs_python_with_argv_as_a_small_on_demand_task(fargate, moto_server):
    backend = FargateBackend(load_config())
    assert capabilities_of(backend).drivers is backend
    arn = backend.start_driver(JOB, DRIVER_ARGV, {"STARBURST_DRIVER_NOTE": "from the kernel"})
    wait_for(lambda: _task(moto_server, arn)["lastStatus"] == "STOPPED", timeout=60)

    # the agent ran exactly `python` + argv, python being the image's interpreter (this one here)
    assert fargate.launched[arn] == [sys.executable, *DRIVER_ARGV]
    task = _task(moto_server, arn)
    assert task["containers"][0]["exitCode"] == 0
    # on-demand (never Spot), the smallest size, the driver role, the workers' network, tagged as a driver
    assert task.get("launchType") == "FARGATE" and task.get("capacityProviderName") != "FARGATE_SPOT"
    overrides = task["overrides"]
    assert (overrides["cpu"], overrides["memory"]) == ("256", "512")
    assert overrides["taskRoleArn"] == load_config().driver_role_arn
    assert overrides["containerOverrides"][0]["command"] == ["python", *DRIVER_ARGV]
    env = {e["name"]: e["value"] for e in overrides["containerOverrides"][0]["environment"]}
    assert env["STARBURST_ROLE"] == "driver" and env["STARBURST_HOME"] == "/tmp/starburst"
    assert env["STARBURST_DRIVER_NOTE"] == "from the kernel" and "STARBURST_DRIVER_TASK" not in env
    tags = {t["key"]: t["value"] for t in task["tags"]}
    assert tags == {"starburst:managed": "true", "starburst:job": JOB, "starburst:role": "driver"}
    assert task["startedBy"] == f"driver/{JOB}"  # not the job id: a driver's stop_job must not stop itself
    taskdef = moto_server.client("ecs").describe_task_definition(taskDefinition=task["taskDefinitionArn"])
    assert taskdef["taskDefinition"]["containerDefinitions"][0]["image"] == load_config().image
    # its output is in CloudWatch Logs, as a worker's is
    logs = moto_server.client("logs")
    wait_for(
        lambda: any(
            "driver driver" in e["message"]
            for e in logs.get_log_events(logGroupName="/starburst/workers", logStreamName=log_stream(arn))["events"]
        ),
        timeout=20,
    )
    # a driver is not a worker: running() and worker_of skip it, drivers() lists it
    assert fargate.worker_of(arn) is None and arn in fargate.drivers() and arn not in fargate.running().values()
    assert fargate.launched_env == []


def test_a_running_driver_is_no_worker_and_a_cancel_without_owner_stops_it(fargate, moto_server):
    backend = FargateBackend(load_config())
    arn = backend.start_driver(JOB, ["-c", "import time; time.sleep(60)"], {})
    wait_for(lambda: arn in fargate.drivers() and fargate.drivers()[arn].poll() is None, timeout=30)
    assert fargate.running() == {}  # a driver in the cluster breaks no worker lookup
    # the job's own end stops what runs under the job id: not its driver
    assert backend.stop_job(JOB, [], "job done") == 0 and fargate.drivers()[arn].poll() is None
    # a cancel from elsewhere that finds the owner gone stops the driver's task too
    backend.stop_recorded({"id": JOB, "workers": {}})
    wait_for(lambda: _task(moto_server, arn)["lastStatus"] == "STOPPED", timeout=30)
    assert _task(moto_server, arn)["stoppedReason"] == "starburst: job cancelled"


def test_a_driver_ecs_cannot_start_is_a_clear_error(fargate, moto_server):
    backend = FargateBackend(load_config())
    before = set(moto_server.client("ecs").list_tasks(cluster="starburst")["taskArns"])
    with RunTaskFailures(1), pytest.raises(BurstError) as caught:
        backend.start_driver(JOB, DRIVER_ARGV, {})
    message = str(caught.value)
    assert f"Could not start the driver of job {JOB} in us-east-1 (ECS cluster starburst)" in message
    assert "Capacity is unavailable" in message and f"attach('{JOB}')" in message
    assert caught.value.job_id == JOB
    time.sleep(0.5)
    assert set(moto_server.client("ecs").list_tasks(cluster="starburst")["taskArns"]) == before

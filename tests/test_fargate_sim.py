"""The stand-in Fargate agent as Fargate behaves (tests/fargate_agent.py): its latency profile at a small
scale (the task lifecycle in order with the configured delays, the RunTask rate bucket absorbed by the
backend's botocore retries, Spot interruptions reported as such), and credentials given only through the
container-credentials endpoint, with the task role's policy enforced by moto."""

from __future__ import annotations

import dataclasses
import json
import sys
import urllib.request

import cloudpickle
import pytest
from fargate_agent import NO_KEYS, FargateAgent, FargateLatency
from helpers import latest_record, wait_for

from starburst_jupyter import burst_map
from starburst_jupyter.backends.fargate.setup import TASK_ROLE, set_up
from starburst_jupyter.core.config import load_config, save_values
from starburst_jupyter.core.decisions import Timings
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.errors import BurstError

pytestmark = pytest.mark.slow  # ~35 s of moto jobs, like the other Fargate-on-moto modules
cloudpickle.register_pickle_by_value(sys.modules[__name__])
REGION = "us-east-1"

# small delays, each long enough to measure on a busy machine
SMALL = FargateLatency(provision=0.4, pull_mb_per_s=10.0, image_mb=4.0, start=0.3, stop=0.4, deprovision=0.4)


@pytest.fixture(scope="module")
def account(moto_server, tmp_path_factory):
    from moto.moto_api import state_manager

    moto_server.reset()
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**moto_server.env, "STARBURST_HOME": str(tmp_path_factory.mktemp("setup-home"))}.items():
            patch.setenv(name, value)
        _, settings = set_up(load_config())
        moto_server.client("s3").delete_bucket_policy(Bucket=settings["bucket"])  # moto is plain HTTP
    return settings


@pytest.fixture
def agent_with(account, moto_server, moto_env, monkeypatch):
    """Start a stand-in agent with the given profile for this test's fargate config (4 vCPUs of quota)."""
    monkeypatch.setattr(Launcher, "timings", Timings(launch_backoff=(0.05, 0.2)))
    save_values(account)
    save_values({"image": "starburst-worker:sim", "fargate_vcpu_quota": 4, "backend": "fargate"})
    config = load_config()
    started: list[FargateAgent] = []

    def start(latency: FargateLatency | None = None, **kwargs) -> FargateAgent:
        agent = FargateAgent(dict(moto_env), REGION, config.cluster, config.log_group, latency=latency, **kwargs)
        agent.start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
        assert not agent.errors, agent.errors


def nap(x):
    import time as t

    t.sleep(0.2)
    return x + 1


def _task(moto_server, arn: str) -> dict:
    return moto_server.client("ecs").describe_tasks(cluster="starburst", tasks=[arn])["tasks"][0]


def test_lifecycle_states_in_order_with_the_configured_delays(agent_with, moto_server):
    agent = agent_with(SMALL)
    assert burst_map(nap, [1], workers=1) == [2]
    record = latest_record()
    arn = record["workers"]["0"]["task_arn"]
    wait_for(lambda: arn in agent.finished, timeout=10)
    steps = agent.history[arn]
    assert [s for s, _ in steps] == ["PROVISIONING", "PENDING", "RUNNING", "STOPPING", "DEPROVISIONING", "STOPPED"]
    gaps = [b - a for (_, a), (_, b) in zip(steps, steps[1:])]
    expected = [SMALL.provision, SMALL.pull + SMALL.start, None, SMALL.stop, SMALL.deprovision]
    for gap, want in zip(gaps, expected):
        if want is not None:
            assert want - 0.01 <= gap <= want + 0.6, (steps, gaps)
    # ECS's timestamps say the same (the bench bills from them)
    task = _task(moto_server, arn)
    assert task["lastStatus"] == "STOPPED" and task["containers"][0]["exitCode"] == 0
    created, pulled, started, stopped = (task[k] for k in ("createdAt", "pullStartedAt", "startedAt", "stoppedAt"))
    assert (pulled - created).total_seconds() >= SMALL.provision - 0.01
    assert (started - pulled).total_seconds() >= SMALL.pull + SMALL.start - 0.01
    assert (stopped - task["executionStoppedAt"]).total_seconds() >= SMALL.stop + SMALL.deprovision - 0.01


def test_stop_task_goes_through_stopping_and_deprovisioning(agent_with, moto_server):
    agent = agent_with(SMALL)
    config = load_config()
    handle = Launcher(config).submit(build_spec(config, mode="map", workers=1), _Long(), [1])
    wait_for(lambda: agent.running(), timeout=30)
    arn = agent.running()[0]
    handle.cancel("test")
    assert handle.wait(timeout=30).state == "cancelled"
    assert _task(moto_server, arn)["lastStatus"] != "STOPPED"  # not at once, as moto alone would say
    wait_for(lambda: arn in agent.finished, timeout=10)
    assert [s for s, _ in agent.history[arn]][-3:] == ["STOPPING", "DEPROVISIONING", "STOPPED"]
    assert _task(moto_server, arn)["stopCode"] == "UserInitiated"


class _Long:
    def run(self, item):
        import time as t

        t.sleep(30)
        return item


def test_runtask_rate_bucket_throttles_and_botocore_absorbs_it(agent_with):
    """2 RunTask calls a second, a burst of 1: four workers launched together meet ThrottlingException,
    which botocore's standard retry mode (the backend's clients) retries until the bucket refills."""
    agent = agent_with(FargateLatency(runtask_rate=2.0, runtask_burst=1))
    assert burst_map(nap, range(8), workers=4) == [x + 1 for x in range(8)]
    record = latest_record()
    assert record["state"] == "done" and len(record["workers"]) == 4
    assert agent.runtask_bucket.refused >= 1 and agent.runtask_bucket.taken == 4
    assert record["api_calls"]["ecs.RunTask"] == 4  # one call each, its retries inside botocore


def test_spot_interruption_is_reported_as_such(agent_with, moto_server):
    agent = agent_with(FargateLatency(spot_interrupt_per_hour=3600 * 20, stop_timeout=1.0))
    config = load_config()
    spec = build_spec(config, mode="map", workers=1, spot=True, retries=1)
    handle = Launcher(config).submit(spec, _Slow(), [1, 2])
    wait_for(lambda: agent.spot_interrupted, timeout=30)
    agent.latency = dataclasses.replace(agent.latency, spot_interrupt_per_hour=0.0)  # one is enough
    result = handle.wait(timeout=60)
    assert result.values == [1, 2]
    arn = next(iter(agent.spot_interrupted))
    assert _task(moto_server, arn)["stopCode"] == "SpotInterruption"
    interrupted = [w for w in latest_record()["workers"].values() if w.get("task_arn") == arn]
    assert "Fargate Spot interruption" in interrupted[0]["reason"]


class _Slow:
    def run(self, item):
        import time as t

        t.sleep(1.0)
        return item


# ----- credentials as Fargate gives them -----------------------------------------------------
def test_worker_has_no_key_in_its_environment_and_its_role_does_the_job(agent_with, moto_server):
    agent = agent_with()
    config = load_config()
    handle = Launcher(config).submit(build_spec(config, mode="map", workers=1), _Slow(), [1, 2, 3])
    wait_for(lambda: agent.running(), timeout=30)
    arn = agent.running()[0]
    with open(f"/proc/{agent.procs[arn].pid}/environ", "rb") as f:
        environ = dict(entry.split("=", 1) for entry in f.read().decode().split("\0") if "=" in entry)
    assert handle.wait(timeout=60).values == [1, 2, 3]  # it read its job and wrote its results in S3
    assert not {name for name in NO_KEYS if name in environ}
    assert "testing" not in {v for k, v in environ.items() if k.startswith("AWS_")}
    assert environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    role = config.task_role_arn
    assert (arn, role) in agent.credentials.served
    assert agent.enforcement.checked > 0 and agent.enforcement.denied == []
    # what the endpoint hands out is the task role's identity, and only with the task's token
    uri, token = environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"], environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    with pytest.raises(urllib.request.HTTPError):
        urllib.request.urlopen(uri, timeout=5)
    keys = json.loads(urllib.request.urlopen(urllib.request.Request(uri, headers={"Authorization": token})).read())
    import boto3

    sts = boto3.session.Session(
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys["Token"],
    ).client("sts", region_name=REGION)
    assert f":assumed-role/{TASK_ROLE}/" in sts.get_caller_identity()["Arn"]


def test_too_narrow_task_role_fails_the_job_with_a_clear_message(agent_with, moto_server, account):
    iam = moto_server.client("iam")
    (policy_name,) = iam.list_role_policies(RoleName=TASK_ROLE)["PolicyNames"]
    saved = iam.get_role_policy(RoleName=TASK_ROLE, PolicyName=policy_name)["PolicyDocument"]
    narrow = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{account['bucket']}"}],
    }
    iam.put_role_policy(RoleName=TASK_ROLE, PolicyName=policy_name, PolicyDocument=json.dumps(narrow))
    try:
        agent = agent_with()
        with pytest.raises(BurstError) as caught:
            burst_map(nap, [1], workers=1)
    finally:
        iam.put_role_policy(
            RoleName=TASK_ROLE,
            PolicyName=policy_name,
            PolicyDocument=saved if isinstance(saved, str) else json.dumps(saved),
        )
    assert agent.enforcement.denied and all(code.endswith("AccessDeniedError") for *_, code in agent.enforcement.denied)
    text = str(caught.value)  # what the user reads: which object, refused, and what the role must allow
    assert "S3 refused reading s3://" in text and "AccessDenied" in text
    assert "the task role must allow s3:GetObject" in text and "starburst setup" in text

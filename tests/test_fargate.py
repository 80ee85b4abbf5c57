"""The fargate backend end to end on moto: RunTask, DescribeTasks, S3, CloudWatch Logs, StopTask and
Service Quotas through real HTTP, with tests/fargate_agent.py running each launched task's worker."""

from __future__ import annotations

import json
import sys
import time

import cloudpickle
import pytest
from fargate_agent import FargateAgent, RunTaskFailures
from helpers import latest_record, wait_for

from starburst_jupyter import burst_map
from starburst_jupyter.backends.fargate.setup import set_up
from starburst_jupyter.core.config import load_config, save_values
from starburst_jupyter.core.decisions import Timings
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.errors import BurstError
from starburst_jupyter.stores.records import JobStore

pytestmark = pytest.mark.slow
# The worker image has starburst installed, not this test module: its functions travel by value,
# as a notebook's do.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
REGION = "us-east-1"
SECRET = "sbTESTsecretNEVERtravels0123456789abcdef"
KEY_ID = "AKIASTARBURSTTESTKEY1"


@pytest.fixture(scope="module")
def account(moto_server, tmp_path_factory):
    """An account set up once for this module, by our own setup code."""
    from moto.moto_api import state_manager

    moto_server.reset()
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            **moto_server.env,
            "STARBURST_HOME": str(tmp_path_factory.mktemp("setup-home")),
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
        }.items():
            patch.setenv(name, value)
        _, settings = set_up(load_config())
        # moto serves plain HTTP on 127.0.0.1 and enforces the TLS-only bucket policy setup writes (checked in
        # test_aws_setup.py); AWS endpoints are HTTPS, so the policy costs nothing there.
        moto_server.client("s3").delete_bucket_policy(Bucket=settings["bucket"])
    return settings


@pytest.fixture
def fargate(account, moto_server, moto_env, monkeypatch):
    """This test's config points at the set-up account with a quota of 4 vCPUs; the agent runs tasks."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setattr(Launcher, "timings", Timings(launch_backoff=(0.05, 0.2)))
    save_values(account)
    save_values(
        {
            "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:test",
            "fargate_vcpu_quota": 4,
            "backend": "fargate",
        }
    )
    config = load_config()
    agent = FargateAgent(
        {**moto_env, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET},
        REGION,
        config.cluster,
        config.log_group,
    )
    agent.start()
    yield agent
    agent.stop()
    _empty_warm_pool(moto_server, account["bucket"])  # warm workers of this test are gone with its agent
    assert not agent.errors, agent.errors


def _empty_warm_pool(moto_server, bucket: str) -> None:
    s3 = moto_server.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="warm/"):
        for obj in page.get("Contents", ()):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])


def ecs_tasks(moto_server, **filters) -> list[str]:
    ecs = moto_server.client("ecs")
    return ecs.list_tasks(cluster="starburst", **filters)["taskArns"]


def slow_square(x):
    import time as t

    t.sleep(0.3)
    print(f"squaring {x}")
    return x * x


def test_map_runs_on_fargate_tasks_with_logs_and_cost(fargate, moto_server):
    values = burst_map(slow_square, range(12), workers=3)
    assert values == [x * x for x in range(12)]
    record = latest_record()
    assert record["backend"] == "fargate" and record["state"] == "done"
    assert len(record["workers"]) == 3
    assert all(w["task_arn"].startswith("arn:aws:ecs:us-east-1:123456789012:task/") for w in record["workers"].values())
    # every task carried the job id as startedBy and is stopped now
    assert len(ecs_tasks(moto_server, startedBy=record["id"], desiredStatus="STOPPED")) == 3
    assert ecs_tasks(moto_server, startedBy=record["id"], desiredStatus="RUNNING") == []
    # overrides: pointers only
    assert {e["STARBURST_JOB"] for e in fargate.launched_env} == {record["id"]}
    assert all(
        set(e) == {"STARBURST_JOB", "STARBURST_WORKER", "STARBURST_STORE", "STARBURST_PREFIX", "AWS_REGION"}
        for e in fargate.launched_env
    )
    logs = Launcher().job_logs(record["id"])
    assert "squaring 5" in "".join(logs.values())
    assert record["cost"]["accrued"] > 0 and "Fargate us-east-1 on-demand" in record["cost"]["label"]
    calls = record["api_calls"]
    assert calls["ecs.RunTask"] == 3 and calls.get("ecs.DescribeTasks", 0) >= 1


def test_quota_shapes_waves_in_order(fargate):
    """4 vCPUs of quota, 1-vCPU workers, 8 workers: two waves of four."""
    waves = []
    from starburst_jupyter.core import events as ev

    config = load_config()
    spec = build_spec(config, mode="map", workers=8, cpu=1, memory="2GB")
    handle = Launcher(config).submit(spec, _Square(), list(range(16)), start=False)
    handle.events.subscribe(
        lambda e: waves.append((type(e).__name__, e.wave)) if isinstance(e, (ev.WaveStarted, ev.WaveFinished)) else None
    )
    handle.start()
    result = handle.wait(timeout=120)
    assert result.values == [x * x for x in range(16)]
    assert handle.plan.waves == 2 and handle.plan.concurrency == 4
    assert waves[0] == ("WaveStarted", 1)
    assert waves.index(("WaveStarted", 2)) > waves.index(("WaveStarted", 1))
    assert ("WaveFinished", 2) in waves
    assert latest_record()["waves"]["started"] == 2


class _Square:
    def run(self, item):
        import time as t

        t.sleep(0.2)
        return item * item


def test_capacity_failures_are_retried_then_reported(fargate):
    with RunTaskFailures(times=2) as failures:
        assert burst_map(slow_square, range(6), workers=2) == [x * x for x in range(6)]
    assert failures.hits == 2
    with RunTaskFailures(times=10**6, reason="RESOURCE:MEMORY"), pytest.raises(BurstError) as caught:
        burst_map(slow_square, range(3), workers=1)
    text = str(caught.value)
    assert "RESOURCE:MEMORY" in text and "could not be launched after 6 attempts" in text
    assert latest_record()["state"] == "failed"


def test_worker_killed_mid_task_is_retried_on_another_worker(fargate):
    config = load_config()
    spec = build_spec(config, mode="map", workers=2, retries=1)
    handle = Launcher(config).submit(spec, _Sleepy(), list(range(4)))
    wait_for(lambda: len(fargate.running()) == 2, timeout=60)
    time.sleep(1.0)
    victim = sorted(fargate.running())[0]
    fargate.kill(victim, how="oom")
    result = handle.wait(timeout=120)
    assert result.values == [x * 10 for x in range(4)]
    record = latest_record()
    assert "out of memory (exit 137" in record["workers"][str(victim)]["reason"]


class _Sleepy:
    def run(self, item):
        import time as t

        t.sleep(1.5)
        return item * 10


def test_cancel_stops_every_task_of_the_job(fargate, moto_server):
    config = load_config()
    spec = build_spec(config, mode="map", workers=3)
    handle = Launcher(config).submit(spec, _Sleepy(), list(range(30)))
    wait_for(lambda: len(fargate.running()) == 3, timeout=60)
    handle.cancel("test cancel")
    result = handle.wait(timeout=60)
    assert result.state == "cancelled"
    assert ecs_tasks(moto_server, startedBy=handle.id, desiredStatus="RUNNING") == []
    wait_for(lambda: not fargate.running(), timeout=30)
    assert JobStore().read(handle.id)["state"] == "cancelled"


def test_cancel_from_another_process_when_the_kernel_is_gone(fargate, moto_server):
    """A record whose owner is gone: cancel_job lists the cluster by startedBy and stops the tasks."""
    config = load_config()
    spec = build_spec(config, mode="map", workers=2)
    handle = Launcher(config).submit(spec, _Sleepy(), list(range(30)))
    wait_for(lambda: len(fargate.running()) == 2, timeout=60)
    # the monitor keeps running; we pretend its kernel died by faking the owner
    record = JobStore().read(handle.id)
    record["owner"] = {"pid": 2**22 + 1, "host": record["owner"]["host"]}
    handle._driver.records.write(record)
    stopped = Launcher().backend("fargate").stop_recorded(record)
    assert stopped == 2
    assert ecs_tasks(moto_server, startedBy=handle.id, desiredStatus="RUNNING") == []
    handle.cancel()
    handle.wait(timeout=60)


def test_no_credential_in_any_request_to_ecs_or_in_logs(fargate):
    launcher = Launcher()
    backend = launcher.backend("fargate")
    bodies: list[bytes] = []
    backend._client("ecs").meta.events.register(
        "before-send", lambda request, **_: bodies.append(bytes(request.body or b""))
    )
    spec = build_spec(launcher.config, mode="map", workers=2)
    assert launcher.submit(spec, _Square(), list(range(4))).wait(timeout=120).values == [0, 1, 4, 9]
    record = latest_record()
    assert bodies and any(b"RunTask" in b or b"startedBy" in b for b in bodies)
    for body in bodies:
        assert SECRET.encode() not in body and KEY_ID.encode() not in body
    logs = "".join(Launcher().job_logs(record["id"]).values())
    assert SECRET not in logs and KEY_ID not in logs
    assert SECRET not in str(record)


def test_magic_on_fargate(fargate, ip, capsys):
    ip.run_cell("def cube(x):\n    return x ** 3")
    result = ip.run_cell("%%burst --backend fargate --workers 2 --map n in range(6) --out cubes\ncube(n)")
    result.raise_error()
    assert ip.user_ns["cubes"] == [n**3 for n in range(6)]
    # the estimate before launch: 2 workers of 1 vCPU / 2 GB in us-east-1 on-demand
    assert (
        "1 vCPU / 2GB each; $0.10/hour while 2 run, Fargate)" in capsys.readouterr().out
    )  # 2 x (0.04048 + 2 x 0.004445)


def test_s3_throttling_and_ecs_throttling_are_survived_with_nothing_lost(fargate, moto_server):
    """503 SlowDown / 500 on result writes and listings, and ECS ThrottlingException on DescribeTasks:
    botocore's standard retries absorb them; every item comes back exactly once."""
    from moto.ecs.responses import EC2ContainerServiceResponse
    from moto_server import S3Faults

    original = EC2ContainerServiceResponse.describe_tasks
    throttled = {"left": 3}

    def describe_tasks(self):
        if throttled["left"] > 0:
            throttled["left"] -= 1
            from moto.ecs.exceptions import JsonRESTError

            raise JsonRESTError("ThrottlingException", "Rate exceeded")
        return original(self)

    EC2ContainerServiceResponse.describe_tasks = describe_tasks
    try:
        with S3Faults() as faults:
            faults.add(lambda r: r.op == "PutObject" and "/results/" in r.path, times=4)
            faults.add(
                "ListObjectsV2", times=3, status=500, code="InternalError", message="We encountered an internal error."
            )
            values = burst_map(slow_square, range(10), workers=2)
    finally:
        EC2ContainerServiceResponse.describe_tasks = original
    assert values == [x * x for x in range(10)]
    assert faults.injected == 7 and throttled["left"] == 0
    assert latest_record()["state"] == "done"


def test_spot_runs_on_fargate_spot_and_an_interruption_is_retried(fargate, moto_server):
    config = load_config()
    spec = build_spec(config, mode="map", workers=2, spot=True, retries=1)
    handle = Launcher(config).submit(spec, _Sleepy(), list(range(4)))
    wait_for(lambda: len(fargate.running()) == 2, timeout=60)
    record = JobStore().read(handle.id)
    task = moto_server.client("ecs").describe_tasks(cluster="starburst", tasks=[record["workers"]["0"]["task_arn"]])[
        "tasks"
    ][0]
    assert task["capacityProviderName"] == "FARGATE_SPOT"
    time.sleep(1.0)
    fargate.kill(0, how="spot")
    result = handle.wait(timeout=120)
    assert result.values == [x * 10 for x in range(4)]
    record = latest_record()
    assert "Spot interruption" in record["workers"]["0"]["reason"]
    assert "Spot" in record["cost"]["label"]


KERNEL_THAT_DIES = """
import os, signal, time
from starburst_jupyter.core.config import load_config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec

def tenfold(x):
    time.sleep(1.0)
    return x * 10

config = load_config()
from starburst_jupyter.protocol.programs import CallProgram
handle = Launcher(config).submit(build_spec(config, mode="map", workers=2), CallProgram(tenfold), list(range(8)))
print(handle.id, flush=True)
while handle._driver.ledger.items and not any(item.final for item in handle._driver.ledger.items):
    time.sleep(0.1)
os.kill(os.getpid(), signal.SIGKILL)  # the kernel dies mid-job; its Fargate tasks run on
"""


def test_attach_collects_a_job_whose_kernel_died(fargate, ip, tmp_path):
    import subprocess

    script = tmp_path / "kernel.py"
    script.write_text(KERNEL_THAT_DIES)
    kernel = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert kernel.returncode == -9, kernel.stderr
    job_id = kernel.stdout.split()[0]
    assert JobStore().read(job_id)["state"] == "running"  # as the dead kernel left it
    ip.run_line_magic("burst_attach", f"{job_id} --out collected")
    assert ip.user_ns["collected"] == [x * 10 for x in range(8)]
    record = JobStore().read(job_id)
    assert record["state"] == "done" and record["done"] == 8
    with pytest.raises(BurstError, match="already ended"):
        Launcher().attach(job_id)


def test_keep_warm_hands_finished_workers_to_the_next_job(fargate, moto_server):
    config = load_config()
    launcher = Launcher(config)
    first = launcher.submit(build_spec(config, mode="map", workers=2, keep_warm=1), _Square(), list(range(4)))
    assert first.wait(timeout=120).values == [0, 1, 4, 9]
    record = JobStore().read(first.id)
    assert all("kept warm" in w["reason"] for w in record["workers"].values())
    assert record["cost"]["warm_at_most"] > 0
    assert len(fargate.running()) == 2  # billed, waiting for the next job
    second = launcher.submit(build_spec(config, mode="map", workers=2), _Square(), list(range(4, 8)))
    assert second.wait(timeout=120).values == [16, 25, 36, 49]
    record = JobStore().read(second.id)
    assert "ecs.RunTask" not in record["api_calls"]  # no cold start: no task launched
    assert {w["warm_from"] for w in record["workers"].values()} == {first.id}
    assert "taken warm by job " + second.id in "".join(Launcher().job_logs(second.id).values())
    # the second job keeps none warm: they end, and the agent then records their tasks stopped
    wait_for(lambda: not fargate.running() and not ecs_tasks(moto_server, desiredStatus="RUNNING"), timeout=30)


def test_a_warm_worker_leaves_when_no_job_comes(fargate, moto_server):
    config = load_config()
    handle = Launcher(config).submit(build_spec(config, mode="map", workers=1, keep_warm=0.05), _Square(), [1, 2])
    assert handle.wait(timeout=120).values == [1, 4]
    assert len(fargate.running()) == 1
    # 3 s of keep-warm, then it exits on its own, and the agent records its task stopped
    wait_for(
        lambda: not fargate.running() and not ecs_tasks(moto_server, startedBy=handle.id, desiredStatus="RUNNING"),
        timeout=30,
    )


def test_the_environment_image_is_found_in_ecr_by_its_tag_or_the_job_says_how_to_build_it(fargate, moto_server):
    from starburst_jupyter import envimage

    save_values({"image": "none"})  # no override: this kernel's environment image
    config = load_config()
    tag = envimage.capture(config).tag
    with pytest.raises(envimage.BurstImageError, match=f"starburst-worker:{tag}.*%burst_rebuild.*auto_build"):
        burst_map(slow_square, range(2), workers=1)
    assert JobStore().list() == []  # nothing launched
    ecr = moto_server.client("ecr")  # the image pushed earlier (by %burst_rebuild, on another day)
    ecr.put_image(
        repositoryName="starburst-worker",
        imageTag=tag,
        imageManifest=json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "digest": "sha256:" + "0" * 64,
                    "size": 1,
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                },
                "layers": [],
            }
        ),
    )
    assert burst_map(slow_square, range(2), workers=1) == [0, 1]
    taskdef_arn = moto_server.client("ecs").describe_tasks(
        cluster="starburst", tasks=[latest_record()["workers"]["0"]["task_arn"]]
    )["tasks"][0]["taskDefinitionArn"]
    image = moto_server.client("ecs").describe_task_definition(taskDefinition=taskdef_arn)["taskDefinition"][
        "containerDefinitions"
    ][0]["image"]
    assert image == f"123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:{tag}"


def test_waves_with_keep_warm_carry_on_and_only_then_wait_warm(fargate):
    """Waves with --keep-warm: wave-1 workers carry on into wave 2 (no task per wave), and wait warm only once
    no work is left, so the job does not wait on warm workers (held back, it would take a minute)."""
    config = load_config()
    handle = Launcher(config).submit(build_spec(config, mode="map", workers=8, keep_warm=1), _Square(), list(range(16)))
    assert handle.wait(timeout=50).values == [x * x for x in range(16)]
    record = JobStore().read(handle.id)
    assert (record["waves"]["started"], record["waves"]["finished"]) == (2, 2)
    assert len(record["workers"]) == 4 and all(w["wave"] == 1 for w in record["workers"].values())


def test_warm_workers_do_not_count_against_the_quota_of_the_job_that_takes_them(fargate):
    config = load_config()
    launcher = Launcher(config)
    launcher.submit(build_spec(config, mode="map", workers=4, keep_warm=1), _Square(), list(range(4))).wait(timeout=120)
    assert len(fargate.running()) == 4  # all warm, the whole quota of 4 vCPUs
    second = launcher.submit(build_spec(config, mode="map", workers=4), _Square(), list(range(8)))
    assert second.plan.concurrency == 4
    assert second.wait(timeout=120).values == [x * x for x in range(8)]
    assert "ecs.RunTask" not in JobStore().read(second.id)["api_calls"]
    wait_for(lambda: not fargate.running(), timeout=30)


def test_log_previews_read_only_the_last_lines(fargate):
    burst_map(slow_square, range(6), workers=2)
    record = latest_record()
    full = Launcher().job_logs(record["id"])
    tails = Launcher().job_logs(record["id"], tail_lines=2, first=1)
    assert list(tails) == [0]
    assert tails[0].splitlines() == full[0].splitlines()[-2:]

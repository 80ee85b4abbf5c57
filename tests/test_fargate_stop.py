"""Issue 14 item 3: a stopped task is explained from what ECS says (stopCode, stoppedReason, the container's
reason); exit 137 alone means SIGKILL, and memory is named only when ECS names it."""

from __future__ import annotations

import datetime
import os
import signal
import time

import pytest
from helpers import latest_record, wait_for
from test_fargate import _Sleepy, account, fargate  # noqa: F401 (fixtures of the harness)

from starburst_jupyter.backends.fargate.backend import describe_stop
from starburst_jupyter.backends.fargate.stops import BARE_SIGKILL
from starburst_jupyter.core.config import load_config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec

ARN = "arn:aws:ecs:us-east-1:123456789012:task/starburst/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)


def _task(stop_code: str, stopped_reason: str, exit_code: int | None, container_reason: str | None = None) -> dict:
    """One entry of a DescribeTasks reply for a stopped Fargate task, shaped as AWS returns it."""
    container = {
        "containerArn": "arn:aws:ecs:us-east-1:123456789012:container/starburst/0f1e2d3c/5a6b7c8d",
        "taskArn": ARN,
        "name": "worker",
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:env-3f2a",
        "lastStatus": "STOPPED",
        "networkInterfaces": [{"attachmentId": "a1b2", "privateIpv4Address": "172.31.5.9"}],
        "healthStatus": "UNKNOWN",
        "cpu": "0",
        "memory": "2048",
    }
    if exit_code is not None:
        container["exitCode"] = exit_code
    if container_reason is not None:
        container["reason"] = container_reason
    return {
        "taskArn": ARN,
        "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/starburst",
        "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/starburst-worker-0123456789abcdef:1",
        "lastStatus": "STOPPED",
        "desiredStatus": "STOPPED",
        "launchType": "FARGATE",
        "cpu": "1024",
        "memory": "2048",
        "containers": [container],
        "createdAt": T0,
        "pullStartedAt": T0,
        "startedAt": T0,
        "stoppingAt": T0,
        "stoppedAt": T0,
        "stopCode": stop_code,
        "stoppedReason": stopped_reason,
        "startedBy": "bj-20260101-120000-abcdef",
        "group": "family:starburst-worker-0123456789abcdef",
    }


ESSENTIAL = ("EssentialContainerExited", "Essential container in task exited")


def test_oom_is_named_when_ecs_names_it():
    code, why = describe_stop(_task(*ESSENTIAL, 137, "OutOfMemoryError: Container killed due to memory usage"))
    assert code == 137
    assert why == (
        "out of memory (exit 137: OutOfMemoryError: Container killed due to memory usage); try a larger --memory"
    )


def test_a_bare_137_says_sigkill_and_never_guesses_memory():
    code, why = describe_stop(_task(*ESSENTIAL, 137))
    assert code == 137 and why == BARE_SIGKILL
    assert why == (
        "killed (SIGKILL, exit 137); ECS gave no reason: possibly the stop timeout after a StopTask, or the host"
    )
    assert "memory" not in why


def test_137_after_a_stoptask_is_the_stop_timeout():
    code, why = describe_stop(_task("UserInitiated", "cancelled with `starburst cancel`", 137))
    assert code == 137 and "memory" not in why
    assert why == (
        "killed (SIGKILL, exit 137) after a StopTask: the worker had not ended within the task's stop timeout "
        "(ECS: UserInitiated, a StopTask call; cancelled with `starburst cancel`)"
    )


def test_137_when_aws_retires_the_host_says_what_ecs_said():
    code, why = describe_stop(
        _task("TerminationNotice", "Task stopped due to scheduled maintenance of the underlying infrastructure", 137)
    )
    assert "memory" not in why
    assert why == (
        "killed (SIGKILL, exit 137) (ECS: TerminationNotice, AWS retired the task's host; Task stopped due to "
        "scheduled maintenance of the underlying infrastructure)"
    )


def test_137_with_a_reason_but_no_stop_code_quotes_it():
    _, why = describe_stop(_task("", "Host EC2 (instance i-0abc) terminated.", 137))
    assert why == "killed (SIGKILL, exit 137) (ECS: Host EC2 (instance i-0abc) terminated.)"


def test_a_task_that_failed_to_start_says_what_ecs_said():
    pull = (
        "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref "
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:env-3f2a: not found"
    )
    code, why = describe_stop(_task("TaskFailedToStart", pull, None))
    assert code == -1
    assert why == f"the task stopped before the worker ran (ECS: TaskFailedToStart, the task failed to start; {pull})"
    network = "ResourceInitializationError: unable to pull secrets or registry auth: ... i/o timeout"
    _, why = describe_stop(_task("TaskFailedToStart", network, None, network))
    assert why.startswith("the task stopped before the worker ran (ECS: TaskFailedToStart, the task failed")
    assert f"; {network}; container: {network})" in why


def test_spot_and_other_stop_codes_and_the_workers_own_codes():
    assert describe_stop(_task("SpotInterruption", "Your Spot Task was interrupted.", 143)) == (
        143,
        "Fargate Spot interruption (AWS reclaimed the capacity)",
    )
    assert describe_stop(_task("ServiceSchedulerInitiated", "Scaling activity initiated by deployment", 143)) == (
        143,
        "exited with code 143 (128 + SIGTERM) (ECS: ServiceSchedulerInitiated, the ECS service scheduler; "
        "Scaling activity initiated by deployment)",
    )
    assert describe_stop(_task(*ESSENTIAL, 1)) == (1, "exited with code 1")
    assert describe_stop(_task("UserInitiated", "job cancelled", 91)) == (91, "stopped: job cancelled")
    assert describe_stop(_task(*ESSENTIAL, 0)) == (0, "finished")
    # a reply with no stop code at all (moto, or an old agent): no invented cause
    assert describe_stop({"containers": [{"name": "worker", "exitCode": 137}]}) == (137, BARE_SIGKILL)


@pytest.mark.slow
def test_a_worker_sigkilled_without_an_oom_reason_is_not_called_out_of_memory(fargate):  # noqa: F811
    """The stand-in agent reports a plain SIGKILL as ECS does: exit 137, EssentialContainerExited, no reason."""
    config = load_config()
    handle = Launcher(config).submit(build_spec(config, mode="map", workers=2, retries=1), _Sleepy(), list(range(4)))
    wait_for(lambda: len(fargate.running()) == 2, timeout=60)
    time.sleep(1.0)
    victim, arn = sorted(fargate.running().items())[0]
    os.killpg(fargate.procs[arn].pid, signal.SIGKILL)  # no fault registered: no OutOfMemoryError reason
    result = handle.wait(timeout=120)
    assert result.values == [x * 10 for x in range(4)]
    worker = latest_record()["workers"][str(victim)]
    assert worker["exit_code"] == 137
    assert worker["reason"] == BARE_SIGKILL

"""Task definitions: registered once per (image, size, roles, log group, arch) and reused."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from starburst_jupyter.backends.base import WorkerRef
from starburst_jupyter.backends.fargate.clients import error_code

CONTAINER = "worker"
STREAM_PREFIX = "starburst"
MANAGED_TAG = {"key": "starburst:managed", "value": "true"}
#: Every family we register starts so; teardown lists the families by it (ListTaskDefinitionFamilies).
FAMILY_PREFIX = "starburst-worker-"


@dataclass(frozen=True)
class TaskShape:
    image: str
    cpu_units: int
    memory_mib: int
    execution_role_arn: str
    task_role_arn: str
    log_group: str
    region: str
    arch: str  # x86_64 | arm64

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def family(self) -> str:
        return f"{FAMILY_PREFIX}{self.fingerprint()}"


def task_ref(arn: str, index: int, wave: int, job_id: str, **info: Any) -> WorkerRef:
    """The WorkerRef of a worker running as ECS task `arn` (started now, or taken warm with warm_from=...)."""
    return WorkerRef(
        index, wave, time.time(), handle=arn,
        info={"task_arn": arn, "task_id": arn.rsplit("/", 1)[-1], "job": job_id, "log_stream": log_stream(arn), **info},
    )  # fmt: skip


def log_stream(task_arn: str) -> str:
    """The stream the awslogs driver writes a task's worker output to."""
    return f"{STREAM_PREFIX}/{CONTAINER}/{task_arn.rsplit('/', 1)[-1]}"


def ensure_task_definition(ecs: Any, shape: TaskShape) -> str:
    """The ARN of the active revision of this shape's family, registering it the first time."""
    try:
        found = ecs.describe_task_definition(taskDefinition=shape.family)["taskDefinition"]
        if found.get("status") == "ACTIVE":
            arn: str = found["taskDefinitionArn"]
            return arn
    except Exception as exc:
        if error_code(exc) not in ("ClientException", "InvalidParameterException", "ResourceNotFoundException"):
            raise
    reply = ecs.register_task_definition(
        family=shape.family,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu=str(shape.cpu_units),
        memory=str(shape.memory_mib),
        executionRoleArn=shape.execution_role_arn,
        taskRoleArn=shape.task_role_arn,
        runtimePlatform={
            "cpuArchitecture": "ARM64" if shape.arch == "arm64" else "X86_64",
            "operatingSystemFamily": "LINUX",
        },
        containerDefinitions=[
            {
                "name": CONTAINER,
                "image": shape.image,
                "essential": True,
                "memory": shape.memory_mib,
                "command": ["python", "-m", "starburst_jupyter.worker"],
                "environment": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
                "stopTimeout": 30,  # SIGTERM, then SIGKILL after this: the worker flushes and hands back well inside it
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": shape.log_group,
                        "awslogs-region": shape.region,
                        "awslogs-stream-prefix": STREAM_PREFIX,
                    },
                },
            }
        ],
        tags=[MANAGED_TAG],
    )
    registered: str = reply["taskDefinition"]["taskDefinitionArn"]
    return registered

"""A detached job's driver as a small ECS task, so the job goes on with the launching machine switched off.

The driver runs the workers' image (it has starburst_jupyter installed) from a task definition of the
driver's size registered like the workers' (same image, roles, log group and architecture, so teardown
finds it), with the job's driver command in the container overrides. Three choices matter:

* On-demand Fargate, never Spot: a driver interrupted would stall the job until someone attaches.
* The smallest Fargate size, 0.25 vCPU + 0.5 GB: the driver only polls and writes small objects.
  On-demand in us-east-1 that is 0.25 x $0.04048 + 0.5 x $0.004445 ~ $0.0123 per hour of the job.
* startedBy is `driver/<job>`, not the job id the workers carry: at its job's end a driver stops every
  task listed under the job id (`FargateBackend.stop_job`), which must not include itself. A cancel
  from a machine that finds the driver gone stops the driver's task too (`driver_task_arns`).
"""

from __future__ import annotations

import uuid
from typing import Any

from starburst_jupyter.backends.fargate.clients import error_code, error_message
from starburst_jupyter.backends.fargate.taskdef import CONTAINER, MANAGED_TAG
from starburst_jupyter.core.config import Config
from starburst_jupyter.errors import BurstError

DRIVER_CPU, DRIVER_MEMORY = 256, 512  # the smallest Fargate task: 0.25 vCPU, 0.5 GB
DRIVER_TAG = {"key": "starburst:role", "value": "driver"}
DRIVER_HOME = "/tmp/starburst"  # the task's STARBURST_HOME: the record's durable copy is in the bucket


def driver_started_by(job_id: str) -> str:
    """The startedBy of a job's driver task (ECS allows letters, digits, '-', '_' and '/', up to 128)."""
    return f"driver/{job_id}"[:128]


def network(config: Config) -> dict[str, Any]:
    """The awsvpc configuration every task of ours runs with (workers and drivers)."""
    return {
        "awsvpcConfiguration": {
            "subnets": list(config.subnets),
            "securityGroups": list(config.security_groups),
            "assignPublicIp": "ENABLED" if config.assign_public_ip else "DISABLED",
        }
    }


def run_driver_task(
    ecs: Any, config: Config, region: str, taskdef: str, job_id: str, argv: list[str], env: dict[str, str]
) -> str:
    """RunTask of one driver: `python` + argv with env (plus STARBURST_HOME and STARBURST_ROLE=driver);
    its task ARN, or a BurstError saying what ECS refused and what to do."""
    environment = {**env, "STARBURST_HOME": DRIVER_HOME, "STARBURST_ROLE": "driver", "AWS_REGION": region}
    overrides: dict[str, Any] = {
        "containerOverrides": [
            {
                "name": CONTAINER,
                "command": ["python", *argv],
                "environment": [{"name": k, "value": v} for k, v in environment.items()],
                "memory": DRIVER_MEMORY,  # the container's hard limit may not exceed the task's memory
            }
        ],
        "cpu": str(DRIVER_CPU),
        "memory": str(DRIVER_MEMORY),
    }
    if config.driver_role_arn:
        overrides["taskRoleArn"] = config.driver_role_arn
    where = f"in {region} (ECS cluster {config.cluster})"
    try:
        reply = ecs.run_task(
            cluster=config.cluster,
            taskDefinition=taskdef,
            count=1,
            launchType="FARGATE",  # on-demand: never Spot for a driver
            startedBy=driver_started_by(job_id),
            networkConfiguration=network(config),
            overrides=overrides,
            tags=[MANAGED_TAG, {"key": "starburst:job", "value": job_id}, DRIVER_TAG],
            clientToken=uuid.uuid4().hex,
            propagateTags="TASK_DEFINITION",
        )
    except Exception as exc:  # botocore has already retried throttling and 5xx
        raise BurstError(
            f"Could not start the driver of job {job_id} {where}: RunTask failed: {error_code(exc)}: "
            f"{error_message(exc)}. Nothing of the job runs yet; {_what_to_do(job_id)}",
            job_id=job_id,
        ) from None
    tasks = reply.get("tasks") or []
    if tasks:
        arn: str = tasks[0]["taskArn"]
        return arn
    detail = "; ".join(
        f"{f.get('reason', '?')}{': ' + f['detail'] if f.get('detail') else ''}" for f in reply.get("failures") or ()
    )
    raise BurstError(
        f"Could not start the driver of job {job_id} {where}: RunTask started no task "
        f"({detail or 'no task and no reason returned'}). Nothing of the job runs yet; {_what_to_do(job_id)}",
        job_id=job_id,
    )


def _what_to_do(job_id: str) -> str:
    return (
        f"`starburst_jupyter.attach('{job_id}')` (or `%burst_attach {job_id}`) tries to start it again once ECS "
        f"has capacity, or launch the job without detaching (it is then driven by this kernel)."
    )


def driver_task_arns(ecs: Any, cluster: str, job_id: str) -> list[str]:
    """The job's driver tasks that run or are about to."""
    return [
        arn
        for page in ecs.get_paginator("list_tasks").paginate(
            cluster=cluster, startedBy=driver_started_by(job_id), desiredStatus="RUNNING"
        )
        for arn in page.get("taskArns", ())
    ]

"""Why a Fargate task stopped, from what ECS says and nothing more.

DescribeTasks gives three clues: the task's `stopCode` (who stopped it), its `stoppedReason` (free text:
StopTask's reason, "Essential container in task exited", an image pull error...) and the worker
container's `exitCode` and `reason` ("OutOfMemoryError: Container killed due to memory usage" when the
kernel's OOM killer ended it). An exit code of 137 only says the process got SIGKILL: out of memory is
one cause, the SIGKILL that follows StopTask's SIGTERM after `stopTimeout` another, a lost host a third.
So memory is named only when ECS names it, and otherwise the user reads what ECS did say.
"""

from __future__ import annotations

import signal
from typing import Any

from starburst_jupyter.backends.fargate.taskdef import CONTAINER
from starburst_jupyter.protocol import exits

EXIT_SIGKILL = 128 + signal.SIGKILL  # 137: a container runtime reports a signal as 128 + its number
#: ECS's stop codes (TaskStopCode), in words. EssentialContainerExited is absent: it only says that the
#: worker's container ended, which the exit code already says.
STOP_CODES = {
    "TaskFailedToStart": "the task failed to start",
    "UserInitiated": "a StopTask call",
    "ServiceSchedulerInitiated": "the ECS service scheduler",
    "SpotInterruption": "a Fargate Spot interruption",
    "TerminationNotice": "AWS retired the task's host",
    "InfrastructureHealth": "AWS stopped it for the health of its infrastructure",
}
#: Reasons that only restate that the container exited.
_GENERIC = ("essential container in task exited", "essential container exited")
BARE_SIGKILL = (
    f"killed (SIGKILL, exit {EXIT_SIGKILL}); ECS gave no reason: possibly the stop timeout after a StopTask, "
    "or the host"
)


def ecs_said(task: dict[str, Any], container: dict[str, Any]) -> str:
    """'ECS: <stop code, in words>; <stoppedReason>; container: <reason>', leaving out what only restates that
    the container exited; '' when ECS said nothing more."""
    parts = []
    stop_code = task.get("stopCode") or ""
    if stop_code and stop_code != "EssentialContainerExited":
        parts.append(f"{stop_code}, {STOP_CODES[stop_code]}" if stop_code in STOP_CODES else stop_code)
    why = (task.get("stoppedReason") or "").strip()
    if why and why.lower() not in _GENERIC:
        parts.append(why)
    detail = (container.get("reason") or "").strip()
    if detail and detail.lower() not in _GENERIC:
        parts.append(f"container: {detail}")
    return "ECS: " + "; ".join(parts) if parts else ""


def describe_stop(task: dict[str, Any]) -> tuple[int, str]:
    """(exit code, why) of a stopped task (a DescribeTasks entry), in words a user can act on."""
    containers = task.get("containers") or [{}]
    container = next((c for c in containers if c.get("name") == CONTAINER), containers[0])
    code = container.get("exitCode")
    stop_code, why = task.get("stopCode") or "", task.get("stoppedReason") or ""
    detail = container.get("reason") or ""
    said = ecs_said(task, container)
    if "OutOfMemory" in detail or "OutOfMemory" in why:
        exited = f"exit {code}: " if code is not None else ""
        return (code if code is not None else -1), f"out of memory ({exited}{detail or why}); try a larger --memory"
    if stop_code == "SpotInterruption" or "spot" in why.lower() and "interrupt" in why.lower():
        return (code if code is not None else -1), "Fargate Spot interruption (AWS reclaimed the capacity)"
    if code is None:
        return -1, f"the task stopped before the worker ran ({said or 'ECS gave no reason'})"
    if code == EXIT_SIGKILL:
        if stop_code == "UserInitiated":
            return code, (
                f"killed (SIGKILL, exit {code}) after a StopTask: the worker had not ended within the task's stop "
                f"timeout ({said})"
            )
        return code, f"killed (SIGKILL, exit {code}) ({said})" if said else BARE_SIGKILL
    reason = exits.describe(code)
    if code in (exits.EXIT_OK, exits.EXIT_CANCELLED, exits.EXIT_DEADLINE, exits.EXIT_NO_PROGRAM):
        return code, reason
    return code, f"{reason} ({said})" if said else reason

"""Plays the part of AWS's Fargate agent for moto, whose ECS records tasks but runs nothing.

For each task RunTask created in moto, the agent runs the task definition's command, or the command of
the container overrides as ECS does (the worker image's `python` is this interpreter), with the task's
environment overrides and size overrides (cpu, memory), against the same moto
endpoint (as the task role would give it access), ships its output to CloudWatch Logs the way the
awslogs driver does (stream <prefix>/<container>/<task id>), and when the process ends marks the
task STOPPED in moto with the real exit code and timestamps. A StopTask makes it SIGTERM the
process, then SIGKILL it `stop_timeout` seconds later if it still runs, as ECS does. Faults: kill a
worker as the OOM killer would, interrupt it as Spot does (at once, or with the notice: SIGTERM, then
SIGKILL after the stop timeout), make RunTask answer with capacity failures and DescribeTasks with
MISSING. A task whose environment names no STARBURST_WORKER is a detached job's driver: `drivers()` lists
those, `running()` and `worker_of` only workers.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ACCOUNT = "123456789012"
EXIT_137 = "OutOfMemoryError: Container killed due to memory usage"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class _LogShipper(threading.Thread):
    """The awslogs driver: lines of the container's output to its stream, in small batches."""

    def __init__(self, logs: Any, group: str, stream: str, pipe):
        super().__init__(daemon=True)
        self.logs, self.group, self.stream, self.pipe = logs, group, stream, pipe
        self.lines: list[dict] = []
        self.lock = threading.Lock()
        self.closed = threading.Event()
        logs.create_log_stream(logGroupName=group, logStreamName=stream)

    def run(self) -> None:
        flusher = threading.Thread(target=self._flush_loop, daemon=True)
        flusher.start()
        for raw in iter(self.pipe.readline, b""):
            message = raw.decode(errors="replace").rstrip("\n") or " "  # CloudWatch refuses empty events
            with self.lock:
                self.lines.append({"timestamp": int(time.time() * 1000), "message": message})
        self.closed.set()
        flusher.join()

    def _flush(self) -> None:
        with self.lock:
            batch, self.lines = self.lines, []
        if batch:
            self.logs.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=batch)

    def _flush_loop(self) -> None:
        while not self.closed.wait(0.2):
            self._flush()
        self._flush()


class FargateAgent(threading.Thread):
    def __init__(self, env: dict[str, str], region: str, cluster: str, log_group: str):
        super().__init__(daemon=True, name="fake-fargate-agent")
        import boto3

        self.env, self.region, self.cluster, self.log_group = env, region, cluster, log_group
        self.logs = boto3.session.Session().client("logs", region_name=region)
        self.procs: dict[str, subprocess.Popen] = {}
        self.shippers: dict[str, _LogShipper] = {}
        self.finished: set[str] = set()
        self.faults: dict[str, tuple[str, int | None]] = {}  # task arn -> (stop code, exit code) to report
        self.launched_env: list[dict[str, str]] = []  # every environment a worker was given
        self.launched: dict[str, list[str]] = {}  # task arn -> the command the agent ran (python mapped)
        self.homes: dict[str, str] = {}  # task arn -> the folder standing for its STARBURST_HOME (removed at its end)
        self.stop_event = threading.Event()
        self.stop_timeout = 30.0  # ECS's default stopTimeout: SIGKILL this long after SIGTERM
        self.terminated: dict[str, float] = {}  # task arn -> when SIGTERM was sent
        self.sigkilled: set[str] = set()  # tasks that outlived their stop timeout
        self.errors: list[BaseException] = []
        self.finished.update(self._tasks())  # tasks of an earlier agent are not this one's to run

    # ----- moto's records -------------------------------------------------------------------
    def _tasks(self) -> dict[str, Any]:
        from moto.ecs.models import ecs_backends

        return ecs_backends[ACCOUNT][self.region].tasks.get(self.cluster, {})

    def _taskdef(self, task) -> Any:
        from moto.ecs.models import ecs_backends

        return ecs_backends[ACCOUNT][self.region].describe_task_definition(task.task_definition_arn)

    def worker_of(self, task_arn: str) -> int | None:
        """The worker index of a task (None: not a worker, e.g. a detached job's driver)."""
        env = self._environment(self._tasks()[task_arn])
        return int(env["STARBURST_WORKER"]) if "STARBURST_WORKER" in env else None

    def running(self) -> dict[int, str]:
        """{worker index: task arn} of workers whose process runs now (drivers are not workers)."""
        found = {arn: self.worker_of(arn) for arn, p in list(self.procs.items()) if p.poll() is None}
        return {index: arn for arn, index in found.items() if index is not None}

    def drivers(self) -> dict[str, subprocess.Popen]:
        """{task arn: process} of the driver tasks the agent started (running or ended)."""
        return {arn: p for arn, p in list(self.procs.items()) if self.worker_of(arn) is None}

    @staticmethod
    def _environment(task) -> dict[str, str]:
        env: dict[str, str] = {}
        for override in task.overrides.get("containerOverrides", ()):
            env.update({e["name"]: e["value"] for e in override.get("environment", ())})
        return env

    @staticmethod
    def _command(task, container: dict) -> list[str]:
        """The container's command: the overrides' when they give one (as ECS does), else the definition's."""
        for override in task.overrides.get("containerOverrides", ()):
            if override.get("name") == container["name"] and override.get("command"):
                return list(override["command"])
        return list(container["command"])

    # ----- the agent loop -------------------------------------------------------------------
    def run(self) -> None:
        while not self.stop_event.wait(0.05):
            try:
                self._step()
            except Exception as exc:  # surfaced by the test through .errors
                self.errors.append(exc)

    def _step(self) -> None:
        for arn, task in list(self._tasks().items()):
            if arn in self.finished:
                continue
            proc = self.procs.get(arn)
            if proc is None:
                if task.desired_status == "RUNNING":
                    self._start(arn, task)
                continue
            if task.desired_status == "STOPPED" and arn not in self.faults and arn not in self.terminated:
                self._terminate(arn)  # StopTask: SIGTERM, then SIGKILL after stopTimeout
            if proc.poll() is None and time.monotonic() - self.terminated.get(arn, float("inf")) >= self.stop_timeout:
                self.sigkilled.add(arn)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            code = proc.poll()
            if code is not None:
                self._stopped(arn, task, code)

    def _start(self, arn: str, task) -> None:
        taskdef = self._taskdef(task)
        container = taskdef.container_definitions[0]
        overrides = self._environment(task)
        if "STARBURST_WORKER" in overrides:
            self.launched_env.append(overrides)
        env = {
            **os.environ,
            **self.env,
            **{e["name"]: e["value"] for e in container.get("environment", ())},
            **overrides,
        }
        if "STARBURST_HOME" in overrides:  # a path in the container's own filesystem: one per task here too
            env["STARBURST_HOME"] = self.homes[arn] = tempfile.mkdtemp(prefix="task-home-")
        command = [sys.executable if part == "python" else part for part in self._command(task, container)]
        self.launched[arn] = command
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=os.getcwd(),
            start_new_session=True,
        )
        from starburst_jupyter.backends.fargate.taskdef import log_stream

        shipper = _LogShipper(self.logs, self.log_group, log_stream(arn), proc.stdout)
        shipper.start()
        self.procs[arn], self.shippers[arn] = proc, shipper
        task.cpu = task.overrides.get("cpu") or taskdef.cpu  # task-level size overrides win, as on ECS
        task.memory = task.overrides.get("memory") or taskdef.memory
        task.pull_started_at = task.started_at = _now()
        task.containers[0].exitCode = None
        task.last_status = "RUNNING"

    def _terminate(self, arn: str) -> None:
        self.terminated[arn] = time.monotonic()
        if self.procs[arn].poll() is None:
            self.procs[arn].send_signal(signal.SIGTERM)  # to the container's main process, as ECS does

    def _stopped(self, arn: str, task, code: int) -> None:
        self.shippers[arn].join(timeout=5)
        if arn in self.homes:
            shutil.rmtree(self.homes.pop(arn), ignore_errors=True)
        stop_code, exit_code = self.faults.get(arn, ("", code))
        exit_code = code if exit_code is None else exit_code  # a fault with the worker's own exit code
        container = task.containers[0]
        if exit_code < 0:
            exit_code = 128 - exit_code  # a signal, as a container runtime reports it
        container.exitCode = exit_code
        if exit_code == 137 and stop_code == "EssentialContainerExited":
            container.reason = EXIT_137
        task.stop_code = stop_code or (
            "UserInitiated" if task.desired_status == "STOPPED" else "EssentialContainerExited"
        )
        if stop_code == "SpotInterruption":
            task.stopped_reason = "Your Spot Task was interrupted."
        elif not task.stopped_reason:
            task.stopped_reason = "Essential container in task exited"
        task.stopped_at = _now()
        task.desired_status = "STOPPED"
        task.last_status = "STOPPED"
        self.finished.add(arn)

    # ----- faults ---------------------------------------------------------------------------
    def kill(self, worker: int, how: str = "oom") -> None:
        """End a running worker as AWS would: 'oom' (exit 137) or 'spot' (a Spot interruption)."""
        arn = self.running()[worker]
        self.faults[arn] = ("SpotInterruption", 143) if how == "spot" else ("EssentialContainerExited", 137)
        os.killpg(self.procs[arn].pid, signal.SIGKILL)

    def interrupt(self, worker: int) -> str:
        """A Spot interruption with its notice: SIGTERM to the worker now, SIGKILL after the stop timeout
        if it still runs; the task is reported stopped by SpotInterruption with the worker's exit code."""
        arn = self.running()[worker]
        self.faults[arn] = ("SpotInterruption", None)
        self._terminate(arn)
        return arn

    def stop(self) -> None:
        """The agent goes, and its tasks with it (recorded STOPPED, as a lost host's tasks are)."""
        self.stop_event.set()
        self.join(timeout=5)
        tasks = self._tasks()
        for arn, proc in self.procs.items():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if arn not in self.finished and arn in tasks:
                self._stopped(arn, tasks[arn], proc.returncode)


class RunTaskFailures:
    """Make moto's RunTask answer the next `times` calls with a per-task failure (as AWS does when
    Fargate has no capacity), with no task started. Use as a context manager."""

    REASON = "Capacity is unavailable at this time. Please try again later or in a different availability zone"

    def __init__(self, times: int, reason: str = REASON):
        self.times, self.reason, self.hits = times, reason, 0

    def __enter__(self) -> RunTaskFailures:
        from moto.core.responses import ActionResult
        from moto.ecs.responses import EC2ContainerServiceResponse

        self._original = original = EC2ContainerServiceResponse.run_task
        outer = self

        def run_task(response_self):
            if outer.hits < outer.times:
                outer.hits += 1
                return ActionResult(
                    {
                        "tasks": [],
                        "failures": [
                            {
                                "arn": f"arn:aws:ecs:{response_self.region}:{ACCOUNT}:container-instance/none",
                                "reason": outer.reason,
                            }
                        ],
                    }
                )
            return original(response_self)

        EC2ContainerServiceResponse.run_task = run_task
        return self

    def __exit__(self, *exc) -> None:
        from moto.ecs.responses import EC2ContainerServiceResponse

        EC2ContainerServiceResponse.run_task = self._original


class DescribeMissing:
    """Make moto's DescribeTasks answer a task with failure reason MISSING for its first `polls` reads, as
    ECS may right after RunTask (eventual consistency), while the agent runs it all along. `tasks` limits
    the fault to the first so many task ARNs it sees (None: every task). Use as a context manager."""

    def __init__(self, polls: int, tasks: int | None = None):
        self.polls, self.tasks = polls, tasks
        self.reads: dict[str, int] = {}  # task arn -> DescribeTasks reads of it so far
        self.hits = 0  # MISSING answers given
        self.lock = threading.Lock()

    def _missing(self, arn: str) -> bool:
        with self.lock:
            if arn not in self.reads and self.tasks is not None and len(self.reads) >= self.tasks:
                return False
            self.reads[arn] = self.reads.get(arn, 0) + 1
            if self.reads[arn] <= self.polls:
                self.hits += 1
                return True
            return False

    def __enter__(self) -> DescribeMissing:
        from moto.core.responses import ActionResult
        from moto.ecs.responses import EC2ContainerServiceResponse

        self._original = original = EC2ContainerServiceResponse.describe_tasks
        outer = self

        def describe_tasks(response_self):
            reply = original(response_self).result
            tasks, failures = [], list(reply["failures"])
            for task in reply["tasks"]:
                if outer._missing(task.task_arn):
                    failures.append({"arn": task.task_arn, "reason": "MISSING"})
                else:
                    tasks.append(task)
            return ActionResult({"tasks": tasks, "failures": failures})

        EC2ContainerServiceResponse.describe_tasks = describe_tasks
        return self

    def __exit__(self, *exc) -> None:
        from moto.ecs.responses import EC2ContainerServiceResponse

        EC2ContainerServiceResponse.describe_tasks = self._original

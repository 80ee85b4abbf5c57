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

Two ways it behaves as Fargate does beyond running the command (see `FargateLatency` and
`ContainerCredentials` below): an optional latency profile (provisioning, image pull by size, container
start, stopping and deprovisioning, the RunTask rate bucket, Spot interruptions; all off by default, so
the suite keeps its speed), and credentials only through a container-credentials endpoint on 127.0.0.1
(no AWS key in a task's environment), minted by STS for the task's role, whose policy moto enforces for
worker tasks (`moto_server.TaskRoleEnforcement`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


# ----- the latency profile ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FargateLatency:
    """How long Fargate takes, in seconds (and rates per second). The default is instant, as the suite wants.

    A task is PROVISIONING for `provision` (capacity, the ENI), then PENDING while its image is pulled
    (`image_mb` / `pull_mb_per_s`) and its container starts (`start`); only then does its process run and
    the task show RUNNING. When the process ends the task is STOPPING for `stop`, DEPROVISIONING for
    `deprovision` (the ENI detaching), then STOPPED. RunTask takes a token of a bucket of `runtask_burst`
    refilled at `runtask_rate` per second and answers ThrottlingException when it is empty (0: never).
    A running Spot task is interrupted at `spot_interrupt_per_hour`: SIGTERM (the two-minute notice), SIGKILL
    `stop_timeout` later if it still runs, stop code SpotInterruption.
    """

    provision: float = 0.0
    pull_mb_per_s: float = 0.0  # 0: the pull takes no time
    image_mb: float = 0.0
    start: float = 0.0
    stop: float = 0.0
    deprovision: float = 0.0
    runtask_rate: float = 0.0  # RunTask calls refilled per second; 0: no throttling
    runtask_burst: int = 0
    spot_interrupt_per_hour: float = 0.0
    stop_timeout: float = 30.0  # ECS's default stopTimeout (the task definition's, up to 120)
    scale: float = 1.0  # the factor applied by `scaled` (1: real time)

    @classmethod
    def realistic(cls, scale: float = 1.0) -> FargateLatency:
        """Typical Fargate figures, times `scale` (0.1: ten times faster, for tests and the bench).

        The RunTask bucket is AWS's documented one ("AWS Fargate throttling quotas", ECS developer guide,
        https://docs.aws.amazon.com/AmazonECS/latest/developerguide/throttling.html): RunTask on Fargate is
        limited to 20 calls per second, burst and sustained (and task launches to a bucket of 100 refilled at
        20 per second; one task per call here, so the call rate binds first). The delays are typical, not
        documented: ~10 s to provision (ENI attach), a 600 MB worker image at ~40 MB/s (15 s), 3 s to start
        the container; ~5 s stopping and ~25 s deprovisioning (ENI detach). A cold start is ~28 s."""
        return cls(
            provision=10.0,
            pull_mb_per_s=40.0,
            image_mb=600.0,
            start=3.0,
            stop=5.0,
            deprovision=25.0,
            runtask_rate=20.0,
            runtask_burst=20,
        ).scaled(scale)

    def scaled(self, factor: float) -> FargateLatency:
        """Every duration times `factor`, every rate divided by it (the same world, faster or slower)."""
        return dataclasses.replace(
            self,
            provision=self.provision * factor,
            pull_mb_per_s=self.pull_mb_per_s / factor,
            start=self.start * factor,
            stop=self.stop * factor,
            deprovision=self.deprovision * factor,
            runtask_rate=self.runtask_rate / factor,
            spot_interrupt_per_hour=self.spot_interrupt_per_hour / factor,
            stop_timeout=self.stop_timeout * factor,
            scale=self.scale * factor,
        )

    @property
    def pull(self) -> float:
        return self.image_mb / self.pull_mb_per_s if self.pull_mb_per_s > 0 else 0.0

    @property
    def cold_start(self) -> float:
        """RunTask to the process running."""
        return self.provision + self.pull + self.start

    @property
    def stops_slowly(self) -> bool:
        return self.stop > 0 or self.deprovision > 0


class TokenBucket:
    """ECS's throttling: a bucket of `burst` tokens refilled at `rate` per second; a call takes one."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.capacity = rate, float(max(1, burst))
        self.tokens, self.last = self.capacity, time.monotonic()
        self.lock = threading.Lock()
        self.taken = self.refused = 0

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1:
                self.refused += 1
                return False
            self.tokens -= 1
            self.taken += 1
            return True


# ----- credentials as Fargate gives them ------------------------------------------------------
class ContainerCredentials:
    """Fargate's container-credentials endpoint (and a task-metadata v4 endpoint) on 127.0.0.1.

    A task gets AWS_CONTAINER_CREDENTIALS_FULL_URI (botocore's ContainerProvider accepts a loopback host
    over plain HTTP; any other host must be https or one of ECS's link-local addresses) and
    AWS_CONTAINER_AUTHORIZATION_TOKEN (sent as the Authorization header, checked here), never a key. The
    keys served are temporary ones STS mints for the task's role (AssumeRole in moto), so with
    `moto_server.TaskRoleEnforcement` that role's policy is what the task may do."""

    REFRESH = 900.0  # mint again when the keys have less than this left (botocore refreshes 15 min ahead)

    def __init__(self, sts: Any):
        self.sts = sts
        self.lock = threading.Lock()
        self.tasks: dict[str, dict[str, Any]] = {}  # path id -> {token, role, task, cluster, keys}
        self.minted: dict[str, str] = {}  # access key id -> task arn
        self.served: list[tuple[str, str]] = []  # (task arn, role arn) of each credentials answer
        self.refused = 0  # requests without the task's token
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code, body = outer._answer(self.path, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-container-creds").start()

    def register(self, task_arn: str, role_arn: str | None, cluster: str) -> dict[str, str]:
        """The environment ECS gives this task's container: the endpoints, no keys (none without a role)."""
        path_id = secrets.token_hex(8)
        token = secrets.token_hex(16)
        with self.lock:
            self.tasks[path_id] = {"token": token, "role": role_arn, "task": task_arn, "cluster": cluster}
        env = {"ECS_CONTAINER_METADATA_URI_V4": f"{self.url}/v4/{path_id}"}
        if role_arn:
            env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = f"{self.url}/v2/credentials/{path_id}"
            env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token
        return env

    def task_of(self, access_key_id: str) -> str | None:
        with self.lock:
            return self.minted.get(access_key_id)

    def _answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "v4" and parts[1] in self.tasks:
            task = self.tasks[parts[1]]
            if parts[2:] == ["task"]:
                return 200, {"Cluster": task["cluster"], "TaskARN": task["task"], "LaunchType": "FARGATE"}
            return 200, {"Name": "worker", "Labels": {"com.amazonaws.ecs.task-arn": task["task"]}}
        if len(parts) != 3 or parts[:2] != ["v2", "credentials"] or parts[2] not in self.tasks:
            return 404, {"message": "no such task"}
        task = self.tasks[parts[2]]
        if authorization != task["token"] or not task["role"]:
            with self.lock:
                self.refused += 1
            return 401, {"message": "unauthorized"}
        keys = task.get("keys")
        if keys is None or keys["expires"] - time.time() < self.REFRESH:
            # (no lock held here: moto's STS request passes through TaskRoleEnforcement, which asks task_of)
            task_id = task["task"].rsplit("/", 1)[-1]
            reply = self.sts.assume_role(RoleArn=task["role"], RoleSessionName=task_id[:64], DurationSeconds=3600)
            keys = task["keys"] = {**reply["Credentials"], "expires": reply["Credentials"]["Expiration"].timestamp()}
            with self.lock:
                self.minted[keys["AccessKeyId"]] = task["task"]
        with self.lock:
            self.served.append((task["task"], task["role"]))
        return 200, {
            "AccessKeyId": keys["AccessKeyId"],
            "SecretAccessKey": keys["SecretAccessKey"],
            "Token": keys["SessionToken"],
            "Expiration": keys["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "RoleArn": task["role"],
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


#: What a task's environment never carries on Fargate: keys, a profile, files holding keys.
NO_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


class FargateAgent(threading.Thread):
    def __init__(
        self,
        env: dict[str, str],
        region: str,
        cluster: str,
        log_group: str,
        latency: FargateLatency | None = None,
        credentials: bool = True,
        enforce_task_role: bool = True,
        seed: int = 0,
    ):
        super().__init__(daemon=True, name="fake-fargate-agent")
        import boto3

        if credentials:  # a stand-in that breaks what AWS documents: one line, not a test's own failure
            import pytest
            import standin_canary

            found = standin_canary.problems(env)
            if found:
                pytest.skip(standin_canary.one_line(found))

        self.env, self.region, self.cluster, self.log_group = env, region, cluster, log_group
        self.logs = boto3.session.Session().client("logs", region_name=region)
        self.latency = latency or FargateLatency()
        self.procs: dict[str, subprocess.Popen] = {}
        self.shippers: dict[str, _LogShipper] = {}
        self.finished: set[str] = set()
        self.faults: dict[str, tuple[str, int | None]] = {}  # task arn -> (stop code, exit code) to report
        self.launched_env: list[dict[str, str]] = []  # every environment a worker was given
        self.launched: dict[str, list[str]] = {}  # task arn -> the command the agent ran (python mapped)
        self.homes: dict[str, str] = {}  # task arn -> the folder standing for its STARBURST_HOME (removed at its end)
        self.stop_event = threading.Event()
        self.stop_timeout = self.latency.stop_timeout  # SIGKILL this long after SIGTERM (ECS's default: 30 s)
        self.terminated: dict[str, float] = {}  # task arn -> when SIGTERM was sent
        self.sigkilled: set[str] = set()  # tasks that outlived their stop timeout
        self.errors: list[BaseException] = []
        self.seen: dict[str, float] = {}  # task arn -> when the agent first saw it (RunTask, near enough)
        self.exited: dict[str, float] = {}  # task arn -> when its process ended (the task is stopping)
        self.history: dict[str, list[tuple[str, float]]] = {}  # task arn -> [(lastStatus, monotonic time)]
        self.spot_interrupted: set[str] = set()
        self.random = random.Random(seed)
        self.credentials = (
            ContainerCredentials(boto3.session.Session().client("sts", region_name=region)) if credentials else None
        )
        self.enforce_task_role = enforce_task_role and credentials
        self.runtask_bucket = (
            TokenBucket(self.latency.runtask_rate, self.latency.runtask_burst)
            if self.latency.runtask_rate > 0
            else None
        )
        self._patches: list[Any] = []
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

    def _status(self, arn: str, task, status: str) -> None:
        task.last_status = status
        self.history.setdefault(arn, []).append((status, time.monotonic()))

    # ----- the agent loop -------------------------------------------------------------------
    def start(self) -> None:
        self._patch()
        super().start()

    def run(self) -> None:
        last = time.monotonic()
        while not self.stop_event.wait(0.05):
            now = time.monotonic()
            try:
                self._step(now, now - last)
            except Exception as exc:  # surfaced by the test through .errors
                self.errors.append(exc)
            last = now

    def _step(self, now: float, elapsed: float) -> None:
        lat = self.latency
        for arn, task in list(self._tasks().items()):
            if arn in self.finished:
                continue
            if arn not in self.seen:
                self.seen[arn] = now
                task.created_at = _now()
                self._status(arn, task, "PROVISIONING")
            proc = self.procs.get(arn)
            if proc is None:
                if task.desired_status != "RUNNING":  # stopped before its container ran
                    self._stopped(arn, task, None)
                else:
                    self._bring_up(arn, task, now - self.seen[arn])
                continue
            if arn in self.exited:
                self._wind_down(arn, task, now - self.exited[arn])
                continue
            if task.desired_status == "STOPPED" and arn not in self.faults and arn not in self.terminated:
                self._terminate(arn)  # StopTask: SIGTERM, then SIGKILL after stopTimeout
            if (
                lat.spot_interrupt_per_hour > 0
                and task.capacity_provider_name == "FARGATE_SPOT"
                and arn not in self.terminated
                and proc.poll() is None
                and self.random.random() < lat.spot_interrupt_per_hour / 3600 * elapsed
            ):
                self.spot_interrupted.add(arn)
                self.faults[arn] = ("SpotInterruption", None)
                self._terminate(arn)  # the two-minute notice: SIGTERM now, SIGKILL after the stop timeout
            if proc.poll() is None and now - self.terminated.get(arn, float("inf")) >= self.stop_timeout:
                self.sigkilled.add(arn)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            code = proc.poll()
            if code is not None:
                self._exit(arn, task, code)
                self._wind_down(arn, task, 0.0)

    def _bring_up(self, arn: str, task, age: float) -> None:
        """PROVISIONING -> PENDING (the image pull, the container start) -> RUNNING, on the profile's clock."""
        lat = self.latency
        if age >= lat.provision and task.last_status == "PROVISIONING":
            self._status(arn, task, "PENDING")
            task.pull_started_at = _now()  # billing starts here
        if (
            age >= lat.provision + lat.pull
            and getattr(task, "pull_stopped_at", None) is None
            and task.last_status == "PENDING"
        ):
            task.pull_stopped_at = _now()
        if age >= lat.cold_start and task.last_status == "PENDING":
            self._start(arn, task)

    def _start(self, arn: str, task) -> None:
        taskdef = self._taskdef(task)
        container = taskdef.container_definitions[0]
        overrides = self._environment(task)
        if "STARBURST_WORKER" in overrides:
            self.launched_env.append(overrides)
        env = {**os.environ, **self.env}
        if self.credentials is not None:  # as on Fargate: no key, no profile; the endpoint instead
            env = {k: v for k, v in env.items() if k not in NO_KEYS}
            env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
            role = task.overrides.get("taskRoleArn") or getattr(taskdef, "task_role_arn", None)
            env.update(self.credentials.register(arn, role, self.cluster))
        env.update({e["name"]: e["value"] for e in container.get("environment", ())})
        env.update(overrides)
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
        if getattr(task, "pull_started_at", None) is None:
            task.pull_started_at = _now()
        if getattr(task, "pull_stopped_at", None) is None:
            task.pull_stopped_at = task.pull_started_at
        task.started_at = _now()
        task.containers[0].exitCode = None
        task.containers[0].last_status = "RUNNING"
        self._status(arn, task, "RUNNING")

    def _terminate(self, arn: str) -> None:
        self.terminated[arn] = time.monotonic()
        if self.procs[arn].poll() is None:
            self.procs[arn].send_signal(signal.SIGTERM)  # to the container's main process, as ECS does

    def _exit(self, arn: str, task, code: int | None) -> None:
        """The container ended: its exit code and the stop code are known; the task now stops."""
        self.exited[arn] = time.monotonic()
        if arn in self.shippers:
            self.shippers[arn].join(timeout=5)
        if arn in self.homes:
            shutil.rmtree(self.homes.pop(arn), ignore_errors=True)
        stop_code, exit_code = self.faults.get(arn, ("", code))
        exit_code = code if exit_code is None else exit_code  # a fault with the worker's own exit code
        container = task.containers[0]
        if exit_code is not None and exit_code < 0:
            exit_code = 128 - exit_code  # a signal, as a container runtime reports it
        container.exitCode = exit_code
        container.last_status = "STOPPED"
        if exit_code == 137 and stop_code == "EssentialContainerExited":
            container.reason = EXIT_137
        task.stop_code = stop_code or (
            "UserInitiated" if task.desired_status == "STOPPED" else "EssentialContainerExited"
        )
        if stop_code == "SpotInterruption":
            task.stopped_reason = "Your Spot Task was interrupted."
        elif not task.stopped_reason:
            task.stopped_reason = "Essential container in task exited"
        task.execution_stopped_at = task.stopping_at = _now()
        task.desired_status = "STOPPED"
        if self.latency.stops_slowly:
            self._status(arn, task, "STOPPING")

    def _wind_down(self, arn: str, task, since_exit: float) -> None:
        """STOPPING -> DEPROVISIONING -> STOPPED after the container ended, on the profile's clock."""
        lat = self.latency
        if since_exit >= lat.stop and task.last_status == "STOPPING" and lat.deprovision > 0:
            self._status(arn, task, "DEPROVISIONING")
        if since_exit >= lat.stop + lat.deprovision:
            self._final(arn, task)

    def _final(self, arn: str, task) -> None:
        task.stopped_at = _now()
        task.desired_status = "STOPPED"
        self._status(arn, task, "STOPPED")
        self.finished.add(arn)

    def _stopped(self, arn: str, task, code: int | None) -> None:
        """The task ends now, whatever its state (the agent goes; or it was stopped before it ran)."""
        if arn not in self.exited:
            self._exit(arn, task, code)
        self._final(arn, task)

    # ----- moto adjusted to Fargate's ways while the agent runs -----------------------------
    def _patch(self) -> None:
        from moto.ecs.exceptions import ECSException
        from moto.ecs.models import EC2ContainerServiceBackend
        from moto.ecs.responses import EC2ContainerServiceResponse

        if self.runtask_bucket is not None:
            bucket, run_task = self.runtask_bucket, EC2ContainerServiceResponse.run_task

            def throttled_run_task(response_self):
                if not bucket.take():
                    raise ECSException("ThrottlingException", "Rate exceeded")
                return run_task(response_self)

            EC2ContainerServiceResponse.run_task = throttled_run_task
            self._patches.append((EC2ContainerServiceResponse, "run_task", run_task))
        if self.latency.stops_slowly:  # moto marks a task STOPPED at StopTask; ECS stops it in steps
            agent, stop_task = self, EC2ContainerServiceBackend.stop_task

            def stepwise_stop_task(backend_self, cluster_str, task_str, reason):
                task = stop_task(backend_self, cluster_str, task_str, reason)
                steps = agent.history.get(task.task_arn)
                if task.task_arn not in agent.finished and steps:
                    task.last_status = steps[-1][0]
                return task

            EC2ContainerServiceBackend.stop_task = stepwise_stop_task
            self._patches.append((EC2ContainerServiceBackend, "stop_task", stop_task))
        if self.enforce_task_role and self.credentials is not None:
            from moto_server import TaskRoleEnforcement

            credentials = self.credentials

            def worker_key(key: str) -> bool:
                task = credentials.task_of(key)
                return task is not None and self.worker_of(task) is not None

            self.enforcement = TaskRoleEnforcement(worker_key).__enter__()
            self._patches.append(self.enforcement)

    def _unpatch(self) -> None:
        while self._patches:
            patch = self._patches.pop()
            if isinstance(patch, tuple):
                setattr(*patch)
            else:
                patch.__exit__(None, None, None)

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
        if self.is_alive():
            self.join(timeout=5)
        tasks = self._tasks()
        for arn, proc in self.procs.items():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if arn not in self.finished and arn in tasks:
                self._stopped(arn, tasks[arn], proc.returncode)
        self._unpatch()
        if self.credentials is not None:
            self.credentials.close()


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

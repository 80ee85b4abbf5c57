"""AWS ECS Fargate: one task per worker, S3 for the job's objects, CloudWatch Logs for output.

Every call is paid for in API rate limits, so the launcher's loop costs here, per poll, one
DescribeTasks per 100 live workers, one quick S3 listing each for claims and results, one GET of
the cancel marker and (every few seconds) one FilterLogEvents per 100 workers: never one call
per task. The worker gets only pointers in its overrides (job id, worker index, store, region);
its credentials come from the task role, never from us.
"""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starburst_jupyter.backends.base import LaunchFailure, WorkerRef, WorkerStart
from starburst_jupyter.backends.fargate.clients import ApiCalls, client, error_code, error_message
from starburst_jupyter.backends.fargate.doctor import preflight
from starburst_jupyter.backends.fargate.drivers import (
    DRIVER_CPU,
    DRIVER_MEMORY,
    driver_task_arns,
    network,
    run_driver_task,
)
from starburst_jupyter.backends.fargate.logs import CloudWatchLogs
from starburst_jupyter.backends.fargate.quota import Quota, read_quota, running_vcpus
from starburst_jupyter.backends.fargate.stops import describe_stop
from starburst_jupyter.backends.fargate.taskdef import (
    CONTAINER,
    MANAGED_TAG,
    TaskShape,
    ensure_task_definition,
    task_ref,
)
from starburst_jupyter.backends.fargate.warm import WarmPool
from starburst_jupyter.core.config import Config, load_config, starburst_home
from starburst_jupyter.core.decisions import UnknownTaskRule
from starburst_jupyter.errors import BurstBackendUnavailable, BurstError
from starburst_jupyter.protocol import keys
from starburst_jupyter.protocol.jobfiles import JobFiles

if TYPE_CHECKING:
    from starburst_jupyter.core.spec import JobSpec
    from starburst_jupyter.stores.s3 import S3ObjectStore

DESCRIBE_BATCH = 100  # DescribeTasks takes up to 100 tasks
#: RunTask failure reasons worth another try later (capacity comes and goes; quotas free up).
RETRYABLE = ("RESOURCE", "CAPACITY", "CAPACITY IS UNAVAILABLE", "THROTTL", "AGENT", "LIMIT", "QUOTA")


class QuotaNote(UserWarning):
    """The Fargate quota could not be read, and a default is used."""


class TaskPacer:
    """Client-side pacing of RunTask calls, so a big job launches at the allowed rate instead of collecting
    throttling errors. AWS Fargate throttling quotas (docs.aws.amazon.com/AmazonECS/latest/developerguide/
    throttling.html): the RunTask API allows a burst of 20 calls and 20 per second; the task-launch bucket
    (100, refilled at 20/s) is the looser one when each call starts one task, as ours do."""

    def __init__(self, burst: int = 20, per_second: float = 20.0):
        self.capacity, self.rate = float(burst), per_second
        self.tokens, self.last = float(burst), time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1:
                time.sleep((1 - self.tokens) / self.rate)
                self.tokens = 1.0
            self.tokens -= 1


def _retryable(reason: str) -> bool:
    upper = reason.upper()
    return any(word in upper for word in RETRYABLE)


def _task_of_job(task: dict[str, Any] | None, job_id: str) -> bool:
    """Whether ECS says this task was started for the job: its startedBy, or its starburst:job tag."""
    if not task:
        return False
    tags = {tag.get("key"): tag.get("value") for tag in task.get("tags") or ()}
    return task.get("startedBy") == job_id[:128] or tags.get("starburst:job") == job_id


class FargateBackend:
    name = "fargate"
    timing = {"flush_seconds": 2.0, "control_poll_seconds": 1.0, "heartbeat_seconds": 10.0}
    poll_seconds = (0.5, 5.0)
    driver_shape = (DRIVER_CPU, DRIVER_MEMORY)  # a detached job's driver task (start_driver)
    log_poll_seconds = 3.0
    unknown_task = UnknownTaskRule()  # when a task DescribeTasks answers MISSING for is given up

    def __init__(self, config: Config | None = None, home: Path | None = None):
        self.home = Path(home) if home else starburst_home()
        self.config = config or load_config()
        self.region = self.config.region
        self.api_calls = ApiCalls()
        self.pacer = TaskPacer()
        self._clients: dict[str, Any] = {}
        self._store: S3ObjectStore | None = None
        self._taskdefs: dict[str, str] = {}
        self._images: dict[str, str] = {}  # environment tag -> image URI in ECR
        self._image_ref: str | None = None
        self.quota: Quota | None = None
        self._missing: dict[str, tuple[float, int]] = {}  # task arn -> (first MISSING answer, answers in a row)
        self._seen: set[str] = set()  # task arns DescribeTasks has described at least once
        self.logs = CloudWatchLogs(self._client, self.config.log_group, self.home)
        self.warm = WarmPool(lambda: self.store, self.home)

    # ----- AWS access -----------------------------------------------------------------------
    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(service, self.region, self.api_calls)
        return self._clients[service]

    def _require_setup(self) -> None:
        missing = [
            key
            for key in ("bucket", "subnets", "security_groups", "execution_role_arn", "task_role_arn")
            if not getattr(self.config, key)
        ]
        if missing:
            raise BurstBackendUnavailable(
                f"The fargate backend is not set up in {self.region} (missing {', '.join(missing)} in the config). "
                f"Run %burst_setup (or `starburst setup`) once; it creates the bucket, cluster, roles and "
                f"networking and saves them."
            )

    def prepare(self, spec: JobSpec | None, *, on_progress: Any = None, job_id: str = "") -> str:
        """The image Fargate runs: config `image`, else this kernel's environment image in ECR (found by its
        content-hash tag; built and pushed first when auto_build is on, else a clear error saying how)."""
        self._require_setup()
        preflight(self.config, self._client("sts"))  # credentials AWS accepts, before anything is built or started
        if self.config.image:
            return self.config.image
        from starburst_jupyter import envimage
        from starburst_jupyter.envimage import registry

        env = envimage.capture(self.config)
        if env.tag not in self._images:
            ecr = self._client("ecr")
            if not self.config.auto_build and not registry.tag_exists(ecr, self.config.ecr_repository, env.tag):
                raise envimage.BurstImageError(
                    envimage.missing_image_message(f"{self.config.ecr_repository}:{env.tag}", f"in ECR ({self.region})")
                )
            self._images[env.tag] = envimage.ensure_worker_image(
                self.config, on_progress=on_progress, job_id=job_id, ecr=ecr, env=env
            )
        self._image_ref = self._images[env.tag]
        return self._image_ref

    def _image(self) -> str:
        return self.config.image or self._image_ref or self.prepare(None)

    @property
    def store(self) -> S3ObjectStore:
        if self._store is None:
            from starburst_jupyter.stores.s3 import S3ObjectStore

            self._require_setup()
            assert self.config.bucket  # _require_setup raised otherwise
            self._store = S3ObjectStore(self.config.bucket)
            self.api_calls.attach(self._store.client, "s3")
        return self._store

    # ----- Backend protocol -----------------------------------------------------------------
    def concurrency(self, spec: JobSpec) -> int:
        """Workers of this size that fit in the vCPU quota, less what already runs in the cluster."""
        self._require_setup()
        vcpus_per_worker = spec.cpu_units / 1024
        if self.config.fargate_vcpu_quota:
            quota = Quota(float(self.config.fargate_vcpu_quota), "config")
        else:
            quota = read_quota(self._client("service-quotas"), spec.spot, self.region)
            if quota.note:
                warnings.warn(quota.note, QuotaNote, stacklevel=2)
        try:
            running = running_vcpus(self._client("ecs"), self.config.cluster)
            # warm workers of this shape run, but they are there to be taken by this very job
            now = time.time()
            if self.config.image or self._image_ref:
                running -= self.warm.waiting(self._warm_pool(spec), now) * vcpus_per_worker
        except Exception as exc:  # the cluster missing is a set-up problem, said plainly
            raise BurstBackendUnavailable(
                f"Could not list the tasks of ECS cluster {self.config.cluster!r} in {self.region}: "
                f"{error_code(exc)}: {error_message(exc)}. Run %burst_setup (or `starburst setup`)."
            ) from None
        self.quota = Quota(quota.vcpus, quota.source, running, quota.note)
        return max(1, int(self.quota.free_vcpus // vcpus_per_worker))

    def job_files(self, job_id: str) -> JobFiles:
        return JobFiles(self.store, job_id)

    def _shape(self, spec: JobSpec) -> TaskShape:
        return self._shape_of(spec.cpu_units, spec.memory_mib, spec.arch)

    def _shape_of(self, cpu_units: int, memory_mib: int, arch: str) -> TaskShape:
        """A task of this size running the job's image with our roles and log group (workers and drivers)."""
        self._require_setup()
        execution_role, task_role = self.config.execution_role_arn, self.config.task_role_arn
        assert execution_role and task_role  # _require_setup raised otherwise
        return TaskShape(
            self._image(),
            cpu_units,
            memory_mib,
            execution_role,
            task_role,
            self.config.log_group,
            self.region,
            arch,
        )

    def _warm_pool(self, spec: JobSpec) -> str:
        """Workers wait for the next job in a pool per task shape (and Spot or not): any job of that shape fits."""
        return keys.warm_pool(self._shape(spec).fingerprint(), spec.spot)

    def spec_extras(self, spec: JobSpec) -> dict[str, Any]:
        if spec.keep_warm <= 0:
            return {}
        return {"warm_pool": self._warm_pool(spec), "keep_warm_seconds": spec.keep_warm * 60}

    def warm_workers(self, files: JobFiles, refs: list[WorkerRef]) -> list[WorkerRef]:
        """(KeepsWarm) Of these workers, those that registered in the warm pool."""
        return self.warm.registered(files, refs)

    def _task_definition(self, spec: JobSpec) -> str:
        shape = self._shape(spec)
        key = shape.fingerprint()
        if key not in self._taskdefs:
            self._taskdefs[key] = ensure_task_definition(self._client("ecs"), shape)
        return self._taskdefs[key]

    def start_workers(
        self, files: JobFiles, spec: JobSpec, starts: list[WorkerStart]
    ) -> tuple[list[WorkerRef], list[LaunchFailure]]:
        """One RunTask per worker: a call's overrides apply to all of its tasks, and each worker needs its
        own index; the worker reads its budget from the job's spec. Launches are paced to Fargate's rate."""
        self._require_setup()
        taskdef = self._task_definition(spec)
        ecs = self._client("ecs")
        launch = (
            {"capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]}
            if spec.spot
            else {"launchType": "FARGATE"}
        )
        refs = self.warm.take(files, self._warm_pool(spec), starts)
        failures: list[LaunchFailure] = []
        for start in starts[len(refs) :]:
            index, wave = start.index, start.wave
            environment = [
                {"name": "STARBURST_JOB", "value": files.job_id},
                {"name": "STARBURST_WORKER", "value": str(index)},
                {"name": "STARBURST_STORE", "value": files.store.url},
                {"name": "STARBURST_PREFIX", "value": files.prefix},
                {"name": "AWS_REGION", "value": self.region},
            ]
            self.pacer.take()
            try:
                reply = ecs.run_task(
                    cluster=self.config.cluster,
                    taskDefinition=taskdef,
                    count=1,
                    startedBy=files.job_id[:128],
                    networkConfiguration=network(self.config),
                    overrides={"containerOverrides": [{"name": CONTAINER, "environment": environment}]},
                    tags=[MANAGED_TAG, {"key": "starburst:job", "value": files.job_id}],
                    clientToken=uuid.uuid4().hex,  # a RunTask botocore re-sends (timeout, 5xx) starts no second task
                    propagateTags="TASK_DEFINITION",
                    **launch,
                )
            except Exception as exc:  # botocore has already retried throttling and 5xx
                reason = f"RunTask failed: {error_code(exc)}: {error_message(exc)}"
                failures.append(
                    LaunchFailure(
                        index, wave, reason, _retryable(error_code(exc)) or error_code(exc) in ("ServerException",)
                    )
                )
                continue
            tasks, failed = reply.get("tasks", []), reply.get("failures", [])
            if tasks:
                arn = tasks[0]["taskArn"]
                refs.append(task_ref(arn, index, wave, files.job_id))
            else:
                detail = (
                    "; ".join(f"{f.get('reason', '?')}{': ' + f['detail'] if f.get('detail') else ''}" for f in failed)
                    or "no task and no reason returned"
                )
                failures.append(LaunchFailure(index, wave, f"RunTask: {detail}", _retryable(detail)))
        return refs, failures

    def start_driver(self, job_id: str, argv: list[str], env: dict[str, str]) -> str:
        """(HostsDrivers) A detached job's driver as an on-demand ECS task of the smallest size (0.25 vCPU +
        0.5 GB, ~ $0.0123/hour on-demand in us-east-1), running the workers' image with the driver role
        (config driver_role_arn, made by `starburst setup`); its task ARN. See fargate/drivers.py."""
        self._require_setup()
        shape = self._shape_of(DRIVER_CPU, DRIVER_MEMORY, self.config.arch)  # the arch the image was built for
        key = shape.fingerprint()
        try:
            if key not in self._taskdefs:
                self._taskdefs[key] = ensure_task_definition(self._client("ecs"), shape)
        except Exception as exc:  # e.g. AccessDenied on RegisterTaskDefinition
            raise BurstError(
                f"Could not register the driver's task definition for job {job_id} in {self.region} (ECS cluster "
                f"{self.config.cluster}): {error_code(exc)}: {error_message(exc)}. Nothing of the job runs yet; "
                f"check the AWS identity may register task definitions, or launch the job without detaching."
            ) from None
        return run_driver_task(self._client("ecs"), self.config, self.region, self._taskdefs[key], job_id, argv, env)

    def adopt(self, index: int, info: dict[str, Any]) -> WorkerRef:
        """A worker of a job another kernel launched, from its record (the task goes on regardless)."""
        keep = {k: v for k, v in info.items() if k not in ("wave", "started", "ended", "exit_code", "reason")}
        arn = info.get("task_arn")  # none for a worker whose launch was given up
        return WorkerRef(
            index,
            int(info.get("wave", 1)),
            float(info.get("started") or time.time()),
            handle=arn,
            info=keep,
            exit_code=info.get("exit_code", -1 if not arn else None),
            ended=info.get("ended") or (None if arn else time.time()),
            reason=info.get("reason", ""),
        )

    def _describe(self, arns: list[str]) -> dict[str, dict[str, Any]]:
        ecs = self._client("ecs")
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(arns), DESCRIBE_BATCH):
            reply = ecs.describe_tasks(cluster=self.config.cluster, tasks=arns[start : start + DESCRIBE_BATCH])
            for task in reply.get("tasks", ()):
                found[task["taskArn"]] = task
            for failure in reply.get("failures", ()):
                found.setdefault(failure.get("arn", ""), {"lastStatus": "MISSING", "reason": failure.get("reason")})
        return found

    def _unknown(self, ref: WorkerRef, reason: str, now: float) -> bool:
        """A task DescribeTasks did not find: unknown (ECS is eventually consistent after RunTask) until
        the rule says it is gone; then the worker ends with what is known, never "could not start"."""
        first, polls = self._missing.get(ref.handle, (now, 0))
        self._missing[ref.handle] = (first, polls + 1)
        age = now - ref.started  # from RunTask's reply, for a task ECS never described
        if not self.unknown_task.gone(age, polls + 1):
            return False
        del self._missing[ref.handle]
        task_id = ref.info.get("task_id", ref.handle)
        answers = f"DescribeTasks answered {reason} {polls + 1} times in {now - first:.0f} s"
        ref.exit_code, ref.ended = -1, now
        ref.reason = (
            f"ECS no longer knows task {task_id}, which it described before ({answers})"
            if ref.handle in self._seen
            else f"ECS has not known task {task_id} for {age:.0f} s since RunTask returned it ({answers})"
        ) + f"; check it with `aws ecs describe-tasks --cluster {self.config.cluster} --tasks {task_id}`"
        return True

    def poll_workers(self, refs: list[WorkerRef]) -> list[WorkerRef]:
        tasks = self._describe([r.handle for r in refs])
        ended = []
        now = time.time()
        for ref in refs:
            task = tasks.get(ref.handle)
            if task is None or task.get("lastStatus") == "MISSING":
                if self._unknown(ref, (task or {}).get("reason") or "MISSING", now):
                    ended.append(ref)
                continue
            self._missing.pop(ref.handle, None)
            self._seen.add(ref.handle)
            started = task.get("pullStartedAt") or task.get("startedAt")
            if started is not None and "warm_from" not in ref.info:  # billing starts when the image pull does
                ref.started = started.timestamp() if hasattr(started, "timestamp") else float(started)
            container: dict[str, Any] = next((c for c in task.get("containers", ()) if c.get("name") == CONTAINER), {})
            # the worker's container ends some 10-40 s before the task reports STOPPED: its exit code counts
            if task.get("lastStatus") == "STOPPED" or (
                container.get("lastStatus") == "STOPPED" and container.get("exitCode") is not None
            ):
                ref.exit_code, ref.reason = describe_stop(task)
                ref.info["holds_quota"] = task.get("lastStatus") != "STOPPED"  # (core/decisions.slot_still_held)
                stopped = task.get("stoppedAt")
                ref.ended = stopped.timestamp() if stopped is not None and hasattr(stopped, "timestamp") else now
                ended.append(ref)
        return ended

    def _stop_tasks(self, arns: Iterable[str], reason: str) -> None:
        ecs = self._client("ecs")
        for arn in arns:
            try:
                ecs.stop_task(cluster=self.config.cluster, task=arn, reason=reason[:255])
            except Exception as exc:  # an already-gone task is stopped enough
                if error_code(exc) not in ("InvalidParameterException", "ClientException"):
                    raise

    def _job_task_arns(self, job_id: str) -> list[str]:
        """Every task of the job that is running or about to, found in the cluster (not in our memory)."""
        arns: list[str] = []
        pages = (
            self._client("ecs")
            .get_paginator("list_tasks")
            .paginate(cluster=self.config.cluster, startedBy=job_id[:128], desiredStatus="RUNNING")
        )
        for page in pages:
            arns.extend(page.get("taskArns", ()))
        return arns

    def stop(self, refs: list[WorkerRef], grace: float = 2.0) -> None:
        self._stop_tasks([r.handle for r in refs], "starburst: worker stopped by the user")
        for ref in refs:
            ref.reason = ref.reason or "stopped"

    def stop_job(self, job_id: str, refs: list[WorkerRef], reason: str, keep: frozenset[str] = frozenset()) -> int:
        """StopTask every task the cluster lists for the job (but those kept warm), then check none is left."""
        arns = sorted((set(self._job_task_arns(job_id)) | {r.handle for r in refs if r.exit_code is None}) - set(keep))
        self._stop_tasks(arns, f"starburst: {reason}")
        left = set(self._job_task_arns(job_id)) - set(keep)
        if left:
            self._stop_tasks(left, f"starburst: {reason}")
        return len(arns)

    def stop_recorded(self, record: dict[str, Any]) -> int:
        """Stop the job's tasks: those the cluster lists by its startedBy, and those the record names that
        DescribeTasks shows are the job's (startedBy or the starburst:job tag equal to the job id). A record
        may be stale or wrong, so a task it names that belongs to another job is left alone; so is a worker
        taken warm from an earlier job (it carries that job's startedBy): it ends on the job's cancel marker,
        which the cancel wrote before calling this."""
        job_id = record["id"]
        named = {
            int(i): w for i, w in record.get("workers", {}).items() if w.get("task_arn") and w.get("exit_code") is None
        }
        tasks = self._describe_tagged([w["task_arn"] for w in named.values()])
        refs = [self.adopt(i, w) for i, w in named.items() if _task_of_job(tasks.get(w["task_arn"]), job_id)]
        stopped = self.stop_job(job_id, refs, "job cancelled (launching kernel gone)")
        # a detached job's driver task that is no longer heard from (its record went stale) ends too
        self._stop_tasks(driver_task_arns(self._client("ecs"), self.config.cluster, job_id), "starburst: job cancelled")
        return stopped

    def _describe_tagged(self, arns: list[str]) -> dict[str, dict[str, Any]]:
        ecs = self._client("ecs")
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(arns), DESCRIBE_BATCH):
            batch = arns[start : start + DESCRIBE_BATCH]
            reply = ecs.describe_tasks(cluster=self.config.cluster, tasks=batch, include=["TAGS"])
            found.update((task["taskArn"], task) for task in reply.get("tasks", ()))
        return found

    # ----- logs (CloudWatch: backends/fargate/logs.py) ------------------------------------------
    def tail_logs(self, files: JobFiles, refs: list[WorkerRef], cursor: Any) -> tuple[list[tuple[int, str]], Any]:
        return self.logs.tail_logs(files, refs, cursor)

    def read_log_tail(self, files: JobFiles, worker: int, lines: int) -> str:
        return self.logs.read_log_tail(files, worker, lines)

    def read_log_bytes(self, files: JobFiles, worker: int, offset: int, limit: int) -> tuple[bytes, int, int]:
        return self.logs.read_log_bytes(files, worker, offset, limit)

    def read_log(self, files: JobFiles, worker: int) -> str:
        return self.logs.read_log(files, worker)

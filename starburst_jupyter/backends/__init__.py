"""Backends: where workers run. Each implements `Backend`; the launcher is the only caller.

The protocol is batched (start many, poll many, tail many) because a cloud backend pays per API
call: one DescribeTasks covers 100 workers. Backends whose workers are local processes or
containers implement the per-worker methods of `OneByOneBackend` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from starburst_jupyter.protocol.jobfiles import JobFiles

if TYPE_CHECKING:
    from starburst_jupyter.core.spec import JobSpec


@dataclass
class WorkerRef:
    """A started worker: what the backend needs to poll and stop it, and what the record keeps."""

    index: int
    wave: int
    started: float
    handle: Any = None  # backend-private (a Popen, an ECS task ARN, a container id)
    info: dict[str, Any] = field(default_factory=dict)  # JSON-safe: pid, task arn, ...
    exit_code: int | None = None
    ended: float | None = None
    reason: str = ""


@dataclass
class LaunchFailure:
    """A worker the backend could not start now (capacity, quota, throttling): retried or reported."""

    index: int
    wave: int
    reason: str
    retryable: bool = True


#: How often a worker flushes results, checks for cancel and heartbeats (written into the job's spec).
LOCAL_TIMING = {"flush_seconds": 0.5, "control_poll_seconds": 0.2, "heartbeat_seconds": 1.0}


class Backend(Protocol):
    name: str
    timing: dict[str, float]
    poll_seconds: tuple[float, float]  # the launcher's quickest and slowest pace between polls
    log_poll_seconds: float  # how often the launcher reads new log lines

    def concurrency(self, spec: JobSpec) -> int:
        """Workers of this spec that may run at once (the quota that shapes waves)."""

    def job_files(self, job_id: str) -> JobFiles:
        """Where this backend's workers read and write the job's objects."""

    def start_workers(
        self, files: JobFiles, spec: JobSpec, starts: list[tuple[int, int, int]]
    ) -> tuple[list[WorkerRef], list[LaunchFailure]]:
        """Start workers (index, wave, budget); those that could not start now come back as failures.
        (A worker also finds its budget in the job's spec, so a backend may leave it out of the launch.)"""

    def poll_workers(self, refs: list[WorkerRef]) -> list[WorkerRef]:
        """The refs that have ended, with exit_code, ended and reason filled in."""

    def stop(self, refs: list[WorkerRef], grace: float = 2.0) -> None:
        """End these workers and wait until they are gone."""

    def stop_job(self, job_id: str, refs: list[WorkerRef], reason: str) -> int:
        """End every worker of the job (those in refs, and any other the backend can find); how many."""

    def stop_recorded(self, record: dict[str, Any]) -> int:
        """End every worker of a job the record names (used when the launching kernel is gone)."""

    def tail_logs(self, files: JobFiles, refs: list[WorkerRef], cursor: Any) -> tuple[list[tuple[int, str]], Any]:
        """New (worker, line) pairs since cursor (None at first), and the next cursor."""

    def read_log(self, files: JobFiles, worker: int) -> str:
        """A worker's whole log (also after the job ended)."""


class OneByOneBackend:
    """The batched protocol over per-worker methods, for workers that are cheap to ask one by one."""

    timing = LOCAL_TIMING
    poll_seconds = (0.002, 0.05)
    log_poll_seconds = 0.0

    def start_worker(self, files: JobFiles, index: int, wave: int, budget: int) -> WorkerRef:
        raise NotImplementedError

    def poll(self, ref: WorkerRef) -> int | None:
        raise NotImplementedError

    def log_tail(self, files: JobFiles, ref: WorkerRef, offset: int) -> tuple[str, int]:
        raise NotImplementedError

    def start_workers(self, files, spec, starts):
        return [self.start_worker(files, index, wave, budget) for index, wave, budget in starts], []

    def poll_workers(self, refs: list[WorkerRef]) -> list[WorkerRef]:
        import time

        ended = []
        for ref in refs:
            code = self.poll(ref)
            if code is not None:
                ref.exit_code, ref.ended = code, ref.ended or time.time()
                ended.append(ref)
        return ended

    def stop(self, refs: list[WorkerRef], grace: float = 2.0) -> None:
        raise NotImplementedError

    def stop_job(self, job_id: str, refs: list[WorkerRef], reason: str) -> int:
        alive = [r for r in refs if r.exit_code is None]
        if alive:
            self.stop(alive)
        return len(alive)

    def tail_logs(self, files, refs, cursor):
        offsets = dict(cursor or {})
        lines: list[tuple[int, str]] = []
        for ref in refs:
            text, offsets[ref.index] = self.log_tail(files, ref, offsets.get(ref.index, 0))
            lines.extend((ref.index, line) for line in text.splitlines())
        return lines, offsets


def get_backend(name: str, **kwargs: Any) -> Backend:
    if name == "local":
        from starburst_jupyter.backends.local import LocalBackend

        return LocalBackend(**kwargs)
    if name == "docker":
        from starburst_jupyter.backends.docker import DockerBackend

        return DockerBackend(**kwargs)
    if name == "fargate":
        from starburst_jupyter.backends.fargate.backend import FargateBackend

        return FargateBackend(**kwargs)
    raise ValueError(f"No backend named {name!r}; choose local, docker or fargate.")

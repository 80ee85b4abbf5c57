"""Backends: where workers run. Each implements `Backend`; the launcher is the only caller."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..protocol import JobFiles


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


class Backend(Protocol):
    name: str

    def concurrency(self, cpu_units: int) -> int:
        """Workers of this size that may run at once (the quota that shapes waves)."""

    def job_files(self, job_id: str) -> JobFiles:
        """Where this backend's workers read and write the job's objects."""

    def start_worker(self, files: JobFiles, index: int, wave: int, budget: int) -> WorkerRef: ...

    def poll(self, ref: WorkerRef) -> int | None:
        """Exit code once the worker has ended, else None. Fills ref.reason when known."""

    def stop(self, refs: list[WorkerRef], grace: float = 2.0) -> None:
        """End these workers and wait until they are gone."""

    def stop_recorded(self, record: dict[str, Any]) -> int:
        """End every worker a job record names (used when the launching kernel is gone)."""

    def log_tail(self, files: JobFiles, ref: WorkerRef, offset: int) -> tuple[str, int]:
        """New log text of a worker since offset, and the new offset."""

    def read_log(self, files: JobFiles, worker: int) -> str:
        """A worker's whole log (also after the job ended)."""


def get_backend(name: str, **kwargs: Any) -> Backend:
    if name == "local":
        from .local import LocalBackend

        return LocalBackend(**kwargs)
    if name == "docker":
        from .docker import DockerBackend

        return DockerBackend(**kwargs)
    if name == "fargate":
        from .fargate import FargateBackend

        return FargateBackend(**kwargs)
    raise ValueError(f"No backend named {name!r}; choose local, docker or fargate.")

"""The backend contract: a small required protocol, explicit optional capabilities, one registry.

The protocol is batched (start many, poll many, tail many) because a cloud backend pays per API
call: one DescribeTasks covers 100 workers. Backends whose workers are local processes or
containers implement the per-worker methods of `OneByOneBackend` instead. What only some backends
can do (attach, a warm pool, an image to prepare, cheap log tails, API-call counts) is a capability
protocol, looked up once by `capabilities_of`; nothing else asks a backend what it has.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from starburst_jupyter.protocol.jobfiles import JobFiles

if TYPE_CHECKING:
    from starburst_jupyter.core.config import Config
    from starburst_jupyter.core.spec import JobSpec

#: The only list of backend names: name -> "module:class" (imported when first used).
REGISTRY: dict[str, str] = {
    "local": "starburst_jupyter.backends.local:LocalBackend",
    "docker": "starburst_jupyter.backends.docker:DockerBackend",
    "fargate": "starburst_jupyter.backends.fargate.backend:FargateBackend",
}
BACKEND_NAMES: tuple[str, ...] = tuple(REGISTRY)


@dataclass(frozen=True)
class WorkerStart:
    """One worker to start: its index in the job, its wave, and how many items it may take (0: no limit)."""

    index: int
    wave: int
    budget: int


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


def worker_argv(python: str, store_url: str, files: JobFiles, start: WorkerStart) -> list[str]:
    """The command that starts one worker of a job (a local process, a container)."""
    return [
        python, "-m", "starburst_jupyter.worker", "--store", store_url, "--job", files.job_id,
        "--prefix", files.prefix, "--worker", str(start.index), "--budget", str(start.budget),
    ]  # fmt: skip


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
        self, files: JobFiles, spec: JobSpec, starts: list[WorkerStart]
    ) -> tuple[list[WorkerRef], list[LaunchFailure]]:
        """Start these workers; those that could not start now come back as failures.
        (A worker also finds its budget in the job's spec, so a backend may leave it out of the launch.)"""

    def poll_workers(self, refs: list[WorkerRef]) -> list[WorkerRef]:
        """The refs that have ended, with exit_code, ended and reason filled in."""

    def stop(self, refs: list[WorkerRef], grace: float = 2.0) -> None:
        """End these workers and wait until they are gone."""

    def stop_job(self, job_id: str, refs: list[WorkerRef], reason: str, keep: frozenset[str] = frozenset()) -> int:
        """End every worker of the job (those in refs, and any other the backend can find) but those whose
        handle is in `keep` (kept warm for the next job); how many were ended."""

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

    def start_worker(self, files: JobFiles, spec: JobSpec, start: WorkerStart) -> WorkerRef:
        raise NotImplementedError

    def poll(self, ref: WorkerRef) -> int | None:
        raise NotImplementedError

    def log_tail(self, files: JobFiles, ref: WorkerRef, offset: int) -> tuple[str, int]:
        raise NotImplementedError

    def start_workers(
        self, files: JobFiles, spec: JobSpec, starts: list[WorkerStart]
    ) -> tuple[list[WorkerRef], list[LaunchFailure]]:
        return [self.start_worker(files, spec, start) for start in starts], []

    def poll_workers(self, refs: list[WorkerRef]) -> list[WorkerRef]:
        ended = []
        for ref in refs:
            code = self.poll(ref)
            if code is not None:
                ref.exit_code, ref.ended = code, ref.ended or time.time()
                ended.append(ref)
        return ended

    def stop(self, refs: list[WorkerRef], grace: float = 2.0) -> None:
        raise NotImplementedError

    def stop_job(self, job_id: str, refs: list[WorkerRef], reason: str, keep: frozenset[str] = frozenset()) -> int:
        alive = [r for r in refs if r.exit_code is None]
        if alive:
            self.stop(alive)
        return len(alive)

    def tail_logs(self, files: JobFiles, refs: list[WorkerRef], cursor: Any) -> tuple[list[tuple[int, str]], Any]:
        offsets = dict(cursor or {})
        lines: list[tuple[int, str]] = []
        for ref in refs:
            text, offsets[ref.index] = self.log_tail(files, ref, offsets.get(ref.index, 0))
            lines.extend((ref.index, line) for line in text.splitlines())
        return lines, offsets


# ----- capabilities: what only some backends can do ----------------------------------------------
@runtime_checkable
class PreparesImage(Protocol):
    def prepare(self, spec: JobSpec | None, *, on_progress: Any = None, job_id: str = "") -> str:
        """Make or find the worker image before anything of the job is written (progress as events)."""


@runtime_checkable
class Attaches(Protocol):
    def adopt(self, index: int, info: dict[str, Any]) -> WorkerRef:
        """A WorkerRef for a worker a record names, so another process can follow the job."""


@runtime_checkable
class KeepsWarm(Protocol):
    def spec_extras(self, spec: JobSpec) -> dict[str, Any]:
        """What workers need in the job's spec to join the warm pool."""

    def warm_workers(self, files: JobFiles, refs: list[WorkerRef]) -> list[WorkerRef]:
        """Of these workers, those that went warm (they leave the job but keep running)."""


@runtime_checkable
class TailsLogsCheaply(Protocol):
    def read_log_tail(self, files: JobFiles, worker: int, lines: int) -> str:
        """A worker's last lines without reading its whole log."""

    def read_log_bytes(self, files: JobFiles, worker: int, offset: int, limit: int) -> tuple[bytes, int, int]:
        """Up to `limit` bytes of a worker's log from byte `offset` (negative: that many bytes before its end):
        (the bytes, the offset they start at, the log's size). A poll then costs what it returns (a log file
        is read by seeking; a log service without byte offsets may read more, but returns no more)."""


@runtime_checkable
class HostsDrivers(Protocol):
    driver_shape: tuple[int, int]  # (CPU units, memory MiB) a driver is billed for

    def start_driver(self, job_id: str, argv: list[str], env: dict[str, str]) -> str:
        """Run a detached job's driver (`python` + argv, with env) on the backend's own infrastructure, so the
        job goes on with the launching machine switched off; returns what the driver is (e.g. its task ARN).
        Backends without this run the driver as a process of the launching machine."""


@runtime_checkable
class CountsApiCalls(Protocol):
    api_calls: Any  # .for_job(job_id) -> {call: count}


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond the required protocol (None: it cannot)."""

    image: PreparesImage | None = None
    attach: Attaches | None = None
    warm: KeepsWarm | None = None
    log_tail: TailsLogsCheaply | None = None
    api_calls: CountsApiCalls | None = None
    drivers: HostsDrivers | None = None


def capabilities_of(backend: Backend) -> Capabilities:
    """The one place that asks a backend what it can do."""

    def having(kind: type) -> Any:
        return backend if isinstance(backend, kind) else None

    return Capabilities(
        image=having(PreparesImage),
        attach=having(Attaches),
        warm=having(KeepsWarm),
        log_tail=having(TailsLogsCheaply),
        api_calls=having(CountsApiCalls),
        drivers=having(HostsDrivers),
    )


def make_backend(name: str, config: Config, home: Path | None = None) -> Backend:
    """Every backend is built the same way: from the config and the starburst home."""
    try:
        module, cls = REGISTRY[name].split(":")
    except KeyError:
        raise ValueError(f"No backend named {name!r}; choose {', '.join(BACKEND_NAMES)}.") from None
    backend: Backend = getattr(importlib.import_module(module), cls)(config=config, home=home)
    return backend

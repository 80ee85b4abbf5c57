"""spec.json: what a job's workers are told, written once by the driver and read by every worker.

One dataclass and one codec, so the writer and the reader cannot disagree on a name or a default. The
JSON is flat (as it always was): the worker's fields next to the job's own options (JobSpec.to_json(),
kept in `job` for display and attach; the worker reads none of them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

OPEN_JOB_IDLE_SECONDS = 30.0  # how long a worker of an open job (BurstExecutor) waits for more work


@dataclass(frozen=True)
class Timing:
    """How often a worker flushes results, checks for cancel and heartbeats. Each backend sets its own pace
    (a cloud backend pays per request); these defaults are the local backends' pace. The driver stretches
    the cancel check and the heartbeat with the number of workers (core/decisions.worker_timing), so a job's
    control requests per second stay bounded; a worker jitters its checks around them."""

    flush_seconds: float = 0.5
    control_poll_seconds: float = 0.2
    heartbeat_seconds: float = 1.0


@dataclass(frozen=True)
class PlanShare:
    """The plan's waves as a worker sees them. A worker no longer exits when its share is done: it carries on
    into its next wave's share (no cold start per wave), so `budget` is the size of one share (progress, in
    its log and for the driver's wave count after an attach), never a limit."""

    workers: int = 0  # workers planned (0: no plan)
    budget: int = 0  # items of one worker's share of a wave (0: one wave)

    def budget_for(self, index: int) -> int:
        """Items of planned worker `index`'s share of its wave (0: it takes what the others left over)."""
        return self.budget if index < self.workers - 1 else 0


_REQUIRED = ("job_id", "deadline", "max_result_bytes")


@dataclass
class WorkerSpec:
    job_id: str
    deadline: float  # epoch seconds; a worker past it exits even mid-item
    max_result_bytes: int  # an item's result above this is reported as ResultTooLarge
    timing: Timing = field(default_factory=Timing)
    plan: PlanShare = field(default_factory=PlanShare)
    open: bool = False  # an open job (BurstExecutor): idle workers wait for more blocks
    idle_seconds: float = 0.0  # how long they wait (OPEN_JOB_IDLE_SECONDS for an open job)
    warm_pool: str | None = None  # the pool a finished worker waits in (None: keep none warm)
    keep_warm_seconds: float = 0.0
    job: dict[str, Any] = field(default_factory=dict)  # the job's options, as JobSpec.to_json() wrote them

    def __post_init__(self) -> None:
        # the worker's own fields win over same-named job options (max_result_bytes is both)
        self.job = {k: v for k, v in self.job.items() if k not in _OWN_KEYS}

    def to_json(self) -> dict[str, Any]:
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("timing", "plan", "job")}
        return {**self.job, **asdict(self.timing), **own, "plan": asdict(self.plan)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerSpec:
        """Tolerant of keys it does not know (they stay in `job`); strict about the ones a worker needs."""
        missing = [k for k in _REQUIRED if data.get(k) is None]
        if missing:
            raise ValueError(
                f"The job's spec.json lacks {', '.join(missing)}: it was not written by this version of "
                f"starburst-jupyter, or was cut short."
            )
        timing = {f.name: float(data[f.name]) for f in fields(Timing) if data.get(f.name) is not None}
        plan = data.get("plan") or {}
        return cls(
            job_id=str(data["job_id"]),
            deadline=float(data["deadline"]),
            max_result_bytes=int(data["max_result_bytes"]),
            timing=Timing(**timing),
            plan=PlanShare(int(plan.get("workers", 0)), int(plan.get("budget", 0))),
            open=bool(data.get("open", False)),
            idle_seconds=float(data.get("idle_seconds") or 0.0),
            warm_pool=data.get("warm_pool") or None,
            keep_warm_seconds=float(data.get("keep_warm_seconds") or 0.0),
            job={k: v for k, v in data.items() if k not in _OWN_KEYS},
        )

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), indent=1).encode()

    @classmethod
    def decode(cls, raw: bytes | bytearray) -> WorkerSpec:
        return cls.from_json(json.loads(raw))


_OWN_KEYS = frozenset(
    {f.name for f in fields(WorkerSpec) if f.name not in ("timing", "job")} | {f.name for f in fields(Timing)}
)

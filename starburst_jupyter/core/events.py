"""The stream of job events any face can observe (widgets, terminal progress, tests).

The core publishes; subscribers must be quick and must not raise (errors are swallowed and
counted, so a broken display can never break a job).
"""

from __future__ import annotations

import math
import threading
import time
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Event:
    job_id: str
    at: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class JobStateChanged(Event):
    state: str  # queued, launching, running, collecting, done, failed, cancelled
    message: str = ""


@dataclass(frozen=True)
class WaveStarted(Event):
    wave: int  # 1-based
    waves: int
    workers: int


@dataclass(frozen=True)
class WaveFinished(Event):
    wave: int
    waves: int


@dataclass(frozen=True)
class WorkerStarted(Event):
    worker: int
    wave: int
    pid: int | None = None


@dataclass(frozen=True)
class WorkerExited(Event):
    worker: int
    exit_code: int | None
    reason: str = ""


@dataclass(frozen=True)
class WorkerLaunchFailed(Event):
    """The backend could not start a worker now (capacity, quota, throttling)."""

    worker: int
    reason: str
    retry_in: float | None  # seconds until the next attempt; None: given up


@dataclass(frozen=True)
class TaskStarted(Event):
    worker: int
    indices: tuple[int, ...]


@dataclass(frozen=True)
class TaskFinished(Event):
    index: int
    worker: int
    duration: float


@dataclass(frozen=True)
class TasksFinished(Event):
    """A flushed batch of one worker's items that succeeded, as one event (core/ledger.PER_ITEM_EVENTS): a
    million-item job publishes (and journals) one event per batch, not per item."""

    worker: int
    indices: tuple[int, ...]
    duration: float  # seconds the batch's items took, in all


@dataclass(frozen=True)
class TaskFailed(Event):
    index: int
    worker: int
    error: str  # one line
    traceback: str = ""


@dataclass(frozen=True)
class TaskRetried(Event):
    index: int
    attempt: int
    reason: str


@dataclass(frozen=True)
class LogLine(Event):
    worker: int
    line: str


@dataclass(frozen=True)
class CostTick(Event):
    accrued: float
    projected: float
    cap: float | None
    label: str  # e.g. "Fargate us-east-1 on-demand (estimate for local work)"


@dataclass(frozen=True)
class JobFinished(Event):
    state: str
    done: int
    failed: int
    total: int
    duration: float
    cost: float
    message: str = ""


@dataclass(frozen=True)
class ImageBuildProgress(Event):
    """Making the worker image (envimage): checking, assembling the build context, building, pushing,
    or reusing an image that exists. job_id is "" when no job is running yet (e.g. %burst_rebuild)."""

    phase: str  # check, context, build, push, reuse, done
    message: str
    current: int | None = None  # build step or bytes pushed so far
    total: int | None = None  # build steps or bytes to push
    image: str = ""  # the image reference being made


Subscriber = Callable[[Event], None]


def to_json(event: Event) -> dict[str, Any]:
    """An event as JSON (a detached driver journals them; a kernel anywhere replays them)."""
    return {"type": type(event).__name__, **asdict(event)}


def from_json(data: Any) -> Event | None:
    """The event `to_json` wrote; None for a type this version does not know (a newer driver's) and for a damaged
    entry: not an object, a field missing, or a field not of its type (text, a finite number, an integer a
    JavaScript number holds, a list of such integers). A journal comes from a store others can write: an event a
    face would choke on (`indices: "abc"`, `done: 1e400`) is dropped here, not published."""
    if not isinstance(data, dict):
        return None
    kind = _KINDS.get(str(data.get("type")))
    if kind is None:
        return None
    hints = _hints(kind)
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in hints:
            continue
        if isinstance(value, list):
            value = tuple(value)
        if not _fits(value, hints[name]):
            return None
        values[name] = value
    try:
        return kind(**values)
    except TypeError:  # a field missing: a damaged or foreign entry
        return None


_MAX_INT = 2**53  # (what a JavaScript number holds exactly: the sidebar's)


_HINTS: dict[str, dict[str, Any]] = {}


def _hints(kind: type[Event]) -> dict[str, Any]:
    """An event's fields and their types (resolved once per kind: the module uses postponed annotations)."""
    hints = _HINTS.get(kind.__name__)
    if hints is None:
        resolved = typing.get_type_hints(kind)
        hints = _HINTS[kind.__name__] = {f.name: resolved[f.name] for f in fields(kind)}
    return hints


def _fits(value: Any, hint: Any) -> bool:
    """Is `value` (parsed JSON, lists made tuples) of the field type `hint`?"""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(_fits(item, args[0]) for item in value)
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    if hint is int:
        return isinstance(value, int) and abs(value) <= _MAX_INT
    if hint is float:
        return isinstance(value, (int, float)) and math.isfinite(value) and abs(value) <= 1e300
    return isinstance(value, hint) if isinstance(hint, type) else True


_KINDS: dict[str, type[Event]] = {
    k.__name__: k
    for k in (
        JobStateChanged, WaveStarted, WaveFinished, WorkerStarted, WorkerExited, WorkerLaunchFailed, TaskStarted,
        TaskFinished, TasksFinished, TaskFailed, TaskRetried, LogLine, CostTick, JobFinished, ImageBuildProgress,
    )
}  # fmt: skip


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, tuple[type, ...]]] = []
        self._lock = threading.Lock()
        self.subscriber_errors = 0

    def subscribe(self, callback: Subscriber, *kinds: type[Event]) -> Callable[[], None]:
        """Call `callback` for each event (of `kinds`, if given); returns an unsubscribe function."""
        entry = (callback, kinds or (Event,))
        with self._lock:
            self._subscribers.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._subscribers:
                    self._subscribers.remove(entry)

        return unsubscribe

    def wants(self, kind: type[Event]) -> bool:
        with self._lock:
            return any(issubclass(kind, kinds) for _, kinds in self._subscribers)

    def publish(self, event: Event) -> None:
        with self._lock:
            targets = [cb for cb, kinds in self._subscribers if isinstance(event, kinds)]
        for callback in targets:
            try:
                callback(event)
            except Exception:
                self.subscriber_errors += 1

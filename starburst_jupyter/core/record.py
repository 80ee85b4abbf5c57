"""The job record: what a job is and became, written by the core and read by every face.

One record per job lives at $STARBURST_HOME/jobs/<id>/record.json (stores/records.py keeps them).
`JobRecord` is the only definition of its fields:

* one writer path: `JobRecord.to_json()` (a JSON-safe dict) / `dumps()` (strict JSON: NaN and
  Infinity are refused with the field's name, so no reader ever gets invalid JSON);
* one tolerant reader: `JobRecord.from_json(data)` takes bytes, text or a parsed value and never
  raises. Missing optional fields get their defaults; a field of the wrong type, a missing `id`,
  `state` or `created`, undecodable bytes or a JSON value that is not an object give a record
  whose `damaged` says why (and whose state is `failed` when it could not be read), so one bad
  record shows as damaged while the other jobs still list.

How faces read a record: take a `JobRecord` from the store (`JobStore.read_record/find_record/
list_records`, `JobIndex.job_records/get_record`), or turn whatever dict you hold into one with
`as_record(value)`, then use its typed attributes and methods (`state`, `is_active`, `is_terminal`,
`cost.accrued`, `cost_is_estimate`, `workers[i].exit_code`, `outcome_counts()`, `damaged`...) rather
than `record.get(key, default)`: the defaults live here, once. The stores' dict methods (`read`,
`find`, `list`, `records`, `get`) return `to_json()` of such a record, so a dict from them always
has every field with the right type.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OWNER_GONE_NOTE",
    "OWNER_SILENT_SECONDS",
    "Cost",
    "Failure",
    "JobRecord",
    "JobState",
    "Outcome",
    "Owner",
    "RecordError",
    "Waves",
    "WorkerRecord",
    "as_record",
    "cost_is_estimate",
]

OWNER_SILENT_SECONDS = 60.0  # a live driver rewrites its record every few seconds at most
STOPPED_WITHOUT_OWNER = "stopped: job cancelled (launching kernel gone)"
OWNER_GONE_NOTE = "kernel gone: attach or cancel"  # after the state of an active job nobody follows


def cost_is_estimate(backend: str) -> bool:
    """Is a job's cost an estimate or the bill? The one place that decides it: a fargate job's cost is what AWS
    bills; local and docker jobs (and any backend not known to bill) show what the same work would cost on
    Fargate."""
    return backend != "fargate"


class RecordError(ValueError):
    """A record that cannot be written as it is (e.g. a NaN where JSON needs a number)."""


class JobState(str, enum.Enum):
    QUEUED = "queued"
    LAUNCHING = "launching"
    RUNNING = "running"
    COLLECTING = "collecting"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
TERMINAL_STATES = tuple(s.value for s in JobState if s in TERMINAL)
ACTIVE_STATES = tuple(s.value for s in JobState if s not in TERMINAL)


class Outcome(str, enum.Enum):
    """What became of one item; a record keeps them as one letter per item (`outcomes`)."""

    DONE = "D"
    FAILED = "F"
    CANCELLED = "C"
    RUNNING = "R"
    PENDING = "P"

    @property
    def label(self) -> str:
        return self.name.lower()


_OUTCOME_LETTERS = frozenset(o.value for o in Outcome)
#: Outcomes of more items than this are written as runs ("outcome_runs": "999990D10R"): a record stays a few
#: hundred bytes at a million items, written twice a second, instead of a megabyte. Outcomes that do not fall
#: in runs (more than MAX_RUNS of them) stay letters: encoding them would cost more than it saves.
RUNS_ABOVE = 4096
MAX_RUNS = 2000
_LETTER_RUN = re.compile("|".join(f"{o.value}+" for o in Outcome))
#: One run as the writer makes it: a count of at most 9 digits (MAX_ITEMS has 9) and an outcome letter. A count
#: of 20 digits is refused here, before `int()` or `letter * count` could raise OverflowError or ask for gigabytes.
_RUN = re.compile("([0-9]{1,9})([" + "".join(o.value for o in Outcome) + "])")
_RUNS = re.compile(f"(?:{_RUN.pattern})*")

#: The most items a record may say a job has. A job's ledger costs about 120 bytes per item in the kernel that
#: collects it (1M items: 123 MB, docs/benchmarks.md), so no job of more ever finished; a record claiming more
#: (`total: 1e11`, `"outcome_runs": "4000000000D"`) is damaged, never allocated.
MAX_ITEMS = 100_000_000
#: The bounds of a time a record holds (epoch seconds): from 1970 to the end of year 9999, the range
#: `time.localtime` and the faces' date formats handle. A time outside it is a damaged field, not a date.
MAX_TIME = 253_402_300_799.0
#: The most seconds or USD a record's durations and costs may hold (a thousand years of busy seconds, a
#: trillion dollars): beyond that a number is damage, and sums or rates of it would overflow to infinity.
MAX_AMOUNT = 1e12
#: Process ids, exit codes and other plain counters: what a JavaScript number holds exactly (the sidebar's).
MAX_COUNTER = 2**53
#: The largest record.json a reader takes (outcome letters of MAX_ITEMS items and room for the rest): a bigger
#: file is damaged, and is not read whole. The same as protocol/jobfiles.MAX_RECORD_BYTES (the store's copy).
MAX_RECORD_BYTES = 128 << 20


def outcome_runs(outcomes: str) -> str | None:
    """'DDDDR' -> '4D1R'; None when there are more than MAX_RUNS runs."""
    pieces = []
    for n, match in enumerate(_LETTER_RUN.finditer(outcomes)):
        if n >= MAX_RUNS:
            return None
        start, end = match.span()
        pieces.append(f"{end - start}{outcomes[start]}")
    return "".join(pieces)


def parse_runs(runs: str) -> list[tuple[int, str]] | None:
    """'4D1R' -> [(4, 'D'), (1, 'R')]; None when `runs` is not that form (a damaged record). Nothing is
    expanded: the caller checks the counts' sum before it asks for that many letters."""
    if not _RUNS.fullmatch(runs):
        return None
    return [(int(count), letter) for count, letter in _RUN.findall(runs)]


def expand_runs(runs: str, limit: int = MAX_ITEMS) -> str | None:
    """'4D1R' -> 'DDDDR'; None when `runs` is not that form or counts more than `limit` items (a damaged
    record: never a string of gigabytes)."""
    pieces = parse_runs(runs)
    if pieces is None or sum(count for count, _ in pieces) > limit:
        return None
    return "".join(letter * count for count, letter in pieces)


# ----- field readers: value or None (ill-typed) ---------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value)


class _Reader:
    """Reads typed fields out of a mapping, noting every problem under its dotted path."""

    def __init__(self, data: Mapping[str, Any], problems: list[str], prefix: str = ""):
        self.data, self.problems, self.prefix = data, problems, prefix

    def bad(self, key: str, what: str) -> None:
        self.problems.append(f"{self.prefix}{key} {what}")

    def _get(self, key: str, convert: Any, kind: str, default: Any, required: bool, nullable: bool) -> Any:
        if key not in self.data:
            if required:
                self.bad(key, "is missing")
            return default
        raw = self.data[key]
        if raw is None:
            if nullable:
                return None
            self.bad(key, f"is null, not {kind}")
            return default
        value = convert(raw)
        if value is None:
            self.bad(key, f"is {_show(raw)}, not {kind}")
            return default
        return value

    def number(
        self,
        key: str,
        default: float | None = 0.0,
        *,
        required: bool = False,
        nullable: bool = False,
        low: float = 0.0,
        high: float = MAX_AMOUNT,
    ) -> Any:
        """A finite number from `low` to `high` (by default an amount: seconds or USD)."""
        value = self._get(key, _number, "a finite number", default, required, nullable)
        if value is not None and not low <= value <= high:
            self.bad(key, f"is {value:g}, outside {low:g} to {high:g}")
            return default
        return value

    def time(self, key: str, *, required: bool = False) -> Any:
        """Epoch seconds from 1970 to year 9999 (None when absent or null, unless `required`)."""
        default = 0.0 if required else None
        return self.number(key, default, required=required, nullable=not required, high=MAX_TIME)

    def integer(
        self,
        key: str,
        default: int | None = 0,
        *,
        nullable: bool = False,
        minimum: int | None = 0,
        maximum: int = MAX_COUNTER,
    ) -> Any:
        value = self._get(key, _integer, "an integer", default, False, nullable)
        if value is not None and minimum is not None and value < minimum:
            self.bad(key, f"is {value}, below {minimum}")
            return default
        if value is not None and abs(value) > maximum:
            self.bad(key, f"is {_show(value)}, above {maximum:,}")
            return default
        return value

    def count(self, key: str, default: int = 0) -> Any:
        """A number of items: 0 to MAX_ITEMS."""
        return self.integer(key, default, maximum=MAX_ITEMS)

    def text(self, key: str, default: str | None = "", *, required: bool = False, nullable: bool = False) -> Any:
        return self._get(key, lambda v: v if isinstance(v, str) else None, "text", default, required, nullable)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self._get(key, lambda v: dict(v) if isinstance(v, Mapping) else None, "an object", {}, False, True)
        copied: dict[str, Any] = _finite_copy(value or {}, self.prefix + key, self.problems)
        return copied

    def sequence(self, key: str) -> list[Any]:
        return (
            self._get(key, lambda v: list(v) if isinstance(v, (list, tuple)) else None, "a list", [], False, True) or []
        )


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return repr(value)[:40]


# ----- the parts ------------------------------------------------------------------------------------
@dataclass
class Waves:
    count: int = 1
    started: int = 0
    finished: int = 0
    concurrency: int = 1
    workers: int = 1

    @classmethod
    def read(cls, data: Mapping[str, Any], problems: list[str]) -> Waves:
        r, defaults = _Reader(data, problems, "waves."), cls()
        return cls(**{f.name: r.count(f.name, getattr(defaults, f.name)) for f in dataclasses.fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class WorkerRecord:
    """One worker of the job; `info` keeps what its backend recorded to find it again (task_arn, container...)."""

    wave: int = 1
    pid: int | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    KNOWN = ("wave", "pid", "started", "ended", "exit_code", "reason")

    @classmethod
    def read(cls, data: Any, problems: list[str], prefix: str) -> WorkerRecord:
        if not isinstance(data, Mapping):
            problems.append(f"{prefix} is {_show(data)}, not an object")
            return cls()
        r = _Reader(data, problems, prefix + ".")
        return cls(
            wave=r.count("wave", 1),
            pid=r.integer("pid", None, nullable=True, minimum=None),
            started=r.time("started"),
            ended=r.time("ended"),
            exit_code=r.integer("exit_code", None, nullable=True, minimum=None),
            reason=r.text("reason", None, nullable=True),
            info=_finite_copy({k: v for k, v in data.items() if k not in cls.KNOWN}, prefix, problems),
        )

    @property
    def has_exited(self) -> bool:
        return self.exit_code is not None or bool(self.ended)

    def to_json(self) -> dict[str, Any]:
        return {**self.info, **{k: getattr(self, k) for k in self.KNOWN}}


@dataclass
class Cost:
    accrued: float = 0.0
    projected: float = 0.0
    cap: float | None = None
    warm_at_most: float = 0.0
    label: str = ""
    prices_as_of: str = ""

    @classmethod
    def read(cls, data: Mapping[str, Any], problems: list[str]) -> Cost:
        r = _Reader(data, problems, "cost.")
        return cls(
            accrued=r.number("accrued"),
            projected=r.number("projected"),
            cap=r.number("cap", None, nullable=True),  # (0 to MAX_AMOUNT, as every amount)
            warm_at_most=r.number("warm_at_most"),
            label=r.text("label"),
            prices_as_of=r.text("prices_as_of"),
        )


@dataclass
class Failure:
    index: int
    error: str


@dataclass
class Owner:
    """The process that drives the job: the kernel that launched it, or a detached driver (a process of its
    own, or an ECS task: `task`) that goes on whether or not any kernel lives."""

    pid: int | None = None
    host: str | None = None
    detached: bool = False
    task: str | None = None  # a detached driver's ECS task ARN


# ----- the record -----------------------------------------------------------------------------------
_TOP_LEVEL = (
    "id name backend state message created started finished spec total done failed cancelled outcomes outcome_runs "
    "failures busy_seconds waves workers cost store owner updated api_calls polls damaged"
).split()


@dataclass
class JobRecord:
    id: str
    backend: str = ""
    state: JobState = JobState.QUEUED
    created: float = 0.0
    name: str | None = None
    message: str = ""
    started: float | None = None
    finished: float | None = None
    updated: float | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    total: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    outcomes: str = ""  # one Outcome letter per item
    failures: list[Failure] = field(default_factory=list)
    busy_seconds: float = 0.0
    waves: Waves = field(default_factory=Waves)
    workers: dict[int, WorkerRecord] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    store: dict[str, Any] = field(default_factory=dict)
    owner: Owner = field(default_factory=Owner)
    api_calls: dict[str, Any] | None = None
    polls: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know, kept as they are
    problems: list[str] = field(default_factory=list)  # why the record is damaged (empty: it is not)

    # ----- what faces ask --------------------------------------------------------------------
    @property
    def damaged(self) -> str | None:
        return "; ".join(self.problems) if self.problems else None

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def is_active(self) -> bool:
        return not self.state.is_terminal

    @property
    def cost_is_estimate(self) -> bool:
        return cost_is_estimate(self.backend)

    def elapsed(self, now: float) -> float | None:
        """Seconds from start (or creation) to the end, or to `now` while the job is active."""
        start = self.started if self.started is not None else (self.created or None)
        if start is None:
            return None
        end = self.finished if self.finished is not None else (None if self.is_terminal else now)
        return max(0.0, end - start) if end is not None else None

    def outcome_counts(self) -> dict[Outcome, int]:
        return {o: self.outcomes.count(o.value) for o in Outcome}

    def worker_running(self, worker: WorkerRecord) -> bool:
        """A worker without an exit is running, unless its job ended (a cancel whose kernel was gone stops the
        workers but may not record their exits)."""
        return not self.is_terminal and not worker.has_exited

    def owner_alive(self, now: float | None = None) -> bool:
        """Is the kernel that launched the job still following it? A record nobody rewrote for a minute says
        no, wherever its owner was (another host, a replaced container, a pid now used by something else)."""
        now = time.time() if now is None else now
        if now - (self.updated if self.updated is not None else now) > OWNER_SILENT_SECONDS:
            return False
        if self.owner.host != socket.gethostname():
            return True  # cannot tell from here, and it wrote recently
        if self.owner.detached and not self.owner.pid:
            return True  # a detached driver starting: the launching kernel wrote this recently
        if not self.owner.pid or self.owner.pid <= 0:
            return False
        try:
            os.kill(self.owner.pid, 0)
        except (ProcessLookupError, ValueError, OverflowError):
            return False
        except PermissionError:
            return True
        return True

    def owner_gone(self, now: float | None = None) -> bool:
        """An active job that no kernel follows any more (it was SIGKILLed, or its host went away): the record
        says `running` but nothing will move it on. Every face shows it as such, with the way out (attach or
        cancel), rather than as a phantom running job."""
        return self.is_active and not self.owner_alive(now)

    def state_label(self, now: float | None = None) -> str:
        """The state as faces show it: `running (kernel gone: attach or cancel)` for a job nobody follows,
        `... (damaged record)` for a record that could not be read as it is."""
        if self.damaged:
            return f"{self.state.value} (damaged record)"
        if self.owner_gone(now):
            return f"{self.state.value} ({OWNER_GONE_NOTE})"
        return self.state.value

    def owner_gone_hint(self) -> str:
        """What to do about a job whose kernel is gone (one line, naming the job)."""
        owner = f"pid {self.owner.pid} on {self.owner.host}" if self.owner.pid else "its kernel"
        return (
            f"the kernel that launched job {self.id} ({owner}) no longer follows it; its workers may still run. "
            f"%burst_attach {self.id} collects its results, %burst_cancel {self.id} (or `starburst cancel "
            f"{self.id}`) ends it."
        )

    def cancelled_without_owner(
        self, reason: str, stopped: int, now: float, note: str = "launching kernel gone"
    ) -> JobRecord:
        """This record once a job whose launching kernel is gone was cancelled from elsewhere (or by that kernel
        on its way out: `note` says which): workers without an exit were stopped, items running or pending are
        cancelled. A terminal record is returned unchanged."""
        if self.is_terminal:
            return self
        workers = {
            index: w
            if w.exit_code is not None
            else dataclasses.replace(w, exit_code=-1, ended=now, reason=f"stopped: job cancelled ({note})")
            for index, w in self.workers.items()
        }
        stop: dict[str, str | int | None] = {
            Outcome.RUNNING.value: Outcome.CANCELLED.value,
            Outcome.PENDING.value: Outcome.CANCELLED.value,
        }
        outcomes = self.outcomes.translate(str.maketrans(stop))
        return dataclasses.replace(
            self,
            state=JobState.CANCELLED,
            message=f"{reason} ({stopped} workers stopped; {note})",
            finished=now,
            updated=now,
            workers=workers,
            outcomes=outcomes,
            cancelled=outcomes.count(Outcome.CANCELLED.value),
        )

    # ----- the one writer ----------------------------------------------------------------------
    def outcomes_json(self) -> dict[str, str]:
        """The outcomes as the record and the server write them: letters, or runs for a big job."""
        runs = outcome_runs(self.outcomes) if len(self.outcomes) > RUNS_ABOVE else None
        return {"outcomes": self.outcomes} if runs is None else {"outcomes": "", "outcome_runs": runs}

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-safe values (the file's content). Raises RecordError on a non-finite number."""
        data: dict[str, Any] = {
            **self.extra,
            "id": self.id,
            "name": self.name,
            "backend": self.backend,
            "state": self.state.value,
            "message": self.message,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "spec": self.spec,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "cancelled": self.cancelled,
            **self.outcomes_json(),
            "failures": [{"index": f.index, "error": f.error} for f in self.failures],
            "busy_seconds": self.busy_seconds,
            "waves": self.waves.to_json(),
            "workers": {str(i): w.to_json() for i, w in sorted(self.workers.items())},
            "cost": {**dataclasses.asdict(self.cost), "estimate": self.cost_is_estimate},
            "store": self.store,
            "owner": {
                "pid": self.owner.pid,
                "host": self.owner.host,
                **({"detached": True, "task": self.owner.task} if self.owner.detached else {}),
            },
            "updated": self.updated,
        }
        if self.api_calls is not None:
            data["api_calls"] = self.api_calls
        if self.polls is not None:
            data["polls"] = self.polls
        if self.problems:
            data["damaged"] = self.damaged
        check_finite(data, f"job record {self.id}")
        return data

    def dumps(self) -> str:
        """Strict JSON text of the record (what the job store writes)."""
        return json.dumps(self.to_json(), allow_nan=False, default=str)

    # ----- the one reader ----------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Any, job_id: str | None = None) -> JobRecord:
        """A record from bytes, text or a parsed value; never raises. `job_id` (the folder it was found in)
        names a record that has no readable id."""
        problems: list[str] = []
        if isinstance(data, (bytes, bytearray, memoryview)):
            try:
                data = bytes(data).decode("utf-8")
            except UnicodeDecodeError as exc:
                return cls.unreadable(job_id, f"record.json is not UTF-8 text ({exc.reason} at byte {exc.start})")
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except (ValueError, RecursionError) as exc:
                return cls.unreadable(job_id, f"record.json is not JSON ({str(exc)[:80]})")
        if not isinstance(data, Mapping):
            return cls.unreadable(job_id, f"record.json holds {_show(data)}, not an object")
        r = _Reader(data, problems)
        record_id = r.text("id", None, required=True)
        if job_id is not None and record_id is not None and record_id != job_id:
            problems.append(f"id {record_id[:40]!r} is not its folder's name")
        record_id = job_id if job_id is not None else (record_id or "?")
        state_raw = data.get("state")
        try:
            state = JobState(state_raw)
        except ValueError:
            problems.append("state is missing" if "state" not in data else f"state {_show(state_raw)} is not a state")
            state = JobState.FAILED  # not known to run: no face shows it as a phantom running job
        total = r.count("total")
        outcomes = _read_outcomes(r, total)
        failed = r.count("failed")
        if "cancelled" in data:  # items a cancel stopped: counted apart from failures
            cancelled = r.count("cancelled")
        else:  # records written before the core counted them counted them among the failed
            cancelled = outcomes.count(Outcome.CANCELLED.value)
            failed = max(0, failed - cancelled)
        done = r.count("done")
        workers: dict[int, WorkerRecord] = {}
        for key, info in r.mapping("workers").items():
            index = int(key) if isinstance(key, str) and _WORKER_KEY.fullmatch(key) else None
            if index is None:
                problems.append(f"workers has a key {str(key)[:20]!r} that is not a worker number")
                continue
            workers[index] = WorkerRecord.read(info, problems, f"workers.{index}")
        failures = []
        for n, item in enumerate(r.sequence("failures")):
            index = _integer(item.get("index")) if isinstance(item, Mapping) else None
            error = item.get("error") if isinstance(item, Mapping) else None
            if index is None or not 0 <= index < MAX_ITEMS or not isinstance(error, str):
                problems.append(f"failures.{n} is not an index and an error")
                continue
            failures.append(Failure(index, error))
        spec = _read_spec(r, problems)
        owner = r.mapping("owner")
        o = _Reader(owner, problems, "owner.")
        api_calls = r.mapping("api_calls") if "api_calls" in data else None
        damaged_before = r.text("damaged", None, nullable=True)
        if damaged_before:
            problems.insert(0, damaged_before)
        return cls(
            id=record_id,
            backend=r.text("backend", required=True),
            state=state,
            created=r.time("created", required=True),
            name=r.text("name", None, nullable=True),
            message=r.text("message", "", nullable=True) or "",
            started=r.time("started"),
            finished=r.time("finished"),
            updated=r.time("updated"),
            spec=spec,
            total=total,
            done=done,
            failed=failed,
            cancelled=cancelled,
            outcomes=outcomes,
            failures=failures,
            busy_seconds=r.number("busy_seconds"),
            waves=Waves.read(r.mapping("waves"), problems),
            workers=workers,
            cost=Cost.read(r.mapping("cost"), problems),
            store=r.mapping("store"),
            owner=Owner(
                pid=o.integer("pid", None, nullable=True, minimum=None),
                host=o.text("host", None, nullable=True),
                detached=o.data.get("detached") is True,
                task=o.text("task", None, nullable=True),
            ),
            api_calls=api_calls,
            polls=r.integer("polls", None, nullable=True),  # (0 to MAX_COUNTER)
            extra=_finite_copy({k: v for k, v in data.items() if k not in _TOP_LEVEL}, "", problems),
            problems=problems,
        )

    @classmethod
    def unreadable(cls, job_id: str | None, problem: str) -> JobRecord:
        return cls(id=job_id or "?", state=JobState.FAILED, message=f"damaged record: {problem}", problems=[problem])


_WORKER_KEY = re.compile("[0-9]{1,9}")  # (str.isdigit() takes '²', and int() of 5,000 digits raises)

#: What a JobSpec field in a record's spec must be. Fields missing are left to whoever builds a JobSpec of it
#: (core/spec.spec_from_record names them); a field of another type is damage: `attach` would build a JobSpec of it.
_TEXT = "mode backend on_error region arch name source map_expr".split()
_WHOLE = "cpu_units memory_mib max_result_bytes retries".split()
_SPEC_TYPES: dict[str, tuple[str, Any]] = {
    **{key: ("text", lambda v: isinstance(v, str)) for key in _TEXT},
    **{key: ("a whole number", lambda v: _integer(v) is not None) for key in _WHOLE},
    "workers": ("a whole number or null", lambda v: v is None or _integer(v) is not None),
    "timeout": ("a finite number", lambda v: _number(v) is not None),
    "keep_warm": ("a finite number", lambda v: _number(v) is not None),
    "max_cost": ("a finite number or null", lambda v: v is None or _number(v) is not None),
    "spot": ("true or false", lambda v: isinstance(v, bool)),
    "extra": ("an object", lambda v: isinstance(v, Mapping)),
}


def _read_spec(r: _Reader, problems: list[str]) -> dict[str, Any]:
    """The job's spec: an object whose known fields have their types (a field of another type is left out and
    noted)."""
    spec = r.mapping("spec")
    for key, (kind, fits) in _SPEC_TYPES.items():
        if key in spec and not fits(spec[key]):
            problems.append(f"spec.{key} is {_show(spec[key])}, not {kind}")
            del spec[key]
    return spec


def _read_outcomes(r: _Reader, total: int) -> str:
    """The outcome letters, from `outcomes` or from `outcome_runs`. Runs are expanded only once their counts add
    up to `total` (the driver writes both from one ledger) and to at most MAX_ITEMS, so a run of four billion, or
    of 20 digits, is refused before a letter of it is made."""
    outcomes: str = r.text("outcomes")
    runs = r.text("outcome_runs", None, nullable=True)
    if runs:
        pieces = parse_runs(runs)
        counted = sum(count for count, _ in pieces) if pieces is not None else 0
        if pieces is None:
            r.bad("outcome_runs", "is not a list of counts (up to 9 digits) and outcome letters")
        elif total and counted != total:
            r.bad("outcome_runs", f"counts {counted:,} items where total says {total:,}")
        elif counted > MAX_ITEMS:
            r.bad("outcome_runs", f"counts {counted:,} items, above the most a job has ({MAX_ITEMS:,})")
        else:
            outcomes = "".join(letter * count for count, letter in pieces)
    if outcomes and not set(outcomes) <= _OUTCOME_LETTERS:
        r.bad("outcomes", "holds letters other than " + "".join(o.value for o in Outcome))
        outcomes = "".join(c for c in outcomes if c in _OUTCOME_LETTERS)
    return outcomes


def as_record(value: JobRecord | Mapping[str, Any]) -> JobRecord:
    """A JobRecord from a record or a record's dict (as the stores and older code hand them out)."""
    return value if isinstance(value, JobRecord) else JobRecord.from_json(value)


def check_finite(value: Any, where: str) -> None:
    """Raise RecordError naming the first NaN or infinity in `value` (JSON has no such numbers)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise RecordError(
                f"{where}: {path or 'the value'} is {item}, which JSON cannot hold; a record is strict JSON "
                f"(a timeout, cost or cap must be a finite number)."
            )
        if isinstance(item, Mapping):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{path}[{n}]", v) for n, v in enumerate(item))


def _finite_copy(value: Any, path: str, problems: list[str]) -> Any:
    """`value` with every NaN or infinity replaced by None, each one noted as a problem."""
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{path} is {value}, not a finite number")
        return None
    if isinstance(value, Mapping):
        return {k: _finite_copy(v, f"{path}.{k}" if path else str(k), problems) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_copy(v, f"{path}[{n}]", problems) for n, v in enumerate(value)]
    return value

"""JSON views of job records for the REST API: what the sidebar may see, and nothing else.

Records are written by the core and read through `core.record.JobRecord` (typed, with its
defaults; a damaged record still gives a row); these functions copy out named fields only (a
whitelist), so whatever a record may carry later (store URLs, config extras, credentials by
mistake) never reaches the browser unless it is added here on purpose. They take a JobRecord or
a record's dict.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

from starburst_jupyter.core.record import ACTIVE_STATES, TERMINAL_STATES, JobRecord, Outcome, as_record
from starburst_jupyter.display.rate import average_rate, eta

RecordLike = JobRecord | Mapping[str, Any]

STATES = ACTIVE_STATES + TERMINAL_STATES
# Filter words besides the states themselves.
STATE_GROUPS = {"active": ACTIVE_STATES, "finished": TERMINAL_STATES}

# Spec fields a user asked for and may see again. Not `extra` (backend settings), nothing else.
SPEC_FIELDS = (
    "mode",
    "backend",
    "workers",
    "cpu_units",
    "memory_mib",
    "timeout",
    "on_error",
    "max_result_bytes",
    "max_cost",
    "retries",
    "region",
    "arch",
    "name",
    "spot",
    "source",
    "map_expr",
)
WORKER_FIELDS = ("wave", "pid", "started", "ended", "exit_code", "reason")
OUTCOME_NAMES = {o.value: o.label for o in Outcome}


def elapsed(record: RecordLike, now: float) -> float | None:
    return as_record(record).elapsed(now)


def _cost(job: JobRecord) -> dict[str, Any]:
    return {
        "accrued": job.cost.accrued,
        "projected": job.cost.projected,
        "cap": job.cost.cap,
        "label": job.cost.label[:300],
        "estimate": job.cost_is_estimate,
    }


def worker_rows(record: RecordLike) -> dict[str, dict[str, Any]]:
    """The job's workers as {"<index>": the worker's recorded fields} (what the log route looks up)."""
    return {str(index): worker.to_json() for index, worker in as_record(record).workers.items()}


def worker_running(info: Mapping[str, Any], record: RecordLike | None = None) -> bool:
    """A worker without an exit is running, unless its job ended (a cancel whose kernel was gone
    stops the workers but cannot record their exits)."""
    if record is not None and as_record(record).is_terminal:
        return False
    return info.get("exit_code") is None and not info.get("ended")


def summary(record: RecordLike, now: float | None = None) -> dict[str, Any]:
    """One row of the jobs list. A damaged record gives a row too: `damaged` says why (else null)."""
    job = as_record(record)
    now = time.time() if now is None else now
    total, done, failed = job.total, job.done, job.failed
    state = job.state.value
    owner_gone = job.owner_gone(now)  # active, but its kernel is gone: the sidebar says "attach or cancel"
    message = job.message if not job.damaged else f"damaged record: {job.damaged}"
    if owner_gone and not job.damaged:
        message = job.owner_gone_hint()
    return {
        "id": job.id,
        "name": (job.name or "")[:200],
        "backend": job.backend[:40],
        "state": state,
        "state_label": job.state_label(now),
        "owner_gone": owner_gone,
        "active": job.is_active,
        "message": message[:2000],
        "damaged": job.damaged[:2000] if job.damaged else None,
        "created": job.created or None,  # (0: a damaged record's)
        "started": job.started,
        "finished": job.finished,
        "elapsed": job.elapsed(now),
        "total": total,
        "done": done,
        "failed": failed,
        "cancelled": job.cancelled,
        "progress": (done + failed) / total if total else (1.0 if job.is_terminal else 0.0),
        "workers": {
            "count": len(job.workers),
            "running": sum(1 for w in job.workers.values() if job.worker_running(w)),
        },
        "waves": job.waves.to_json(),
        "cost": _cost(job),
        **_pace(job, now),
    }


def _pace(job: JobRecord, now: float) -> dict[str, float | None]:
    """Items per second over the run and, while it runs, seconds left at that rate (as every face shows them)."""
    finished = job.done + job.failed + job.cancelled
    rate = average_rate(finished, job.elapsed(now) or 0.0)
    left = eta(job.total - finished, rate) if job.is_active else None
    return {"rate": rate, "left": left}


def detail(record: RecordLike, now: float | None = None) -> dict[str, Any]:
    """One job in full: the row plus the spec (whitelisted), waves, workers, per-task outcomes, failures."""
    job = as_record(record)
    view = summary(job, now)
    view["spec"] = {k: job.spec[k] for k in SPEC_FIELDS if k in job.spec}
    workers = []
    for index, worker in sorted(job.workers.items()):
        row = {"index": index, **{k: getattr(worker, k) for k in WORKER_FIELDS}}
        if job.worker_running(worker):
            row["state"] = "running"
        else:
            row["state"] = worker.reason or (
                f"exit {worker.exit_code}" if worker.exit_code is not None else f"stopped (job {job.state.value})"
            )
        workers.append(row)
    view["workers"] = {**view["workers"], "list": workers}
    view.update(job.outcomes_json())  # (runs, not a megabyte of letters, for a big job)
    view["outcome_counts"] = {o.label: n for o, n in job.outcome_counts().items()}
    view["failures"] = [{"index": f.index, "error": f.error[:500]} for f in job.failures]
    return view


def strict_json(payload: Any) -> str:
    """`payload` as strict JSON, what the sidebar's JSON.parse takes: a number that is not finite (a rate over an
    elapsed time of 5e-324 s, a sum of extreme times) becomes null, and json.dumps is told to refuse any that is
    left, so the server never sends `Infinity` or `NaN`."""
    return json.dumps(finite_or_none(payload), allow_nan=False)


def finite_or_none(value: Any) -> Any:
    """`value` with every float that is not finite replaced by None (dicts, lists and tuples walked)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def parse_states(values: list[str]) -> set[str] | None:
    """`?state=running&state=done` or `?state=running,done`; `active`/`finished` name the groups.

    None means no filter; ValueError names an unknown word."""
    words = [w.strip() for v in values for w in v.split(",") if w.strip()]
    if not words:
        return None
    states: set[str] = set()
    for word in words:
        if word in STATE_GROUPS:
            states.update(STATE_GROUPS[word])
        elif word in STATES:
            states.add(word)
        else:
            raise ValueError(f"unknown state {word!r}; use one of {', '.join(STATES + tuple(STATE_GROUPS))}")
    return states


def order(records: list[Any]) -> list[Any]:
    """Running first (newest first among them), then finished ones newest first (records or their dicts)."""
    active = [r for r in records if _active(r)]
    return active + [r for r in records if not _active(r)]


def _active(record: RecordLike) -> bool:
    # (a dict here came from the store, so its state is one of JobState's: no need to read it all again)
    return record.is_active if isinstance(record, JobRecord) else record.get("state") in ACTIVE_STATES


def log_chunk(
    data: bytes,
    start: int,
    size: int,
    ended: bool,
    *,
    tail: int | None = None,
    limit: int | None = None,
    max_lines: int = 2000,
) -> dict[str, Any]:
    """One log poll's reply from the bytes read at `start` of a log of `size` bytes (cursors are byte offsets).

    Whole lines only while the worker runs (the unfinished last line comes with the next read). With `tail`,
    the last lines of `data` (which was read from the end, so its first line may be partial). A read that
    filled `limit` ends at its last line end and says `more`; `skipped` is how many bytes precede the first
    line returned, so the sidebar can say what it did not show."""
    end = len(data) if ended else data.rfind(b"\n") + 1
    more = start + len(data) < size
    if limit is not None and len(data) >= limit and end == len(data):
        cut = data.rfind(b"\n") + 1
        end = cut or end  # one line longer than a read comes in pieces
        more = True
    body = data[:end]
    parts = body.splitlines(keepends=True)
    if tail is not None:
        if start > 0:  # read from the end: its first line may be the end of a longer one
            parts = parts[1:]
        parts = parts[max(0, len(parts) - tail) :] if tail else []
        first = start + end - sum(len(p) for p in parts)
    else:
        first = start
    if len(parts) > max_lines:
        parts, more = parts[:max_lines], True
    text = b"".join(parts)
    return {
        "cursor": first,
        "next_cursor": first + len(text),
        "lines": text.decode("utf-8", "replace").splitlines(),
        "more": more,
        "skipped": first,
        "size": size,
    }

"""JSON views of job records for the REST API: what the sidebar may see, and nothing else.

Records are written by the core; these functions copy out named fields only (a whitelist), so
whatever a record may carry later (store URLs, config extras, credentials by mistake) never
reaches the browser unless it is added here on purpose.
"""

from __future__ import annotations

import time
from typing import Any

from starburst_jupyter.stores.records import ACTIVE_STATES, TERMINAL_STATES

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
OUTCOME_NAMES = {"D": "done", "F": "failed", "C": "cancelled", "R": "running", "P": "pending"}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _text(value: Any, limit: int = 2000) -> str:
    return value[:limit] if isinstance(value, str) else ""


def elapsed(record: dict[str, Any], now: float) -> float | None:
    started = _number(record.get("started")) or _number(record.get("created"))
    if started is None:
        return None
    end = _number(record.get("finished"))
    if end is None:
        end = None if record.get("state") in TERMINAL_STATES else now
    return max(0.0, end - started) if end is not None else None


def _cost(record: dict[str, Any]) -> dict[str, Any]:
    cost = record.get("cost") if isinstance(record.get("cost"), dict) else {}
    return {
        "accrued": _number(cost.get("accrued")) or 0.0,
        "projected": _number(cost.get("projected")) or 0.0,
        "cap": _number(cost.get("cap")),
        "label": _text(cost.get("label"), 300),
        "estimate": record.get("backend") != "fargate",
    }


def _waves(record: dict[str, Any]) -> dict[str, int]:
    waves = record.get("waves") if isinstance(record.get("waves"), dict) else {}
    return {k: _int(waves.get(k)) for k in ("count", "started", "finished", "concurrency", "workers")}


def _workers(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    workers = record.get("workers")
    return workers if isinstance(workers, dict) else {}


def worker_running(info: dict[str, Any], record: dict[str, Any] | None = None) -> bool:
    """A worker without an exit is running, unless its job ended (a cancel whose kernel was gone
    stops the workers but cannot record their exits)."""
    if record is not None and record.get("state") in TERMINAL_STATES:
        return False
    return info.get("exit_code") is None and not info.get("ended")


def summary(record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """One row of the jobs list."""
    now = time.time() if now is None else now
    total, done, failed = _int(record.get("total")), _int(record.get("done")), _int(record.get("failed"))
    if "cancelled" in record:  # items a cancel stopped: counted apart from failures
        cancelled = _int(record.get("cancelled"))
    else:  # records written before the core counted them counted them among the failed
        cancelled = _text(record.get("outcomes"), 10_000_000).count("C")
        failed = max(0, failed - cancelled)
    workers = _workers(record)
    state = record.get("state") if record.get("state") in STATES else "unknown"
    return {
        "id": record["id"],
        "name": _text(record.get("name"), 200),
        "backend": _text(record.get("backend"), 40),
        "state": state,
        "active": state in ACTIVE_STATES,
        "message": _text(record.get("message"), 2000),
        "created": _number(record.get("created")),
        "started": _number(record.get("started")),
        "finished": _number(record.get("finished")),
        "elapsed": elapsed(record, now),
        "total": total,
        "done": done,
        "failed": failed,
        "cancelled": cancelled,
        "progress": (done + failed) / total if total else (1.0 if state in TERMINAL_STATES else 0.0),
        "workers": {
            "count": len(workers),
            "running": sum(1 for w in workers.values() if isinstance(w, dict) and worker_running(w, record)),
        },
        "waves": _waves(record),
        "cost": _cost(record),
    }


def detail(record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """One job in full: the row plus the spec (whitelisted), waves, workers, per-task outcomes, failures."""
    view = summary(record, now)
    spec = record.get("spec") if isinstance(record.get("spec"), dict) else {}
    view["spec"] = {k: spec[k] for k in SPEC_FIELDS if k in spec}
    workers = []
    for index, info in sorted(_workers(record).items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else -1):
        if not isinstance(info, dict) or not str(index).isdigit():
            continue
        row = {"index": int(index), **{k: info.get(k) for k in WORKER_FIELDS}}
        if worker_running(info, record):
            row["state"] = "running"
        else:
            row["state"] = info.get("reason") or (
                f"exit {info['exit_code']}"
                if info.get("exit_code") is not None
                else f"stopped (job {record.get('state')})"
            )
        workers.append(row)
    view["workers"] = {**view["workers"], "list": workers}
    outcomes = _text(record.get("outcomes"), 10_000_000)
    view["outcomes"] = outcomes
    view["outcome_counts"] = {name: outcomes.count(code) for code, name in OUTCOME_NAMES.items()}
    failures = record.get("failures") if isinstance(record.get("failures"), list) else []
    view["failures"] = [
        {"index": _int(f.get("index")), "error": _text(f.get("error"), 500)} for f in failures if isinstance(f, dict)
    ]
    return view


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


def order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Running first (newest first among them), then finished ones newest first."""
    active = [r for r in records if r.get("state") in ACTIVE_STATES]
    return active + [r for r in records if r.get("state") not in ACTIVE_STATES]

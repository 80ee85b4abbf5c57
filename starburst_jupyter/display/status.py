"""Plain-text views of job records, shared by %burst_status and the `starburst` CLI."""

from __future__ import annotations

import time
from typing import Any

from starburst_jupyter.stores.records import TERMINAL_STATES


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _cost(record: dict[str, Any]) -> str:
    cost = record.get("cost", {})
    text = f"${cost.get('accrued', 0.0):.4f}"
    return text + ("*" if record.get("backend") == "local" else "")


def job_row(record: dict[str, Any], now: float | None = None) -> dict[str, str]:
    now = now or time.time()
    end = record.get("finished") or (None if record["state"] in TERMINAL_STATES else now)
    return {
        "id": record["id"],
        "name": record.get("name") or "-",
        "backend": record["backend"],
        "state": record["state"],
        "done/failed/total": f"{record.get('done', 0)}/{record.get('failed', 0)}/{record.get('total', 0)}",
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("started", record["created"]))),
        "duration": _duration(end - record["started"] if end else None),
        "est. cost": _cost(record),
    }


def format_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def format_jobs(records: list[dict[str, Any]]) -> str:
    if not records:
        return "No burst jobs yet. Run a cell with %%burst to start one."
    running = [r for r in records if r["state"] not in TERMINAL_STATES]
    ordered = running + [r for r in records if r["state"] in TERMINAL_STATES]
    note = (
        "\n* local jobs: what the same work would cost on Fargate (estimate)"
        if any(r["backend"] == "local" for r in records)
        else ""
    )
    return format_table([job_row(r) for r in ordered]) + note


def format_job(record: dict[str, Any]) -> str:
    """One job in detail: the row, waves, workers and failures."""
    lines = [format_table([job_row(record)])]
    if record.get("message"):
        lines.append(f"message: {record['message']}")
    waves = record.get("waves", {})
    lines.append(
        f"waves: {waves.get('started', 0)} started, {waves.get('finished', 0)} finished of "
        f"{waves.get('count', 1)} ({waves.get('workers', '?')} workers, {waves.get('concurrency', '?')} at once)"
    )
    cost = record.get("cost", {})
    cap = f", cap ${cost['cap']:g}" if cost.get("cap") else ""
    lines.append(
        f"cost: ${cost.get('accrued', 0):.4f} accrued, ${cost.get('projected', 0):.4f} projected{cap} "
        f"({cost.get('label', '')})"
    )
    for index, info in sorted(record.get("workers", {}).items(), key=lambda kv: int(kv[0])):
        state = info.get("reason") or ("running" if info.get("exit_code") is None else f"exit {info['exit_code']}")
        lines.append(f"  worker {index} (wave {info.get('wave')}, pid {info.get('pid', '-')}): {state}")
    for failure in record.get("failures", []):
        lines.append(
            f"  item {failure['index']} failed: {failure['error'].splitlines()[0] if failure['error'] else ''}"
        )
    return "\n".join(lines)

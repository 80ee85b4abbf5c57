"""Plain-text views of job records, shared by %burst_status and the `starburst` CLI.

Each function takes a `JobRecord` or a record's dict (read through `as_record`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from starburst_jupyter.core.record import JobRecord, as_record
from starburst_jupyter.display.rate import average_rate, eta, format_eta, format_rate

RecordLike = JobRecord | Mapping[str, Any]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _cost(job: JobRecord) -> str:
    return f"${job.cost.accrued:.4f}" + ("*" if job.cost_is_estimate else "")


def state_text(job: JobRecord, now: float | None = None) -> str:
    """The state as every face words it: a job that kept its failures (--on-error keep) and ran to the end
    reads "done with N failed", not "failed"."""
    kept = job.spec.get("on_error") == "keep" and job.state.value == "failed" and job.failed and not job.message
    return f"done with {job.failed} failed" if kept and not job.damaged else job.state_label(now)


def rate_and_left(job: JobRecord, now: float) -> tuple[str, str]:
    """(items/s, time left) from a record: the run's average rate (a record has no history to smooth)."""
    finished = job.done + job.failed
    rate = average_rate(finished, job.elapsed(now) or 0.0)
    if not finished:
        return ("-", "?" if job.is_active else "-")
    left = format_eta(eta(job.total - finished, rate)) if job.is_active else "-"
    return format_rate(rate), left


def job_row(record: RecordLike, now: float | None = None) -> dict[str, str]:
    job = as_record(record)
    now = now or time.time()
    start = job.started if job.started is not None else job.created
    rate, left = rate_and_left(job, now)
    return {
        "id": job.id,
        "name": job.name or "-",
        "backend": job.backend or "-",
        "state": state_text(job, now),  # e.g. "running (kernel gone: attach or cancel)"
        "done/failed/total": f"{job.done}/{job.failed}/{job.total}",
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)) if start else "-",
        "duration": _duration(job.elapsed(now)),
        "rate": rate,
        "left": left,
        "est. cost": _cost(job),
    }


def format_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def format_jobs(records: Sequence[RecordLike]) -> str:
    if not records:
        return "No burst jobs yet. Run a cell with %%burst to start one."
    jobs = [as_record(r) for r in records]
    ordered = [j for j in jobs if j.is_active] + [j for j in jobs if j.is_terminal]
    note = (
        "\n* local and docker jobs: what the same work would cost on Fargate (estimate)"
        if any(j.cost_is_estimate for j in jobs)
        else ""
    )
    return format_table([job_row(j) for j in ordered]) + note


def format_job(record: RecordLike) -> str:
    """One job in detail: the row, waves, workers and failures."""
    job = as_record(record)
    lines = [format_table([job_row(job)])]
    if job.damaged:
        lines.append(f"damaged record: {job.damaged}")
    if job.message:
        lines.append(f"message: {job.message}")
    if job.owner_gone():
        lines.append(f"kernel gone: {job.owner_gone_hint()}")
    waves = job.waves
    lines.append(
        f"waves: {waves.started} started, {waves.finished} finished of "
        f"{waves.count} ({waves.workers} workers, {waves.concurrency} at once)"
    )
    cost = job.cost
    cap = f", cap ${cost.cap:g}" if cost.cap else ""
    kind = "estimate" if job.cost_is_estimate else "bill"
    lines.append(f"cost ({kind}): ${cost.accrued:.4f} accrued, ${cost.projected:.4f} projected{cap} ({cost.label})")
    for index, worker in sorted(job.workers.items()):
        state = worker.reason or ("running" if worker.exit_code is None else f"exit {worker.exit_code}")
        pid = worker.pid if worker.pid is not None else "-"
        lines.append(f"  worker {index} (wave {worker.wave}, pid {pid}): {state}")
    for failure in job.failures:
        lines.append(f"  item {failure.index} failed: {failure.error.splitlines()[0] if failure.error else ''}")
    return "\n".join(lines)

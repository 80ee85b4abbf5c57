"""HTML and text pieces of a job's view, as pure functions of a JobView.

The live widget puts them into a fixed set of HTML widgets (one table for all workers, one line for all
waves: the widget count does not grow with the job), and the finished job's persistent summary is made of
the same pieces, so a saved notebook, nbconvert and GitHub show what the live view ended with.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable

from starburst_jupyter.display.progress import JobView, WorkerView

STATE_COLOURS = {
    "done": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#8d6e63",
    "running": "#1565c0",
    "stopped": "#8d6e63",
    "kept": "#ef6c00",  # done with failures kept (--on-error keep)
}
OK_COLOUR, FAILED_COLOUR, TODO_COLOUR = "#43a047", "#e53935", "rgba(128,128,128,0.25)"
ROWS_SHOWN = 8  # worker rows shown before "show all"
SLOW_FACTOR, SLOW_MIN_SECONDS = 3.0, 5.0  # an item running 3x the mean item time (and 5 s) is slow
MAX_GROUPS, MAX_ITEMS_LISTED = 10, 20
_ROW_ORDER = {"failed": 0, "stopped": 1, "slow": 2, "running": 3, "starting": 4, "idle": 5, "exited": 6}


def esc(text: object) -> str:
    return html.escape(str(text))


def state_colour(view: JobView) -> str:
    label = view.state_label()
    return STATE_COLOURS["kept"] if label.startswith("done with") else STATE_COLOURS.get(view.state, "#555")


def parts_bar(done: int, failed: int, total: int, width: str = "100%") -> str:
    """A bar with its ok part green and its failed part red (the rest grey): one failure is a sliver,
    not a red bar."""
    total = max(total, 1)
    ok, bad = 100.0 * min(done, total) / total, 100.0 * min(failed, total) / total
    return (
        f"<div class='starburst-bar' style='display:flex;width:{width};height:8px;background:{TODO_COLOUR};"
        f"border-radius:3px;overflow:hidden' title='{done} ok, {failed} failed of {total}'>"
        f"<div class='starburst-bar-ok' style='width:{ok:.2f}%;background:{OK_COLOUR}'></div>"
        f"<div class='starburst-bar-failed' style='width:{bad:.2f}%;background:{FAILED_COLOUR}'></div></div>"
    )


def counts_line(view: JobView, now: float | None = None) -> str:
    """'1,990/2,000 ok · 10 failed · 41.2 items/s, 0:03 left' (0 failed is said too)"""
    colour = FAILED_COLOUR if view.failed else "inherit"
    failed = f" &middot; <span style='color:{colour}'>{view.failed} failed</span>"
    return (
        f"<span class='starburst-counts'>{view.done}/{view.total} ok{failed}</span>"
        f" &middot; <span class='starburst-rate'>{esc(view.progress_note(now))}</span>"
    )


def waves_html(view: JobView) -> str:
    """The current wave, and one small segment per wave (finished waves full): a line at any wave count."""
    if not view.wave:
        return "launching workers..." if view.ended is None else ""
    head = (
        f"wave {view.wave} of {view.waves}: {view.workers_up()}/{view.wave_workers.get(view.wave, 0)} workers up"
        if view.ended is None
        else f"{view.waves} wave{'s' if view.waves != 1 else ''}"
    )
    if view.waves <= 1:
        return head
    segments = []
    share = view.total / view.waves  # waves are progress through the items (workers carry on between them)
    for wave in range(1, view.waves + 1):
        if wave in view.waves_finished or (view.ended is not None and wave <= view.wave):
            fill = 100.0
        else:
            fill = max(0.0, min(100.0, 100.0 * (view.finished - (wave - 1) * share) / max(share, 1e-9)))
        segments.append(
            f"<span title='wave {wave}' style='display:inline-block;width:{max(6, 160 // view.waves)}px;height:8px;"
            f"margin-right:2px;background:linear-gradient(to right,{OK_COLOUR} {fill:.0f}%,{TODO_COLOUR} {fill:.0f}%)'>"
            "</span>"
        )
    done_waves = len(view.waves_finished)
    return f"{head} &middot; <span class='starburst-waves'>{''.join(segments)}</span> {done_waves} finished"


def _row_kind(worker: WorkerView, now: float, mean_item: float | None) -> str:
    if (
        worker.state == "running"
        and worker.item_started is not None
        and mean_item
        and now - worker.item_started > max(SLOW_MIN_SECONDS, SLOW_FACTOR * mean_item)
    ):
        return "slow"
    return worker.state


def _mean_item_seconds(view: JobView, now: float) -> float | None:
    workers = list(view.workers.values())
    finished = sum(w.done for w in workers)
    busy = sum(w.runtime(now) for w in workers)
    return busy / finished if finished else None


def worker_rows(view: JobView, now: float) -> list[tuple[str, WorkerView]]:
    """Every worker with what it shows as, the interesting first: failed, stopped, slow, running, the rest."""
    mean = _mean_item_seconds(view, now)
    rows = [(_row_kind(w, now, mean), w) for w in list(view.workers.values())]
    return sorted(rows, key=lambda kw: (_ROW_ORDER.get(kw[0], 9), kw[1].index))


def workers_table(view: JobView, now: float, show_all: bool) -> tuple[str, int]:
    """The worker table (headers, interesting rows first); returns (html, rows left out)."""
    rows = worker_rows(view, now)
    shown = rows if show_all else rows[:ROWS_SHOWN]
    cell = "style='padding:0 8px 0 0;text-align:left;white-space:nowrap'"
    head = "".join(f"<th {cell}>{h}</th>" for h in ("worker", "wave", "state", "items", "now", "time", "last"))
    body = []
    for kind, worker in shown:
        colour = {"failed": FAILED_COLOUR, "slow": "#ef6c00", "stopped": STATE_COLOURS["stopped"]}.get(kind, "inherit")
        now_item = str(worker.current[0]) if worker.current else "-"
        detail = esc((worker.error or worker.last_line)[:120])
        body.append(
            f"<tr class='starburst-worker starburst-worker-{kind}'><td {cell}>{worker.index}</td>"
            f"<td {cell}>{worker.wave}</td><td {cell}><span style='color:{colour}'>{kind}</span></td>"
            f"<td {cell}>{worker.done}</td><td {cell}>{now_item}</td><td {cell}>{worker.runtime(now):.0f}s</td>"
            f"<td style='padding:0;max-width:420px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap'>"
            f"{detail}</td></tr>"
        )
    table = (
        f"<table class='starburst-workers' style='border-collapse:collapse;font-size:12px'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
    return (table if rows else ""), len(rows) - len(shown)


def _error_key(error: str) -> str:
    """Errors that differ only in numbers or quoted values are one group ('KeyError: 17' and 'KeyError: 18')."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "N", error.splitlines()[0] if error else "")


def failure_groups(failures: Iterable[tuple[int, str, str]]) -> list[tuple[str, list[int], str]]:
    """(example error, sorted items, first traceback) per kind of error, the most frequent first."""
    groups: dict[str, tuple[str, list[int], str]] = {}
    for index, error, traceback in failures:
        example, items, tb = groups.setdefault(_error_key(error), (error, [], traceback))
        items.append(index)
    ordered = [(e, sorted(items), tb) for e, items, tb in groups.values()]
    return sorted(ordered, key=lambda g: (-len(g[1]), g[1][0]))


def _items(items: list[int]) -> str:
    listed = ", ".join(map(str, items[:MAX_ITEMS_LISTED]))
    return listed + (f", ... ({len(items) - MAX_ITEMS_LISTED} more)" if len(items) > MAX_ITEMS_LISTED else "")


def failures_html(view: JobView) -> str:
    if not view.failures:
        return ""
    groups = failure_groups(view.failures)
    parts = [f"<b>{len(view.failures)} failed</b> ({len(groups)} kind{'s' if len(groups) != 1 else ''} of error)"]
    for error, items, tb in groups[:MAX_GROUPS]:
        trace = f"<pre style='margin:0 0 0 1em'>{esc(tb)}</pre>" if tb else ""
        parts.append(
            f"<details class='starburst-failure'><summary>{len(items)} &times; {esc(error)} "
            f"<small>(item{'s' if len(items) != 1 else ''} {esc(_items(items))})</small></summary>{trace}</details>"
        )
    if len(groups) > MAX_GROUPS:
        parts.append(f"<div>... and {len(groups) - MAX_GROUPS} more kinds of error</div>")
    return "".join(parts)


def failures_text(view: JobView) -> list[str]:
    return [f"  {len(items)} x {error} (items {_items(items)})" for error, items, _ in failure_groups(view.failures)]


def header_html(view: JobView, size: str = "", now: float | None = None) -> str:
    name = f"{esc(view.name)} " if view.name else ""
    where = f" {esc(view.region)}" if view.region else ""
    shape = f" &middot; {esc(size)}" if size else ""
    return (
        f"<b>{name}{esc(view.job_id)}</b> &middot; {esc(view.backend)}{where}{shape}"
        f" &middot; <span class='starburst-state' style='color:{state_colour(view)}'><b>{esc(view.state_label())}</b>"
        f"</span> &middot; {view.elapsed(now):.1f}s"
    )


def cost_html(view: JobView) -> str:
    cap = f" &middot; cap ${view.cap:g}" if view.cap else ""
    stop_note = " (the job is cancelled before the cap would be passed)" if view.cap and view.ended is None else ""
    estimate = " (Fargate estimate)" if view.backend == "local" else ""
    projected = f", ${view.projected:.4f} projected" if view.ended is None else ""
    return (
        f"<span style='white-space:nowrap'>cost ${view.accrued:.4f}{'' if view.ended is None else estimate}"
        f"{' so far' if view.ended is None else ''}{projected}{cap}</span>{stop_note}"
        + (f"<br><small>{esc(view.cost_label)}</small>" if view.cost_label and view.ended is None else "")
    )


def summary_html(view: JobView, size: str = "") -> str:
    """The finished job, as static HTML: what the cell keeps (a saved notebook, nbconvert, GitHub)."""
    message = f"<div>{esc(view.message)}</div>" if view.message else ""
    failures = failures_html(view)
    return (
        f"<div class='starburst-summary' style='font-size:13px;line-height:1.5'>"
        f"<div>{header_html(view, size)}</div>"
        f"<div style='max-width:480px;margin:2px 0'>{parts_bar(view.done, view.failed, view.total)}</div>"
        f"<div>{counts_line(view)} &middot; {cost_html(view)}</div>"
        f"<div>{waves_html(view)}</div>{message}"
        f"{f'<div>{failures}</div>' if failures else ''}"
        f"<div><small>logs: <code>%burst_logs {esc(view.job_id)}</code> &middot; "
        f"<code>%burst_status {esc(view.job_id)}</code></small></div></div>"
    )


def summary_text(view: JobView) -> str:
    lines = [view.line(time.time())]
    if view.message:
        lines.append(view.message)
    failures = failures_text(view)
    if failures:
        lines += [f"{view.failed} failed:"] + failures
    return "\n".join(lines)


def live_placeholder_html(view: JobView) -> str:
    """What a saved notebook shows for a job that was still running when it was saved."""
    return (
        f"<div class='starburst-live'>burst job <b>{esc(view.job_id)}</b> was running when this was saved "
        f"({view.done}/{view.total} items). <code>%burst_status {esc(view.job_id)}</code> shows it now.</div>"
    )

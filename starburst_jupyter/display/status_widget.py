"""`%burst_status` as a live widget table of the job store (a face: it reads records, cancels through the core).

One row per job, running jobs first: name/id, backend, state, a done/failed/total bar, elapsed time, cost
(local and docker jobs: what Fargate would charge; `JobRecord.cost_is_estimate` decides), a Cancel button
(Launcher.cancel_job, in a thread, so it works also when the launching kernel is gone) and Details, which
expands the row into `status.format_job` plus the tail of each worker's log, or into the job's live JobWidget
when the job runs in this kernel.

A background thread calls `refresh()` every `interval` seconds while any listed job is active; it ends when
none is, and when the widget is closed. Records are read through a cached `JobIndex` (one stat per finished
job per refresh), shared by every table of the same job store. Rows keep a record's dict (as the store hands it
out) and read it through `core.record.as_record`; a damaged record is a row that says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from ipywidgets.widgets.widget_int import ProgressStyle  # (not exported at the top level)
from ipywidgets.widgets.widget_string import HTMLStyle

from starburst_jupyter.core.record import JobRecord, as_record
from starburst_jupyter.display.progress import JobView, Throttled, WorkerView
from starburst_jupyter.display.status import format_job, format_jobs, job_row
from starburst_jupyter.display.summary import STATE_COLOURS, esc
from starburst_jupyter.display.widget import RENDER_INTERVAL, JobWidget, close_all
from starburst_jupyter.stores.records import TERMINAL_STATES, JobStore

try:  # the cached index of the job store (shared with the server extension)
    from starburst_jupyter.stores.records import JobIndex
except ImportError:  # pragma: no cover - an older core without it: read the store each time
    JobIndex = None  # type: ignore[assignment,misc]

logger = logging.getLogger(__name__)

CANCEL_REASON = "cancelled from %burst_status"
MAX_ROWS = 50  # finished jobs listed at most (active ones are always listed)
LOG_TAIL_LINES = 20
DETAIL_SECONDS = 3.0  # an expanded row of an active job re-reads its logs at most this often (cloud logs cost calls)
MAX_WORKER_LOGS = 16

_INDEXES: dict[Path, Any] = {}
_INDEXES_LOCK = threading.Lock()


def _index(store: JobStore) -> Any:
    """One JobIndex per job store for the kernel, so a second %burst_status parses only what changed."""
    if JobIndex is None:
        return None
    with _INDEXES_LOCK:
        index = _INDEXES.get(store.jobs_dir)
        if index is None:
            index = _INDEXES[store.jobs_dir] = JobIndex(store)
        return index


def _live_handle(job_id: str) -> Any:
    """The JobHandle of a job running in this kernel, else None."""
    from starburst_jupyter.core.driver import live_drivers

    return next((driver.handle for driver in live_drivers() if driver.job_id == job_id), None)


def view_from_record(record: JobRecord | dict[str, Any]) -> JobView:
    """A JobView seeded from a record, for a live widget that starts observing a job mid-run."""
    job = as_record(record)
    region = job.spec.get("region")
    view = JobView(
        job.id,
        total=job.total,
        name=job.name or "",
        backend=job.backend,
        region=region if isinstance(region, str) else "",
        state=job.state.value,
        message=job.message,
        started=job.started or job.created,
        done=job.done,
        failed=job.failed,
        wave=job.waves.started,
        waves=job.waves.count,
        accrued=job.cost.accrued,
        projected=job.cost.projected,
        cap=job.cost.cap,
        cost_label=job.cost.label,
    )
    for index, worker in job.workers.items():
        exit_code = worker.exit_code
        state = "running" if exit_code is None else ("exited" if exit_code == 0 else "failed")
        wave = worker.wave or 1
        view.workers[index] = WorkerView(
            index,
            wave,
            state=state,
            started=worker.started or view.started,
            ended=worker.ended,
            error=(worker.reason or "") if exit_code else "",
        )
        view.wave_workers[wave] = view.wave_workers.get(wave, 0) + 1
    view.failures = [(f.index, f.error, "") for f in job.failures]
    return view


def _tail(text: str, lines: int) -> str:
    kept = text.rstrip("\n").splitlines()[-lines:]
    return "\n".join(kept) if kept else "(empty)"


_SHARED: dict[str, Any] = {}


def _shared() -> dict[str, Any]:
    """Layouts and styles every row uses, made once: each is a widget of its own (a comm message to the
    front end), and a row made of fresh ones cost ~33 widgets, which made %burst_status take seconds."""
    if not _SHARED or any(w.comm is None for w in _SHARED.values()):  # none yet, or closed (Widget.close_all)
        _SHARED.update(
            label=widgets.Layout(width="30%"),
            backend=widgets.Layout(width="70px"),
            state=widgets.Layout(width="110px"),
            progress=widgets.Layout(width="22%"),
            elapsed=widgets.Layout(width="200px"),  # time, rate and time left
            cost=widgets.Layout(width="190px"),
            button=widgets.Layout(width="110px"),
            after_end=widgets.Layout(width="110px", margin="0 0 0 116px"),  # Details where no Cancel is left
            line=widgets.Layout(align_items="center"),
            box=widgets.Layout(),
            html=HTMLStyle(),
            button_style=widgets.ButtonStyle(),
            progress_style=ProgressStyle(description_width="initial"),
        )
    return _SHARED


class _Row:
    """The widgets of one job's row; `StatusWidget` fills them from the job's record."""

    def __init__(self, job_id: str, on_cancel: Callable[[_Row], object], on_details: Callable[[_Row], object]):
        self.job_id = job_id
        self.record: dict[str, Any] = {}
        self.cancelling = False
        self.note = ""  # e.g. why a cancel failed
        self.expanded = False
        self.live: tuple[JobWidget, Callable[[], None]] | None = None  # (widget, unsubscribe) while live
        self.detail_of: dict[str, Any] | None = None  # the record the text detail shows
        self.detail_at = 0.0  # when it was read (monotonic)
        shared = _shared()
        self.label = widgets.HTML(layout=shared["label"], style=shared["html"])
        self.backend = widgets.HTML(layout=shared["backend"], style=shared["html"])
        self.state = widgets.HTML(layout=shared["state"], style=shared["html"])
        self.progress = widgets.IntProgress(
            min=0, max=1, value=0, style=shared["progress_style"], layout=shared["progress"]
        )
        self.elapsed = widgets.HTML(layout=shared["elapsed"], style=shared["html"])  # with items/s and time left
        self.cost = widgets.HTML(layout=shared["cost"], style=shared["html"])
        self.cancel = widgets.Button(
            description="Cancel",
            button_style="danger",
            icon="stop",
            tooltip=f"Cancel job {job_id}: every worker is ended",
            layout=shared["button"],
            style=shared["button_style"],
        )
        self.cancel.on_click(lambda _: on_cancel(self))
        self.details = widgets.Button(
            description="Details",
            icon="chevron-down",
            tooltip=f"Show job {job_id} in full",
            layout=shared["button"],
            style=shared["button_style"],
        )
        self.details.on_click(lambda _: on_details(self))
        self._detail: widgets.VBox | None = None  # made on first use: most rows are never expanded
        self._detail_text: widgets.HTML | None = None
        self.line = widgets.HBox(
            [
                self.label,
                self.backend,
                self.state,
                self.progress,
                self.elapsed,
                self.cost,
                self.cancel,
                self.details,
            ],
            layout=shared["line"],
        )
        self.root = widgets.VBox([self.line], layout=shared["box"])
        self.root.add_class("starburst-status-row")

    @property
    def detail(self) -> widgets.VBox:
        """The expanded part (details text, log tails or the live widget), under the row's line."""
        if self._detail is None:
            self._detail = widgets.VBox(layout=widgets.Layout(display="none", margin="0 0 6px 24px"))
            self.root.children = (*self.root.children, self._detail)
        return self._detail

    @property
    def detail_text(self) -> widgets.HTML:
        if self._detail_text is None:
            self._detail_text = widgets.HTML(layout=_shared()["box"])
        return self._detail_text

    @property
    def active(self) -> bool:
        return bool(self.record) and as_record(self.record).is_active

    def render(self, record: dict[str, Any], now: float) -> None:
        self.record = record
        job = as_record(record)
        row = job_row(job, now)
        state = job.state.value
        shown = "cancelling..." if self.cancelling and job.is_active else row["state"]
        kept = row["state"].startswith("done with")  # --on-error keep: not a red "failed"
        colour = STATE_COLOURS["kept"] if kept else STATE_COLOURS.get(state, "#555")
        name = f"<b>{esc(job.name)}</b> " if job.name else ""
        self.label.value = f"{name}<code>{esc(job.id)}</code>"
        self.backend.value = esc(job.backend)
        message = f"damaged record: {job.damaged}" if job.damaged else job.message
        if not job.damaged and job.owner_gone(now):  # the row says "kernel gone"; the tooltip says what to do
            message = job.owner_gone_hint()
        title = f" title='{esc(message)}'" if message else ""
        note = f"<br><small>{esc(self.note)}</small>" if self.note else ""
        self.state.value = (
            f"<span class='starburst-state' style='color:{colour}'{title}><b>{esc(shown)}</b></span>{note}"
        )
        total, done, failed = job.total, job.done, job.failed
        self.progress.max = max(total, 1)
        self.progress.value = min(done + failed, max(total, 1))
        self.progress.description = row["done/failed/total"]
        self.progress.bar_style = (
            "danger"
            if state == "failed" and not kept
            else ("warning" if failed else ("success" if state == "done" else ""))
        )
        left = f", {row['left']} left" if job.is_active else ""
        rate = f" &middot; {esc(row['rate'])}{esc(left)}" if row["rate"] != "-" or job.is_active else ""
        self.elapsed.value = f"<span style='white-space:nowrap'>{esc(row['duration'])}{rate}</span>"
        estimate = (
            "&nbsp;<small style='white-space:nowrap' title='what the same work would cost on Fargate'>"
            "(Fargate estimate)</small>"
            if job.cost_is_estimate
            else ""
        )
        self.cost.value = f"${job.cost.accrued:.4f}{estimate}"  # (one line: the cell is wide enough, no wrap)
        if job.is_terminal:
            self.cancelling = False
            self.cancel.disabled, self.cancel.description = True, state
            if self.cancel in self.line.children:  # no red, disabled "done" button: Details keeps its column
                self.line.children = tuple(c for c in self.line.children if c is not self.cancel)
                self.details.layout = _shared()["after_end"]
                self.cancel.close()  # (out of the tree: the table's close would not reach it)
        elif self.cancelling:
            self.cancel.disabled, self.cancel.description = True, "cancelling..."
        else:
            self.cancel.disabled, self.cancel.description = False, "Cancel"


class StatusWidget:
    """The live job table. `job` (an exact id) shows that job alone, expanded."""

    def __init__(
        self,
        job: str | None = None,
        *,
        store: JobStore | None = None,
        interval: float = 1.0,
        limit: int = MAX_ROWS,
        launcher_factory: Callable[[], Any] | None = None,
        autostart: bool = True,
    ):
        self.store = store or JobStore()
        self.job, self.interval, self.limit = job, interval, limit
        self._launcher_factory = launcher_factory
        self._launcher: Any = None
        self.index = _index(self.store)
        self.rows: dict[str, _Row] = {}
        self.records: list[dict[str, Any]] = []  # as last read, in table order
        self.hidden = 0  # finished jobs beyond `limit`, not listed
        self.refreshes = 0
        self._lock = threading.RLock()
        self._thread_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active = False
        self._closed = False
        self.header = widgets.HTML()
        self.refresh_button = widgets.Button(
            description="Refresh",
            icon="refresh",
            tooltip="Read the job store again",
            layout=widgets.Layout(width="100px"),
        )
        self.refresh_button.on_click(lambda _: self._on_refresh())
        self.table = widgets.VBox()
        self.columns = _column_headers()
        self.root = widgets.VBox(
            [
                widgets.HBox([self.header, self.refresh_button], layout=widgets.Layout(align_items="center")),
                self.columns,
                self.table,
            ]
        )
        self.root.add_class("starburst-status")
        self.root.observe(self._on_comm, names="comm")  # the front end (or anyone) closed the widget
        self.refresh()
        if job is not None and job in self.rows:
            self._toggle_details(self.rows[job])
        if autostart:
            self.start()

    # ----- reading the job store -----------------------------------------------------------------
    def _records(self) -> list[dict[str, Any]]:
        if self.job is not None:
            try:
                return [self.index.get(self.job) if self.index is not None else self.store.read(self.job)]
            except KeyError:
                return []
        records = self.index.records() if self.index is not None else self.store.list()
        active = [r for r in records if r["state"] not in TERMINAL_STATES]  # (the store's dicts have every field)
        finished = [r for r in records if r["state"] in TERMINAL_STATES]
        self.hidden = max(0, len(finished) - self.limit)
        return active + finished[: self.limit]

    def refresh(self) -> bool:
        """Read the job store once and update every row; True while any listed job is active."""
        with self._lock:
            if self._closed:
                return False
            self.hidden = 0
            records = self.records = self._records()
            now = time.time()
            for record in records:
                row = self.rows.get(record["id"])
                if row is None:
                    row = self.rows[record["id"]] = _Row(record["id"], self._on_cancel, self._toggle_details)
                row.render(record, now)
                if row.expanded:
                    self._render_details(row)
            order = [self.rows[r["id"]].root for r in records]
            if list(self.table.children) != order:
                self.table.children = order
            running = sum(1 for r in records if r["state"] not in TERMINAL_STATES)
            self._header(records, running, now)
            self.refreshes += 1
            self._active = running > 0
            return self._active

    def _header(self, records: list[dict[str, Any]], running: int, now: float) -> None:
        if not records:
            self.header.value = (
                f"No job {esc(self.job)} in the job store."
                if self.job
                else "No burst jobs yet. Run a cell with %%burst to start one."
            )
            return
        hidden = f", {self.hidden} older not shown" if self.hidden else ""
        live = "updating live" if running else "all ended"
        self.header.value = (
            f"<b>burst jobs</b>: {len(records)} listed, {running} active{hidden} &middot; "
            f"{live} &middot; read {time.strftime('%H:%M:%S', time.localtime(now))}"
        )

    # ----- the refresh thread --------------------------------------------------------------------
    def start(self) -> None:
        """Refresh in the background while any listed job is active (no-op when none is, or one runs)."""
        with self._thread_lock:
            if self._closed or not self._active or self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, daemon=True, name="starburst-status")
            self._thread.start()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # a bad read must not end the table; try again next time
                logger.exception("%burst_status refresh failed")
            with self._thread_lock:
                if self._closed or not self._active:
                    self._thread = None
                    return
        with self._thread_lock:
            self._thread = None

    def close(self) -> None:
        """Stop refreshing, stop observing live jobs and close every widget of the table."""
        with self._thread_lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        with self._lock:
            for row in self.rows.values():
                self._drop_live(row)
                _close_tree(row.root)
            _close_tree(self.root)

    def _on_comm(self, change: dict[str, Any]) -> None:
        if change["new"] is None:
            self.close()

    def _on_refresh(self) -> None:
        self.refresh()
        self.start()

    # ----- cancel --------------------------------------------------------------------------------
    def launcher(self) -> Any:
        if self._launcher is None:
            if self._launcher_factory is not None:
                self._launcher = self._launcher_factory()
            else:
                from starburst_jupyter.core.launcher import Launcher

                self._launcher = Launcher(home=self.store.home)
        return self._launcher

    def _on_cancel(self, row: _Row) -> threading.Thread | None:
        """The click returns at once: the core's cancel (which may wait for the owning kernel) runs in a thread."""
        with self._lock:
            if not row.active or row.cancelling:
                return None
            row.cancelling, row.note = True, ""
            row.render(row.record, time.time())
        thread = threading.Thread(target=self._cancel, args=(row,), daemon=True, name=f"starburst-cancel-{row.job_id}")
        thread.start()
        return thread

    def _cancel(self, row: _Row) -> None:
        try:
            self.launcher().cancel_job(row.job_id, CANCEL_REASON)
        except Exception as exc:  # shown in the row, the table goes on
            logger.exception("cancelling %s failed", row.job_id)
            with self._lock:
                row.cancelling, row.note = False, f"cancel failed: {type(exc).__name__}: {exc}"[:200]
        self.refresh()
        self.start()

    # ----- details -------------------------------------------------------------------------------
    def _toggle_details(self, row: _Row) -> None:
        with self._lock:
            row.expanded = not row.expanded
            row.details.description = "Hide" if row.expanded else "Details"
            row.details.icon = "chevron-up" if row.expanded else "chevron-down"
            row.detail.layout.display = None if row.expanded else "none"
            if row.expanded:
                row.detail_of = None
                self._render_details(row)
            else:
                self._drop_live(row)
                row.detail.children = []

    def _render_details(self, row: _Row) -> None:
        """The job's live JobWidget while it runs in this kernel; else the detail text and worker log tails."""
        handle = _live_handle(row.job_id) if row.active else None
        if handle is not None:
            if row.live is None:
                self._go_live(row, handle)
            return
        self._drop_live(row)
        now = time.monotonic()
        if row.detail.children and (
            row.detail_of == row.record or (row.active and now - row.detail_at < DETAIL_SECONDS)
        ):
            return  # logs are re-read only when the record changed, and not too often while the job runs
        row.detail_of, row.detail_at = row.record, now
        row.detail_text.value = self._detail_html(row.record)
        row.detail.children = [row.detail_text]

    def _go_live(self, row: _Row, handle: Any) -> None:
        view = view_from_record(row.record)
        widget = JobWidget(view, handle.cancel, handle.stop_worker, size=handle.spec.describe_size())
        widget.render(view)

        def render(current: JobView) -> None:
            if not current.ended:
                widget.render(current)
                return
            widget.settle(current)  # closes the live widget's models: the row shows its summary instead
            if widget.kept is not None:  # (kept for a restored view: the row's own summary replaces it here)
                close_all(widget.root)
            with self._lock:
                if row.live is not None and row.live[0] is widget:
                    row.detail_text.value = widget.summary
                    row.detail.children = [row.detail_text]

        unsubscribe = handle.events.subscribe(Throttled(view, render, interval=RENDER_INTERVAL))
        row.live = (widget, unsubscribe)
        row.detail_of = None
        row.detail.children = [widget.root]

    def _drop_live(self, row: _Row) -> None:
        if row.live is not None:
            widget, unsubscribe = row.live
            row.live = None
            unsubscribe()
            if not widget.closed:
                widget.closed = True
                close_all(widget.root)

    def _detail_html(self, record: dict[str, Any]) -> str:
        parts = [f"<pre class='starburst-detail' style='margin:0'>{esc(format_job(record))}</pre>"]
        if record.get("workers"):
            try:
                logs = self.launcher().job_logs(record["id"], tail_lines=LOG_TAIL_LINES, first=MAX_WORKER_LOGS + 1)
            except Exception as exc:  # e.g. a cloud backend without credentials here
                parts.append(f"<div>worker logs unavailable: {esc(type(exc).__name__)}: {esc(exc)}</div>")
            else:
                for index in sorted(logs)[:MAX_WORKER_LOGS]:
                    parts.append(
                        f"<div><b>worker {index}</b> (last {LOG_TAIL_LINES} lines)</div>"
                        f"<pre class='starburst-logs' style='margin:0'>{esc(_tail(logs[index], LOG_TAIL_LINES))}</pre>"
                    )
                if len(record["workers"]) > MAX_WORKER_LOGS:
                    parts.append(f"<div>... {len(record['workers']) - MAX_WORKER_LOGS} more workers</div>")
            parts.append(f"<small>full logs: <code>%burst_logs {esc(record['id'])} [--worker N]</code></small>")
        return "".join(parts)


COLUMNS = (
    ("label", "job"),
    ("backend", "backend"),
    ("state", "state"),
    ("progress", "done/failed/total"),
    ("elapsed", "time · rate, time left"),
    ("cost", "cost"),
    ("button", ""),
    ("button", ""),
)


def _column_headers() -> widgets.HBox:
    """The table's header line, in the rows' column widths."""
    shared = _shared()
    cells = [
        widgets.HTML(f"<b>{esc(title)}</b>", layout=shared[column], style=shared["html"]) for column, title in COLUMNS
    ]
    box = widgets.HBox(cells, layout=shared["line"])
    box.add_class("starburst-status-columns")
    return box


def _close_tree(widget: Any) -> None:
    """Close a widget and every widget inside it (a Box's children stay open when only the box closes)."""
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


def show_status(job: str | None = None, store: JobStore | None = None) -> StatusWidget:
    """Display the live table (what %burst_status does in a kernel); the text table is its plain-text form."""
    from IPython.display import display

    store = store or JobStore()
    status = StatusWidget(job, store=store)
    bundle = status.root._repr_mimebundle_()
    records = status.records
    bundle["text/plain"] = format_job(records[0]) if job is not None and records else format_jobs(records)
    display(bundle, raw=True)
    return status

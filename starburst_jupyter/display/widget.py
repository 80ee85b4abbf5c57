"""The live job widget: renders a JobView with ipywidgets. Observes events; drives nothing itself.

Its widget count is fixed by its layout, never by the job: all workers are one HTML table, all waves one
line, and each refresh only sets trait values (ipywidgets sends a trait only when its value changed), at
most 4 times a second (Throttled). When the job ends the widget replaces its own output, in the same
display (update_display), by a static HTML/text summary, and closes every widget it made (layouts and
styles too): a saved notebook, nbconvert and GitHub show the summary, and the kernel keeps no models.

Its buttons call the JobHandle (cancel / stop_worker), the same path as the stop button. They
respond while the cell runs because %%burst cells run as awaited cells (see magics.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from starburst_jupyter.core.debuglog import trace
from starburst_jupyter.display import summary
from starburst_jupyter.display.progress import JobView
from starburst_jupyter.display.summary import STATE_COLOURS, esc

__all__ = ["STATE_COLOURS", "ImageProgressWidget", "JobWidget", "close_all", "esc"]

MAX_LOG_LINES_SHOWN = 200
RENDER_INTERVAL = 0.25  # s: at most 4 renders a second (Throttled's interval for the widget)
WIDGETS_PER_JOB = 45  # every model a JobWidget opens (15 widgets, their layouts and styles): tests hold it to this


def close_all(widget: Any) -> None:
    """Close a widget, everything inside it, and their layouts and styles (each is a model of its own that
    Widget.close leaves open)."""
    for child in getattr(widget, "children", ()):
        close_all(child)
    for part in ("layout", "style"):
        owned = getattr(widget, part, None)
        if isinstance(owned, widgets.Widget):
            owned.close()
    widget.close()


class _Root(widgets.VBox):
    """The widget's box, which notices a front end restoring widgets from the kernel (a page reloaded mid-run,
    or a notebook saved with its widget state): those ask for every model's whole state (get_state without a
    key); a live display only ever gets the changes."""

    restored = False  # (a plain attribute: not synced)
    opened = False

    def get_state(self, key=None, drop_defaults=False):
        if key is None and self.opened:
            self.restored = True
        return super().get_state(key=key, drop_defaults=drop_defaults)


class JobWidget:
    def __init__(
        self,
        view: JobView,
        cancel: Callable[[], None],
        stop_worker: Callable[[int], None],
        size: str = "",
        cancellable: bool = True,
    ):
        self.view, self._cancel, self._stop_worker = view, cancel, stop_worker
        self.size = size
        self.closed = False
        self.display_id: str | None = None
        self.summary = ""  # the static HTML left when the job ended
        self._lock = threading.RLock()
        self.header = widgets.HTML()
        self.progress = widgets.IntProgress(
            min=0, max=max(view.total, 1), description="items", layout=widgets.Layout(width="60%")
        )
        self.stats = widgets.HTML()  # ok / failed / of total, rate and time left
        self.waves = widgets.HTML()  # the current wave and one segment per wave
        self.cost = widgets.HTML()
        self.cancel_button = widgets.Button(
            description="Cancel job",
            button_style="danger",
            icon="stop",
            tooltip="Stop every worker of this job",
            disabled=not cancellable,
        )
        self.cancel_button.on_click(lambda _: self._on_cancel())
        self.cancel_button.on_msg(lambda _w, content, _b: trace("widget: Cancel button got a message", content=content))
        trace("widget: Cancel button made", job=view.job_id, comm=str(self.cancel_button.model_id)[:8])
        self.stop_choice = widgets.Dropdown(options=[("worker...", -1)], value=-1, layout=widgets.Layout(width="130px"))
        self.stop_button = widgets.Button(
            description="Stop worker", icon="hand-paper-o", tooltip="End the chosen worker; its items go to others"
        )
        self.stop_button.on_click(lambda _: self._stop(self.stop_choice.value))
        self.workers = widgets.HTML()  # one table for every worker: its size never changes the widget count
        self.show_all = widgets.ToggleButton(value=False, description="show all", layout=widgets.Layout(width="auto"))
        self.show_all.observe(lambda _: self._on_show_all(), names="value")
        self.failures = widgets.HTML()
        self.log_choice = widgets.Dropdown(options=[("all workers", -1)], value=-1, description="logs")
        self.log_choice.observe(lambda _: self._render_logs(), names="value")
        # column-reverse: the box opens scrolled to its end and stays there as lines come (it follows the newest)
        self.logs = widgets.HTML(
            layout=widgets.Layout(
                max_height="220px", overflow="auto", border="1px solid #ccc", display="flex", flex_flow="column-reverse"
            )
        )
        self.kept: widgets.HTML | None = None  # the summary, kept as a widget for a restored (reloaded) view
        self.root = _Root(
            [
                self.header,
                self.progress,
                self.stats,
                self.waves,
                self.cost,
                widgets.HBox([self.cancel_button, self.stop_choice, self.stop_button]),
                self.workers,
                self.show_all,
                self.failures,
                widgets.VBox([self.log_choice, self.logs]),
            ]
        )
        self.root.add_class("starburst-job")
        self.root.opened = True

    # ----- showing it ----------------------------------------------------------------------------
    def display(self) -> str:
        """Show the widget as a display that `settle` replaces by the summary; returns its display id.
        The bundle's text/html is what a notebook saved mid-run shows where widgets are not live."""
        from IPython.display import display

        bundle = self.root._repr_mimebundle_()
        bundle["text/plain"] = f"[live view of burst job {self.view.job_id}; replaced by its summary at the end]"
        bundle["text/html"] = summary.live_placeholder_html(self.view)
        handle = display(bundle, raw=True, display_id=True)
        self.display_id = handle.display_id if handle is not None else None
        return self.display_id or ""

    # ----- buttons -------------------------------------------------------------------------------
    def _on_cancel(self) -> None:
        trace("widget: Cancel handler runs", job=self.view.job_id)
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling..."
        self._cancel()
        trace("widget: Cancel handler done", job=self.view.job_id)

    def _stop(self, index: int) -> None:
        if index is None or index < 0:
            return
        self.stop_choice.value = -1
        self._stop_worker(index)

    # ----- rendering -----------------------------------------------------------------------------
    def render(self, view: JobView) -> None:
        with self._lock:
            if self.closed:
                return
            now = time.time()
            self.header.value = summary.header_html(view, self.size, now)
            self.progress.value = min(view.finished, self.progress.max)
            self.progress.description = f"{view.finished}/{view.total}"
            self.progress.bar_style = "warning" if view.failed else ("success" if view.state == "done" else "")
            bar = summary.parts_bar(view.done, view.failed, view.total, "160px") if view.failed else ""
            bar = f"<span style='display:inline-block;vertical-align:middle'>{bar}</span> " if bar else ""
            self.stats.value = bar + summary.counts_line(view, now)
            self.waves.value = summary.waves_html(view)
            self.cost.value = summary.cost_html(view)
            running = [("worker...", -1)] + [
                (f"worker {i}", i)
                for i, w in sorted(view.workers.items())
                if w.state in ("running", "idle", "starting")
            ]
            if running != list(self.stop_choice.options):
                self.stop_choice.options = running
                self.stop_choice.value = -1
            self._render_workers(now)
            self.failures.value = summary.failures_html(view)
            options = [("all workers", -1)] + [(f"worker {i}", i) for i in sorted(view.workers)]
            if len(options) != len(self.log_choice.options):
                self.log_choice.options = options
            self._render_logs()
            if view.ended:
                self.cancel_button.disabled = True
                self.cancel_button.description = view.state_label()

    def _on_show_all(self) -> None:
        with self._lock:  # (a click comes on the kernel's thread, renders on the job's)
            if not self.closed:
                self._render_workers()

    def _render_workers(self, now: float | None = None) -> None:
        table, left_out = summary.workers_table(self.view, now or time.time(), self.show_all.value)
        self.workers.value = table
        self.show_all.description = "show fewer" if self.show_all.value else f"show all ({left_out} more)"
        self.show_all.layout.display = None if (left_out or self.show_all.value) else "none"

    def _render_logs(self) -> None:
        choice = self.log_choice.value
        workers = self.view.workers
        if choice == -1:  # by time (as the lines came), each line naming its worker
            lines = [f"[{i}] {line}" for i, line in list(self.view.log_lines)[-MAX_LOG_LINES_SHOWN:]]
        else:
            lines = list(workers[choice].logs) if choice in workers else []
        text = "\n".join(lines[-MAX_LOG_LINES_SHOWN:])
        self.logs.value = f"<pre class='starburst-logs' style='margin:0'>{esc(text)}</pre>"

    def settle(self, view: JobView) -> None:
        """The job ended: its display becomes the static summary, and every widget of it is closed.
        Called again (e.g. a detached job's landing note), it updates the summary.

        A page reloaded mid-run shows the widget restored from the kernel, and no update_display reaches it
        (the reloaded page has no handle on the running cell): when a front end restored it, the box and one
        HTML widget with the summary stay (5 models), so that page ends on the summary too, not on nothing."""
        with self._lock:
            self.summary = summary.summary_html(view, self.size)
            if self.kept is not None:
                self.kept.value = self.summary
            if self.display_id is not None:
                from IPython.display import update_display

                update_display(
                    {"text/html": self.summary, "text/plain": summary.summary_text(view)},
                    display_id=self.display_id,
                    raw=True,
                )
            if not self.closed:
                self.closed = True
                if self.root.restored:
                    self.kept = widgets.HTML(self.summary)
                    children, self.root.children = self.root.children, (self.kept,)
                    for child in children:
                        close_all(child)
                else:
                    close_all(self.root)


class ImageProgressWidget:
    """One line and a bar for making the worker image (a first build takes minutes and must never look
    frozen, nor flood the cell): build steps and pushed bytes as the bar, the latest step as the line."""

    def __init__(self, min_interval: float = 0.25):
        self.line = widgets.HTML(value="worker image: checking")
        self.bar = widgets.IntProgress(min=0, max=1, value=0, layout=widgets.Layout(width="60%", visibility="hidden"))
        self.root = widgets.VBox([self.line, self.bar])
        self.root.add_class("starburst-image")
        self.min_interval, self._last = min_interval, 0.0
        self.lines = 0  # pip and Dockerfile output lines, counted rather than shown

    def update(self, event) -> None:
        final = event.phase in ("done", "reuse")
        if event.phase == "context" or (
            event.phase == "build" and event.current is None and not event.message.startswith("building ")
        ):
            self.lines += 1
            if not final and time.monotonic() - self._last < self.min_interval:
                return
        elif not final and event.phase == "push" and time.monotonic() - self._last < self.min_interval:
            return
        self._last = time.monotonic()
        if event.total:
            self.bar.max, self.bar.value = max(1, event.total), min(event.current or 0, event.total)
            self.bar.layout.visibility = "visible"
            self.bar.description = "pushed" if event.phase == "push" else "step"
        if final:
            self.bar.layout.visibility = "hidden"
        message = (
            event.message
            if event.phase in ("check", "reuse", "done", "push") or event.current is not None
            else f"{event.phase}: {self.lines} lines of output"
        )
        self.line.value = f"<b>worker image</b> ({esc(event.phase)}): {esc(message)}"

"""The live job widget: renders a JobView with ipywidgets. Observes events; drives nothing itself.

Its buttons call the JobHandle (cancel / stop_worker), the same path as the stop button. They
respond while the cell runs because %%burst cells run as awaited cells (see magics.py).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable

import ipywidgets as widgets

from starburst_jupyter.core.debuglog import trace
from starburst_jupyter.display.progress import JobView

MAX_LOG_LINES_SHOWN = 200
STATE_COLOURS = {"done": "#2e7d32", "failed": "#c62828", "cancelled": "#8d6e63", "running": "#1565c0"}


def esc(text: object) -> str:
    return html.escape(str(text))


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
        self.header = widgets.HTML()
        self.waves = widgets.HTML()
        self.progress = widgets.IntProgress(
            min=0, max=max(view.total, 1), description="items", layout=widgets.Layout(width="60%")
        )
        self.wave_bars = widgets.VBox()
        self.cost = widgets.HTML()
        self.workers = widgets.VBox()
        self.log_choice = widgets.Dropdown(options=[("all workers", -1)], value=-1, description="logs")
        self.log_choice.observe(lambda _: self._render_logs(), names="value")
        self.logs = widgets.HTML(layout=widgets.Layout(max_height="220px", overflow="auto", border="1px solid #ccc"))
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
        self.failures = widgets.HTML()
        self._worker_buttons: dict[int, widgets.Button] = {}
        self.root = widgets.VBox(
            [
                self.header,
                self.waves,
                self.progress,
                self.wave_bars,
                self.cost,
                self.cancel_button,
                self.workers,
                self.failures,
                widgets.VBox([self.log_choice, self.logs]),
            ]
        )
        self.root.add_class("starburst-job")

    def _on_cancel(self) -> None:
        trace("widget: Cancel handler runs", job=self.view.job_id)
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling..."
        self._cancel()
        trace("widget: Cancel handler done", job=self.view.job_id)

    def _stop(self, index: int) -> None:
        button = self._worker_buttons.get(index)
        if button is not None:
            button.disabled = True
        self._stop_worker(index)

    def render(self, view: JobView) -> None:
        now = time.time()
        colour = STATE_COLOURS.get(view.state, "#555")
        name = f"{esc(view.name)} " if view.name else ""
        self.header.value = (
            f"<b>{name}{esc(view.job_id)}</b> &middot; {esc(view.backend)}"
            f"{' ' + esc(view.region) if view.region else ''}{' &middot; ' + esc(self.size) if self.size else ''}"
            f" &middot; <span class='starburst-state' style='color:{colour}'><b>{esc(view.state)}</b></span>"
            f" &middot; {view.elapsed(now):.1f}s"
        )
        up = view.workers_up(view.wave)
        self.waves.value = (
            f"wave {view.wave} of {view.waves}: {up}/{view.wave_workers.get(view.wave, 0)} workers up"
            if view.wave
            else "launching workers..."
        )
        self.progress.value = view.done + view.failed
        self.progress.description = f"{view.done + view.failed}/{view.total}"
        self.progress.bar_style = "danger" if view.failed else ("success" if view.state == "done" else "")
        if view.waves > 1:
            self.wave_bars.children = [
                widgets.IntProgress(
                    value=view.wave_done.get(w, 0),
                    min=0,
                    max=max(
                        1, round(view.total * view.wave_workers.get(w, 0) / max(1, sum(view.wave_workers.values())))
                    ),
                    description=f"wave {w}",
                    layout=widgets.Layout(width="40%"),
                )
                for w in sorted(view.wave_workers)
            ]
        cap = f" &middot; cap ${view.cap:g}" if view.cap else ""
        stop_note = " (the job is cancelled before the cap would be passed)" if view.cap else ""
        self.cost.value = (
            f"cost ${view.accrued:.4f} so far, ${view.projected:.4f} projected{cap}{stop_note}"
            f"<br><small>{esc(view.cost_label)}</small>"
        )
        self._render_workers(view, now)
        self._render_failures(view)
        options = [("all workers", -1)] + [(f"worker {i}", i) for i in sorted(view.workers)]
        if len(options) != len(self.log_choice.options):
            self.log_choice.options = options
        self._render_logs()
        if view.ended:
            self.cancel_button.disabled = True
            self.cancel_button.description = view.state

    def _render_workers(self, view: JobView, now: float) -> None:
        rows = []
        for index in sorted(view.workers):
            worker = view.workers[index]
            button = self._worker_buttons.get(index)
            if button is None:
                button = widgets.Button(
                    description="stop",
                    layout=widgets.Layout(width="60px"),
                    tooltip=f"End worker {index}; its items go to other workers",
                )
                button.on_click(lambda _, i=index: self._stop(i))
                self._worker_buttons[index] = button
            button.disabled = worker.state in ("exited", "failed") or bool(view.ended)
            current = ",".join(map(str, worker.current[:3])) + ("..." if len(worker.current) > 3 else "")
            detail = esc(worker.error or worker.last_line)[:160]
            text = (
                f"<code>{index:>3}</code> {worker.state:<8} items {worker.done:>4} "
                f"&middot; now {current or '-'} &middot; {worker.runtime(now):.0f}s &middot; {detail}"
            )
            rows.append(widgets.HBox([button, widgets.HTML(text)]))
        self.workers.children = rows

    def _render_failures(self, view: JobView) -> None:
        if not view.failures:
            self.failures.value = ""
            return
        items = "".join(
            f"<details><summary>item {i}: {esc(line)}</summary><pre>{esc(tb)}</pre></details>"
            for i, line, tb in view.failures[:20]
        )
        more = f"<div>... and {len(view.failures) - 20} more</div>" if len(view.failures) > 20 else ""
        self.failures.value = f"<b>{len(view.failures)} failed</b>{items}{more}"

    def _render_logs(self) -> None:
        choice = self.log_choice.value
        workers = self.view.workers
        if choice == -1:
            lines = [f"[{i}] {line}" for i in sorted(workers) for line in list(workers[i].logs)[-40:]]
        else:
            lines = list(workers[choice].logs) if choice in workers else []
        text = "\n".join(lines[-MAX_LOG_LINES_SHOWN:])
        self.logs.value = f"<pre class='starburst-logs' style='margin:0'>{esc(text)}</pre>"

    def settle(self, view: JobView) -> None:
        """The compact summary a finished cell keeps."""
        self.render(view)
        colour = STATE_COLOURS.get(view.state, "#555")
        self.root.children = [
            widgets.HTML(
                f"<div class='starburst-summary'><b>{esc(view.job_id)}</b> "
                f"<span style='color:{colour}'><b>{esc(view.state)}</b></span>: {view.done}/{view.total} ok, "
                f"{view.failed} failed, {view.elapsed():.1f}s, ${view.accrued:.4f}"
                f"{' (Fargate estimate)' if view.backend == 'local' else ''}"
                f"{' &middot; ' + esc(view.message) if view.message else ''}</div>"
            ),
            self.failures,
        ]


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

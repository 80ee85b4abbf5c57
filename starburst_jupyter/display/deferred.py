"""A job's live widget, shown only once the job has run for a moment (tqdm's `delay`): a cell whose job ends
sooner shows just the job's summary. Opening the widget's 45 models costs about 40 ms of a kernel's time, as
much again as a whole one-item local job."""

from __future__ import annotations

import threading
from collections.abc import Callable

from starburst_jupyter.display import summary
from starburst_jupyter.display.progress import JobView
from starburst_jupyter.display.widget import JobWidget

#: Seconds a job runs before its cell shows the live widget.
LIVE_VIEW_DELAY = 0.3


class DeferredWidget:
    """Renders into the widget once it is shown; `show` and `finish` run on the cell's thread (a display made
    there lands in the cell), `render` on the job's."""

    delay = LIVE_VIEW_DELAY

    def __init__(self, view: JobView, make: Callable[[], JobWidget], size: str = ""):
        self.view, self._make, self.size = view, make, size
        self.widget: JobWidget | None = None
        self._lock = threading.Lock()

    def render(self, current: JobView) -> None:
        """Throttled's renderer: nothing until the widget is shown."""
        with self._lock:
            widget = self.widget
        if widget is not None:
            (widget.settle if current.ended else widget.render)(current)

    def show(self) -> None:
        """The job still runs after the delay: its widget now, caught up with what happened so far."""
        with self._lock:
            if self.widget is not None or self.view.ended:
                return
            widget = self.widget = self._make()
            widget.display()
        widget.render(self.view)
        if self.view.ended:  # (it ended while the widget was being made: the job's render found none)
            widget.settle(self.view)

    def finish(self) -> None:
        """The job ended: its summary, in the cell, when no widget was shown (a shown one settled itself)."""
        with self._lock:
            if self.widget is not None:
                return
        from IPython.display import display

        bundle = {
            "text/html": summary.summary_html(self.view, self.size),
            "text/plain": summary.summary_text(self.view),
        }
        display(bundle, raw=True)

"""The view model every display face renders: job events in, one plain state out.

Widgets (next) and the text progress line both read a JobView; neither touches the backend.
Rendering is throttled so a 1000-task job cannot flood a front end.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from starburst_jupyter.core import events as ev
from starburst_jupyter.display.rate import RateMeter, rate_and_eta

MAX_LOG_LINES_PER_WORKER = 200
#: What a progress line needs: everything but log lines (subscribing to those makes the core tail logs).
PROGRESS_EVENTS = (
    ev.JobStateChanged,
    ev.WaveStarted,
    ev.WaveFinished,
    ev.WorkerStarted,
    ev.WorkerExited,
    ev.TaskStarted,
    ev.TaskFinished,
    ev.TasksFinished,
    ev.TaskFailed,
    ev.TaskRetried,
    ev.CostTick,
    ev.JobFinished,
)


@dataclass
class WorkerView:
    index: int
    wave: int
    state: str = "starting"  # starting, running, idle, exited, failed, stopped (by the user or a cancel)
    current: tuple[int, ...] = ()  # the items of its task not finished yet: current[0] is the one it works on
    done: int = 0
    started: float = field(default_factory=time.time)
    ended: float | None = None
    last_line: str = ""
    error: str = ""
    logs: deque = field(default_factory=lambda: deque(maxlen=MAX_LOG_LINES_PER_WORKER))
    item_started: float | None = None  # when it began its current item (a slow item shows it)

    def runtime(self, now: float) -> float:
        return (self.ended or now) - self.started


@dataclass
class JobView:
    job_id: str
    total: int
    name: str = ""
    backend: str = "local"
    region: str = ""
    state: str = "queued"
    message: str = ""
    started: float = field(default_factory=time.time)
    ended: float | None = None
    done: int = 0
    failed: int = 0
    retried: int = 0
    wave: int = 0
    waves: int = 1
    wave_workers: dict[int, int] = field(default_factory=dict)  # wave -> planned workers
    wave_done: dict[int, int] = field(default_factory=dict)  # wave -> items finished by its workers
    workers: dict[int, WorkerView] = field(default_factory=dict)
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (item, one line, traceback)
    # every worker's lines in the order they arrived (the "all workers" log reads by time, not by worker)
    log_lines: deque = field(default_factory=lambda: deque(maxlen=MAX_LOG_LINES_PER_WORKER * 2))
    accrued: float = 0.0
    projected: float = 0.0
    cap: float | None = None
    cost_label: str = ""
    on_error: str = "raise"  # "keep": a job whose failures were kept ended "done with N failed"
    waves_finished: set[int] = field(default_factory=set)
    meter: RateMeter = field(default_factory=RateMeter)

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def speed(self, now: float | None = None) -> float | None:
        """Items/s, smoothed as tqdm does (each call is a sample); the whole run's average once it ended."""
        if self.ended is not None:
            elapsed = self.elapsed()
            return self.finished / elapsed if elapsed > 0 and self.finished else None
        return self.meter.update(self.finished, now if now is not None else time.time())

    def progress_note(self, now: float | None = None) -> str:
        """'12.3 items/s, 0:42 left' while it runs; '12.3 items/s' once it ended."""
        rate = self.speed(now)
        if self.ended is not None:
            return rate_and_eta(rate, 0).split(",")[0]
        return rate_and_eta(rate, self.total - self.finished)

    def state_label(self) -> str:
        """What the job's state reads as: a job that kept its failures (--on-error keep) and ran to the end is
        'done with N failed', not 'failed'."""
        if self.state == "failed" and self.on_error == "keep" and self.failed and not self.message:
            return f"done with {self.failed} failed"
        return self.state

    def elapsed(self, now: float | None = None) -> float:
        return (self.ended or now or time.time()) - self.started

    def workers_up(self, wave: int | None = None) -> int:
        """Workers up (of `wave`, or of any: a worker carries on from one wave into the next)."""
        up = ("running", "idle", "starting")
        return sum(1 for w in list(self.workers.values()) if (wave is None or w.wave == wave) and w.state in up)

    def apply(self, event: ev.Event) -> None:
        self.job_id = self.job_id or event.job_id
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)

    def _on_JobStateChanged(self, e: ev.JobStateChanged) -> None:
        self.state, self.message = e.state, e.message or self.message

    def _on_WaveStarted(self, e: ev.WaveStarted) -> None:
        self.wave, self.waves = e.wave, e.waves
        self.wave_workers[e.wave] = e.workers

    def _on_WorkerStarted(self, e: ev.WorkerStarted) -> None:
        self.workers[e.worker] = WorkerView(e.worker, e.wave, started=e.at)

    def _on_WorkerExited(self, e: ev.WorkerExited) -> None:
        worker = self.workers.get(e.worker)
        if worker is not None:
            stopped = (e.reason or worker.error).startswith("stopped")  # by the user, or by a cancel
            worker.state = "stopped" if stopped else ("exited" if e.exit_code in (0, None) else "failed")
            worker.ended, worker.current, worker.item_started = e.at, (), None
            if e.exit_code not in (0, None) and not stopped:
                worker.error = e.reason

    def _on_TaskStarted(self, e: ev.TaskStarted) -> None:
        worker = self.workers.get(e.worker)
        if worker is not None:
            worker.state, worker.current, worker.item_started = "running", e.indices, e.at

    def _on_WaveFinished(self, e: ev.WaveFinished) -> None:
        self.waves_finished.add(e.wave)

    def _count(self, worker_index: int, item: int, at: float) -> None:
        worker = self.workers.get(worker_index)
        if worker is not None:
            if item in worker.current:  # "now" moves on to the next item of the task, as the worker does
                worker.current = tuple(i for i in worker.current if i != item)
                worker.item_started = at if worker.current else None
                if not worker.current and worker.state == "running":
                    worker.state = "idle"
            worker.done += 1
            self.wave_done[worker.wave] = self.wave_done.get(worker.wave, 0) + 1

    def _on_TaskFinished(self, e: ev.TaskFinished) -> None:
        self.done += 1
        self._count(e.worker, e.index, e.at)

    def _on_TasksFinished(self, e: ev.TasksFinished) -> None:
        """A batch: the same counts as its items one by one, in one pass over the worker's current items."""
        self.done += len(e.indices)
        worker = self.workers.get(e.worker)
        if worker is not None:
            finished = set(e.indices)
            if any(i in finished for i in worker.current):
                worker.current = tuple(i for i in worker.current if i not in finished)
                worker.item_started = e.at if worker.current else None
                if not worker.current and worker.state == "running":
                    worker.state = "idle"
            worker.done += len(e.indices)
            self.wave_done[worker.wave] = self.wave_done.get(worker.wave, 0) + len(e.indices)

    def _on_TaskFailed(self, e: ev.TaskFailed) -> None:
        self.failed += 1
        self.failures.append((e.index, e.error, e.traceback))
        self._count(e.worker, e.index, e.at)
        worker = self.workers.get(e.worker)
        if worker is not None:
            worker.error = f"item {e.index}: {e.error}"

    def _on_TaskRetried(self, e: ev.TaskRetried) -> None:
        self.retried += 1

    def _on_LogLine(self, e: ev.LogLine) -> None:
        worker = self.workers.get(e.worker)
        if worker is not None:
            worker.logs.append(e.line)
            worker.last_line = e.line
            self.log_lines.append((e.worker, e.line))

    def _on_CostTick(self, e: ev.CostTick) -> None:
        self.accrued, self.projected, self.cap, self.cost_label = e.accrued, e.projected, e.cap, e.label

    def _on_JobFinished(self, e: ev.JobFinished) -> None:
        self.state, self.ended, self.message = e.state, e.at, e.message or self.message
        self.done, self.failed, self.accrued = e.done, e.failed, e.cost

    def line(self, now: float | None = None) -> str:
        """One line for terminals and notebooks without widgets."""
        wave = (
            f" | wave {self.wave}/{self.waves}: {self.workers_up()}/{self.wave_workers.get(self.wave, 0)} workers up"
            if self.waves > 1 and self.state in ("launching", "running")
            else ""
        )
        failed = f", {self.failed} failed" if self.failed else ""
        cap = f" (cap ${self.cap:g})" if self.cap else ""
        cost = f" | ${self.accrued:.4f}{cap}" + (" est." if self.backend == "local" else "")
        speed = f" | {self.progress_note(now)}" if self.ended is not None or self.state == "running" else ""
        return (
            f"{self.job_id} {self.state_label()}: {self.done + self.failed}/{self.total} items{failed}{wave}"
            f" | {self.elapsed(now):.1f}s{speed}{cost}"
        )


class Throttled:
    """Calls render(view) at most every `interval` seconds, and always at the end and for a state change after it
    (a detached job's follower says where the results landed right after the job's end)."""

    def __init__(self, view: JobView, render: Callable[[JobView], None], interval: float = 0.25):
        self.view, self.render, self.interval = view, render, interval
        self.renders = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        with self._lock:
            self.view.apply(event)
            now = time.monotonic()
            landed = isinstance(event, ev.JobStateChanged) and self.view.ended is not None
            final = landed or isinstance(event, ev.JobFinished)
            if final or now - self._last >= self.interval:
                self._last = now
                self.renders += 1
                self.render(self.view)


class TextProgress:
    """A progress line: rewritten in place on a terminal or notebook, or one line every few seconds in logs."""

    def __init__(self, stream: TextIO, in_place: bool):
        self.stream, self.in_place = stream, in_place
        self._width = 0  # the longest line written in place: a shorter one is padded over it

    def __call__(self, view: JobView) -> None:
        text = view.line()
        if self.in_place:
            end = "\n" if view.ended else ""
            padded = text.ljust(self._width)  # no "...est.kers up" left behind by a longer line
            self._width = 0 if view.ended else max(self._width, len(text))
            self.stream.write("\r" + padded + end)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class ImageProgressLines:
    # (the job's TextProgress above shows a job; this shows the worker image being made before it)
    """Build progress as lines for a terminal or a notebook cell's output: every build step, pushes at most
    every 2 s, pip's chatter only as a count (a first build must not look frozen, nor flood the output)."""

    def __init__(self, write: Callable[[str], None] = print, push_every: float = 2.0):
        self.write, self.push_every = write, push_every
        self._last_push = 0.0
        self._context_lines = 0

    def __call__(self, event: Any) -> None:
        if event.phase == "context" and not event.message.startswith(("building ", "gathering ")):
            self._context_lines += 1
            return
        if event.phase == "build" and event.current is None and not event.message.startswith("building "):
            return  # the Dockerfile steps' own output; the step lines carry the progress
        if event.phase == "push" and event.total:
            now = time.monotonic()
            if now - self._last_push < self.push_every:
                return
            self._last_push = now
            self.write(f"[image] pushing {event.current / 1024**2:.0f}/{event.total / 1024**2:.0f} MB")
            return
        self.write(f"[image] {event.message}")

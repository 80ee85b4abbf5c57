"""A detached driver's events, kept in the job's store for the kernels that follow the job from anywhere.

The driver appends its events in numbered batches (one object per flush, about every half second while
anything happens); a follower lists the batches after the last one it read and replays them into its own
EventBus, so a widget shows a detached job exactly as it shows one driven in its kernel. Log lines are not
journalled: a follower tails the workers' logs itself, only when a face asks for them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from starburst_jupyter.core import events as ev
from starburst_jupyter.protocol.jobfiles import JobFiles

#: The most events one batch holds (a flush writes several batches when more came).
BATCH_EVENTS = 20_000


class EventJournal:
    """Subscribes to a driver's bus; `flush` writes what came since the last flush."""

    def __init__(self, files: JobFiles, bus: ev.EventBus):
        self.files = files
        self.pending: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.seq = 0
        self.fence: Callable[[], None] | None = None  # the driver's lease check (core/lease.py), before each write
        bus.subscribe(self._keep)

    def _keep(self, event: ev.Event) -> None:
        if isinstance(event, ev.LogLine):
            return
        with self.lock:
            self.pending.append(ev.to_json(event))

    def resume_after(self, seq: int) -> None:
        """A driver taking over a job continues its journal's numbering."""
        self.seq = max(self.seq, seq + 1)

    def flush(self) -> None:
        if self.fence is not None:
            self.fence()
        with self.lock:
            batch, self.pending = self.pending, []
        for start in range(0, len(batch), BATCH_EVENTS):
            self.files.write_events(self.seq, batch[start : start + BATCH_EVENTS])
            self.seq += 1


def replay(files: JobFiles, bus: ev.EventBus, after: int) -> tuple[int, bool]:
    """Publish the batches numbered above `after` on `bus`: (the last batch read, whether the job's end was
    among them)."""
    ended = False
    for seq, batch in files.iter_events(after):  # one batch in memory at a time
        for data in batch:
            event = ev.from_json(data)
            if event is None:
                continue
            bus.publish(event)
            ended |= isinstance(event, ev.JobFinished)
        after = seq
    return after, ended

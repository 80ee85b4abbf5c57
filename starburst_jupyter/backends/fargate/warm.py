"""Keep-warm on Fargate: a pool per task shape in the job bucket (`warm/<fingerprint>/`). A finished worker
registers there and waits; a launcher takes it with an exclusive create of its assignment key (the worker
creates the same key itself when its time is up, so it is never both taken and gone)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starburst_jupyter.backends.base import WorkerRef, WorkerStart
from starburst_jupyter.backends.fargate.taskdef import task_ref
from starburst_jupyter.protocol import keys
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.stores.records import JobStore

if TYPE_CHECKING:
    from starburst_jupyter.stores.s3 import S3ObjectStore


class WarmPool:
    def __init__(self, store: Callable[[], S3ObjectStore], home: Path):
        self.store, self.home = store, home
        self._pools: dict[str, str | None] = {}  # job id -> its warm pool (None: keeps none warm)

    def waiting(self, pool: str, now: float) -> int:
        """Workers waiting in the pool for a while yet (they run, but are there to be taken)."""
        count = 0
        for key in self.store().list(pool):
            if keys.is_warm_entry(key):
                with contextlib.suppress(FileNotFoundError, ValueError):
                    if json.loads(self.store().get(key)).get("until", 0) > now + 5:
                        count += 1
        return count

    def registered(self, files: JobFiles, refs: list[WorkerRef]) -> list[WorkerRef]:
        """Of these workers, those that registered in the warm pool (they finished and wait for a job)."""
        if files.job_id not in self._pools:  # (asked on every poll while a job ends: read its spec once)
            self._pools[files.job_id] = files.read_spec().warm_pool
        pool = self._pools[files.job_id]
        if not pool:
            return []
        names = {keys.leaf(key) for key in self.store().list(pool)}
        # waiting in the pool, or already taken by another job: either way not ours to stop
        return [r for r in refs if keys.warm_names(files.job_id, r.index) & names]

    def take(self, files: JobFiles, pool: str, starts: list[WorkerStart]) -> list[WorkerRef]:
        """Assign waiting warm workers of this shape to some of the starts (no RunTask, no cold start)."""
        entries = [k for k in self.store().list(pool) if keys.is_warm_entry(k)]
        taken: list[WorkerRef] = []
        for key in entries:
            if len(taken) == len(starts):
                break
            try:
                entry = json.loads(self.store().get(key))
            except FileNotFoundError:
                continue
            if entry.get("until", 0) < time.time() + 5:
                continue  # about to leave
            arn = entry.get("task_arn") or self._recorded_task(entry["job"], int(entry["worker"]))
            if not arn:
                continue
            index, wave = starts[len(taken)].index, starts[len(taken)].wave
            assignment = {"store": files.store.url, "job": files.job_id, "prefix": files.prefix, "worker": index}
            if not self.store().create_exclusive(keys.warm_assignment(key), json.dumps(assignment).encode()):
                continue  # another launcher took it, or it expired
            taken.append(task_ref(arn, index, wave, files.job_id, warm_from=entry["job"]))
        return taken

    def _recorded_task(self, job_id: str, worker: int) -> str | None:
        try:
            arn: str | None = JobStore(self.home).read(job_id)["workers"][str(worker)]["task_arn"]
            return arn
        except (KeyError, TypeError):
            return None

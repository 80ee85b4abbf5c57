"""The core launcher: JobSpec + program + items -> a running job on a backend -> results.

One monitor thread per job drives the backend, reads results and claims from the job's
store, retries the work of workers that died, enforces --timeout and --max-cost, keeps the
job store's record current and publishes events. Faces only submit, wait, cancel and observe.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from starburst_jupyter.backends import Backend, get_backend
from starburst_jupyter.core import events as ev
from starburst_jupyter.core import pricing
from starburst_jupyter.core.config import Config, load_config
from starburst_jupyter.core.driver import JobDriver
from starburst_jupyter.core.job import JobHandle, JobResult
from starburst_jupyter.core.plan import Plan, make_plan
from starburst_jupyter.core.spec import JobSpec
from starburst_jupyter.errors import (
    BurstCaptureError,
    BurstError,
    BurstValidationError,
)
from starburst_jupyter.protocol import serialize
from starburst_jupyter.stores.records import TERMINAL_STATES, JobStore, new_job_id

__all__ = ["JobHandle", "JobResult", "Launcher"]


class Launcher:
    """Submits jobs to backends. Faces create one and call `submit`."""

    def __init__(self, config: Config | None = None, home: Path | None = None):
        self.config = config or load_config()
        self.store = JobStore(home)
        self._backends: dict[str, Backend] = {}

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            kwargs: dict[str, Any] = {"home": self.store.home}
            if name == "local":
                kwargs["concurrency"] = self.config.local_concurrency
            else:  # docker and fargate read their settings (image, bucket, cluster, ...) from the config
                kwargs["config"] = self.config
            self._backends[name] = get_backend(name, **kwargs)
        return self._backends[name]

    def submit(
        self,
        spec: JobSpec,
        program: Any,
        items: list[Any] | None = None,
        *,
        open_job: bool = False,
        program_chunks: list | None = None,
        subscribers: Iterable[Callable[[ev.Event], None]] = (),
        start: bool = True,
    ) -> JobHandle:
        """Validate, write the job, start its monitor. `items` None means one task (single mode).

        `subscribers` see every event from the first; with start=False the caller calls handle.start()."""
        backend = self.backend(spec.backend)
        items = [None] if items is None else list(items)
        job_id = new_job_id()
        handle = JobHandle(job_id, spec, ev.EventBus())
        for subscriber in subscribers:
            handle.events.subscribe(subscriber)
        prepare = getattr(backend, "prepare", None)
        if prepare is not None:  # e.g. the worker image: made or found (with progress events) before anything else
            prepare(
                spec,
                on_progress=lambda event: handle.events.publish(dataclasses.replace(event, job_id=job_id)),
                job_id=job_id,
            )
        concurrency = backend.concurrency(spec)
        workers = spec.workers or concurrency
        if open_job:
            plan = Plan([], workers, min(workers, concurrency), 0)
        else:
            plan = make_plan(len(items), workers, concurrency)
        rate = pricing.rate_for(spec.region, spec.arch, spot=spec.spot)
        if spec.max_cost is not None:
            minimum = plan.concurrency * pricing.worker_cost(0, rate, spec.cpu_units, spec.memory_mib)
            if minimum > spec.max_cost:
                raise BurstValidationError(
                    f"--max-cost ${spec.max_cost:g} is below the minimum charge of starting {plan.concurrency} "
                    f"workers of {spec.describe_size()} (one minute each on Fargate: ${minimum:.4f}); raise "
                    f"the cap or lower --workers."
                )
        chunks = program_chunks if program_chunks is not None else serialize.dumps_chunks(program)
        monitor = JobDriver(self.config, self.store, handle, backend, plan, chunks, items, open_job, rate)
        handle._monitor = monitor
        try:
            monitor.prepare()
        except Exception as exc:
            monitor.files.store.delete_prefix(monitor.files.prefix)
            if isinstance(exc, BurstError):
                raise
            culprit = _unpicklable_item(items)
            if culprit is None:
                raise
            raise BurstCaptureError(
                f"{culprit} cannot be sent to workers: {type(exc).__name__}: {exc}. Every item must be "
                f"picklable; nothing was launched."
            ) from exc
        if start:
            monitor.start()
        return handle

    def attach(
        self, job_id: str, subscribers: Iterable[Callable[[ev.Event], None]] = (), start: bool = True
    ) -> JobHandle:
        """Take over a job whose launching kernel is gone: its workers kept going (on Fargate, tasks run on
        without us), its results wait in the store; a new monitor collects them and finishes the job."""
        record = self.store.find(job_id)
        if record["state"] in TERMINAL_STATES:
            raise BurstError(
                f"Job {record['id']} already ended ({record['state']}) in the kernel that launched it; "
                f"its results were delivered there. %burst_status {record['id']} shows what happened.",
                job_id=record["id"],
            )
        if _owner_alive(record):
            owner = record.get("owner", {})
            raise BurstError(
                f"Job {record['id']} is still followed by its kernel (pid {owner.get('pid')} on "
                f"{owner.get('host')}); attach works once that kernel is gone. %burst_cancel "
                f"{record['id']} stops it from here.",
                job_id=record["id"],
            )
        backend = self.backend(record["backend"])
        if not hasattr(backend, "adopt"):
            raise BurstError(
                f"Job {record['id']} ran on the {record['backend']} backend, whose workers cannot be "
                f"taken over by another kernel; %burst_cancel {record['id']} ends it.",
                job_id=record["id"],
            )
        data = dict(record["spec"])
        spec = JobSpec(
            **{
                k: (tuple(v) if isinstance(v, list) else v)
                for k, v in data.items()
                if k in JobSpec.__dataclass_fields__
            }
        )
        handle = JobHandle(record["id"], spec, ev.EventBus())
        for subscriber in subscribers:
            handle.events.subscribe(subscriber)
        waves = record.get("waves", {})
        plan = Plan([], int(waves.get("workers", 1)), int(waves.get("concurrency", 1)), 0)
        rate = pricing.rate_for(spec.region, spec.arch, spot=spec.spot)
        monitor = JobDriver(self.config, self.store, handle, backend, plan, [], [], False, rate)
        handle._monitor = monitor
        monitor.resume(record)
        if start:
            monitor.start()
        return handle

    def job_logs(
        self, job_id: str, worker: int | None = None, *, tail_lines: int | None = None, first: int | None = None
    ) -> dict[int, str]:
        """Worker logs of any job in the store: {worker index: text}; with tail_lines only each log's last lines
        (one CloudWatch call per worker on Fargate, not the whole stream), with `first` only that many workers."""
        record = self.store.find(job_id)
        indices = sorted(int(i) for i in record.get("workers", {}))
        if worker is not None:
            if worker not in indices:
                raise KeyError(f"Job {record['id']} has no worker {worker}; its workers are {indices}.")
            indices = [worker]
        backend = self.backend(record["backend"])
        files = backend.job_files(record["id"])
        reader = getattr(backend, "read_log_tail", None)
        logs = {}
        for index in indices[:first]:
            if tail_lines is None:
                logs[index] = backend.read_log(files, index)
            elif reader is not None:
                logs[index] = reader(files, index, tail_lines)
            else:
                logs[index] = "".join(backend.read_log(files, index).splitlines(keepends=True)[-tail_lines:])
        return logs

    def cancel_job(self, job_id: str, reason: str = "cancelled") -> dict[str, Any]:
        """Cancel any job in the store, also when the kernel that launched it is gone. Idempotent."""
        record = self.store.find(job_id)
        if record["state"] in ("done", "failed", "cancelled"):
            return record
        backend = self.backend(record["backend"])
        files = backend.job_files(record["id"])
        files.request_cancel(reason)
        if _owner_alive(record):  # the owner's launcher stops its workers and records the cancel
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and record["state"] not in TERMINAL_STATES:
                time.sleep(0.1)
                record = self.store.read(record["id"])
            return record
        stopped = backend.stop_recorded(record)
        if record["state"] not in TERMINAL_STATES:
            now = time.time()
            for info in record.get("workers", {}).values():  # the record says what became of them
                if info.get("exit_code") is None:
                    info.update(exit_code=-1, ended=now, reason="stopped: job cancelled (launching kernel gone)")
            outcomes = record.get("outcomes", "")
            record.update(
                state="cancelled",
                message=f"{reason} ({stopped} workers stopped; launching kernel gone)",
                finished=now,
                outcomes=outcomes.replace("R", "C").replace("P", "C"),
                cancelled=outcomes.count("C") + outcomes.count("R") + outcomes.count("P"),
            )
            self.store.write(record)
        return record


def _unpicklable_item(items: list[Any]) -> str | None:
    for index, item in enumerate(items):
        try:
            serialize.encode(item)
        except Exception:  # any pickling failure
            kind = f"{type(item).__module__}.{type(item).__qualname__}".removeprefix("builtins.")
            return f"Item {index} ({kind})"
    return None


OWNER_SILENT_SECONDS = 60.0  # a live monitor rewrites its record every few seconds at most


def _owner_alive(record: dict[str, Any]) -> bool:
    """Is the kernel that launched the job still following it? A record nobody rewrote for a minute says
    no, wherever its owner was (another host, a replaced container, a pid now used by something else)."""
    if time.time() - float(record.get("updated", time.time())) > OWNER_SILENT_SECONDS:
        return False
    owner = record.get("owner", {})
    if owner.get("host") != socket.gethostname():
        return True  # cannot tell from here, and it wrote recently
    try:
        os.kill(int(owner.get("pid", 0)), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True

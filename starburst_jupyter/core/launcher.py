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

from starburst_jupyter.backends import BACKEND_NAMES, Backend, Capabilities, capabilities_of, make_backend
from starburst_jupyter.core import events as ev
from starburst_jupyter.core import pricing
from starburst_jupyter.core.config import Config, load_config
from starburst_jupyter.core.decisions import CostRule, Timings
from starburst_jupyter.core.detached import DetachedJob, spec_of, start_driver
from starburst_jupyter.core.driver import JobDriver
from starburst_jupyter.core.job import JobHandle, JobResult
from starburst_jupyter.core.lease import DriverLease, LeaseLost, pid_alive
from starburst_jupyter.core.lease import current as lease_current
from starburst_jupyter.core.lease import expired as lease_expired
from starburst_jupyter.core.plan import Plan, make_plan
from starburst_jupyter.core.record import JobRecord, as_record
from starburst_jupyter.core.spec import JobSpec
from starburst_jupyter.errors import (
    BurstCaptureError,
    BurstError,
    BurstValidationError,
    StorageFull,
    no_room,
)
from starburst_jupyter.protocol import keys, serialize
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.stores.records import JobStore, new_job_id

__all__ = ["JobHandle", "JobResult", "Launcher"]


#: The most of one worker's log `job_logs` returns (%burst_logs prints it into a cell): its last bytes.
LOG_SHOW_BYTES = 4 * 1024 * 1024


class Launcher:
    """Submits jobs to backends. Faces create one and call `submit`."""

    #: The drivers' pace (a test may set quicker ones on its launcher).
    timings = Timings()

    def __init__(self, config: Config | None = None, home: Path | None = None):
        self.config = config or load_config()
        self.store = JobStore(home)
        self._backends: dict[str, tuple[Backend, Capabilities]] = {}

    def backend(self, name: str) -> Backend:
        return self._backend(name)[0]

    def capabilities(self, name: str) -> Capabilities:
        return self._backend(name)[1]

    def _backend(self, name: str) -> tuple[Backend, Capabilities]:
        if name not in self._backends:
            backend = make_backend(name, self.config, self.store.home)
            self._backends[name] = (backend, capabilities_of(backend))
        return self._backends[name]

    def submit(
        self,
        spec: JobSpec,
        program: Any,
        items: list[Any] | None = None,
        *,
        open_job: bool = False,
        program_chunks: list[bytes | memoryview] | None = None,
        subscribers: Iterable[Callable[[ev.Event], None]] = (),
        start: bool = True,
        detach: bool = False,
    ) -> Any:
        """Validate, write the job, start its monitor. `items` None means one task (single mode).

        `subscribers` see every event from the first; with start=False the caller calls handle.start().
        With detach=True the job's driver runs apart from this process (core/detached.py) and the handle
        returned is a DetachedJob that follows it (started when start=True)."""

        backend = self.backend(spec.backend)
        items = [None] if items is None else list(items)
        job_id = new_job_id()
        handle = JobHandle(job_id, spec, ev.EventBus())
        for subscriber in subscribers:
            handle.events.subscribe(subscriber)
        image = self.capabilities(spec.backend).image
        image_ref = None
        if image is not None:  # the worker image: made or found (with progress events) before anything else
            image_ref = image.prepare(
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
        cost = CostRule(spec.max_cost, pricing.per_second(rate, spec.cpu_units, spec.memory_mib))
        if not cost.may_start(0.0, plan.concurrency):
            minimum = plan.concurrency * cost.per_second * cost.minimum_seconds
            raise BurstValidationError(
                f"--max-cost ${spec.max_cost:g} is below the minimum charge of starting {plan.concurrency} "
                f"workers of {spec.describe_size()} (one minute each on Fargate: ${minimum:.4f}); raise "
                f"the cap or lower --workers."
            )
        chunks = program_chunks if program_chunks is not None else serialize.dumps_chunks(program)
        monitor = JobDriver(
            self.config, self.store, handle, backend, plan, chunks, items, open_job, rate, self.timings, detached=detach
        )
        handle.bind(monitor)
        if not detach:  # a new job: its lease is free (a detached job's is taken for its driver, in _detach)
            lease = DriverLease.take(monitor.files, lease_ttl(self.timings, backend))
            if lease is None:
                raise BurstError(f"Job {job_id}: its new lease was taken by another process.", job_id=job_id)
            monitor.hold(lease)
        try:
            monitor.prepare()
            if detach:
                config = self.config if not image_ref else dataclasses.replace(self.config, image=image_ref)
                monitor.files.write_driver_config(
                    {"config": dataclasses.asdict(config), "timings": dataclasses.asdict(self.timings)}
                )
        except Exception as exc:
            monitor.files.store.delete_prefix(monitor.files.prefix)
            if isinstance(exc, BurstError):
                raise
            if no_room(exc):
                raise StorageFull(
                    f"Job {job_id}'s program and items could not be written to {monitor.files.store.url}: "
                    f"{getattr(exc, 'strerror', None) or exc} (disk full, quota or file-size limit). Free space "
                    f"there or send smaller items; nothing was launched.",
                    job_id=job_id,
                ) from exc
            culprit = _unpicklable_item(items)
            if culprit is None:
                raise
            raise BurstCaptureError(
                f"{culprit} cannot be sent to workers: {type(exc).__name__}: {exc}. Every item must be "
                f"picklable; nothing was launched."
            ) from exc
        if detach:
            return self._detach(monitor, start)
        if start:
            monitor.start()
        return handle

    # ----- detached jobs ------------------------------------------------------------------------
    def _detach(self, monitor: JobDriver, follow: bool) -> DetachedJob:
        """Hand a prepared job to a driver of its own and follow it from here."""
        files = monitor.files
        record = as_record(self.store.read(monitor.job_id))
        try:
            started = self._start_driver(files, record.backend)
            if started is None:
                raise BurstError(f"Job {monitor.job_id}: its new lease was taken by another process.")
        except BaseException as exc:
            ended = record.cancelled_without_owner(f"its driver could not start: {exc}", 0, time.time())
            self.store.write(ended)
            files.write_record(ended.dumps().encode())
            raise
        job = DetachedJob(files, record, poll=_follow_pace(monitor.backend), driver=started[0], local=self.store)
        job.driver_epoch = started[1]
        job.restart = lambda dead: self._start_driver(files, record.backend, dead)
        return job.start() if follow else job

    def _start_driver(self, files: JobFiles, backend: str, dead_epoch: int | None = None) -> tuple[str, int] | None:
        """Take the job's lease for a new driver and start that driver apart from this process (it adopts the
        lease): (where it runs, its lease epoch); None when the lease is held: another driver runs, or is being
        started, for the job. `dead_epoch`: a driver this process started, seen to exit."""
        starter = f"a driver being started from pid {os.getpid()} on {socket.gethostname()}"
        lease = DriverLease.take(files, self.timings.driver_silent, for_another=starter, dead_epoch=dead_epoch)
        if lease is None:
            return None
        if not _has_driver_config(files):  # a job its kernel drove: how a driver elsewhere rebuilds its backend
            files.write_driver_config(
                {"config": dataclasses.asdict(self.config), "timings": dataclasses.asdict(self.timings)}
            )
        log = self.store.job_dir(files.job_id) / "driver.log"
        return start_driver(files, self.capabilities(backend), log, lease.epoch), lease.epoch

    def detached_driver(self, files: JobFiles, lease_epoch: int | None = None) -> JobDriver:
        """The driver of a detached job, rebuilt from its store (core/drive.py runs it), under the lease its
        starter took (`lease_epoch`), else one it takes now; LeaseLost when another driver has the job."""
        data = files.read_record()
        if data is None:
            where = f"{files.store.url}/{files.prefix}"
            raise BurstError(f"Job {files.job_id} has no record in {where}.", job_id=files.job_id)
        record = JobRecord.from_json(data, files.job_id)
        spec = spec_of(record)
        handle = JobHandle(record.id, spec, ev.EventBus())
        backend = self.backend(spec.backend)
        plan = Plan([], max(1, record.waves.workers), max(1, record.waves.concurrency), 0)
        rate = pricing.rate_for(spec.region, spec.arch, spot=spec.spot)
        open_job = files.read_spec().open
        driver = JobDriver(
            self.config, self.store, handle, backend, plan, [], [], open_job, rate, self.timings, detached=True
        )
        handle.bind(driver)
        ttl = lease_ttl(self.timings, backend)
        if lease_epoch is not None:
            driver.hold(DriverLease.adopt(files, lease_epoch, ttl, holder=_driver_holder()))
        else:
            lease = DriverLease.take(files, ttl, for_another="")
            if lease is None:
                holder = lease_current(files)
                raise LeaseLost(
                    f"Job {files.job_id} is driven by {holder.holder if holder else 'another driver'}; this driver "
                    f"does not start.",
                    job_id=files.job_id,
                )
            driver.hold(lease)
        batches = files.read_events()  # (after the lease: no other driver journals from here on)
        if batches and driver.journal is not None:
            driver.journal.resume_after(batches[-1][0])
        driver.resume(record.to_json())
        return driver

    def job_record(self, job_id: str) -> tuple[JobRecord, JobFiles]:
        """A job's record and files, from this machine's job store or, failing that, the bucket's."""
        try:
            record = self.store.find_record(job_id)
        except KeyError as missing:
            for shared in self.shared_records():
                if shared.id == job_id or (shared.id.startswith(job_id) and len(job_id) >= 8):
                    return shared, self.backend("fargate").job_files(shared.id)  # (the bucket is fargate's store)
            raise missing
        if record.damaged and record.backend not in BACKEND_NAMES:  # nothing says where its files are
            raise BurstError(
                f"Job {record.id} has a damaged record ({record.damaged}); its files cannot be found from it. "
                f"`starburst prune` deletes damaged records once they are old.",
                job_id=record.id,
            )
        files = self.backend(record.backend).job_files(record.id)
        mirrored = files.read_record()
        if mirrored is not None:  # a detached driver elsewhere (a Fargate task) writes only the store's copy
            newer = JobRecord.from_json(mirrored, record.id)
            if (newer.updated or 0) > (record.updated or 0):
                record = newer
        return record, files

    def shared_records(self, limit: int = 200) -> list[JobRecord]:
        """The records of the jobs in the bucket (config `bucket`), newest first: jobs launched from any
        machine with the same set-up. Empty without a bucket."""
        if not self.config.bucket:
            return []
        store = self.backend("fargate").job_files("").store
        ids = sorted((keys.job_of_folder(f) for f in store.list_folders(keys.JOBS)), reverse=True)[:limit]
        records = []
        for job_id in ids:
            files = self.backend("fargate").job_files(job_id)
            try:
                data = files.read_record()
            except OSError as exc:
                records.append(JobRecord.unreadable(job_id, f"cannot read its record in the bucket: {exc}"))
                continue
            if data is not None:
                records.append(JobRecord.from_json(data, job_id))
        return sorted(records, key=lambda r: (r.created, r.id), reverse=True)

    def follow(self, job_id: str, start: bool = True) -> DetachedJob:
        """A handle on any job of this machine or the bucket: it follows the job's driver (starting a new
        one, apart from this process, if the job's driver is gone) and collects its results."""
        record, files = self.job_record(job_id)
        if record.damaged:
            raise BurstError(f"Job {record.id} has a damaged record ({record.damaged}).", job_id=record.id)
        job = DetachedJob(files, record, poll=_follow_pace(self.backend(record.backend)), local=self.store)
        if self.capabilities(record.backend).attach is not None:  # (docker's workers cannot be taken over)
            job.restart = lambda dead: self._start_driver(files, record.backend, dead)
        silent = time.time() - (record.updated or record.created)
        holder = lease_current(files)
        if holder is not None:  # who drives the job is the lease's to say
            driver_gone = record.is_active and lease_expired(holder, time.time(), socket.gethostname(), pid_alive)
        elif record.owner.detached:  # a job from before leases (Timings.driver_silent: a slow Fargate start)
            driver_gone = record.is_active and silent > self.timings.driver_silent
        else:
            driver_gone = record.is_active and not record.owner_alive()
        if driver_gone:
            if self.capabilities(record.backend).attach is None:
                raise BurstError(
                    f"Job {record.id} ran on the {record.backend} backend, whose workers cannot be taken over by "
                    f"another driver; `starburst cancel {record.id}` ends it.",
                    job_id=record.id,
                )
            if files.read_record() is None:  # an older job: its record only on this machine
                files.write_record(record.dumps().encode())
            if not record.owner.detached or not _has_driver_config(files):
                files.write_driver_config(
                    {"config": dataclasses.asdict(self.config), "timings": dataclasses.asdict(self.timings)}
                )
            started = self._start_driver(files, record.backend)
            if started is not None:  # (None: another attach just started one; this follows it)
                job.driver, job.driver_epoch = started
        return job.start() if start else job

    def attach(
        self, job_id: str, subscribers: Iterable[Callable[[ev.Event], None]] = (), start: bool = True
    ) -> JobHandle:
        """Take over a job whose launching kernel is gone: its workers kept going (on Fargate, tasks run on
        without us), its results wait in the store; a new monitor collects them and finishes the job."""
        job = self.store.find_record(job_id)
        if job.damaged:
            raise BurstError(
                f"Job {job.id} has a damaged record ({job.damaged}); it cannot be attached. "
                f"%burst_cancel {job.id} ends what the record still names.",
                job_id=job.id,
            )
        if job.is_terminal:
            raise BurstError(
                f"Job {job.id} already ended ({job.state}) in the kernel that launched it; "
                f"its results were delivered there. %burst_status {job.id} shows what happened.",
                job_id=job.id,
            )
        if job.owner_alive():
            raise BurstError(
                f"Job {job.id} is still followed by its kernel (pid {job.owner.pid} on "
                f"{job.owner.host}); attach works once that kernel is gone. %burst_cancel "
                f"{job.id} stops it from here.",
                job_id=job.id,
            )
        record = job.to_json()
        backend = self.backend(record["backend"])
        if self.capabilities(record["backend"]).attach is None:
            raise BurstError(
                f"Job {record['id']} ran on the {record['backend']} backend, whose workers cannot be "
                f"taken over by another kernel; %burst_cancel {record['id']} ends it.",
                job_id=record["id"],
            )
        data = dict(record["spec"])
        known: dict[str, Any] = {
            k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in JobSpec.__dataclass_fields__
        }
        spec = JobSpec(**known)
        handle = JobHandle(record["id"], spec, ev.EventBus())
        for subscriber in subscribers:
            handle.events.subscribe(subscriber)
        plan = Plan([], max(1, job.waves.workers), max(1, job.waves.concurrency), 0)
        rate = pricing.rate_for(spec.region, spec.arch, spot=spec.spot)
        monitor = JobDriver(self.config, self.store, handle, backend, plan, [], [], False, rate, self.timings)
        handle.bind(monitor)
        lease = DriverLease.take(monitor.files, lease_ttl(self.timings, backend))
        if lease is None:  # two attaches at once: the one that took the lease drives, this one is told
            holder = lease_current(monitor.files)
            raise BurstError(
                f"Job {job.id} is already driven by {holder.holder if holder else 'another process'} (it took the "
                f"job over first); %burst_status {job.id} follows it, %burst_cancel {job.id} stops it.",
                job_id=job.id,
            )
        monitor.hold(lease)
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
        cheap = self.capabilities(record["backend"]).log_tail
        logs = {}
        for index in indices[:first]:
            if tail_lines is None and cheap is not None:  # the last LOG_SHOW_BYTES, saying what was cut
                data, start, _ = cheap.read_log_bytes(files, index, -LOG_SHOW_BYTES, LOG_SHOW_BYTES)
                if start:
                    shown = data[data.find(b"\n") + 1 :]  # from a line start
                    cut_mb = (start + len(data) - len(shown)) / 1e6
                    head = f"[... {cut_mb:.1f} MB cut: the first part of worker {index}'s log; its last lines follow]\n"
                    logs[index] = head + shown.decode("utf-8", "replace")
                else:
                    logs[index] = data.decode("utf-8", "replace")
            elif tail_lines is None:
                logs[index] = backend.read_log(files, index)
            elif cheap is not None:
                logs[index] = cheap.read_log_tail(files, index, tail_lines)
            else:
                logs[index] = "".join(backend.read_log(files, index).splitlines(keepends=True)[-tail_lines:])
        return logs

    def cancel_job(self, job_id: str, reason: str = "cancelled") -> dict[str, Any]:
        """Cancel any job of this machine or the bucket, also when the kernel that launched it is gone. Idempotent."""
        record, files = self.job_record(job_id)
        if record.is_terminal:
            return record.to_json()
        backend = self.backend(record.backend)
        files.request_cancel(reason)
        if record.owner_alive():  # its driver (a kernel, or a detached one) stops the workers and records the cancel
            deadline = time.monotonic() + (30.0 if record.owner.detached else 10.0)
            while time.monotonic() < deadline and not record.is_terminal:
                time.sleep(0.1 if backend.poll_seconds[0] < 1 else 0.5)
                record, _ = self.job_record(record.id)
            if record.is_terminal:
                self._keep_locally(record)
            return record.to_json()
        stopped = backend.stop_recorded(record.to_json())
        if not record.is_terminal:  # the record says what became of the workers and items
            record = record.cancelled_without_owner(reason, stopped, time.time())
            self.store.write(record)
            files.write_record(record.dumps().encode())
        return record.to_json()

    def _keep_locally(self, record: JobRecord) -> None:
        """This machine's copy of a record another machine's driver wrote (its faces list local records)."""
        try:
            local = self.store.read_record(record.id)
        except KeyError:
            return
        if (record.updated or 0) > (local.updated or 0):
            self.store.write(record)


def lease_ttl(timings: Timings, backend: Backend) -> float:
    """A running driver's lease ttl: the configured one, and at least six of the backend's slowest polls (the
    driver renews it every quarter ttl from its loop, which may sleep that long)."""
    return max(timings.lease_ttl, 6 * backend.poll_seconds[1])


def _driver_holder() -> str:
    """How a detached driver names itself in its lease: its Fargate task, else its process."""
    task = os.environ.get("STARBURST_DRIVER_TASK")
    return task or f"pid {os.getpid()} on {socket.gethostname()}"


def _follow_pace(backend: Backend) -> float:
    """How often a follower reads a detached job's journal: a fifth of the backend's slowest poll, at least a
    quarter second (local: 0.25 s; Fargate: 1 s, a LIST of the journal each time)."""
    return max(0.25, backend.poll_seconds[1] / 5)


def _has_driver_config(files: JobFiles) -> bool:
    try:
        files.read_driver_config()
    except FileNotFoundError:
        return False
    return True


def _unpicklable_item(items: list[Any]) -> str | None:
    for index, item in enumerate(items):
        try:
            serialize.encode(item)
        except Exception:  # any pickling failure
            kind = f"{type(item).__module__}.{type(item).__qualname__}".removeprefix("builtins.")
            return f"Item {index} ({kind})"
    return None


def _owner_alive(record: dict[str, Any]) -> bool:
    """(JobRecord.owner_alive, for callers that hold a record's dict.)"""
    return as_record(record).owner_alive()

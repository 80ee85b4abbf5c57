"""Detached jobs, seen from a kernel: a driver that runs apart from it, and a handle that follows the job.

A detached job's driver (core/drive.py) runs as its own process, or as an ECS task on Fargate, so the job
starts every wave, retries, enforces --timeout and --max-cost and keeps its record whether or not the
launching kernel (or laptop) lives. A `DetachedJob` follows it from any process that can read the job's
store: it replays the driver's journal into an EventBus (the widget and the progress line work unchanged),
reads the record for `status()`, and collects the results from the store, all of them or those finished
so far (`results(partial=True)`)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starburst_jupyter.core import events as ev
from starburst_jupyter.core import record as rec
from starburst_jupyter.core.job import JobResult, raise_if_cancelled
from starburst_jupyter.core.journal import replay
from starburst_jupyter.core.lease import current as lease_current
from starburst_jupyter.core.lease import expired as lease_expired
from starburst_jupyter.core.lease import pid_alive
from starburst_jupyter.core.ledger import ItemLedger
from starburst_jupyter.core.options import check_minutes, check_wait_seconds
from starburst_jupyter.core.spec import JobSpec, spec_from_record
from starburst_jupyter.errors import BurstError, TaskCancelled
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.stores.objects import append_private

if TYPE_CHECKING:
    from starburst_jupyter.backends import Capabilities
    from starburst_jupyter.core.plan import Plan
    from starburst_jupyter.stores.records import JobStore

logger = logging.getLogger(__name__)

DRIVER_MODULE = "starburst_jupyter.core.drive"
MAX_RESTARTS = 3  # a follower replaces a lost driver at most this many times before it reports the job stuck


class _Pending:
    """Stands for an item that has not finished yet in `results(partial=True)`."""

    _instance: _Pending | None = None

    def __new__(cls) -> _Pending:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "PENDING"

    def __reduce__(self) -> str:
        return "PENDING"


PENDING = _Pending()


def spec_of(record: rec.JobRecord) -> JobSpec:
    """The JobSpec a record holds (fields this version does not know are left out; a missing or partial spec
    is a DamagedJobFile naming the job and the record)."""
    return spec_from_record(record)


# ----- starting a driver ------------------------------------------------------------------------------
def driver_argv(files: JobFiles, lease_epoch: int) -> list[str]:
    """What follows `python` to drive the job whose files these are, under the lease taken for it."""
    return [
        "-m", DRIVER_MODULE, "--store", files.store.url, "--prefix", files.prefix, "--job", files.job_id,
        "--lease", str(lease_epoch),
    ]  # fmt: skip


_CHILDREN: dict[str, tuple[subprocess.Popen[bytes], str]] = {}  # job id -> local driver this process started, log


def driver_exit(job_id: str) -> tuple[int, str] | None:
    """(exit code, log path) of the local driver this process started for the job, once it has exited."""
    child = _CHILDREN.get(job_id)
    if child is None or child[0].poll() is None:
        return None
    return child[0].returncode, child[1]


def start_driver(files: JobFiles, caps: Capabilities, log_path: os.PathLike[str] | str, lease_epoch: int) -> str:
    """Start the job's driver where it can outlive this process: the backend's own (a Fargate task), else a
    process of this machine in a session of its own (a kernel's SIGKILL or restart does not reach it). The
    caller took the job's lease for it (core/lease.py): only the driver that adopts `lease_epoch` drives."""
    for job_id, (child, _) in list(_CHILDREN.items()):
        if child.poll() is not None:  # (reaped: no zombie is left)
            del _CHILDREN[job_id]
    argv = driver_argv(files, lease_epoch)
    if caps.drivers is not None:
        return caps.drivers.start_driver(files.job_id, argv, {})
    # the driver's workers must import what this kernel imports (modules next to the notebook): they inherit
    # the driver's sys.path, so the driver gets this process's, and its working directory
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with append_private(log_path) as log:  # 0600, as every file of the job
        child = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=os.getcwd(),
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[files.job_id] = (child, str(log_path))
    return f"process {child.pid}"


# ----- collecting ---------------------------------------------------------------------------------------
def collect(files: JobFiles, record: rec.JobRecord, partial: bool = False) -> JobResult:
    """The job's results from its store: values in item order (the exception of a failed item; PENDING for
    one not finished when `partial`). Items the driver ended itself (cancelled, lost with their worker) have
    no result object: the record's outcome says what became of them."""
    ledger = ItemLedger(files, ev.EventBus(), result_window=0.0)
    ledger.reset(record.total)
    ledger.collect_results(full=True)
    reasons = {f.index: f.error for f in record.failures}
    for index, letter in enumerate(record.outcomes):
        if index >= ledger.total() or ledger.is_final(index):
            continue
        if letter == rec.Outcome.CANCELLED.value:
            error: BaseException = TaskCancelled(f"Item {index} did not finish: job {record.id} was cancelled.")
        elif letter == rec.Outcome.FAILED.value:
            error = BurstError(
                reasons.get(index) or f"Item {index} of job {record.id} failed on its workers.", job_id=record.id
            )
        else:
            continue
        ledger.finalize(index, False, error, None)
    if not partial and not record.is_terminal:
        raise BurstError(f"Job {record.id} is still {record.state.value}; wait for it or collect partial results.")
    if record.is_terminal and not ledger.complete():
        missing = [i for i in range(ledger.total()) if not ledger.is_final(i)]
        if not partial:
            raise BurstError(
                f"Job {record.id} ended {record.state.value}, but the results of {len(missing)} items (the first: "
                f"{missing[0]}) are no longer in {files.store.url}/{files.prefix}: they were delivered to the "
                f"kernel that ran the job, or pruned. `starburst status {record.id}` shows what the record holds.",
                job_id=record.id,
            )
    if ledger.complete():
        values = ledger.values()
    else:
        values = [ledger.value(i) if ledger.is_final(i) else PENDING for i in range(ledger.total())]
    failures = ledger.failures(cancelled=True)
    finished = record.finished or time.time()
    message = record.message if record.is_terminal else ""
    return JobResult(
        record.id,
        record.state.value if record.is_terminal else "running",
        values,
        failures,
        ledger.outputs(),
        finished - (record.started or record.created),
        record.cost.accrued,
        message,
        _cancelled_by(record) if record.state == rec.JobState.CANCELLED else "",
    )


def _cancelled_by(record: rec.JobRecord) -> str:
    text = record.message or ""
    if "--timeout" in text:
        return "timeout"
    if "--max-cost" in text:
        return "max-cost"
    return "user"


# ----- following ----------------------------------------------------------------------------------------
class DetachedJob:
    """A job driven apart from this process. Follow it (`events`), ask how it goes (`status()`), take what
    finished (`results(partial=True)`), wait for the rest, cancel it or give it more time."""

    def __init__(
        self,
        files: JobFiles,
        record: rec.JobRecord,
        *,
        poll: float = 0.5,
        driver: str = "",
        local: JobStore | None = None,
    ):
        self.id, self.files, self.poll = record.id, files, poll
        self.spec = spec_of(record)
        self.events = ev.EventBus()
        self.state = record.state.value
        self.total = record.total
        self.driver = driver  # what runs the driver, when this process started it
        # starts a new driver when the job's lease lapses while this follows it (the launcher sets it): None when
        # another process holds the lease, which then drives the job
        self.restart: Callable[[int | None], tuple[str, int] | None] | None = None
        self.restarts = 0
        self.driver_epoch: int | None = None  # the lease epoch of the driver this process started
        self._record = record
        self._local = local  # this machine's job store: kept current for its faces (status, sidebar)
        self._seq = -1
        self._result: JobResult | None = None
        self._error: BaseException | None = None
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._on_done: list[Callable[[JobResult], None]] = []
        # an open job (a detached BurstExecutor): this process feeds it and hears of each item as it finishes
        self._ledger: ItemLedger | None = None
        self._items_lock = threading.Lock()

    def __repr__(self) -> str:
        # no state here: a cell's value is shown once and would go stale (status() tells the state)
        return (
            f"<DetachedJob {self.id} ({self.spec.backend}, {self.total} items): .status() .results(partial=True) "
            f".wait() .cancel() .extend(minutes)>"
        )

    # ----- following --------------------------------------------------------------------------
    def start(self) -> DetachedJob:
        """Follow the job in a thread: events as they come, the results when it ends."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._follow, daemon=True, name=f"starburst-follow-{self.id}")
                self._thread.start()
        return self

    def _follow(self) -> None:
        last_record = 0.0
        try:
            while True:
                self._seq, ended = replay(self.files, self.events, self._seq)
                if self._ledger is not None:
                    with self._items_lock:
                        self._ledger.discover()
                        self._ledger.collect_results(full=time.time() - self._ledger.last_sweep > 60)
                now = time.monotonic()
                if ended or now - last_record >= max(2.0, 4 * self.poll):
                    last_record = now
                    record = self.status()
                    if not record.is_terminal:
                        record = self._replace_a_lost_driver(record)
                    if record.is_terminal:
                        self._seq, _ = replay(self.files, self.events, self._seq)  # its last batch
                        if self._ledger is not None:  # every item gets its final word, also those ended unrun
                            with self._items_lock:
                                self._ledger.discover()
                                final = collect(self.files, record, partial=True)
                                for index, value in enumerate(final.values):
                                    ledger = self._ledger
                                    if index < ledger.total() and not ledger.is_final(index) and value is not PENDING:
                                        failed = any(i == index for i, _ in final.failures)
                                        self._ledger.finalize(index, not failed, value, None)
                        self._settle(collect(self.files, record))
                        return
                time.sleep(self.poll)
        except BaseException as exc:  # wait() raises it: a follower must never hang its caller
            if not isinstance(exc, BurstError):
                logger.exception("following job %s failed", self.id)
            self._error = exc
            self._finished.set()

    def _replace_a_lost_driver(self, record: rec.JobRecord) -> rec.JobRecord:
        """A driver that died (or stopped) while this follows the job is replaced: its lease lapses, and the
        one follower that takes it starts a new driver (the others go on following). A driver that keeps dying
        is reported, after MAX_RESTARTS, with its log, instead of being started forever."""
        gone = driver_exit(self.id)  # (this process's own child: known at once, no need to wait for the lease)
        holder = lease_current(self.files)
        lapsed = holder is not None and lease_expired(holder, time.time(), socket.gethostname(), pid_alive)
        if gone is None and not lapsed:
            return record
        record = self.status()  # (it may have written its last record just now)
        if record.is_terminal or self.restart is None:
            return record
        if self.restarts >= MAX_RESTARTS:
            log = f"; its log is {gone[1]}" if gone else ""
            code = f" (exit code {gone[0]})" if gone else ""
            raise BurstError(
                f"The driver of job {self.id} ended{code} before the job ended, {self.restarts} times{log}. "
                f"`starburst status {self.id}` shows the job; starburst_jupyter.attach({self.id!r}) tries again; "
                f"`starburst cancel {self.id}` ends it.",
                job_id=self.id,
            )
        if gone is not None:
            _CHILDREN.pop(self.id, None)
        started = self.restart(self.driver_epoch if gone is not None else None)
        if started is not None:
            self.restarts += 1
            self.driver, self.driver_epoch = started
            logger.warning("job %s: its driver was gone; started a new one (%s)", self.id, started[0])
        return record

    def _settle(self, result: JobResult) -> None:
        self._result = result
        self.state = result.state
        self._finished.set()
        for callback in self._on_done:
            try:
                callback(result)
            except Exception:  # a face's callback must not break the follower
                logger.exception("a completion callback of job %s failed", self.id)

    def on_done(self, callback: Callable[[JobResult], None]) -> None:
        """callback(result) once the job's results are collected (from the follower's thread)."""
        self._on_done.append(callback)

    # ----- what a caller asks ---------------------------------------------------------------------
    def status(self) -> rec.JobRecord:
        """The job's record as its driver last wrote it to the store."""
        data = self.files.read_record()
        if data is not None:
            fresh = rec.JobRecord.from_json(data, self.id)
            newer = (fresh.updated or 0) > (self._record.updated or 0)
            self._record = fresh
            if not self._finished.is_set():
                self.state = fresh.state.value
            if newer and self._local is not None and not fresh.damaged:
                try:  # (a driver on this machine writes it too; one elsewhere, a Fargate task, does not)
                    if (self._local.read_record(self.id).updated or 0) < (fresh.updated or 0):
                        self._local.write(fresh)
                except (KeyError, OSError):
                    pass
        return self._record

    @property
    def outcome(self) -> JobResult | None:
        return self._result

    @property
    def plan(self) -> Plan:
        from starburst_jupyter.core.plan import Plan

        waves = self._record.waves
        return Plan([], max(1, waves.workers), max(1, waves.concurrency), 0)

    def done(self) -> bool:
        return self._finished.is_set()

    def results(self, partial: bool = False) -> list[Any]:
        """Every item's value in order (a failed item's exception in its place); with partial=True, now, with
        PENDING for the items not finished yet."""
        if partial and not self.done():
            return collect(self.files, self.status(), partial=True).values
        return self.wait().values

    def wait(self, timeout: float | None = None) -> JobResult:
        """Block until the job ends (TimeoutError after `timeout` seconds; the job goes on)."""
        timeout = check_wait_seconds(timeout, "wait(timeout)", self.id)
        self.start()
        if not self._finished.wait(timeout):
            raise TimeoutError(f"job {self.id} still runs after {timeout} s (it goes on; wait again or collect later)")
        if isinstance(self._error, BurstError):
            raise self._error
        if self._error is not None:
            raise BurstError(
                f"Following job {self.id} failed: {type(self._error).__name__}: {self._error}. The job itself goes "
                f"on; `starburst status {self.id}` shows it, `starburst collect {self.id}` tries again.",
                job_id=self.id,
            ) from self._error
        assert self._result is not None
        return self._result

    def result(self) -> JobResult:
        """Wait, then raise for a cancelled job (as JobHandle.result does)."""
        return raise_if_cancelled(self.wait())

    def cancel(self, reason: str = "cancelled by user") -> None:
        """Ask the job's driver (wherever it runs) to end the job: its workers stop, the unfinished items are
        cancelled and the record says why."""
        self.files.request_cancel(reason)

    # ----- an open job (BurstExecutor) ---------------------------------------------------------------
    def _open_ledger(self) -> ItemLedger:
        with self._items_lock:
            if self._ledger is None:
                ledger = ItemLedger(self.files, ev.EventBus(), result_window=20.0)
                ledger.shared = True
                ledger.discover()
                ledger.collect_results(full=True)
                self._ledger = ledger
            return self._ledger

    def add_items(self, values: list[Any]) -> list[int]:
        """Queue more items on an open job; returns their indices (one process feeds a job at a time)."""
        if self.status().is_terminal or self.files.is_closed():
            raise BurstError(f"Job {self.id} is {self.state} and takes no more items; start a new one.", job_id=self.id)
        ledger = self._open_ledger()
        with self._items_lock:
            ledger.discover()
            return ledger.append(values)

    def on_item(self, callback: Callable[[int, bool, Any], None]) -> None:
        """callback(index, ok, value_or_exception) as each item gets its final outcome (from the follower)."""
        self._open_ledger().callbacks.append(callback)

    def withdraw(self, index: int) -> bool:
        """Take a not-yet-started item back; False if a worker already has it."""
        ledger = self._open_ledger()
        with self._items_lock:
            return ledger.withdraw(index)

    def close(self) -> None:
        """The open job takes no more items; its driver ends it once the queued ones are done."""
        self.files.close()

    def stop_worker(self, worker: int) -> None:
        raise BurstError(
            f"Job {self.id} runs detached: its workers are ended by its driver; cancel the job to stop them.",
            job_id=self.id,
        )

    def extend(self, minutes: float) -> float:
        """Give the job `minutes` more before its --timeout ends it; returns the new deadline (epoch seconds)."""
        minutes = check_minutes(minutes, self.id)  # finite, positive, a deadline that does not overflow
        record = self.status()
        if record.is_terminal:
            raise BurstError(f"Job {self.id} already ended ({record.state.value}); nothing to extend.", job_id=self.id)
        current = self.files.deadline(self.files.read_spec().deadline)
        deadline = max(current, time.time()) + 60.0 * minutes
        self.files.extend_deadline(deadline)
        return deadline

"""A job's driver: the one thread per job that starts workers in waves, reads claims and results,
retries what dead workers held, enforces --timeout and --max-cost, keeps the record and publishes events.

It decides nothing itself: the rules are in core/decisions.py, the items in core/ledger.py, the
workers in core/workforce.py; the driver runs the loop, prices the job and says how it ended."""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import weakref
from typing import Any

from starburst_jupyter.backends import Backend, capabilities_of
from starburst_jupyter.core import events as ev
from starburst_jupyter.core import pricing
from starburst_jupyter.core import record as rec
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.decisions import (
    SYSTEMATIC_FAILURES,
    CostRule,
    Timings,
    projected_cost,
    systematic_failure,
    worker_timing,
)
from starburst_jupyter.core.job import JobHandle, JobResult
from starburst_jupyter.core.journal import EventJournal
from starburst_jupyter.core.lease import DriverLease, LeaseLost
from starburst_jupyter.core.ledger import ItemLedger
from starburst_jupyter.core.plan import Plan
from starburst_jupyter.core.workforce import Stop, Workforce
from starburst_jupyter.errors import BurstError, StorageFull, TaskCancelled, no_room
from starburst_jupyter.protocol.workerspec import OPEN_JOB_IDLE_SECONDS, PlanShare, Timing, WorkerSpec
from starburst_jupyter.stores.records import TERMINAL_STATES, JobStore

_LIVE: weakref.WeakSet[JobDriver] = weakref.WeakSet()
logger = logging.getLogger(__name__)


@atexit.register
def _stop_live_jobs(wait: float = 1.5) -> None:
    """The kernel is exiting (a restart, a shutdown, the end of a script): nobody will follow its jobs, so each
    one ends here, recorded as cancelled, rather than left `running` forever in every face. Each driver is asked
    to cancel itself (it stops its workers, collects what they finished, cancels the rest and records why);
    one that has not ended within `wait` seconds (a restarting kernel is sent SIGTERM after 2.5 s: half of
    jupyter_client's shutdown_wait_time) is frozen (its lock taken, so it cannot write `running` after us) and
    ended from here: its workers stopped, its record cancelled with the reason and its unfinished items
    cancelled."""
    reason = "the kernel that launched the job exited"
    drivers = list(_LIVE)
    for driver in drivers:
        driver.request_cancel(reason)
    deadline = time.monotonic() + wait
    for driver in drivers:
        driver.join(max(0.0, deadline - time.monotonic()))
    for driver in (d for d in drivers if d.is_alive()):
        try:
            driver.lock.acquire(timeout=0.5)  # (never released: the process is ending)
            driver.files.request_cancel(reason)
            alive = driver.workforce.alive()
            driver.backend.stop(alive, grace=1.0)
            ended = driver.records.read_record(driver.job_id).cancelled_without_owner(
                reason, len(alive), time.time(), note="its kernel exited"
            )
            driver.records.write(ended)
        except Exception:  # best effort at interpreter exit
            logger.debug("could not record the end of job %s", driver.job_id, exc_info=True)


def _cloud_refusal(exc: BaseException) -> str:
    """A cloud API's refusal (botocore's ClientError: an operation, an error code, a message), in one line; ""
    for anything else. Duck-typed: the core imports no cloud SDK."""
    response = getattr(exc, "response", None)
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    if not error:
        return ""
    operation = getattr(exc, "operation_name", "") or "a call"
    return f"{operation}: {error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")


#: Seconds after a change during which the driver keeps its quickest pace.
CALM_AFTER = 0.05


def live_drivers() -> list[JobDriver]:
    """Drivers of the jobs this process runs now (a face finds a job's live handle here)."""
    return list(_LIVE)


class JobDriver(threading.Thread):
    def __init__(
        self,
        config: Config,
        records: JobStore,
        handle: JobHandle,
        backend: Backend,
        plan: Plan,
        chunks: list[bytes | memoryview],
        items: list[Any],
        open_job: bool,
        rate: pricing.Rate,
        timings: Timings,
        *,
        detached: bool = False,
    ):
        super().__init__(daemon=True, name=f"starburst-{handle.id}")
        self.config, self.records, self.timings = config, records, timings
        self.handle, self.backend, self.plan = handle, backend, plan
        self.spec, self.job_id, self.bus = handle.spec, handle.id, handle.events
        self.files = backend.job_files(handle.id)
        self.caps = capabilities_of(backend)
        self.ledger = ItemLedger(self.files, self.bus, timings.result_window)
        self.workforce = Workforce(backend, self.caps, self.files, self.spec, plan, self.bus, timings)
        # the program and the first items, dropped once written (None after prepare, and on attach)
        self.chunks: list[bytes | memoryview] | None = chunks
        self.initial_items: list[Any] | None = items
        self.open_job = open_job
        self.closed = not open_job
        self.ledger.shared = open_job and detached
        self.per_second = pricing.per_second(rate, self.spec.cpu_units, self.spec.memory_mib)
        self.cost_rule = CostRule(self.spec.max_cost, self.per_second)
        self.cost = self.projected = 0.0
        self.polls = 0  # poll cycles so far: API calls per cycle is what a cloud backend must keep flat
        self.wake = threading.Event()
        self.lock = threading.RLock()
        self.cancel_reason: str | None = None  # written by the loop's thread only
        self.cancel_request: str | None = None  # written by request_cancel only (any thread)
        self.cancelled_by = "user"  # or "timeout", "max-cost", "startup"
        self.created = self.started = time.time()
        self.deadline = self.created + self.spec.timeout
        self.state, self.message = "queued", ""
        self.log_cursor: Any = None
        self.last_record = self.last_cost_tick = self.last_log_poll = self.last_mirror = self.last_journal = 0.0
        # A detached driver (core/drive.py) runs apart from any kernel: it journals its events for the kernels
        # that follow it, keeps the results in the store until they are pruned, and names itself the owner.
        self.detached = detached
        self.journal: EventJournal | None = EventJournal(self.files, self.bus) if detached else None
        self.mirrored_state = ""
        # A local job's store is the job store's own folder: its record is already where the mirror would go.
        self.mirror = self.files.record_file() != records.job_dir(self.job_id) / "record.json"
        # the first failures' one-line errors, until the job's first success (decisions.systematic_failure)
        self.first_errors: list[str] | None = [] if self.spec.on_error != "keep" else None
        self.bus.subscribe(self._note_first_outcomes, ev.TaskFinished, ev.TasksFinished, ev.TaskFailed)
        self.lease: DriverLease | None = None  # one driver per job: every record and journal write is fenced by it
        self.resumed = False  # rebuilt from the store (attach, or a detached driver) rather than made here
        self.driver_since = self.created  # when this process began driving the job

    # ----- set-up ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Write everything workers need before any of them starts (nothing is launched on failure)."""
        self.files.write_spec(
            WorkerSpec(
                job_id=self.job_id,
                deadline=self.deadline,
                max_result_bytes=self.spec.max_result_bytes,
                timing=worker_timing(Timing(**self.backend.timing), self.plan.concurrency),  # (scaled: item 6)
                plan=PlanShare(self.plan.workers, self.plan.budget),
                open=self.open_job,
                idle_seconds=OPEN_JOB_IDLE_SECONDS if self.open_job else 0.0,
                job=self.spec.to_json(),
                **(self.caps.warm.spec_extras(self.spec) if self.caps.warm else {}),
            )
        )
        chunks, initial_items = self.chunks, self.initial_items
        assert chunks is not None and initial_items is not None, "prepare runs once, on a new job"
        self.files.write_program(chunks)
        self.chunks = None  # the kernel keeps no second copy of the captured names
        self.ledger.start(self.plan.blocks, initial_items, self.open_job)
        self.initial_items = None
        self._set_state("queued")

    def resume(self, record: dict[str, Any]) -> None:
        """Rebuild the job's state from its store and record (the attach path): blocks and which items they
        hold, the workers the record names; results and claims come with the first (full) scan."""
        spec = self.files.read_spec()
        self.plan = Plan([], spec.plan.workers or self.plan.workers, self.plan.concurrency, spec.plan.budget)
        self.workforce.plan = self.plan
        self.deadline, self.created, self.started = spec.deadline, record["created"], record["started"]
        self.ledger.reload(int(record["total"]))
        self.workforce.adopt(record)
        self.chunks = self.initial_items = None
        self.resumed = True
        self.driver_since = time.time()
        if self.detached:
            self.message = f"driven apart from any kernel (pid {os.getpid()} on {socket.gethostname()})"
        else:
            self.message = f"attached from pid {os.getpid()}"
        self._set_state("running")

    # ----- what faces ask (from their threads) ----------------------------------------------
    def add_items(self, values: list[Any]) -> list[int]:
        with self.lock:
            if self.closed:
                raise BurstError(
                    f"Job {self.job_id} is {'closed' if self.state not in TERMINAL_STATES else self.state}"
                    f" and takes no more items; start a new job (or BurstExecutor).",
                    job_id=self.job_id,
                )
            return self.ledger.append(values)

    def withdraw(self, index: int) -> bool:
        with self.lock:
            return self.ledger.withdraw(index)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.files.close()

    def request_cancel(self, reason: str) -> None:
        """Lock-free, so a stop button is never stuck behind a step doing slow I/O. It writes its own field:
        writing cancel_reason raced the loop reading the cancel file, which overwrote a click with None."""
        if self.cancel_request is None:
            self.cancel_request = reason
        self.wake.set()

    # ----- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        quickest, slowest = self.backend.poll_seconds
        pause, last_change = quickest, time.monotonic()
        _LIVE.add(self)
        try:
            self._set_state("launching")
            while True:
                with self.lock:
                    if self.lease is not None:
                        self.lease.renew_if_due()  # LeaseLost: another driver took over; this one writes nothing
                    if self.cancel_reason is None:  # this face's request, else one another face wrote
                        self.cancel_reason = self.cancel_request or self.files.cancel_reason()
                    if self.cancel_reason is not None:
                        self._cancel()
                        break
                    changed = self._step()
                    if self.closed and self.ledger.shared and not self.ledger.complete():
                        self.ledger.discover()  # (a feeder's last block, written just before the close)
                        self.ledger.end_unqueued()  # numbers a feeder took without writing their task
                    if self.closed and self.ledger.complete():
                        self._finish()
                        break
                # a cloud backend pays per poll: it slows down while nothing changes, but not within 50 ms of a
                # change (a local job's next step, a worker's end, is then milliseconds away; a cloud backend's
                # quickest pace is longer than that anyway)
                if changed:
                    last_change = time.monotonic()
                calm = time.monotonic() - last_change >= CALM_AFTER
                pause = min(pause * 1.5, slowest) if calm else quickest
                due = self.workforce.next_due()
                self.wake.wait(pause if due is None else max(quickest, min(pause, due - time.time())))
                self.wake.clear()
        except LeaseLost as lost:  # another driver has the job now: its record, journal and workers are its own
            logger.warning("%s", lost)
            self.handle.settle(error=lost)
        except BaseException as exc:  # the job must end recorded, never hang a wait()
            if no_room(exc):  # the user's problem, said in the job's outcome; no traceback needed
                logger.warning("job %s: no room to write its files: %s", self.job_id, exc)
            else:
                logger.exception("launcher of job %s failed", self.job_id)
            with self.lock:
                self._crash(exc)
        finally:
            _LIVE.discard(self)
            self.handle.settle()  # whatever happened, no wait() hangs

    def _step(self) -> bool:
        now = time.time()
        self.polls += 1
        if now > self.deadline:
            self.deadline = self.files.deadline(self.deadline)  # (`starburst extend` may have moved it)
        if now > self.deadline:
            self._must_stop(Stop(f"it passed its --timeout of {self.spec.timeout:g} s", "timeout"))
            return True
        self.workforce.honour_stop_requests()
        fed = False
        if self.open_job and self.detached:  # the kernel that feeds this open job writes its blocks itself
            fed = self.ledger.discover()
            if not self.closed and self.files.is_closed():
                self.closed = True
        exited = self.workforce.poll()
        # Why a worker ended is read from the job (cancelled? at its deadline?), never from its exit code alone.
        ending = dict(
            cancelled=self.cancel_reason is not None or self.files.cancel_requested(),
            near_deadline=now >= self.deadline - self.timings.deadline_slack,
        )
        # a worker that died may have written results a quick listing misses: sweep before retrying its work
        # (one that ended cleanly flushed its last results just now, well inside the quick listing's window)
        died = any(self.workforce.judge(ref, claimed_any=True, **ending).sweep for ref in exited)
        full = died or now - self.ledger.last_sweep >= self.timings.sweep
        changed = self.ledger.scan_claims(full)
        changed |= self.ledger.collect_results(full)
        self._check_systematic()
        self.workforce.track_waves(self.ledger.finished(), self.ledger.total())  # waves are progress, not tasks
        early = []
        for ref in exited:  # judged knowing its claims now
            end = self.workforce.judge(ref, claimed_any=self.ledger.claimed_by(ref.index), **ending)
            if end.requeue:
                self.ledger.requeue(ref, self.spec.retries, ref.index in self.workforce.stopped_by_user)
            if end.startup_failure:
                early.append(ref)
        self._must_stop(self.workforce.ended_early(early))
        if not self.workforce.alive() and not self.workforce.pending:
            self.ledger.requeue_unknown()  # blocks whose claim was unreadable: nobody can be running them now
        charged, stop = 0.0, None
        if self.cancel_reason is None:  # a job that must stop starts nobody (no relaunch after a start-up stop)
            charged, stop = self.workforce.launch(self.ledger.unclaimed(), self.cost, self.cost_rule)
        self.cost += charged
        self._must_stop(stop)
        if now - self.last_log_poll >= self.backend.log_poll_seconds:
            self._tail_logs(now)
        if now - self.last_cost_tick >= self.timings.cost_every:
            self._tick_cost(now)
        if self.state == "launching" and self.workforce.alive():
            self._set_state("running")
        if now - self.last_record >= self.timings.record_every:
            self._write_record()
        return changed or fed or bool(exited)

    def _note_first_outcomes(self, event: ev.Event) -> None:
        if self.first_errors is None:
            return
        if isinstance(event, ev.TaskFailed) and len(self.first_errors) < SYSTEMATIC_FAILURES:
            self.first_errors.append(event.error)
        elif not isinstance(event, ev.TaskFailed):
            self.first_errors = None  # an item succeeded: the job works, whatever fails later

    def _check_systematic(self) -> None:
        if self.first_errors is None or len(self.first_errors) < SYSTEMATIC_FAILURES:
            return
        why = systematic_failure(self.first_errors, 0, self.ledger.total(), keep_going=False)
        self.first_errors = None  # decided once
        if why is not None:
            self._must_stop(Stop(why, "systematic"))

    def _must_stop(self, stop: Stop | None) -> None:
        """The job must stop (the first reason given is the one the user reads)."""
        if stop is not None and self.cancel_reason is None:
            self.cancel_reason, self.cancelled_by = stop.reason, stop.by

    def _tail_logs(self, now: float) -> None:
        self.last_log_poll = now
        if not self.bus.wants(ev.LogLine):
            return
        # an ended worker's last lines may still be on their way (CloudWatch delivers in batches)
        grace = 2 * self.backend.log_poll_seconds
        workers = self.workforce.workers.values()
        refs = [r for r in workers if not r.info.get("log_drained") and not r.info.get("launch_failed")]
        if not refs:
            return
        lines, self.log_cursor = self.backend.tail_logs(self.files, refs, self.log_cursor)
        for worker, line in lines:
            self.bus.publish(ev.LogLine(self.job_id, worker=worker, line=line))
        for ref in refs:
            if ref.ended is not None and now - ref.ended >= grace:
                ref.info["log_drained"] = True

    # ----- money ----------------------------------------------------------------------------
    def _accrued(self, now: float) -> float:
        workers = self.workforce.worker_seconds(now, pricing.MINIMUM_BILLED_SECONDS) * self.per_second
        return workers + self._driver_cost(now)

    def _driver_cost(self, now: float) -> float:
        """A detached driver that runs as a cloud task is billed too (this driver's time; on-demand, never Spot)."""
        if not (self.detached and self.resumed) or self.caps.drivers is None:
            return 0.0
        cpu, memory = self.caps.drivers.driver_shape
        rate = pricing.rate_for(self.spec.region, self.spec.arch, spot=False)
        seconds = max(pricing.MINIMUM_BILLED_SECONDS, now - self.driver_since)
        return seconds * pricing.per_second(rate, cpu, memory)

    def _tick_cost(self, now: float) -> None:
        self.last_cost_tick = now
        self.cost = self._accrued(now)
        done = self.ledger.finished()
        alive = len(self.workforce.alive())
        elapsed = now - self.started
        self.projected = projected_cost(self.cost, alive, self.per_second, elapsed, done, self.ledger.total() - done)
        self._publish_cost(self.projected)
        if self.cost_rule.must_stop(self.cost, alive):
            self._must_stop(Stop(self.cost_rule.stop_reason(self.cost), "max-cost"))

    def _publish_cost(self, projected: float) -> None:
        cap, label = self.spec.max_cost, self._cost_label()
        self.bus.publish(ev.CostTick(self.job_id, accrued=self.cost, projected=projected, cap=cap, label=label))

    def _cost_label(self) -> str:
        where = f"Fargate {self.spec.region} {'Spot' if self.spec.spot else 'on-demand'}, {self.spec.describe_size()}"
        return f"estimate for the same work on {where}" if rec.cost_is_estimate(self.spec.backend) else where

    # ----- endings --------------------------------------------------------------------------
    def _finish(self) -> None:
        self._set_state("collecting")
        keep_warm = self.spec.keep_warm > 0 and self.caps.warm is not None
        self.workforce.wind_down(10.0 if keep_warm else 1.0)
        self.workforce.stop_all(self.cancel_reason or "job ended")
        self._end("failed" if self.ledger.any_failed() else "done", "")

    def _cancel(self) -> None:
        reason = self.cancel_reason or "cancelled from another process"
        self.files.request_cancel(reason)
        self.workforce.stop_all(reason)
        self.ledger.scan_claims(full=True)
        self.ledger.collect_results(full=True)
        if self.cancelled_by == "systematic":
            not_run = "Not run: the job stopped after its first items all failed the same way."  # (one group)
            self.ledger.end_unfinished(lambda i: BurstError(not_run, job_id=self.job_id))
            self._end("failed", reason)
            return
        if self.cancelled_by == "startup":
            never_ran = f"the workers of job {self.job_id} could not start. {reason}"
            self.ledger.end_unfinished(lambda i: BurstError(f"Item {i} never ran: {never_ran}", job_id=self.job_id))
            self._end("failed", reason)
            return
        cancelled = f"job {self.job_id} was cancelled: {reason}."
        self.ledger.end_unfinished(lambda i: TaskCancelled(f"Item {i} did not finish: {cancelled}"))
        self._end("cancelled", reason)

    def _crash(self, exc: BaseException) -> None:
        where = f"{self.files.store.url}/{self.files.prefix}"
        if no_room(exc):
            message = (
                f"job {self.job_id} stopped: there is no room left to write its files in {where} "
                f"({getattr(exc, 'strerror', None) or exc}: disk full, quota or file-size limit). Free space there; "
                f"the items that had finished are kept"
            )
        elif _cloud_refusal(exc):
            message = (
                f"job {self.job_id} stopped: {self.backend.name} refused a call the job needs: {_cloud_refusal(exc)}. "
                f"Check the account's set-up and permissions (`starburst setup` makes what is missing); the items "
                f"that had finished are kept"
            )
        else:
            message = (
                f"the launcher of job {self.job_id} failed: {type(exc).__name__}: {exc}. This is a bug in "
                f"starburst-jupyter; the job's files are kept in {where}"
            )
        try:
            self.files.request_cancel(message)
        except OSError as marker_exc:  # (no room for the marker either: the workers are stopped below all the same)
            logger.warning("could not write the cancel marker of job %s: %s", self.job_id, marker_exc)
        try:
            self.workforce.stop_all(message)
            self.ledger.scan_claims(full=True)  # what finished before the failure is kept, not dropped
            self.ledger.collect_results(full=True)
        except Exception:  # best effort: the job is ending either way
            logger.exception("could not stop the workers of job %s", self.job_id)
        error = StorageFull if no_room(exc) else BurstError
        self.ledger.end_unfinished(lambda i: error(f"Item {i} did not finish: {message}.", job_id=self.job_id))
        if no_room(exc):  # what was collected is in memory: its files go, so the record fits again (a detached
            try:  # job's results are collected from the store later: they stay, the rest makes the room)
                self.files.delete_payloads(at_once=True, keep_results=self.detached)
            except OSError:
                logger.exception("could not delete the payloads of job %s", self.job_id)
        self._publish_end("failed", message)

    def _end(self, state: str, message: str) -> None:
        if not self.config.keep_payloads and not self.detached:  # a detached job's results wait to be collected
            try:
                self.files.delete_payloads()  # (a folder store renames them away at once, unlinks them later)
            except OSError:
                logger.exception("could not delete the payloads of job %s (results are collected)", self.job_id)
        self._publish_end(state, message)

    def _publish_end(self, state: str, message: str) -> None:
        self.closed = True  # an ended job takes no more items
        now = time.time()
        self.cost = self.projected = self._accrued(now)
        self.message = message
        failures = self.ledger.failures()
        result = JobResult(
            self.job_id,
            state,
            self.ledger.values(),
            failures,
            self.ledger.outputs(),
            now - self.started,
            self.cost,
            message,
            self.cancelled_by if state == "cancelled" else "",
        )
        try:
            self._set_state(state, message)  # the record first: a face that wakes on the result reads it
        except LeaseLost:
            raise
        except Exception:  # ... but a record that cannot be written must not cost the caller the results
            logger.exception("could not write the final record of job %s", self.job_id)
            self.state = self.handle.state = state
        self._publish_cost(self.cost)
        self.bus.publish(
            ev.JobFinished(
                self.job_id,
                state=state,
                done=self.ledger.done_count(),
                failed=len(failures),
                total=self.ledger.total(),
                duration=now - self.started,
                cost=self.cost,
                message=message,
            )
        )
        if self.journal is not None:
            try:
                self.journal.flush()
            except OSError:
                logger.exception("could not journal the end of job %s", self.job_id)
        self.handle.settle(result)

    def _set_state(self, state: str, message: str = "") -> None:
        self.state = self.handle.state = state
        self.bus.publish(ev.JobStateChanged(self.job_id, state=state, message=message))
        # Written at once, but for the two passing states (launching follows queued, collecting comes right before
        # the end): those at the record's own pace. "running" is written at once: it names the workers started,
        # which a cancel from another process, or an attach, must find even if this kernel dies right now.
        passing = state in ("launching", "collecting")
        if not passing or time.time() - self.last_record >= self.timings.record_every:
            self._write_record()

    def hold(self, lease: DriverLease) -> None:
        """Drive under `lease`: the journal's writes are fenced by it too."""
        self.lease = lease
        if self.journal is not None:
            self.journal.fence = lease.fence

    def _write_record(self) -> None:
        if self.lease is not None:
            self.lease.fence()
        self.last_record = now = time.time()
        outcomes, counts, failures = self.ledger.outcomes()
        state = rec.JobState(self.state)
        calls = self.caps.api_calls.api_calls if self.caps.api_calls else None
        record = rec.JobRecord(
            id=self.job_id,
            name=self.spec.name,
            backend=self.spec.backend,
            state=state,
            message=self.message,
            created=self.created,
            started=self.started,
            finished=now if state.is_terminal else None,
            updated=now,
            spec=self.spec.to_json(),
            total=self.ledger.total(),
            done=counts[rec.Outcome.DONE.value],
            failed=counts[rec.Outcome.FAILED.value],
            cancelled=counts[rec.Outcome.CANCELLED.value],
            outcomes=outcomes,
            failures=failures,
            busy_seconds=self.ledger.busy_seconds(),
            waves=self.workforce.waves(),
            workers=self.workforce.records(),
            cost=rec.Cost(
                accrued=self.cost,
                projected=self.projected,
                cap=self.spec.max_cost,
                warm_at_most=len(self.workforce.kept_warm) * self.spec.keep_warm * 60 * self.per_second,
                label=self._cost_label(),
                prices_as_of=pricing.PRICES_AS_OF,
            ),
            store={"url": self.files.store.url, "prefix": self.files.prefix},
            # a detached job's record names no pid until its driver runs (the launching kernel is not its owner)
            owner=rec.Owner(
                os.getpid() if self.resumed or not self.detached else None,
                socket.gethostname(),
                self.detached,
                os.environ.get("STARBURST_DRIVER_TASK"),
            ),
            api_calls=calls.for_job(self.job_id) if calls is not None else None,
            polls=self.polls if calls is not None else None,
        )
        try:
            self.records.write(record)
            # the store's copy lets any machine with the bucket list, follow and collect the job
            mirror_due = state.value != self.mirrored_state or now - self.last_mirror >= self.timings.mirror_every
            if self.mirror and mirror_due:
                self.files.write_record(record.dumps().encode())
                self.mirrored_state, self.last_mirror = state.value, now
            due = state.is_terminal or now - self.last_journal >= self.timings.journal_every
            if self.journal is not None and due:
                self.journal.flush()
                self.last_journal = now
        except OSError as exc:
            if not no_room(exc):
                raise
            # the job goes on (results still arrive); its record is rewritten once there is room again
            logger.warning("no room to write the record of job %s: %s", self.job_id, exc)

"""A job's driver: the one thread per job that starts workers in waves, reads claims and results,
retries what dead workers held, enforces --timeout and --max-cost, keeps the record and publishes events."""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starburst_jupyter.backends import Backend, LaunchFailure, WorkerRef, capabilities_of
from starburst_jupyter.core import events as ev
from starburst_jupyter.core import pricing
from starburst_jupyter.core import record as rec
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.decisions import (
    CostRule,
    LaunchState,
    PendingLaunch,
    Timings,
    WorkerEnd,
    decide_launches,
    item_is_lost,
    judge_worker_end,
    projected_cost,
    relaunch_delay,
)
from starburst_jupyter.core.job import JobHandle, JobResult
from starburst_jupyter.core.plan import Plan
from starburst_jupyter.errors import (
    BurstError,
    RemoteTraceback,
    TaskCancelled,
    WorkerLost,
)
from starburst_jupyter.protocol import serialize
from starburst_jupyter.protocol.jobfiles import ItemResult
from starburst_jupyter.protocol.workerspec import OPEN_JOB_IDLE_SECONDS, PlanShare, Timing, WorkerSpec
from starburst_jupyter.stores.records import TERMINAL_STATES, JobStore

MAX_RECORDED_FAILURES = 50
_LIVE: weakref.WeakSet[JobDriver] = weakref.WeakSet()


@atexit.register
def _stop_live_jobs() -> None:
    """The kernel is exiting: end the workers this process started rather than leave them running unowned."""
    for monitor in list(_LIVE):
        try:
            monitor.files.request_cancel("the kernel that launched the job exited")
            monitor.backend.stop(monitor._alive(), grace=1.0)
        except Exception:  # best effort at interpreter exit
            pass


logger = logging.getLogger(__name__)


def live_drivers() -> list[JobDriver]:
    """Drivers of the jobs this process runs now (a face finds a job's live handle here)."""
    return list(_LIVE)


@dataclass
class _Item:
    attempts: int = 1
    block: int = -1
    result: ItemResult | None = None
    final: bool = False
    value: Any = None
    failed: bool = False


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
    ):
        super().__init__(daemon=True, name=f"starburst-{handle.id}")
        self.config, self.records = config, records
        self.handle, self.backend, self.plan = handle, backend, plan
        self.spec, self.job_id, self.bus = handle.spec, handle.id, handle.events
        self.files = backend.job_files(handle.id)
        # the program and the first items, dropped once written (None after prepare, and on attach)
        self.chunks: list[bytes | memoryview] | None = chunks
        self.initial_items: list[Any] | None = items
        self.open_job = open_job
        self.timings = timings
        self.caps = capabilities_of(backend)
        self.per_second = pricing.per_second(rate, self.spec.cpu_units, self.spec.memory_mib)
        self.cost_rule = CostRule(self.spec.max_cost, self.per_second)
        self.items: list[_Item] = []
        self.blocks: dict[int, list[int]] = {}
        self.claims: dict[int, int] = {}
        self.seen_results: set[str] = set()
        self.newest_result = 0.0  # writer's time of the newest result object seen
        self.last_sweep = 0.0
        self.claim_floor = 0  # every block below it is claimed
        self.workers: dict[int, WorkerRef] = {}
        self.pending_launch: dict[int, PendingLaunch] = {}  # worker index -> its next launch attempt
        self.log_cursor: Any = None
        self.last_log_poll = 0.0
        self.kept_warm: dict[int, str] = {}  # worker index -> task kept running for the next job
        self.polls = 0  # poll cycles so far: API calls per cycle is what a cloud backend must keep flat
        self.wake = threading.Event()
        self.waves_started: set[int] = set()
        self.waves_finished: set[int] = set()
        self.next_worker = 0
        self.lock = threading.RLock()
        self.cancel_reason: str | None = None
        self.cancelled_by = "user"  # or "timeout", "max-cost", "startup"
        self.startup_failures = 0
        self.stop_requests: set[int] = set()  # workers a user asked to end (set from any thread)
        self.stopped_by_user: set[int] = set()
        self.closed = not open_job
        self.item_callbacks: list[Callable[[int, bool, Any], None]] = []
        self.created = time.time()
        self.started = self.created
        self.deadline = self.created + self.spec.timeout
        self.state = "queued"
        self.message = ""
        self.cost = 0.0
        self.projected = 0.0
        self.last_record = 0.0
        self.last_cost_tick = 0.0

    # ----- set-up ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Write everything workers need before any of them starts (nothing is launched on failure)."""
        self.files.write_spec(
            WorkerSpec(
                job_id=self.job_id,
                deadline=self.deadline,
                max_result_bytes=self.spec.max_result_bytes,
                timing=Timing(**self.backend.timing),
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
        for block in self.plan.blocks:
            self._add_block([(i, initial_items[i]) for i in block])
        if not self.open_job:
            self.items = [_Item() for _ in initial_items]
            for block_id, indices in self.blocks.items():
                for i in indices:
                    self.items[i].block = block_id
        self.initial_items = None
        self._set_state("queued")

    def resume(self, record: dict[str, Any]) -> None:
        """Rebuild the job's state from its store and record (the attach path): blocks and which items they
        hold, the workers the record names; results and claims come with the first (full) scan."""
        spec = self.files.read_spec()
        self.plan = Plan([], spec.plan.workers or self.plan.workers, self.plan.concurrency, spec.plan.budget)
        self.deadline, self.created, self.started = spec.deadline, record["created"], record["started"]
        self.items = [_Item() for _ in range(int(record["total"]))]
        for block in self.files.list_blocks():  # later blocks (retries) supersede earlier ones
            self.blocks[block] = [index for index, _ in self.files.read_block(block)]
            for index in self.blocks[block]:
                self.items[index].block = block
        for key, info in record.get("workers", {}).items():
            assert self.caps.attach is not None  # the launcher attaches only where the backend can
            ref = self.caps.attach.adopt(int(key), info)
            self.workers[ref.index] = ref
        self.next_worker = max(self.workers, default=-1) + 1
        waves = record.get("waves", {})
        self.waves_started = set(range(1, int(waves.get("started", 0)) + 1))
        self.waves_finished = set(range(1, int(waves.get("finished", 0)) + 1))
        self.chunks = self.initial_items = None
        self.message = f"attached from pid {os.getpid()}"
        self._set_state("running")

    def _add_block(self, pairs: list[tuple[int, Any]]) -> int:
        block = len(self.blocks)
        self.files.write_block(block, pairs)
        self.blocks[block] = [i for i, _ in pairs]
        return block

    def add_items(self, values: list[Any]) -> list[int]:
        with self.lock:
            if self.closed:
                raise BurstError(
                    f"Job {self.job_id} is {'closed' if self.state not in TERMINAL_STATES else self.state}"
                    f" and takes no more items; start a new job (or BurstExecutor).",
                    job_id=self.job_id,
                )
            start = len(self.items)
            indices = list(range(start, start + len(values)))
            for index, value in zip(indices, values):
                block = self._add_block([(index, value)])  # first: an item that cannot be written is not queued
                self.items.append(_Item(block=block))
        return indices

    def withdraw(self, index: int) -> bool:
        with self.lock:
            item = self.items[index]
            if item.final:
                return False
            if not self.files.claim(item.block, -1):  # a worker got there first
                return False
            self.claims[item.block] = -1
            self._finalize(index, False, TaskCancelled(f"Item {index} was withdrawn before it started."), None)
            return True

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.files.close()

    def request_cancel(self, reason: str) -> None:
        """Lock-free, so a stop button is never stuck behind a step doing slow I/O."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.wake.set()

    # ----- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        quickest, slowest = self.backend.poll_seconds
        pause = quickest
        _LIVE.add(self)
        try:
            self._set_state("launching")
            while True:
                with self.lock:
                    if self.cancel_reason is None:
                        self.cancel_reason = self.files.cancel_reason()  # written by another face
                    if self.cancel_reason is not None:
                        self._cancel()
                        break
                    changed = self._step()
                    if self._complete():
                        self._finish()
                        break
                pause = quickest if changed else min(pause * 1.5, slowest)  # a cloud backend pays per poll
                due = min((p.due for p in self.pending_launch.values()), default=None)
                self.wake.wait(pause if due is None else max(quickest, min(pause, due - time.time())))
                self.wake.clear()
        except BaseException as exc:  # the job must end recorded, never hang a wait()
            logger.exception("launcher of job %s failed", self.job_id)
            with self.lock:
                self._crash(exc)
        finally:
            _LIVE.discard(self)
            self.handle._finished.set()  # whatever happened, no wait() hangs

    def _step(self) -> bool:
        now = time.time()
        self.polls += 1
        if now > self.deadline:
            self.cancel_reason, self.cancelled_by = f"it passed its --timeout of {self.spec.timeout:g} s", "timeout"
            return True
        for index in list(self.stop_requests):
            self.stop_requests.discard(index)
            ref = self.workers.get(index)
            if ref is not None and ref.exit_code is None:
                self.stopped_by_user.add(index)
                self.backend.stop([ref])
                ref.reason = "stopped by user"
        exited = self._poll_workers()
        # Why a worker ended is read from the job (cancelled? at its deadline?), never from its exit code alone.
        near_deadline = now >= self.deadline - self.timings.deadline_slack
        cancelled = self.cancel_reason is not None or self.files.cancel_requested()
        # a worker that died may have written results a quick listing misses: sweep before retrying its work
        # (one that ended cleanly flushed its last results just now, well inside the quick listing's window)
        died = any(self._judge_end(ref, cancelled, near_deadline).sweep for ref in exited)
        full = died or now - self.last_sweep >= self.timings.sweep
        changed = self._scan_claims(full)
        changed |= self._collect_results(full)
        ends = [(ref, self._judge_end(ref, cancelled, near_deadline)) for ref in exited]  # knowing its claims now
        for ref, end in ends:
            if end.requeue:
                self._requeue_from(ref)
        self._check_startup_failures([ref for ref, end in ends if end.startup_failure])
        self._launch_workers()
        if now - self.last_log_poll >= self.backend.log_poll_seconds:
            self._tail_logs(now)
        if now - self.last_cost_tick >= self.timings.cost_every:
            self._tick_cost(now)
        if self.state == "launching" and any(r.exit_code is None for r in self.workers.values()):
            self._set_state("running")
        if now - self.last_record >= self.timings.record_every:
            self._write_record()
        return changed or bool(exited)

    def _complete(self) -> bool:
        return self.closed and all(item.final for item in self.items)

    # ----- workers --------------------------------------------------------------------------
    def _alive(self) -> list[WorkerRef]:
        return [r for r in self.workers.values() if r.exit_code is None]

    def _judge_end(self, ref: WorkerRef, cancelled: bool, near_deadline: bool) -> WorkerEnd:
        return judge_worker_end(
            ref.exit_code,
            cancel_requested=cancelled,
            near_deadline=near_deadline,
            claimed_any=ref.index in self.claims.values(),
            stopped_by_user=ref.index in self.stopped_by_user,
            launch_failed=bool(ref.info.get("launch_failed")),
        )

    def _launch_workers(self) -> None:
        now = time.time()
        lost = sum(1 for r in self.workers.values() if r.exit_code not in (None, 0) or r.index in self.stopped_by_user)
        decision = decide_launches(
            LaunchState(
                now=now,
                plan=self.plan,
                unclaimed=sum(1 for b in self.blocks if b not in self.claims),
                alive=len(self._alive()),
                pending=self.pending_launch,
                next_worker=self.next_worker,
                lost=lost,
                latest_wave=max(self.waves_started or {1}),
                accrued=self.cost,
            ),
            self.cost_rule,
        )
        for index in decision.dropped:
            self.pending_launch.pop(index)
        if decision.refusal is not None:
            self.cancel_reason, self.cancelled_by = decision.refusal, "max-cost"
        if not decision.starts:
            return
        self.next_worker = max(self.next_worker, max(s.index for s in decision.starts) + 1)
        refs, failures = self.backend.start_workers(self.files, self.spec, decision.starts)
        for ref in refs:
            self.pending_launch.pop(ref.index, None)
            self.workers[ref.index] = ref
            if ref.wave not in self.waves_started:
                self.waves_started.add(ref.wave)
                in_wave = sum(1 for w in range(self.plan.workers) if self.plan.wave_of(w) == ref.wave)
                self.bus.publish(ev.WaveStarted(self.job_id, wave=ref.wave, waves=self.plan.waves, workers=in_wave))
            self.bus.publish(ev.WorkerStarted(self.job_id, worker=ref.index, wave=ref.wave, pid=ref.info.get("pid")))
            self.cost += self.per_second * pricing.MINIMUM_BILLED_SECONDS
        budgets = {start.index: start.budget for start in decision.starts}
        for failure in failures:
            self._launch_failed(failure, budgets[failure.index], now)

    def _launch_failed(self, failure: LaunchFailure, budget: int, now: float) -> None:
        """Retry with back-off, or give the worker up and say why (the job fails only if none can start)."""
        previous = self.pending_launch.get(failure.index)
        attempts = (previous.attempts if previous else 0) + 1
        delay = relaunch_delay(attempts, failure.retryable, self.timings)
        if delay is not None:
            self.pending_launch[failure.index] = PendingLaunch(
                failure.wave, budget, attempts, now + delay, failure.reason
            )
            self.bus.publish(
                ev.WorkerLaunchFailed(self.job_id, worker=failure.index, reason=failure.reason, retry_in=delay)
            )
            return
        self.pending_launch.pop(failure.index, None)
        reason = f"could not be launched after {attempts} attempt{'s' if attempts > 1 else ''}: {failure.reason}"
        ref = WorkerRef(
            failure.index, failure.wave, now, exit_code=-1, ended=now, reason=reason, info={"launch_failed": True}
        )
        self.workers[failure.index] = ref
        self.bus.publish(ev.WorkerLaunchFailed(self.job_id, worker=failure.index, reason=failure.reason, retry_in=None))
        self.bus.publish(ev.WorkerExited(self.job_id, worker=ref.index, exit_code=-1, reason=reason))
        if not self._alive() and not self.pending_launch and self.cancel_reason is None:
            self.cancel_reason, self.cancelled_by = (
                f"no worker could be started on {self.backend.name}: worker {failure.index} {reason}",
                "startup",
            )

    def _poll_workers(self) -> list[WorkerRef]:
        alive = self._alive()
        exited = self.backend.poll_workers(alive) if alive else []
        for ref in exited:
            self.bus.publish(ev.WorkerExited(self.job_id, worker=ref.index, exit_code=ref.exit_code, reason=ref.reason))
        for ref in exited:
            self._maybe_finish_wave(ref.wave)
        return exited

    def _check_startup_failures(self, early: list[WorkerRef]) -> None:
        """Workers that die before claiming anything (cannot import, cannot unpickle) must not be relaunched forever."""
        for ref in early:
            self.startup_failures += 1
            if self.startup_failures > self.spec.retries and self.cancel_reason is None:
                tail = self.backend.read_log(self.files, ref.index).strip().splitlines()[-8:]
                self.cancel_reason = (
                    f"{self.startup_failures} workers ended before taking any work ({ref.reason}); "
                    f"the last one's log ends with:\n    " + "\n    ".join(tail)
                )
                self.cancelled_by = "startup"

    def _maybe_finish_wave(self, wave: int) -> None:
        if wave in self.waves_finished:
            return
        members = [r for r in self.workers.values() if r.wave == wave]
        planned = sum(1 for w in range(self.plan.workers) if self.plan.wave_of(w) == wave)
        if len(members) >= planned and all(r.exit_code is not None for r in members):
            self.waves_finished.add(wave)
            self.bus.publish(ev.WaveFinished(self.job_id, wave=wave, waves=self.plan.waves))

    def _requeue_from(self, ref: WorkerRef) -> None:
        """Items a dead worker held but never reported go to another worker, up to the retry limit."""
        for block, worker in sorted(self.claims.items()):
            if worker != ref.index:
                continue
            # Unflushed results are lost with the worker, so we cannot tell which item was running:
            # each one it held counts an attempt and goes alone to another worker, where a crash is its own.
            missing = [i for i in self.blocks[block] if not self.items[i].final]
            inputs = dict(self.files.read_block(block)) if missing else {}
            alone = len(self.blocks[block]) == 1  # only then is the item surely what the worker was running
            for index in missing:
                item = self.items[index]
                if item_is_lost(item.attempts, self.spec.retries, alone):
                    self._finalize(
                        index,
                        False,
                        WorkerLost(
                            f"Item {index} was running on worker {ref.index} when that worker ended ({ref.reason}); "
                            f"it was tried {item.attempts} time{'s' if item.attempts != 1 else ''}, "
                            f"on different workers, and each "
                            f"time the worker died. "
                            f"Look for crashes or memory use in the item: %burst_logs {self.job_id} --worker "
                            f"{ref.index} shows that worker's log.",
                            job_id=self.job_id,
                        ),
                        None,
                    )
                    continue
                if ref.index in self.stopped_by_user:
                    item.block = self._add_block([(index, inputs[index])])  # not the item's fault
                    continue
                item.attempts += 1
                self.bus.publish(
                    ev.TaskRetried(
                        self.job_id, index=index, attempt=item.attempts, reason=f"worker {ref.index}: {ref.reason}"
                    )
                )
                item.block = self._add_block([(index, inputs[index])])

    # ----- progress -------------------------------------------------------------------------
    def _scan_claims(self, full: bool = False) -> bool:
        """Claims come roughly in block order, so a quick scan lists only those from the first unclaimed block."""
        while self.claim_floor in self.claims:
            self.claim_floor += 1
        fresh = self.files.list_claimed(after=-1 if full else self.claim_floor - 1) - self.claims.keys()
        for block in sorted(fresh):
            worker = self.files.read_claim(block).worker
            self.claims[block] = worker
            if worker >= 0:
                self.bus.publish(ev.TaskStarted(self.job_id, worker=worker, indices=tuple(self.blocks.get(block, ()))))
        return bool(fresh)

    def _collect_results(self, full: bool = False) -> bool:
        """A quick listing covers the last few seconds of results (timings.result_window); a full one runs now and
        then."""
        if full:
            self.last_sweep = time.time()
        since = None if full or not self.newest_result else self.newest_result - self.timings.result_window
        keys = [k for k in self.files.list_result_keys(since) if k not in self.seen_results]
        for key in sorted(keys):
            self.seen_results.add(key)
            self.newest_result = max(self.newest_result, self.files.result_time(key))
            for result in self.files.read_results(key):
                if result.index < len(self.items) and not self.items[result.index].final:
                    self._take(result)
        return bool(keys)

    def _take(self, result: ItemResult) -> None:
        try:
            value = serialize.decode(result.value)
        except Exception as exc:  # a value the kernel cannot unpickle is that item's failure
            value = BurstError(
                f"Item {result.index}'s result could not be unpickled in this kernel: {type(exc).__name__}: {exc}. "
                f"Usually the worker and kernel have different package versions.",
                job_id=self.job_id,
            )
            result.ok = False
        if not result.ok and isinstance(value, BaseException) and result.traceback:
            value.__cause__ = RemoteTraceback(result.traceback)
        self._finalize(result.index, result.ok, value, result)

    def _finalize(self, index: int, ok: bool, value: Any, result: ItemResult | None) -> None:
        item = self.items[index]
        item.final, item.failed, item.value, item.result = True, not ok, value, result
        if result is not None:
            item.result = ItemResult(
                result.index,
                ok,
                None,
                result.traceback,
                result.stdout,
                result.stderr,
                result.started,
                result.duration,
                result.worker,
            )
        worker = result.worker if result else -1
        if ok:
            self.bus.publish(
                ev.TaskFinished(self.job_id, index=index, worker=worker, duration=result.duration if result else 0.0)
            )
        elif not isinstance(value, TaskCancelled):  # unfinished items of a cancelled job did not fail
            line = f"{type(value).__name__}: {value}".splitlines()[0][:300]
            self.bus.publish(
                ev.TaskFailed(
                    self.job_id, index=index, worker=worker, error=line, traceback=result.traceback if result else ""
                )
            )
        for callback in self.item_callbacks:
            try:
                callback(index, ok, value)
            except Exception:  # a face's callback must not break the job
                logger.exception("an item callback of job %s failed", self.job_id)

    def _tail_logs(self, now: float) -> None:
        self.last_log_poll = now
        if not self.bus.wants(ev.LogLine):
            return
        # an ended worker's last lines may still be on their way (CloudWatch delivers in batches)
        grace = 2 * self.backend.log_poll_seconds
        refs = [r for r in self.workers.values() if not r.info.get("log_drained") and not r.info.get("launch_failed")]
        if not refs:
            return
        lines, self.log_cursor = self.backend.tail_logs(self.files, refs, self.log_cursor)
        for worker, line in lines:
            self.bus.publish(ev.LogLine(self.job_id, worker=worker, line=line))
        for ref in refs:
            if ref.ended is not None and now - ref.ended >= grace:
                ref.info["log_drained"] = True

    def _worker_seconds(self, now: float) -> float:
        return sum(max((r.ended or now) - r.started, pricing.MINIMUM_BILLED_SECONDS) for r in self.workers.values())

    def _tick_cost(self, now: float) -> None:
        self.last_cost_tick = now
        self.cost = self._worker_seconds(now) * self.per_second
        done = sum(1 for i in self.items if i.final)
        remaining = len(self.items) - done
        alive = len(self._alive())
        self.projected = projected_cost(self.cost, alive, self.per_second, now - self.started, done, remaining)
        self.bus.publish(
            ev.CostTick(
                self.job_id,
                accrued=self.cost,
                projected=self.projected,
                cap=self.spec.max_cost,
                label=self._cost_label(),
            )
        )
        if self.cost_rule.must_stop(self.cost, alive) and self.cancel_reason is None:
            self.cancel_reason, self.cancelled_by = self.cost_rule.stop_reason(self.cost), "max-cost"

    def _cost_label(self) -> str:
        where = f"Fargate {self.spec.region} {'Spot' if self.spec.spot else 'on-demand'}, {self.spec.describe_size()}"
        return f"estimate for the same work on {where}" if rec.cost_is_estimate(self.spec.backend) else where

    # ----- endings --------------------------------------------------------------------------
    def _stop_all(self) -> None:
        self.pending_launch.clear()
        if self.spec.keep_warm > 0 and self.caps.warm:
            self._keep_warm()  # (also on a cancel: a worker another job took is that job's now)
        alive = self._alive()
        if alive or self.workers:  # (a cloud backend also looks for tasks of the job it has no ref of)
            keep = frozenset(self.kept_warm.values())
            # every worker, ended ones too: what their tasks started ends with the job
            self.backend.stop_job(self.job_id, list(self.workers.values()), self.cancel_reason or "job ended", keep)
            ended = {r.index for r in self.backend.poll_workers(alive)} if alive else set()
        for ref in alive:
            if ref.index not in ended:
                ref.exit_code, ref.ended = -1, time.time()
                ref.reason = ref.reason or "stopped at the end of the job"
            self.bus.publish(ev.WorkerExited(self.job_id, worker=ref.index, exit_code=ref.exit_code, reason=ref.reason))

    def _finish(self) -> None:
        self._set_state("collecting")
        keep_warm = self.spec.keep_warm > 0 and self.caps.warm is not None
        deadline = time.monotonic() + (10.0 if keep_warm else 1.0)
        while self._alive() and time.monotonic() < deadline:  # idle workers exit (or turn warm) on their own
            self._poll_workers()
            if keep_warm:
                self._keep_warm()
            time.sleep(max(0.01, self.backend.poll_seconds[0]))
        self._stop_all()
        failed = any(i.failed for i in self.items)
        self._end("failed" if failed else "done", "")

    def _keep_warm(self) -> None:
        """Workers that registered in the warm pool end their part in this job but keep running (billed)."""
        now = time.time()
        assert self.caps.warm is not None
        for ref in self.caps.warm.warm_workers(self.files, self._alive()):
            self.kept_warm[ref.index] = ref.handle
            ref.exit_code, ref.ended = 0, now
            ref.reason = f"kept warm for the next job of this spec (up to {self.spec.keep_warm:g} min, billed)"
            ref.info["warm_until"] = now + self.spec.keep_warm * 60
            self.bus.publish(ev.WorkerExited(self.job_id, worker=ref.index, exit_code=0, reason=ref.reason))

    def _cancel(self) -> None:
        reason = self.cancel_reason or "cancelled from another process"
        self.files.request_cancel(reason)
        self._stop_all()
        self._scan_claims(full=True)
        self._collect_results(full=True)
        if self.cancelled_by == "startup":
            for index, item in enumerate(self.items):
                if not item.final:
                    self._finalize(
                        index,
                        False,
                        BurstError(
                            f"Item {index} never ran: the workers of job {self.job_id} could not start. {reason}",
                            job_id=self.job_id,
                        ),
                        None,
                    )
            self._end("failed", reason)
            return
        for index, item in enumerate(self.items):
            if not item.final:
                self._finalize(
                    index,
                    False,
                    TaskCancelled(f"Item {index} did not finish: job {self.job_id} was cancelled: {reason}."),
                    None,
                )
        self._end("cancelled", reason)

    def _crash(self, exc: BaseException) -> None:
        message = (
            f"the launcher of job {self.job_id} failed: {type(exc).__name__}: {exc}. This is a bug in "
            f"starburst-jupyter; the job's files are kept in {self.files.store.url}/{self.files.prefix}"
        )
        try:
            self.files.request_cancel(message)
            self._stop_all()
        except Exception:  # best effort: the job is ending either way
            logger.exception("could not stop the workers of job %s", self.job_id)
        for index, item in enumerate(self.items):
            if not item.final:
                self._finalize(index, False, BurstError(message, job_id=self.job_id), None)
        self._publish_end("failed", message)

    def _end(self, state: str, message: str) -> None:
        if not self.config.keep_payloads:
            try:
                self.files.delete_payloads()
            except OSError:
                logger.exception("could not delete the payloads of job %s (results are collected)", self.job_id)
        self._publish_end(state, message)

    def _publish_end(self, state: str, message: str) -> None:
        self.closed = True  # an ended job takes no more items
        now = time.time()
        self.cost = self._worker_seconds(now) * self.per_second
        self.projected = self.cost
        self.message = message
        values = [i.value for i in self.items]
        failures = [
            (n, i.value) for n, i in enumerate(self.items) if i.failed and not isinstance(i.value, TaskCancelled)
        ]
        outputs = {
            n: (i.result.stdout, i.result.stderr)
            for n, i in enumerate(self.items)
            if i.result is not None and (i.result.stdout or i.result.stderr)
        }
        self.handle._result = JobResult(
            self.job_id,
            state,
            values,
            failures,
            outputs,
            now - self.started,
            self.cost,
            message,
            self.cancelled_by if state == "cancelled" else "",
        )
        self._set_state(state, message)
        self.bus.publish(
            ev.CostTick(
                self.job_id, accrued=self.cost, projected=self.cost, cap=self.spec.max_cost, label=self._cost_label()
            )
        )
        self.bus.publish(
            ev.JobFinished(
                self.job_id,
                state=state,
                done=sum(1 for i in self.items if i.final and not i.failed),
                failed=len(failures),
                total=len(self.items),
                duration=now - self.started,
                cost=self.cost,
                message=message,
            )
        )
        self.handle._finished.set()

    def _set_state(self, state: str, message: str = "") -> None:
        self.state = self.handle.state = state
        self.bus.publish(ev.JobStateChanged(self.job_id, state=state, message=message))
        self._write_record()

    def _write_record(self) -> None:
        self.last_record = now = time.time()
        done = failed = cancelled = 0
        outcomes = []
        failures: list[rec.Failure] = []
        for n, item in enumerate(self.items):
            if not item.final:
                outcomes.append(rec.Outcome.RUNNING if self.claims.get(item.block, -1) >= 0 else rec.Outcome.PENDING)
            elif isinstance(item.value, TaskCancelled):  # stopped by a cancel: not a failure of the item
                cancelled += 1
                outcomes.append(rec.Outcome.CANCELLED)
            elif item.failed:
                failed += 1
                outcomes.append(rec.Outcome.FAILED)
                if len(failures) < MAX_RECORDED_FAILURES:
                    failures.append(rec.Failure(n, f"{type(item.value).__name__}: {item.value}"[:500]))
            else:
                done += 1
                outcomes.append(rec.Outcome.DONE)
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
            total=len(self.items),
            done=done,
            failed=failed,
            cancelled=cancelled,
            outcomes="".join(o.value for o in outcomes),
            failures=failures,
            busy_seconds=sum(i.result.duration for i in self.items if i.result is not None),
            waves=rec.Waves(
                count=self.plan.waves,
                started=len(self.waves_started),
                finished=len(self.waves_finished),
                concurrency=self.plan.concurrency,
                workers=self.plan.workers,
            ),
            workers={
                r.index: rec.WorkerRecord(
                    wave=r.wave,
                    pid=r.info.get("pid"),
                    started=r.started,
                    ended=r.ended,
                    exit_code=r.exit_code,
                    reason=r.reason,
                    info={k: v for k, v in r.info.items() if k not in ("log_drained", *rec.WorkerRecord.KNOWN)},
                )
                for r in self.workers.values()
            },
            cost=rec.Cost(
                accrued=self.cost,
                projected=self.projected,
                cap=self.spec.max_cost,
                warm_at_most=len(self.kept_warm) * self.spec.keep_warm * 60 * self.per_second,
                label=self._cost_label(),
                prices_as_of=pricing.PRICES_AS_OF,
            ),
            store={"url": self.files.store.url, "prefix": self.files.prefix},
            owner=rec.Owner(os.getpid(), socket.gethostname()),
            api_calls=calls.for_job(self.job_id) if calls is not None else None,
            polls=self.polls if calls is not None else None,
        )
        self.records.write(record)

"""A job's workers as the driver knows them: started, waiting to be launched again, in which wave, kept
warm, stopped by the user. It carries out the launch decisions (core/decisions.py) on the backend and
says when the job must stop (no worker can start, the cost cap, workers dying before any work)."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from typing import Any

from starburst_jupyter.backends import Backend, Capabilities, LaunchFailure, WorkerRef
from starburst_jupyter.core import events as ev
from starburst_jupyter.core import record as rec
from starburst_jupyter.core.decisions import (
    CostRule,
    LaunchState,
    PendingLaunch,
    Timings,
    WorkerEnd,
    decide_launches,
    judge_worker_end,
    relaunch_delay,
    slot_still_held,
    wave_progress,
)
from starburst_jupyter.core.plan import Plan
from starburst_jupyter.core.spec import JobSpec
from starburst_jupyter.errors import BurstError
from starburst_jupyter.protocol.exits import EXIT_TERMINATED
from starburst_jupyter.protocol.jobfiles import JobFiles


@dataclass(frozen=True)
class Stop:
    """Why the job must stop, and what kind of stop it is ("startup", "max-cost")."""

    reason: str
    by: str


class Workforce:
    def __init__(
        self, backend: Backend, caps: Capabilities, files: JobFiles, spec: JobSpec, plan: Plan, bus: ev.EventBus,
        timings: Timings,
    ):  # fmt: skip
        self.backend, self.caps, self.files, self.spec, self.plan, self.bus = backend, caps, files, spec, plan, bus
        self.job_id, self.timings = files.job_id, timings
        self.workers: dict[int, WorkerRef] = {}
        self.pending: dict[int, PendingLaunch] = {}  # worker index -> its next launch attempt
        self.next_worker = 0
        self.waves_started: set[int] = set()
        self.waves_finished: set[int] = set()
        self.stop_requests: set[int] = set()  # workers a user asked to end (set from any thread)
        self.stopped_by_user: set[int] = set()
        self.kept_warm: dict[int, str] = {}  # worker index -> task kept running for the next job
        self.startup_failures = 0
        self.ended_at: dict[int, float] = {}  # worker index -> when it was first seen ended holding the quota

    # ----- questions --------------------------------------------------------------------------
    def alive(self) -> list[WorkerRef]:
        return [r for r in self.workers.values() if r.exit_code is None]

    def releasing(self, now: float) -> list[WorkerRef]:
        """Workers that ended whose task the cloud still counts against the quota (a Fargate task between its
        container's exit and STOPPED: the backend marks it `holds_quota`); no new worker takes their slot yet."""
        held = []
        for ref in self.workers.values():
            if ref.exit_code is None or not ref.info.get("holds_quota"):
                continue
            since = self.ended_at.setdefault(ref.index, ref.ended or now)  # (a re-poll may move `ended` on)
            if slot_still_held(True, since, now):
                held.append(ref)
        return held

    def lost(self) -> int:
        """Workers that died or that the user stopped: each may be replaced beyond the plan."""
        return sum(1 for r in self.workers.values() if r.exit_code not in (None, 0) or r.index in self.stopped_by_user)

    def next_due(self) -> float | None:
        return min((p.due for p in self.pending.values()), default=None)

    def worker_seconds(self, now: float, minimum: float) -> float:
        return sum(max((r.ended or now) - r.started, minimum) for r in self.workers.values())

    def judge(self, ref: WorkerRef, *, cancelled: bool, near_deadline: bool, claimed_any: bool) -> WorkerEnd:
        return judge_worker_end(
            ref.exit_code,
            cancel_requested=cancelled,
            near_deadline=near_deadline,
            claimed_any=claimed_any,
            stopped_by_user=ref.index in self.stopped_by_user,
            launch_failed=bool(ref.info.get("launch_failed")),
            interrupted=_interrupted(ref),
        )

    # ----- starting ---------------------------------------------------------------------------
    def adopt(self, record: dict[str, Any]) -> None:
        """Follow the workers a record names (attach; a detached job's first driver finds none)."""
        workers = record.get("workers", {})
        if workers and self.caps.attach is None:
            raise BurstError(
                f"Job {self.files.job_id}: the {self.spec.backend} backend cannot follow workers another process "
                f"started. `starburst cancel {self.files.job_id}` ends them; run the job again.",
                job_id=self.files.job_id,
            )
        for key, info in workers.items():
            assert self.caps.attach is not None
            ref = self.caps.attach.adopt(int(key), info)
            self.workers[ref.index] = ref
        self.next_worker = max(self.workers, default=-1) + 1
        waves = record.get("waves", {})
        self.waves_started = set(range(1, int(waves.get("started", 0)) + 1))
        self.waves_finished = set(range(1, int(waves.get("finished", 0)) + 1))

    def launch(self, unclaimed: int, accrued: float, cost: CostRule) -> tuple[float, Stop | None]:
        """Start the workers the plan calls for now; returns the minimum charge of those started, and a stop
        when the cost cap forbids even one worker while none runs."""
        now = time.time()
        state = LaunchState(
            now=now, plan=self.plan, unclaimed=unclaimed, alive=len(self.alive()), pending=self.pending,
            next_worker=self.next_worker, lost=self.lost(), latest_wave=max(self.waves_started or {1}),
            accrued=accrued, open_job=self.spec.mode == "executor", releasing=len(self.releasing(now)),
        )  # fmt: skip
        decision = decide_launches(state, cost)
        for index in decision.dropped:
            self.pending.pop(index)
        stop = Stop(decision.refusal, "max-cost") if decision.refusal is not None else None
        if not decision.starts:
            return 0.0, stop
        self.next_worker = max(self.next_worker, max(s.index for s in decision.starts) + 1)
        refs, failures = self.backend.start_workers(self.files, self.spec, decision.starts)
        for ref in refs:
            self._started(ref)
        budgets = {start.index: start.budget for start in decision.starts}
        for failure in failures:
            stop = self._launch_failed(failure, budgets[failure.index], now) or stop
        return len(refs) * cost.per_second * cost.minimum_seconds, stop

    def _started(self, ref: WorkerRef) -> None:
        self.pending.pop(ref.index, None)
        self.workers[ref.index] = ref
        if ref.wave not in self.waves_started:
            self.waves_started.add(ref.wave)
            in_wave = sum(1 for w in range(self.plan.workers) if self.plan.wave_of(w) == ref.wave)
            self.bus.publish(ev.WaveStarted(self.job_id, wave=ref.wave, waves=self.plan.waves, workers=in_wave))
        self.bus.publish(ev.WorkerStarted(self.job_id, worker=ref.index, wave=ref.wave, pid=ref.info.get("pid")))

    def _launch_failed(self, failure: LaunchFailure, budget: int, now: float) -> Stop | None:
        """Retry with back-off, or give the worker up and say why (the job fails only if none can start)."""
        previous = self.pending.get(failure.index)
        attempts = (previous.attempts if previous else 0) + 1
        delay = relaunch_delay(attempts, failure.retryable, self.timings)
        if delay is not None:
            self.pending[failure.index] = PendingLaunch(failure.wave, budget, attempts, now + delay, failure.reason)
            self.bus.publish(
                ev.WorkerLaunchFailed(self.job_id, worker=failure.index, reason=failure.reason, retry_in=delay)
            )
            return None
        self.pending.pop(failure.index, None)
        reason = f"could not be launched after {attempts} attempt{'s' if attempts > 1 else ''}: {failure.reason}"
        ref = WorkerRef(
            failure.index, failure.wave, now, exit_code=-1, ended=now, reason=reason, info={"launch_failed": True}
        )
        self.workers[failure.index] = ref
        self.bus.publish(ev.WorkerLaunchFailed(self.job_id, worker=failure.index, reason=failure.reason, retry_in=None))
        self.bus.publish(ev.WorkerExited(self.job_id, worker=ref.index, exit_code=-1, reason=reason))
        if not self.alive() and not self.pending:
            return Stop(
                f"no worker could be started on {self.backend.name}: worker {failure.index} {reason}", "startup"
            )
        return None

    # ----- watching ---------------------------------------------------------------------------
    def honour_stop_requests(self) -> None:
        for index in list(self.stop_requests):
            self.stop_requests.discard(index)
            ref = self.workers.get(index)
            if ref is not None and ref.exit_code is None:
                self.stopped_by_user.add(index)
                self.backend.stop([ref])
                ref.reason = "stopped by user"

    def poll(self) -> list[WorkerRef]:
        """The workers that ended since the last poll."""
        alive = self.alive()
        # (ended workers whose task is still stopping ride along in the same batched poll until it is STOPPED)
        releasing = self.releasing(time.time())
        polled = self.backend.poll_workers(alive + releasing) if alive or releasing else []
        ids = {id(r) for r in alive}
        exited = [r for r in polled if id(r) in ids]
        for ref in exited:
            self.bus.publish(ev.WorkerExited(self.job_id, worker=ref.index, exit_code=ref.exit_code, reason=ref.reason))
        if self.plan.waves <= 1:  # (a job of several waves counts them by its items: track_waves)
            for ref in exited:
                self._maybe_finish_wave(ref.wave)
        return exited

    def track_waves(self, finished: int, total: int) -> None:
        """Waves as progress: workers carry on from one wave's share to the next, so a wave starts and ends
        with the job's items (decisions.wave_progress), not with sets of tasks."""
        if self.plan.waves <= 1 or not self.waves_started:
            return
        started, done = wave_progress(self.plan, finished, total)
        for wave in range(1, max(started, done) + 1):
            if wave <= done and wave not in self.waves_finished:
                self.waves_finished.add(wave)
                self.bus.publish(ev.WaveFinished(self.job_id, wave=wave, waves=self.plan.waves))
            if wave + 1 <= started and wave + 1 not in self.waves_started:
                self.waves_started.add(wave + 1)
                in_wave = sum(1 for w in range(self.plan.workers) if self.plan.wave_of(w) == wave + 1)
                self.bus.publish(ev.WaveStarted(self.job_id, wave=wave + 1, waves=self.plan.waves, workers=in_wave))

    def _maybe_finish_wave(self, wave: int) -> None:
        if wave in self.waves_finished:
            return
        members = [r for r in self.workers.values() if r.wave == wave]
        planned = sum(1 for w in range(self.plan.workers) if self.plan.wave_of(w) == wave)
        if len(members) >= planned and all(r.exit_code is not None for r in members):
            self.waves_finished.add(wave)
            self.bus.publish(ev.WaveFinished(self.job_id, wave=wave, waves=self.plan.waves))

    def ended_early(self, early: list[WorkerRef]) -> Stop | None:
        """Workers that die before claiming anything (cannot import, cannot unpickle) must not be relaunched
        forever: past --retries of them the job stops, quoting the last one's log."""
        stop = None
        for ref in early:
            self.startup_failures += 1
            if self.startup_failures > self.spec.retries and stop is None:
                tail = self.backend.read_log(self.files, ref.index).strip().splitlines()[-8:]
                stop = Stop(
                    f"{self.startup_failures} workers ended before taking any work ({ref.reason}); "
                    f"the last one's log ends with:\n    " + "\n    ".join(tail),
                    "startup",
                )
        return stop

    # ----- ending -----------------------------------------------------------------------------
    def keep_warm(self) -> None:
        """Workers that registered in the warm pool end their part in this job but keep running (billed)."""
        if self.spec.keep_warm <= 0 or self.caps.warm is None:
            return
        now = time.time()
        for ref in self.caps.warm.warm_workers(self.files, self.alive()):
            self.kept_warm[ref.index] = ref.handle
            ref.exit_code, ref.ended = 0, now
            ref.reason = f"kept warm for the next job of this spec (up to {self.spec.keep_warm:g} min, billed)"
            ref.info["warm_until"] = now + self.spec.keep_warm * 60
            self.bus.publish(ev.WorkerExited(self.job_id, worker=ref.index, exit_code=0, reason=ref.reason))

    def wind_down(self, seconds: float) -> None:
        """Idle workers exit (or turn warm) on their own at the end of a job: give them a moment."""
        deadline = time.monotonic() + seconds
        while self.alive() and time.monotonic() < deadline:
            self.poll()
            self.keep_warm()
            time.sleep(self.backend.poll_seconds[0])  # (local: 2 ms, so a one-item job ends as its worker does)

    def stop_all(self, reason: str) -> None:
        self.pending.clear()
        self.keep_warm()  # (also on a cancel: a worker another job took is that job's now)
        alive = self.alive()
        ended: set[int] = set()
        if alive or self.workers:  # (a cloud backend also looks for tasks of the job it has no ref of)
            # every worker, ended ones too: what their tasks started ends with the job
            self.backend.stop_job(self.job_id, list(self.workers.values()), reason, frozenset(self.kept_warm.values()))
            ended = {r.index for r in self.backend.poll_workers(alive)} if alive else set()
        for ref in alive:
            if ref.index not in ended:
                ref.exit_code, ref.ended = -1, time.time()
                ref.reason = ref.reason or "stopped at the end of the job"
            self.bus.publish(ev.WorkerExited(self.job_id, worker=ref.index, exit_code=ref.exit_code, reason=ref.reason))

    # ----- the record -------------------------------------------------------------------------
    def waves(self) -> rec.Waves:
        return rec.Waves(
            count=self.plan.waves, started=len(self.waves_started), finished=len(self.waves_finished),
            concurrency=self.plan.concurrency, workers=self.plan.workers,
        )  # fmt: skip

    def records(self) -> dict[int, rec.WorkerRecord]:
        return {
            r.index: rec.WorkerRecord(
                wave=r.wave,
                pid=r.info.get("pid"),
                started=r.started,
                ended=r.ended,
                exit_code=r.exit_code,
                reason=r.reason,
                info=_extra_info(r.info),
            )  # fmt: skip
            for r in self.workers.values()
        }


def _interrupted(ref: WorkerRef) -> bool:
    """Stopped from outside: it left on SIGTERM, or the cloud says it reclaimed the task (Spot, host retired)."""
    reason = ref.reason.lower()
    return ref.exit_code in (EXIT_TERMINATED, -signal.SIGTERM) or "interruption" in reason or "retired" in reason


def _extra_info(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k not in ("log_drained", "holds_quota", *rec.WorkerRecord.KNOWN)}

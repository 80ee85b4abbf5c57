"""What a job's driver decides, as pure functions: which workers to start or retry, what a cost cap
allows, what a worker's end means. No I/O, no clocks read here (time comes in as an argument), so each
rule has fast tests (tests/test_decisions.py) and the driver (core/driver.py) only carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass

from starburst_jupyter.backends.base import WorkerStart
from starburst_jupyter.core import pricing
from starburst_jupyter.core.plan import Plan
from starburst_jupyter.protocol.workerspec import Timing


@dataclass(frozen=True)
class Timings:
    """The driver's pace; tests pass quick ones instead of patching module constants."""

    result_window: float = 20.0  # a quick result listing covers objects written this recently (skew, uploads)
    sweep: float = 60.0  # ... and a full listing runs this often, and whenever a worker dies
    launch_backoff: tuple[float, float] = (2.0, 30.0)  # first delay before relaunching (doubling), the longest
    max_launch_attempts: int = 6  # per worker
    record_every: float = 0.5  # rewrite the job's record at most this often
    driver_silent: float = 300.0  # a driver being started elsewhere holds the job's lease this long (Fargate: a slow
    # start); a job from before leases whose record is this old lost its driver
    lease_ttl: float = 30.0  # a running driver's lease lapses this long after its last renewal (core/lease.py)
    journal_every: float = 1.0  # a detached driver's event batches (S3: a PUT each, when something happened)
    mirror_every: float = 5.0  # ... and its copy in the job's store (S3: a PUT each time), and at each new state
    cost_every: float = 1.0  # re-price the job this often
    deadline_slack: float = 5.0  # a worker ending this close to the deadline ended because of it (clock skew)


@dataclass
class PendingLaunch:
    """A worker that could not start yet and is due to be tried again."""

    wave: int
    budget: int
    attempts: int
    due: float
    reason: str


# ----- money --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostRule:
    """--max-cost, stated once: no worker is started, and the job stops, before the cap could be passed."""

    cap: float | None
    per_second: float  # one worker of the job's size
    minimum_seconds: float = pricing.MINIMUM_BILLED_SECONDS
    stop_horizon: float = 2.0  # running workers are stopped this many seconds before they would pass it

    def passes(self, accrued: float, workers: int, seconds: float) -> bool:
        """Would `workers` more workers running `seconds` take the job past its cap?"""
        return self.cap is not None and accrued + workers * self.per_second * seconds > self.cap

    def may_start(self, accrued: float, workers: int) -> bool:
        return not self.passes(accrued, workers, self.minimum_seconds)

    def must_stop(self, accrued: float, alive: int) -> bool:
        return self.cap is not None and accrued + alive * self.per_second * self.stop_horizon >= self.cap

    def start_refusal(self, accrued: float) -> str:
        return f"starting another worker would pass --max-cost ${self.cap:g} (accrued ${accrued:.4f})"

    def stop_reason(self, accrued: float) -> str:
        return f"--max-cost ${self.cap:g} would have been passed (accrued ${accrued:.4f})"


def projected_cost(accrued: float, alive: int, per_second: float, elapsed: float, done: int, remaining: int) -> float:
    """What the job will have cost at the end, if the items left go as fast as those done."""
    if not done or not remaining:
        return accrued
    return accrued + alive * per_second * elapsed * remaining / done


# ----- launching ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchState:
    """What a launch decision looks at."""

    now: float
    plan: Plan
    unclaimed: int  # task blocks no worker has claimed yet
    alive: int  # workers running now
    pending: dict[int, PendingLaunch]  # workers waiting to be launched again
    next_worker: int  # index the next new worker gets
    lost: int  # workers that died or that the user stopped (each may be replaced once)
    latest_wave: int  # the newest wave started (replacements join it)
    accrued: float  # cost so far
    open_job: bool = False  # a BurstExecutor job: idle workers leave, new work brings new ones
    releasing: int = 0  # workers that ended but whose task still holds its share of the quota (Fargate: stopping)


@dataclass(frozen=True)
class LaunchDecision:
    starts: list[WorkerStart]  # retries that are due first, then new workers
    dropped: list[int]  # pending retries with no work left for them: a cold start for nothing
    refusal: str | None = None  # the cost cap forbids even one worker while none runs: the job must stop


def decide_launches(state: LaunchState, cost: CostRule) -> LaunchDecision:
    """Which workers to start now: due retries first, then new ones up to the plan's concurrency, while
    unclaimed work is left; beyond the plan only to replace workers that were lost, or when none is left.

    No worker is started for a new wave: a worker carries on into its next share of the work (no budget:
    it takes blocks until none is left), so a k-wave job pays one cold start per slot, not k. A worker is
    started only in a slot whose worker ended, and only once that worker's task no longer holds the quota
    (`releasing`: a stopping Fargate task still counts, see slot_still_held)."""
    due = [(i, p) for i, p in state.pending.items() if p.due <= state.now]
    dropped = [i for i, _ in due[state.unclaimed :]]
    starts: list[WorkerStart] = []
    for i, p in due[: state.unclaimed]:  # a relaunch is a start like any other: the cost cap applies
        if not cost.may_start(state.accrued, len(starts) + 1):
            dropped.append(i)
            continue
        starts.append(WorkerStart(i, p.wave, p.budget))
    waiting = len(state.pending) - len(dropped) - len(starts)  # slots kept for workers retried later
    alive = state.alive + waiting
    held = alive + state.releasing  # slots the quota still counts (a task that is stopping included)
    plan, index = state.plan, state.next_worker
    while held + len(starts) < plan.concurrency and state.unclaimed > len(starts):
        planned = index < plan.workers
        refill = state.open_job and alive + len(starts) < plan.workers  # idle executor workers left: new work
        if not planned and not refill and alive + len(starts) > 0 and index - plan.workers >= state.lost:
            break
        if not cost.may_start(state.accrued, len(starts) + 1):
            refusal = cost.start_refusal(state.accrued) if alive + len(starts) == 0 else None
            return LaunchDecision(starts, dropped, refusal)
        # Every worker joins the wave in progress and has no budget: it carries on from share to share.
        starts.append(WorkerStart(index, max(1, state.latest_wave), 0))
        index += 1
    return LaunchDecision(starts, dropped)


# ----- waves as progress --------------------------------------------------------------------------
def wave_progress(plan: Plan, finished: int, total: int) -> tuple[int, int]:
    """(waves started, waves finished) of a job of several waves, from its items: a wave is a share of
    `plan.budget` items for each of the `plan.concurrency` slots, so wave k is finished once k * budget *
    concurrency items are, and the next one has started; every wave is finished once every item is.
    Workers carry on from one wave's share to the next, so waves are progress, not sets of tasks."""
    if plan.waves <= 1 or plan.budget <= 0:
        return 1, int(total > 0 and finished >= total)
    if total > 0 and finished >= total:
        return plan.waves, plan.waves
    done = min(plan.waves, finished // (plan.budget * plan.concurrency))
    return min(plan.waves, done + 1), done


# ----- a stopping task's quota --------------------------------------------------------------------
#: Longest a worker's ended task is counted against the quota while the cloud says it is still stopping;
#: past it the slot is taken as free (a task that the cloud forgets must not block the job for good).
STOPPING_HOLD_LIMIT = 120.0


def slot_still_held(holds_quota: bool, ended: float | None, now: float, limit: float = STOPPING_HOLD_LIMIT) -> bool:
    """Whether a worker that ended still occupies its slot of the vCPU quota.

    Its container has exited but ECS has not reported the task STOPPED (STOPPING, DEPROVISIONING): AWS
    bills a Fargate task "until the Amazon ECS task terminates" (aws.amazon.com/fargate/pricing), the
    quota's usage metric counts the vCPUs of tasks "running on your account" (AWS/Usage ResourceCount,
    docs.aws.amazon.com/AmazonECS/latest/developerguide/monitoring-fargate-usage.html), and ECS's scheduler
    "assumes that while a task is stopping ... it will still use its requested resources" (an ECS engineer,
    github.com/aws/amazon-ecs-agent/issues/1667). No page says a stopping task's vCPUs are released before
    STOPPED, so a new task is not started in its slot until then (RunTask would fail on the quota)."""
    return holds_quota and ended is not None and now - ended < limit


# ----- worker-side polling ------------------------------------------------------------------------
#: Reads of the job's control objects (the cancel marker) the whole job may make per second, and heartbeat
#: writes: each worker's pace is stretched so that `workers` of them stay within these (S3 serves some 5,500
#: GET/HEAD and 3,500 PUT per second per prefix; every request is billed).
CONTROL_READS_PER_SECOND = 100.0
HEARTBEATS_PER_SECOND = 100.0


def scaled_interval(base: float, workers: int, per_second: float) -> float:
    """A worker's interval between requests when `workers` of them share `per_second` requests."""
    return max(base, workers / per_second)


def worker_timing(base: Timing, workers: int) -> Timing:
    """The timings written into the job's spec for `workers` workers running at once: the cancel-marker poll
    and the heartbeat stretch with the worker count so the job's request rate stays bounded (5,000 workers:
    a cancel check every 50 s and a heartbeat every 50 s per worker, 100 requests/s each for the job). A
    slower poll costs only latency: a cancel also StopTasks every worker (SIGTERM: it flushes, hands back,
    exits), and the deadline is checked on the worker's own clock, not by a read."""
    return Timing(
        flush_seconds=base.flush_seconds,
        control_poll_seconds=scaled_interval(base.control_poll_seconds, workers, CONTROL_READS_PER_SECOND),
        heartbeat_seconds=scaled_interval(base.heartbeat_seconds, workers, HEARTBEATS_PER_SECOND),
    )


def relaunch_delay(attempts: int, retryable: bool, timings: Timings) -> float | None:
    """Seconds until a worker that failed to launch `attempts` times is tried again; None: give it up."""
    if not retryable or attempts >= timings.max_launch_attempts:
        return None
    first, longest = timings.launch_backoff
    return min(first * 2.0 ** (attempts - 1), longest)


# ----- a worker's end -----------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerEnd:
    requeue: bool  # what it claimed and did not report goes to other workers
    sweep: bool  # list every result and claim first (it may have flushed results a quick listing misses)
    startup_failure: bool  # it ended before taking any work: counts toward giving the job up


def judge_worker_end(
    exit_code: int | None,
    *,
    cancel_requested: bool,
    near_deadline: bool,
    claimed_any: bool,
    stopped_by_user: bool,
    launch_failed: bool,
    interrupted: bool = False,
) -> WorkerEnd:
    """The job's state says why a worker ended, not its exit code: user code can exit with any code
    (`os._exit(3)`), so a worker that ends while the job is neither cancelled nor at its deadline is a
    worker that ended early, whatever its code, and its unfinished work is retried. A worker stopped from
    outside (SIGTERM: a Spot interruption, a StopTask) before it took work did not fail to start."""
    if cancel_requested or near_deadline:
        return WorkerEnd(requeue=False, sweep=False, startup_failure=False)
    clean = exit_code == 0
    blameless = stopped_by_user or launch_failed or interrupted
    return WorkerEnd(requeue=True, sweep=not clean, startup_failure=not clean and not claimed_any and not blameless)


def item_is_lost(attempts: int, retries: int, ran_alone: bool) -> bool:
    """An item is reported lost once it ran alone on a worker that died, more times than --retries allows
    (in a block with others we cannot tell which item the worker was running)."""
    return ran_alone and attempts > retries


# ----- a task the cloud does not know (yet) -------------------------------------------------------
@dataclass(frozen=True)
class UnknownTaskRule:
    """ECS's DescribeTasks is eventually consistent: right after RunTask it may answer a task it just
    started with failure reason MISSING (AWS: retry with back-off). Such a task is unknown, not dead:
    it is given up only once it is older than `grace` seconds AND `confirmations` polls in a row (the
    driver's polls, spaced by its growing pace) did not find it."""

    grace: float = 60.0
    confirmations: int = 3

    def gone(self, age: float, missing_polls: int) -> bool:
        return age >= self.grace and missing_polls >= self.confirmations


# ----- failing for one reason ---------------------------------------------------------------------
#: How many of the first items to finish must fail the same way, none succeeding, before a job stops early.
SYSTEMATIC_FAILURES = 5


def systematic_failure(first_errors: list[str], succeeded: int, total: int, keep_going: bool) -> str | None:
    """Why the job should stop now, or None. When the first items to finish all failed with the same error
    (a name defined nowhere, a missing module, a wrong argument), every other item would fail the same way,
    billed; the job stops and says so. Never when the user asked to keep going (`--on-error keep`), once any
    item succeeded, or when stopping would spare nothing."""
    if keep_going or succeeded or len(first_errors) < SYSTEMATIC_FAILURES or total <= SYSTEMATIC_FAILURES:
        return None
    first = first_errors[:SYSTEMATIC_FAILURES]
    if len(set(first)) != 1:
        return None
    return (
        f"the first {SYSTEMATIC_FAILURES} items to finish all failed with the same error ({first[0]}), so the job "
        f"stopped before running the rest: fix the cause and run it again (--on-error keep runs every item "
        f"whatever fails)"
    )

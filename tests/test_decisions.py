"""The driver's decisions, without processes: which workers start, what a cost cap allows, what an end means."""

from __future__ import annotations

from starburst_jupyter.backends import WorkerStart
from starburst_jupyter.core.decisions import (
    CostRule,
    LaunchState,
    PendingLaunch,
    Timings,
    decide_launches,
    item_is_lost,
    judge_worker_end,
    projected_cost,
    relaunch_delay,
    scaled_interval,
    slot_still_held,
    wave_progress,
    worker_timing,
)
from starburst_jupyter.core.plan import Plan, make_plan
from starburst_jupyter.protocol.workerspec import Timing

FREE = CostRule(cap=None, per_second=0.001)


def state(plan, **kw) -> LaunchState:
    base = dict(
        now=100.0,
        plan=plan,
        unclaimed=len(plan.blocks),
        alive=0,
        pending={},
        next_worker=0,
        lost=0,
        latest_wave=1,
        accrued=0.0,
    )
    return LaunchState(**{**base, **kw})


def test_first_wave_fills_the_quota_and_workers_carry_on_instead_of_a_new_wave_of_tasks():
    plan = make_plan(100, workers=6, concurrency=2)  # three waves of two
    decision = decide_launches(state(plan), FREE)
    assert [(s.index, s.wave) for s in decision.starts] == [(0, 1), (1, 1)]
    assert all(s.budget == 0 for s in decision.starts)  # no budget: a worker carries on into its next share
    # both slots busy (their workers carry on into wave 2): nothing is started for wave 2
    assert decide_launches(state(plan, next_worker=2, alive=2, latest_wave=2), FREE).starts == []
    # a slot whose worker ended (a death, a Spot interruption) gets a worker, in the wave in progress
    assert decide_launches(state(plan, next_worker=2, alive=1, latest_wave=2), FREE).starts == [WorkerStart(2, 2, 0)]


def test_a_slot_whose_task_is_still_stopping_is_not_reused():
    plan = make_plan(100, workers=6, concurrency=2)
    assert decide_launches(state(plan, next_worker=2, alive=1, releasing=1), FREE).starts == []
    assert slot_still_held(True, ended=100.0, now=130.0)  # container gone, task not STOPPED yet
    assert not slot_still_held(False, ended=100.0, now=101.0)  # STOPPED: its vCPUs are free
    assert not slot_still_held(True, ended=100.0, now=100.0 + 121)  # a task the cloud forgot frees its slot


def test_waves_advance_with_the_items_finished():
    plan = make_plan(60, workers=6, concurrency=2)  # shares of 10 items, waves of 20
    assert plan.waves == 3 and plan.budget == 10
    assert [wave_progress(plan, done, 60) for done in (0, 19, 20, 39, 40, 59, 60)] == [
        (1, 0), (1, 0), (2, 1), (2, 1), (3, 2), (3, 2), (3, 3),
    ]  # fmt: skip
    short = make_plan(10, workers=8, concurrency=2)  # shares of 2: the items end within the third wave
    assert wave_progress(short, 10, 10) == (short.waves, short.waves)
    single = make_plan(10, workers=2, concurrency=2)
    assert (wave_progress(single, 3, 10), wave_progress(single, 10, 10)) == ((1, 0), (1, 1))


def test_worker_polling_stays_within_the_jobs_request_budget():
    fargate = Timing(flush_seconds=2.0, control_poll_seconds=1.0, heartbeat_seconds=10.0)
    assert worker_timing(fargate, 4) == fargate  # few workers: the backend's own pace
    big = worker_timing(fargate, 5000)
    assert (big.control_poll_seconds, big.heartbeat_seconds, big.flush_seconds) == (50.0, 50.0, 2.0)
    for workers in (1, 10, 100, 1000, 5000, 20000):
        timing = worker_timing(fargate, workers)
        assert workers / timing.control_poll_seconds <= 100.0 + 1e-9  # HEADs of the cancel marker per second
        assert workers / timing.heartbeat_seconds <= 100.0 + 1e-9  # heartbeat PUTs per second
    assert scaled_interval(0.2, 2, 100.0) == 0.2  # local: unchanged


def test_no_start_without_unclaimed_work_and_due_retries_go_first():
    plan = make_plan(10, workers=2, concurrency=2)
    assert decide_launches(state(plan, unclaimed=0), FREE).starts == []
    pending = {
        5: PendingLaunch(wave=1, budget=3, attempts=1, due=99.0, reason="capacity"),
        6: PendingLaunch(wave=1, budget=3, attempts=1, due=200.0, reason="capacity"),
    }
    decision = decide_launches(state(plan, pending=pending, next_worker=7, unclaimed=4), FREE)
    assert decision.starts[0] == WorkerStart(5, 1, 3)  # due; worker 6 keeps its slot until it is due
    assert len(decision.starts) == 1


def test_retries_with_no_work_left_are_dropped():
    plan = make_plan(10, workers=2, concurrency=2)
    pending = {0: PendingLaunch(1, 5, 1, 50.0, "x"), 1: PendingLaunch(1, 0, 1, 50.0, "x")}
    decision = decide_launches(state(plan, pending=pending, next_worker=2, unclaimed=1), FREE)
    assert [s.index for s in decision.starts] == [0] and decision.dropped == [1]


def test_beyond_the_plan_only_to_replace_lost_workers():
    plan = make_plan(10, workers=2, concurrency=4)
    assert decide_launches(state(plan, next_worker=2, alive=1, unclaimed=3), FREE).starts == []
    replaced = decide_launches(state(plan, next_worker=2, alive=1, unclaimed=3, lost=1, latest_wave=1), FREE)
    assert replaced.starts == [WorkerStart(2, 1, 0)]
    # with no worker left at all, one more is started so the job cannot stall
    assert decide_launches(state(plan, next_worker=2, alive=0, unclaimed=3), FREE).starts == [WorkerStart(2, 1, 0)]


def test_cost_cap_limits_starts_and_refuses_when_no_worker_could_run():
    plan = make_plan(100, workers=4, concurrency=4)
    per_minute = 0.01
    rule = CostRule(cap=0.025, per_second=per_minute / 60)  # two workers' minimum charge fit, not three
    decision = decide_launches(state(plan), rule)
    assert len(decision.starts) == 2 and decision.refusal is None
    broke = decide_launches(state(plan, accrued=0.02), rule)
    assert broke.starts == [] and "would pass --max-cost $0.025" in broke.refusal
    assert not rule.must_stop(accrued=0.01, alive=2)
    assert rule.must_stop(accrued=0.0249, alive=2)
    assert not FREE.must_stop(accrued=1e9, alive=100) and FREE.may_start(1e9, 100)


def test_relaunch_backoff_doubles_up_to_the_longest_then_gives_up():
    timings = Timings(launch_backoff=(2.0, 10.0), max_launch_attempts=5)
    assert [relaunch_delay(n, True, timings) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, None]
    assert relaunch_delay(1, False, timings) is None


def test_a_workers_end_is_judged_by_the_job_not_by_its_exit_code():
    def judge(code, **kw):
        args = dict(
            cancel_requested=False, near_deadline=False, claimed_any=True, stopped_by_user=False, launch_failed=False
        )
        return judge_worker_end(code, **{**args, **kw})

    for code in (3, 4, 5, 91, 92, -9, 137):  # whatever a task's os._exit or a signal gives
        end = judge(code)
        assert end.requeue and end.sweep and not end.startup_failure
    assert judge(0).requeue and not judge(0).sweep  # a clean end: its last results were just flushed
    for ending in ({"cancel_requested": True}, {"near_deadline": True}):
        end = judge(3, **ending)
        assert not end.requeue and not end.startup_failure
    assert judge(1, claimed_any=False).startup_failure
    assert not judge(1, claimed_any=False, stopped_by_user=True).startup_failure
    assert not judge(0, claimed_any=False).startup_failure


def test_projection_and_lost_items():
    assert projected_cost(1.0, alive=2, per_second=0.5, elapsed=10, done=5, remaining=5) == 11.0
    assert projected_cost(1.0, alive=2, per_second=0.5, elapsed=10, done=0, remaining=5) == 1.0
    assert item_is_lost(attempts=2, retries=1, ran_alone=True)
    assert not item_is_lost(attempts=2, retries=1, ran_alone=False)
    assert not item_is_lost(attempts=1, retries=1, ran_alone=True)


def test_a_worker_stopped_from_outside_before_taking_work_did_not_fail_to_start():
    args = dict(cancel_requested=False, near_deadline=False, claimed_any=False, stopped_by_user=False,
                launch_failed=False)  # fmt: skip
    assert judge_worker_end(1, **args).startup_failure
    end = judge_worker_end(143, **args, interrupted=True)  # a Spot notice or StopTask before its first claim
    assert end.requeue and not end.startup_failure


def test_an_executor_job_gets_workers_back_when_new_work_comes_after_its_idle_workers_left():
    plan = Plan([], workers=4, concurrency=4, budget=0)  # as the launcher plans an open job
    after_idle = state(plan, unclaimed=10, next_worker=4, alive=0, lost=0)
    assert len(decide_launches(after_idle, FREE).starts) == 1  # a closed job: one, so it cannot stall
    reopened = decide_launches(LaunchState(**{**after_idle.__dict__, "open_job": True}), FREE)
    assert [s.index for s in reopened.starts] == [4, 5, 6, 7]


def test_relaunches_are_starts_the_cost_cap_applies_to():
    plan = make_plan(100, workers=4, concurrency=4)
    pending = {i: PendingLaunch(wave=1, budget=25, attempts=1, due=50.0, reason="capacity") for i in range(3)}
    rule = CostRule(cap=0.025, per_second=0.01 / 60)  # two workers' minimum charge fit, not three
    decision = decide_launches(state(plan, pending=pending, next_worker=4), rule)
    assert [s.index for s in decision.starts] == [0, 1] and decision.dropped == [2]

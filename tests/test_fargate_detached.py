"""Issue 13's proof on the moto harness: a detached Fargate job goes on without the machine that launched it.

A separate process ("the launching kernel") starts a three-wave job with burst_map(..., wait=False) and is
SIGKILLed as soon as it has printed the job id. The job's driver runs as an ECS task (tests/fargate_agent.py
runs it, as it runs the workers), starts every wave and ends the job `done`. Another STARBURST_HOME, standing
for another machine with the same AWS set-up, lists the job from the bucket, attaches and gets every value in
order; or cancels it, after which no task of the job (worker or driver) is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import wait_for
from test_fargate_detached_host import fargate  # noqa: F401  (the account, the config and the agent)

import starburst_jupyter as sj
from starburst_jupyter.core.config import load_config, save_values
from starburst_jupyter.core.launcher import Launcher

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ACCOUNT_KEYS = (
    "bucket", "cluster", "log_group", "ecr_repository", "region", "subnets", "security_groups",
    "execution_role_arn", "task_role_arn", "driver_role_arn", "image", "backend",
)  # fmt: skip

LAUNCH = textwrap.dedent(
    """
    import sys, time
    import starburst_jupyter as sj

    SECONDS = float(sys.argv[2])

    def slow(x, seconds=SECONDS):
        import time
        time.sleep(seconds)
        return x * 10

    job = sj.burst_map(slow, range(int(sys.argv[1])), backend="fargate", wait=False, workers=6, cpu=1, memory="2GB")
    print(job.id, flush=True)
    time.sleep(600)
    """
)


def _launch_and_kill(tmp_path: Path, items: int, seconds: float) -> tuple[str, float]:
    """The launching 'kernel': a process of its own, SIGKILLed right after it printed the job id (and when)."""
    save_values({"fargate_vcpu_quota": 2})  # 1-vCPU workers, 2 at a time: 6 workers make three waves
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(items), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        job_id = (proc.stdout.readline() if proc.stdout else "").strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.time()
    assert job_id.startswith("bj-"), job_id
    return job_id, killed


def _another_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A different STARBURST_HOME with the same AWS set-up saved (what `starburst setup` there would save)."""
    account = {key: getattr(load_config(), key) for key in ACCOUNT_KEYS}
    home = tmp_path / "another-machine"
    home.mkdir()
    monkeypatch.setenv("STARBURST_HOME", str(home))
    save_values(account)


def _running_tasks(moto_server) -> list[dict]:
    ecs = moto_server.client("ecs")
    arns = ecs.list_tasks(cluster="starburst", desiredStatus="RUNNING")["taskArns"]
    tasks = ecs.describe_tasks(cluster="starburst", tasks=arns)["tasks"] if arns else []
    return [t for t in tasks if t["lastStatus"] != "STOPPED"]


def test_a_detached_three_wave_job_ends_done_without_its_launcher_and_is_collected_elsewhere(
    fargate,  # noqa: F811
    moto_server,
    tmp_path,
    monkeypatch,
):
    job_id, killed = _launch_and_kill(tmp_path, items=12, seconds=0.3)
    _another_machine(tmp_path, monkeypatch)

    with pytest.raises(KeyError):
        Launcher().store.find_record(job_id)  # this machine never saw the job: the bucket lists it
    listed = {r.id: r for r in Launcher().shared_records()}
    assert job_id in listed and listed[job_id].backend == "fargate"
    job = sj.attach(job_id)
    assert job.driver == "", "the job's driver is alive: attaching starts no other"
    result = job.wait(timeout=240)
    assert result.state == "done", result.message
    assert result.values == [x * 10 for x in range(12)]

    record, _ = Launcher().job_record(job_id)
    assert record.state.value == "done" and record.done == 12
    assert (record.waves.count, record.waves.started, record.waves.finished) == (3, 3, 3)
    # one task per slot of the quota: its workers carried on from wave to wave (issue 14, no cold start per wave)
    assert len(record.workers) == 2 and {w.wave for w in record.workers.values()} == {1}
    # the bill counts the driver task too (its one-minute minimum of 0.25 vCPU / 0.5 GB on-demand at least),
    # on top of each worker's own one-minute minimum
    from starburst_jupyter.core import pricing
    from starburst_jupyter.core.detached import spec_of

    spec = spec_of(record)
    on_demand = pricing.rate_for(spec.region, spec.arch, spot=False)
    driver_minimum = 60 * pricing.per_second(on_demand, 256, 512)
    workers_minimum = (
        len(record.workers)
        * 60
        * pricing.per_second(pricing.rate_for(spec.region, spec.arch, spot=spec.spot), spec.cpu_units, spec.memory_mib)
    )
    assert record.cost.accrued >= workers_minimum + driver_minimum - 1e-9
    ended = [w.ended for w in record.workers.values()]
    assert all(end and end > killed for end in ended), "the workers ran waves 2 and 3 after the kill"
    # the driver was one ECS task of the agent's, which ended with the job; nothing of the job runs now
    drivers = fargate.drivers()
    assert len(drivers) == 1
    (arn, process), *_ = drivers.items()
    assert job_id in fargate.launched[arn] and wait_for(lambda: process.poll() == 0, timeout=30)
    wait_for(lambda: _running_tasks(moto_server) == [], timeout=30)


def test_a_cancel_from_another_machine_leaves_no_task_running(
    fargate,  # noqa: F811
    moto_server,
    tmp_path,
    monkeypatch,
):
    job_id, _ = _launch_and_kill(tmp_path, items=24, seconds=2.0)
    _another_machine(tmp_path, monkeypatch)
    job = sj.attach(job_id)
    wait_for(lambda: fargate.running(), timeout=90, interval=0.2)  # wave 1 runs
    job.cancel("enough from elsewhere")
    result = job.wait(timeout=120)
    assert result.state == "cancelled" and "enough from elsewhere" in result.message
    with pytest.raises(sj.BurstCancelled, match="enough from elsewhere"):
        sj.attach(job_id).result()
    # zero tasks left: workers and driver alike
    wait_for(lambda: _running_tasks(moto_server) == [], timeout=60, interval=0.2)
    assert all(p.poll() is not None for p in fargate.procs.values())
    assert len(fargate.drivers()) == 1

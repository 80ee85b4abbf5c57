#!/usr/bin/env python
"""Jobs of many waves on simulated Fargate: wall time against the ideal, billed task-minutes, first-task latency.

Runs real jobs through the real fargate backend against moto in server mode on 127.0.0.1, with the test
suite's stand-in Fargate agent (tests/fargate_agent.py) running each task's worker under its "realistic"
latency profile scaled down by --scale (provisioning, image pull by size, container start, stopping and
deprovisioning, the RunTask rate bucket; see FargateLatency.realistic for the figures and their sources),
and giving workers their credentials through the container-credentials endpoint with the task role enforced.

For jobs of 1, 3 and 10 waves (--concurrency workers at a time, one --item-second item each):

* wall: submit to the last result; ideal: one cold start + work / concurrency (= cold + waves x item);
* billed task-minutes: from the ECS timestamps moto holds (pullStartedAt to stoppedAt per task, scaled back
  to real seconds, one-minute minimum each, as Fargate bills);
* first-task latency: submit to the first item starting, a cold job against one taken from --keep-warm
  (the median of --repeat jobs each).

Times at the simulated scale are what was measured; "real" estimates scale the simulated delays back (the
machine's own overheads, such as process start and poll intervals, are real time already and are kept as
measured, so the wall ratio at a small scale is pessimistic). Goal (issue 14): wall <= 1.1x the ideal at
10 waves of 10 s items; first task <= 2 s warm.

    python bench/fargate_sim.py [--scale 0.2] [--concurrency 4] [--waves 1,3,10] [--item 10]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


class _Nap:
    """An item that sleeps and says when it started (travels by value: workers import nothing of ours)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def run(self, item):
        import time as t

        started = t.time()
        t.sleep(self.seconds)
        return started


def _job_tasks(agent, job_id: str) -> dict:
    return {arn: task for arn, task in agent._tasks().items() if task.started_by == job_id[:128]}


def _settle(agent, job_id: str, timeout: float = 120.0) -> dict:
    """The job's tasks once every one of them is STOPPED (deprovisioning takes a while after the job ends)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = _job_tasks(agent, job_id)
        if all(arn in agent.finished for arn in tasks) or time.monotonic() > deadline:
            return tasks
        time.sleep(0.2)


def _billed_minutes(tasks: dict, scale: float) -> float:
    """Fargate bills per second from the image pull's start to the task's stop, one minute at least."""
    total = 0.0
    for task in tasks.values():
        start, stop = getattr(task, "pull_started_at", None), getattr(task, "stopped_at", None)
        if start is None or stop is None:
            continue
        total += max(60.0, (stop - start).total_seconds() / scale)
    return total / 60.0


def run_job(agent, waves: int, concurrency: int, item: float, keep_warm: float = 0.0) -> dict:
    from starburst_jupyter.core.config import load_config
    from starburst_jupyter.core.launcher import Launcher
    from starburst_jupyter.core.spec import build_spec

    config = load_config()
    workers = concurrency * waves
    spec = build_spec(config, mode="map", workers=workers, cpu=1, memory="2GB", keep_warm=keep_warm)
    submitted = time.time()
    handle = Launcher(config).submit(spec, _Nap(item), list(range(workers)))
    result = handle.wait(timeout=1800)
    wall = time.time() - submitted
    assert result.state == "done" and len(result.values) == workers, f"job {handle.id} ended {result.state}"
    return {"id": handle.id, "wall": wall, "first": min(result.values) - submitted, "plan": handle.plan}


def _header(args, latency) -> str:
    load = os.getloadavg()
    commit = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    code = args.label or commit.stdout.strip()[:100] or "(not a git checkout)"
    return (
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs "
        f"({platform.machine()}), load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min); "
        f"Python {platform.python_version()}, moto {__import__('moto').__version__}\n"
        f"code: {code}\n"
        f"profile: FargateLatency.realistic(scale={args.scale:g}): cold start {latency.cold_start / args.scale:.0f} s "
        f"(provision {latency.provision / args.scale:g} s, pull {latency.image_mb:g} MB at "
        f"{latency.pull_mb_per_s * args.scale:g} MB/s, start {latency.start / args.scale:g} s), stop "
        f"{latency.stop / args.scale:g} s + deprovision {latency.deprovision / args.scale:g} s, RunTask "
        f"{latency.runtask_rate * args.scale:g}/s burst {latency.runtask_burst}; {args.concurrency} workers at a "
        f"time (1 vCPU each, quota {args.concurrency} vCPUs), items of {args.item:g} s (real)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.2, help="simulated time per real second (0.2: 5x faster)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--waves", default="1,3,10")
    parser.add_argument("--item", type=float, default=10.0, help="seconds per item, in real time")
    parser.add_argument("--repeat", type=int, default=3, help="jobs per first-task measurement (median)")
    parser.add_argument("--label", default="", help="what code runs (default: the checkout's last commit)")
    args = parser.parse_args()

    import cloudpickle
    from fargate_agent import FargateAgent, FargateLatency
    from moto.moto_api import state_manager
    from moto_server import MotoServer

    from starburst_jupyter.backends.fargate.setup import set_up
    from starburst_jupyter.core.config import load_config, save_values

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    began = time.monotonic()
    server = MotoServer().start()
    os.environ.update(server.env)
    os.environ["STARBURST_HOME"] = tempfile.mkdtemp(prefix="starburst-fargate-sim-")
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    _, settings = set_up(load_config())
    server.client("s3").delete_bucket_policy(Bucket=settings["bucket"])  # moto is plain HTTP
    save_values({"image": "starburst-worker:bench", "fargate_vcpu_quota": args.concurrency, "backend": "fargate"})
    config = load_config()
    latency = FargateLatency.realistic(args.scale)
    agent = FargateAgent(dict(server.env), config.region, config.cluster, config.log_group, latency=latency)
    agent.start()
    item = args.item * args.scale
    rows, firsts = [], []
    try:
        for waves in [int(w) for w in args.waves.split(",")]:
            out = run_job(agent, waves, args.concurrency, item)
            tasks = _settle(agent, out["id"])
            ideal = latency.cold_start + waves * item
            rows.append((waves, out["plan"].waves, len(tasks), out["wall"], ideal, _billed_minutes(tasks, args.scale)))
        # first task: cold (a new task), then warm (a worker kept by the job before, taken by the next one)
        colds = [run_job(agent, 1, 1, item)["first"] for _ in range(args.repeat)]
        run_job(agent, 1, 1, item, keep_warm=1.0)
        warms = []
        for _ in range(args.repeat):
            time.sleep(1.0)  # the finished worker registers in the warm pool
            warms.append(run_job(agent, 1, 1, item, keep_warm=1.0)["first"])
        firsts = [("cold", colds, latency.cold_start), ("--keep-warm", warms, 0.0)]
        refused = agent.runtask_bucket.refused if agent.runtask_bucket else 0
    finally:
        agent.stop()
        server.stop()
    s = args.scale
    stopping = (latency.stop + latency.deprovision) / s
    print(f"\n{_header(args, latency)}\n")
    print(
        "| waves | tasks (cold starts) | wall s (sim) | ideal s (sim) | wall / ideal (sim) | wall s (real est.) "
        "| ideal s (real) | wall / ideal (real est.) | billed task-min | ideal billed task-min |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for waves, _planned, tasks, wall, ideal, billed in rows:
        # the simulated part of the critical path: one cold start per generation of tasks, then the items
        generations = -(-tasks // args.concurrency)
        real_wall = wall + (generations * latency.cold_start + waves * item) * (1 / s - 1)
        real_ideal = ideal / s
        # the ideal bill: `concurrency` tasks, each from its image pull through the work to its stop
        billed_ideal = args.concurrency * max(60.0, (latency.pull + latency.start + waves * item) / s + stopping) / 60
        print(
            f"| {waves} | {tasks} | {wall:.1f} | {ideal:.1f} | {wall / ideal:.2f} | {real_wall:.0f} | {real_ideal:.0f} "
            f"| {real_wall / real_ideal:.2f} | {billed:.1f} | {billed_ideal:.1f} |"
        )
    print(
        f"\n| first task ({args.repeat} jobs) | median s (sim) | range s (sim) | simulated delay in it s "
        "| real-time estimate s |"
    )
    print("|---|---|---|---|---|")
    for label, values, simulated in firsts:
        mid = statistics.median(values)
        print(
            f"| {label} | {mid:.2f} | {min(values):.2f}-{max(values):.2f} | {simulated:.2f} "
            f"| {mid + simulated * (1 / s - 1):.1f} |"
        )
    print(
        f"\nRunTask throttled {refused} time(s) (absorbed by botocore's retries); bench took "
        f"{time.monotonic() - began:.0f} s. Real-time estimates = measured + the simulated delays on the path "
        f"x (1/scale - 1): a cold start per generation of tasks (tasks / concurrency) and the items; the machine's "
        f"own overheads (process start, poll intervals) stay as measured."
    )


if __name__ == "__main__":
    main()

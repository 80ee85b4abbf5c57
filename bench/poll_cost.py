#!/usr/bin/env python
"""API calls a fargate job's launcher makes per poll cycle and per job, as the task count grows.

Runs real jobs through the real fargate backend against moto in server mode on 127.0.0.1, with
the test suite's stand-in Fargate agent running each task's worker (tests/fargate_agent.py).
Each job lasts about --seconds so the launcher goes through many poll cycles. Two launchers run
side by side on the same jobs:

* starburst: quick listings (claims from the first unclaimed block, results of the last minute)
  with a full sweep only when a worker ends and once a minute;
* full listing: the same launcher with a full sweep on every cycle (what the first version did,
  and what a launcher that probes every object does at best).

Goal (issue 3): launcher calls per cycle do not grow with task count beyond ceil(workers/100).

    python bench/poll_cost.py [--workers 10] [--tasks 100,1000,5000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


class _Nap:
    """A task that sleeps a fixed time (travels by value: the stand-in agent's workers import nothing of ours)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def run(self, item):
        time.sleep(self.seconds)
        return item


def run_job(tasks: int, workers: int, seconds: float, full_sweeps: bool) -> dict:
    import starburst_jupyter.core.launcher as launcher_module
    from starburst_jupyter.core.config import load_config
    from starburst_jupyter.core.launcher import Launcher
    from starburst_jupyter.core.spec import build_spec
    from starburst_jupyter.stores.records import JobStore

    saved = launcher_module.SWEEP_SECONDS
    launcher_module.SWEEP_SECONDS = 0.0 if full_sweeps else saved
    try:
        config = load_config()
        spec = build_spec(config, mode="map", workers=workers, cpu=0.25, memory="512MB")
        nap = workers * seconds / tasks
        started = time.perf_counter()
        handle = Launcher(config).submit(spec, _Nap(nap), list(range(tasks)), start=False)
        handle.events.subscribe(lambda event: None)  # someone watches logs, as the widget does
        handle.start()
        result = handle.wait(timeout=600)
        wall = time.perf_counter() - started
    finally:
        launcher_module.SWEEP_SECONDS = saved
    assert result.values == list(range(tasks)), "lost or wrong results"
    if os.environ.get("POLL_COST_DEBUG"):
        print(tasks, full_sweeps, JobStore().read(handle.id)["api_calls"], file=sys.stderr)
    record = JobStore().read(handle.id)
    return {"calls": Counter(record["api_calls"]), "polls": record["polls"], "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--tasks", default="100,1000,5000")
    parser.add_argument("--seconds", type=float, default=15.0, help="about how long each job runs")
    args = parser.parse_args()

    import cloudpickle
    from fargate_agent import FargateAgent
    from moto.moto_api import state_manager
    from moto_server import MotoServer

    from starburst_jupyter.backends.fargate.setup import set_up
    from starburst_jupyter.core.config import load_config, save_values

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    server = MotoServer().start()
    os.environ.update(server.env)
    os.environ["STARBURST_HOME"] = tempfile.mkdtemp(prefix="starburst-poll-cost-")
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    _, settings = set_up(load_config())
    server.client("s3").delete_bucket_policy(Bucket=settings["bucket"])  # moto is plain HTTP
    save_values({"image": "starburst-worker:bench", "fargate_vcpu_quota": args.workers, "backend": "fargate"})
    config = load_config()
    agent = FargateAgent(server.env, config.region, config.cluster, config.log_group)
    agent.start()
    rows = []
    try:
        for tasks in [int(t) for t in args.tasks.split(",")]:
            for label, full in (("starburst", False), ("full listing each cycle", True)):
                out = run_job(tasks, args.workers, args.seconds, full)
                calls, polls = out["calls"], max(1, out["polls"])
                polling = sum(
                    n
                    for name, n in calls.items()
                    if name.startswith(
                        (
                            "s3.ListObjectsV2",
                            "ecs.DescribeTasks",
                            "logs.FilterLogEvents",
                            "s3.GetObject:cancel",
                            "s3.HeadObject:cancel",
                        )
                    )
                )
                data = sum(
                    n for name, n in calls.items() if name.startswith("s3.GetObject:") and not name.endswith("cancel")
                )
                rows.append(
                    (
                        tasks,
                        label,
                        polls,
                        polling / polls,
                        calls.get("ecs.DescribeTasks", 0) / polls,
                        data,
                        calls.get("ecs.RunTask", 0),
                        sum(calls.values()),
                        out["wall"],
                    )
                )
    finally:
        agent.stop()
        server.stop()
    print(
        f"\nworkers: {args.workers} (ceil(workers/100) = {math.ceil(args.workers / 100)}); jobs of about "
        f"{args.seconds:g} s; moto {__import__('moto').__version__} on 127.0.0.1\n"
    )
    header = (
        "tasks",
        "launcher",
        "poll cycles",
        "polling calls/cycle",
        "DescribeTasks/cycle",
        "claim+result reads (job)",
        "RunTask (job)",
        "launcher calls (job)",
        "wall s",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for tasks, label, polls, per_cycle, describe, data, run, total, wall in rows:
        print(
            f"| {tasks} | {label} | {polls} | {per_cycle:.2f} | {describe:.2f} | {data} | {run} | {total} "
            f"| {wall:.1f} |"
        )
    print(
        "\npolling calls: ListObjectsV2 (claims, results), DescribeTasks, FilterLogEvents and the cancel-marker "
        "read; claim+result reads grow with the work done (one per claimed block, one per result object), not "
        "with polling."
    )


if __name__ == "__main__":
    main()

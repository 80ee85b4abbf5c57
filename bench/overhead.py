#!/usr/bin/env python
"""Per-task overhead of starburst's burst_map (local backend) next to its peers, on one machine.

Workloads, each run with the same number of workers by every tool:

* noop:   1000 tasks that return their argument (pure scheduling overhead);
* uneven: 200 tasks sleeping 5-100 ms each (seeded), scored by efficiency =
          busy seconds / (workers x wall seconds), and by the time from the call to the
          first task running.

Tools: starburst burst_map, concurrent.futures.ProcessPoolExecutor (pool start-up inside the
timed region, as in a notebook cell), ipyparallel (DirectView and LoadBalancedView on a cluster
started once per repetition; start-up reported on its own row) and Lithops' localhost executor.
A tool that cannot be imported or run gets a "not available" row; the table always prints.

This script runs each tool's repetitions together and compares with PPE chunksize=1; the side-by-side
comparison as a user would tune the peers (PPE chunksize N/8, joblib, dask.bag; 10k/100k/1M items; tools
interleaved, a fresh interpreter per trial, peak RSS, first task cold and warm) is bench/many_items.py.

    python bench/overhead.py [--workers 2] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

NOOP_TASKS = 1000
UNEVEN_TASKS = 200
UNEVEN_SECONDS = (0.005, 0.1)
# Lithops localhost (v2) starts a fresh interpreter per task, ~0.5 s each on 2 cores: it runs a
# prefix of each workload so the whole script stays within a few minutes.
LITHOPS_TASKS = 20
CALL_TIMEOUT = 300  # seconds; a hung tool fails its row instead of hanging the table

Runner = Callable[[Callable[[Any], Any], list[Any]], list[Any]]


# ----- tasks (module level, so every tool can pickle them) -----------------------------------
def noop(value: Any) -> Any:
    """Return the argument unchanged."""
    return value


def sleep_task(seconds: float) -> float:
    """Sleep, and return the wall-clock time at which the task started."""
    import time  # ipyparallel ships __main__ functions without their module's globals

    started = time.time()
    time.sleep(seconds)
    return started


# ----- workloads and measurements ---------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    name: str
    fn: Callable[[Any], Any]
    items: list[Any]
    busy: float  # seconds of task work (0 for no-ops)

    def head(self, count: int) -> Workload:
        """The first `count` tasks of this workload."""
        items = self.items[:count]
        return Workload(self.name, self.fn, items, sum(items) if self.busy else 0.0)


def make_workloads() -> list[Workload]:
    """The no-op and the uneven-sleep workload (durations from a seeded generator)."""
    rng = random.Random(0)
    durations = [rng.uniform(*UNEVEN_SECONDS) for _ in range(UNEVEN_TASKS)]
    return [
        Workload("noop", noop, list(range(NOOP_TASKS)), 0.0),
        Workload("uneven", sleep_task, durations, sum(durations)),
    ]


@dataclass(frozen=True)
class Sample:
    wall: float
    first_task: float | None = None


@dataclass
class Row:
    workload: str
    tool: str
    tasks: int = 0
    busy: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    note: str = ""

    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    def rate(self) -> float:
        return self.tasks / self.wall()

    def first_task(self) -> float | None:
        values = [s.first_task for s in self.samples if s.first_task is not None]
        return statistics.median(values) if values else None


def measure(run: Runner, workload: Workload) -> Sample:
    """Time one call of `run` on the workload and check its results."""
    started = time.time()
    t0 = time.perf_counter()
    results = run(workload.fn, workload.items)
    wall = time.perf_counter() - t0
    if len(results) != len(workload.items):
        raise RuntimeError(f"{len(results)} results for {len(workload.items)} tasks")
    if workload.fn is noop:
        if list(results) != workload.items:
            raise RuntimeError("results out of order or wrong")
        return Sample(wall)
    return Sample(wall, min(results) - started)


def reason(exc: BaseException) -> str:
    """One short line describing why a tool could not run."""
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return text if len(text) <= 90 else text[:87] + "..."


def unavailable(tool: str, workloads: list[Workload], exc: BaseException) -> list[Row]:
    """One 'not available' row per workload."""
    return [Row(w.name, tool, note=f"not available: {reason(exc)}") for w in workloads]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep third-party progress output off stdout, which holds only the table."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# ----- the tools ----------------------------------------------------------------------------
def bench_starburst(workloads: list[Workload], workers: int, reps: int) -> list[Row]:
    """starburst burst_map on the local backend, concurrency = workers."""
    from starburst_jupyter import burst_map
    from starburst_jupyter.core.config import Config

    config = Config(local_concurrency=workers)

    def run(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return burst_map(fn, items, workers=workers, backend="local", timeout=CALL_TIMEOUT, config=config)

    return [bench_simple("starburst", run, w, reps) for w in workloads]


def bench_process_pool(workloads: list[Workload], workers: int, reps: int) -> list[Row]:
    """ProcessPoolExecutor.map, creating and shutting down the pool inside the timed region."""

    def run(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(fn, items, timeout=CALL_TIMEOUT))

    return [bench_simple("ProcessPoolExecutor", run, w, reps) for w in workloads]


def bench_simple(tool: str, run: Runner, workload: Workload, reps: int) -> Row:
    """Run one tool on one workload `reps` times; a failure becomes a 'not available' row."""
    row = Row(workload.name, tool, len(workload.items), workload.busy)
    try:
        row.samples = [measure(run, workload) for _ in range(reps)]
    except Exception as exc:  # the table must always print
        return unavailable(tool, [workload], exc)[0]
    return row


def bench_ipyparallel(workloads: list[Workload], workers: int, reps: int) -> list[Row]:
    """ipyparallel map_sync on a DirectView and a LoadBalancedView; one fresh cluster per repetition."""
    try:
        import ipyparallel as ipp
    except Exception as exc:
        return unavailable("ipyparallel", workloads, exc)
    start_row = Row("cluster start", "ipyparallel", workers)
    views = ("DirectView", "LoadBalancedView")
    rows = {(w.name, v): Row(w.name, f"ipyparallel {v}", len(w.items), w.busy) for w in workloads for v in views}
    try:
        for _ in range(reps):
            cluster = ipp.Cluster(n=workers, log_level=40)
            try:
                t0 = time.perf_counter()
                with quiet():
                    client = cluster.start_and_connect_sync()
                start_row.samples.append(Sample(time.perf_counter() - t0))
                for view_name, view in zip(views, (client[:], client.load_balanced_view())):
                    for w in workloads:
                        rows[(w.name, view_name)].samples.append(measure(_ipp_runner(view), w))
                client.close()
            finally:
                with quiet(), contextlib.suppress(Exception):
                    cluster.stop_cluster_sync()
    except Exception as exc:  # the table must always print
        return unavailable("ipyparallel", workloads, exc)
    return [start_row, *rows.values()]


def _ipp_runner(view: Any) -> Runner:
    """A runner calling `view.map_sync` (a DirectView splits items evenly, a LoadBalancedView one per task)."""

    def run(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return view.map_sync(fn, items)

    return run


def lithops_config(workers: int) -> dict[str, Any]:
    """Localhost compute and storage, this interpreter, `workers` processes: no config file needed."""
    return {
        # data_cleaner off: its cleaner process and exit hook would outlive the script's temp dir,
        # which is deleted whole at the end instead.
        "lithops": {"backend": "localhost", "storage": "localhost", "log_level": None, "data_cleaner": False},
        "localhost": {"runtime": sys.executable, "worker_processes": workers},
    }


def bench_lithops(workloads: list[Workload], workers: int, reps: int, tasks: int) -> list[Row]:
    """Lithops FunctionExecutor map + get_result, executor made inside the timed region."""
    try:
        import lithops
    except Exception as exc:
        return unavailable("lithops", workloads, exc)

    def run(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        with quiet(), lithops.FunctionExecutor(config=lithops_config(workers)) as executor:
            futures = executor.map(fn, items)
            return executor.get_result(futures, timeout=CALL_TIMEOUT)

    return [bench_simple("lithops localhost", run, w.head(tasks), reps) for w in workloads]


# ----- environment, clean-up and output -------------------------------------------------------
def isolate(root: str) -> None:
    """Point every tool's state (starburst home, IPython profile, Lithops temp dir) into `root`."""
    for name, sub in (("STARBURST_HOME", "starburst"), ("IPYTHONDIR", "ipython"), ("TMPDIR", "tmp")):
        path = os.path.join(root, sub)
        os.makedirs(path, exist_ok=True)
        os.environ[name] = path
    tempfile.tempdir = None  # re-read TMPDIR


def stop_leftovers(wait: float = 10.0) -> list[str]:
    """Wait for this script's child processes to exit; terminate (by pid) and name any that remain."""
    try:
        import psutil
    except ImportError:
        return ["(psutil missing: leftover processes not checked)"]
    deadline = time.monotonic() + wait
    children = psutil.Process().children(recursive=True)
    while children and time.monotonic() < deadline:
        time.sleep(0.2)
        children = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    names = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            names.append(f"{child.pid} {' '.join(child.cmdline())[:80]}")
            child.terminate()
    psutil.wait_procs(children, timeout=3)
    return names


def version(package: str) -> str:
    """The installed distribution's version, or 'not installed'."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def header(workers: int, reps: int, lithops_tasks: int) -> list[str]:
    """Machine and version lines printed above the table."""
    import multiprocessing

    return [
        "# starburst overhead benchmark",
        "",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})",
        f"- python {platform.python_version()} ({sys.executable})",
        f"- starburst_jupyter {version('starburst-jupyter')}, ipyparallel {version('ipyparallel')}, "
        f"lithops {version('lithops')}",
        f"- workers: {workers} for every tool; median of {reps} run(s); ProcessPoolExecutor start method: "
        f"{multiprocessing.get_start_method()}",
        f"- noop: {NOOP_TASKS} tasks returning their argument; uneven: {UNEVEN_TASKS} tasks sleeping "
        f"{UNEVEN_SECONDS[0] * 1000:g}-{UNEVEN_SECONDS[1] * 1000:g} ms (random.Random(0)); "
        f"lithops runs the first {lithops_tasks} tasks of each",
        "- efficiency = busy seconds / (workers x wall seconds); first task = call start to first task "
        "running; vs PPE = tasks/s / ProcessPoolExecutor tasks/s on the same workload",
        "",
    ]


def format_table(rows: list[Row], workers: int) -> list[str]:
    """The markdown table; ratios are against ProcessPoolExecutor on the same workload."""
    ppe = {r.workload: r.rate() for r in rows if r.tool == "ProcessPoolExecutor" and r.samples}
    columns = ["workload", "tool", "tasks", "wall s", "tasks/s", "vs PPE", "efficiency", "first task s"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        if not row.samples:
            cells = [row.workload, row.tool, "", row.note, "", "", "", ""]
        elif row.workload == "cluster start":
            cells = [row.workload, row.tool, f"{row.tasks} engines", f"{row.wall():.3f}", "", "", "", ""]
        else:
            ratio = format_ratio(row.rate() / ppe[row.workload]) if row.workload in ppe else ""
            efficiency = f"{row.busy / (workers * row.wall()):.2f}" if row.busy else ""
            first = row.first_task()
            cells = [
                row.workload,
                row.tool,
                str(row.tasks),
                f"{row.wall():.3f}",
                f"{row.rate():,.0f}",
                ratio,
                efficiency,
                f"{first:.3f}" if first is not None else "",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def format_ratio(value: float) -> str:
    """Two decimals, or two significant digits for ratios below 0.1."""
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def order(rows: list[Row], workloads: list[Workload]) -> list[Row]:
    """Group rows by workload (in workload order), set-up rows last."""
    rank = {w.name: i for i, w in enumerate(workloads)}
    return sorted(rows, key=lambda r: rank.get(r.workload, len(rank)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """--workers, --quick and --lithops-tasks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="workers for every tool (default 2)")
    parser.add_argument("--quick", action="store_true", help="one repetition instead of three (CI smoke)")
    parser.add_argument(
        "--lithops-tasks",
        type=int,
        default=LITHOPS_TASKS,
        help=f"tasks per workload for Lithops (default {LITHOPS_TASKS}; it spawns one process per task)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1 or args.lithops_tasks < 1:
        parser.error("--workers and --lithops-tasks must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every tool, stop what they started, print the table."""
    args = parse_args(argv)
    reps = 1 if args.quick else 3
    root = tempfile.mkdtemp(prefix="starburst-bench-")
    started = time.perf_counter()
    try:
        isolate(root)
        workloads = make_workloads()
        rows: list[Row] = []
        rows += bench_process_pool(workloads, args.workers, reps)
        rows += bench_starburst(workloads, args.workers, reps)
        rows += bench_ipyparallel(workloads, args.workers, reps)
        rows += bench_lithops(workloads, args.workers, reps, args.lithops_tasks)
        leftovers = stop_leftovers()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        "\n".join(header(args.workers, reps, args.lithops_tasks) + format_table(order(rows, workloads), args.workers))
    )
    print(f"\nleftover processes: {'; '.join(leftovers) if leftovers else 'none'}")
    print(f"total benchmark time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

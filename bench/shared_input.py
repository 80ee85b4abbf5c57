#!/usr/bin/env python
"""A large shared input and large results (issue 15): starburst burst_map next to joblib and ProcessPoolExecutor.

Rows (2 workers by default, the same for every tool):

* input: a 400 MB float64 array captured by every one of 64 items (each sums all of it). starburst captures
  it with functools.partial; joblib memmaps it (its default max_nbytes='1M'); ProcessPoolExecutor either
  as a user first writes it (`partial`, chunksize 64/8: the array is pickled with every chunk) or tuned
  (`initializer=` with the fork start method: the workers inherit the caller's pages, copy-on-write);
* results6: 64 items each returning a 6 MB array (384 MB back); results100: 4 items of 100 MB each. Does the
  caller hold two copies while they come back?

Each trial runs in a fresh interpreter, tools interleaved, medians of `--reps`. Memory is sampled every
0.1 s over the caller and all its descendants (/proc): "sum of peak RSS" adds each process's VmHWM (what
the issue asks for; it counts a page shared by N processes N times: an mmap or a forked copy-on-write
page), "peak PSS" is the largest sum of proportional set sizes seen (a shared page counted once in all).
Several starburst trees run side by side (`--tree before=/path/to/a/checkout`, e.g. a `git worktree add`
of the commit before), so before and after come from one run under one load. joblib is an optional bench
dependency (`--extra-path DIR`).

    python bench/shared_input.py [--rows input,results6,results100] [--reps 3] [--tree NAME=PATH ...]
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

from trials import importable, machine_line, run_trial, side_by_side_parser

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MB = 1 << 20
ITEMS = {"input": 64, "results6": 64, "results100": 4}
_SHARED: Any = None  # the tuned ProcessPoolExecutor's per-worker copy (set by its initializer)


def total(data: Any, i: int) -> float:
    return float(data.sum()) + i


def total_shared(i: int) -> float:
    return total(_SHARED, i)


def keep(data: Any) -> None:
    global _SHARED
    _SHARED = data


def array_of(megabytes: int) -> Any:
    import numpy as np

    return np.full(megabytes * MB // 8, 1.0)


def block(megabytes: int, i: int) -> Any:
    return array_of(megabytes)


def make(workload: str) -> tuple[Any, Any]:
    """(the function every item runs, the input array or None)."""
    if workload == "input":
        data = array_of(400)
        return functools.partial(total, data), data
    return functools.partial(block, 6 if workload == "results6" else 100), None


def run_tool(tool: str, workload: str, workers: int) -> list[Any]:
    fn, data = make(workload)
    items = list(range(ITEMS[workload]))
    if tool == "starburst":
        from starburst_jupyter import burst_map
        from starburst_jupyter.core.config import Config

        return list(burst_map(fn, items, workers=workers, backend="local", timeout=900,
                              config=Config(local_concurrency=workers)))  # fmt: skip
    if tool == "ppe":  # as first written: the array travels with every chunk
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            return list(pool.map(fn, items, chunksize=max(1, len(items) // 8)))
    if tool == "ppe-init":  # tuned: the input once per worker (fork: inherited, copy-on-write)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("fork")
        if data is None:
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                return list(pool.map(fn, items, chunksize=max(1, len(items) // 8)))
        with ProcessPoolExecutor(workers, mp_context=context, initializer=keep, initargs=(data,)) as pool:
            return list(pool.map(total_shared, items, chunksize=max(1, len(items) // 8)))
    if tool == "joblib":
        from joblib import Parallel, delayed

        if data is None:
            return list(Parallel(n_jobs=workers)(delayed(fn)(i) for i in items))
        return list(Parallel(n_jobs=workers)(delayed(total)(data, i) for i in items))
    raise SystemExit(f"unknown tool {tool}")


class Sampler:
    """Peak memory of this process and its descendants, sampled from /proc every `pace` seconds."""

    def __init__(self, pace: float = 0.1):
        self.pace, self.hwm, self.peak_pss = pace, {}, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.pace):
            self.sample()

    def sample(self) -> None:
        pss = 0
        for pid in self.family():
            try:
                with open(f"/proc/{pid}/status") as handle:
                    hwm = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))
                with open(f"/proc/{pid}/smaps_rollup") as handle:
                    pss += next(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
            except (OSError, StopIteration):
                continue  # gone meanwhile
            self.hwm[pid] = max(self.hwm.get(pid, 0), hwm)
        self.peak_pss = max(self.peak_pss, pss)

    @staticmethod
    def family() -> list[int]:
        parents: dict[int, int] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as handle:
                        parents[int(name)] = int(handle.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        family, grew = {os.getpid()}, True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in family} - family
            family |= more
            grew = bool(more)
        return sorted(family)


def trial(tool: str, workload: str, workers: int) -> dict[str, Any]:
    """One measurement in this (fresh) interpreter: printed as JSON for the parent."""
    with Sampler() as memory:
        t0 = time.perf_counter()
        out = run_tool(tool, workload, workers)
        wall = time.perf_counter() - t0
    assert len(out) == ITEMS[workload], "lost items"
    if workload == "input":
        assert out[3] == 400 * MB // 8 + 3, "wrong values"
    else:
        assert all(float(v[-1]) == 1.0 for v in out), "wrong values"
    me = memory.hwm.get(os.getpid(), 0)
    return {
        "wall": wall,
        "sum_rss_mb": sum(memory.hwm.values()) / 1024,
        "caller_mb": me / 1024,
        "peak_pss_mb": memory.peak_pss / 1024,
        "processes": len(memory.hwm),
    }


def available(tool: str, extra: str | None) -> bool:
    return tool != "joblib" or importable("joblib", extra)


def spawn(tool: str, tree: str, workload: str, workers: int, extra: str | None, home: str) -> dict[str, Any]:
    trial = [tool, workload, "--workers", str(workers)]
    return run_trial(__file__, trial, [tree, extra or ""], home)  # (loky's workers need joblib's path too)


def main(argv: list[str] | None = None) -> int:
    parser = side_by_side_parser(__doc__.split("\n\n")[0], ("TOOL", "WORKLOAD"), "input,results6,results100", "joblib")
    args = parser.parse_args(argv)
    if args.extra_path:
        sys.path.append(args.extra_path)
    if args.trial:
        tool, workload = args.trial
        print(json.dumps(trial(tool, workload, args.workers)))
        return 0

    trees = [("starburst", ROOT)] + [tuple(t.split("=", 1)) for t in args.tree]
    peers = ["ppe", "ppe-init"] + (["joblib"] if available("joblib", args.extra_path) else [])
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sb-shared-") as home:
        for _rep in range(args.reps):  # interleaved: every tool once per repetition, in turn
            for workload in args.rows.split(","):
                tools = [(name, "starburst", path) for name, path in trees] + [(p, p, ROOT) for p in peers]
                for name, tool, path in tools:
                    got = spawn(tool, path, workload, args.workers, args.extra_path, home)
                    results.setdefault((workload, name), []).append(got)
                    print(f"# {workload} {name}: {got}", file=sys.stderr, flush=True)
    print(machine_line(load[0], args.workers, args.reps))
    print("| workload | tool | wall (s) | sum of peak RSS (MB) | caller peak RSS (MB) | peak PSS, all (MB) |")
    print("|---|---|---|---|---|---|")
    for (workload, name), samples in results.items():
        ok = [s for s in samples if "error" not in s]
        if not ok:
            print(f"| {workload} | {name} | error: {samples[0]['error']} | | | |")
            continue
        med = {k: statistics.median(s[k] for s in ok) for k in ("wall", "sum_rss_mb", "caller_mb", "peak_pss_mb")}
        print(f"| {workload} | {name} | {med['wall']:.2f} | {med['sum_rss_mb']:.0f} | {med['caller_mb']:.0f} "
              f"| {med['peak_pss_mb']:.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

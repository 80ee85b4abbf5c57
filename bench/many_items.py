#!/usr/bin/env python
"""Many small items (issue 15): starburst burst_map next to the peers as a user would tune them.

Rows (2 workers by default, the same for every tool):

* noop N (10k / 100k / 1M): no-op items; ProcessPoolExecutor with chunksize N/8, joblib (loky, its
  automatic batching) and dask.bag (processes scheduler, 8 partitions) where installed;
* noop 1000: against ProcessPoolExecutor chunksize=1 (the parity the issue asks to keep);
* heavy-first: 5 x 2 s items then 195 x 20 ms (lower bound 6.95 s on 2 workers), PPE chunksize=1, joblib;
* first task: a one-item job, cold (first call in a fresh interpreter) and warm (the second call);
* pairs N (100k / 1M, with `--rows pairs`): items that return a small list ([x, "tag"]): values that are not
  inline, so each is pickled and read back on its own (issue 22: each value read by its own unpickler), against
  ProcessPoolExecutor with chunksize N/8.

Every trial runs in a fresh interpreter (`--trial`), tools interleaved, medians of `--reps` (3); each reports
its wall time and the caller's peak RSS (ru_maxrss). Each tool's modules are imported before the clock starts
(a notebook imports once); the import's own time is a column of its own. The pools are not: PPE, loky and
dask start theirs inside the timed call, and so does starburst (its fork server, in a fresh interpreter).
Several starburst trees can run side by side (`--tree before=/path/to/old/checkout`), so a before/after table
comes from one run under one load. joblib and dask are optional bench dependencies (`--extra-path DIR` appends
a folder holding them to sys.path), never runtime ones.

    python bench/many_items.py [--sizes 10000,100000,1000000] [--reps 3] [--tree NAME=PATH ...]
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
import time
from typing import Any

from trials import importable, machine_line, run_trial, side_by_side_parser

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def noop(value: Any) -> Any:
    return value


def pair(value: Any) -> Any:
    return [value, "tag"]


def sleeper(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


HEAVY = [2.0] * 5 + [0.02] * 195


def items_for(workload: str, n: int) -> list[Any]:
    return HEAVY if workload == "heavy" else list(range(n))


def run_tool(tool: str, workload: str, n: int, workers: int) -> list[Any]:
    fn = {"heavy": sleeper, "pairs": pair}.get(workload, noop)
    items = items_for(workload, n)
    if tool.startswith("starburst"):
        from starburst_jupyter import burst_map
        from starburst_jupyter.core.config import Config

        return list(burst_map(fn, items, workers=workers, backend="local", timeout=900,
                              config=Config(local_concurrency=workers)))  # fmt: skip
    if tool.startswith("ppe"):
        from concurrent.futures import ProcessPoolExecutor

        chunk = 1 if tool == "ppe1" else max(1, len(items) // 8)
        with ProcessPoolExecutor(workers) as pool:
            return list(pool.map(fn, items, chunksize=chunk))
    if tool == "joblib":
        from joblib import Parallel, delayed

        return list(Parallel(n_jobs=workers)(delayed(fn)(x) for x in items))
    if tool == "dask":
        import dask
        import dask.bag as db

        with dask.config.set(scheduler="processes", num_workers=workers):
            return list(db.from_sequence(items, npartitions=8).map(fn).compute())
    raise SystemExit(f"unknown tool {tool}")


def load(tool: str) -> float:
    """Import what the tool needs, outside the timed region (a notebook imports once; its cost is its own column)."""
    t0 = time.perf_counter()
    if tool.startswith("starburst"):
        import starburst_jupyter.api
        import starburst_jupyter.backends.local
        import starburst_jupyter.core.config  # noqa: F401
    elif tool.startswith("ppe"):
        import concurrent.futures  # noqa: F401
    elif tool == "joblib":
        import joblib  # noqa: F401
    elif tool == "dask":
        import dask.bag  # noqa: F401
    return time.perf_counter() - t0


def trial(tool: str, workload: str, n: int, workers: int) -> dict[str, Any]:
    """One measurement in this (fresh) interpreter: printed as JSON for the parent."""
    imported = load(tool)
    if workload == "first":
        t0 = time.perf_counter()
        run_tool(tool, "noop", 1, workers)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_tool(tool, "noop", 1, workers)
        return {"cold": cold, "warm": time.perf_counter() - t0, "import": imported}
    t0 = time.perf_counter()
    out = run_tool(tool, workload, n, workers)
    wall = time.perf_counter() - t0
    assert len(out) == len(items_for(workload, n)), "lost items"
    return {"wall": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "import": imported}


def available(tool: str, extra: str | None) -> bool:
    module = {"joblib": "joblib", "dask": "dask.bag"}.get(tool)
    return module is None or importable(module, extra)


def spawn(tool: str, tree: str, workload: str, n: int, workers: int, extra: str | None, home: str) -> dict[str, Any]:
    trial = [tool, workload, str(n), "--workers", str(workers)]
    return run_trial(__file__, trial, [tree, ROOT, extra or ""], home)  # (loky's workers need joblib's path too)


def main(argv: list[str] | None = None) -> int:
    parser = side_by_side_parser(
        __doc__.split("\n\n")[0], ("TOOL", "WORKLOAD", "N"), "noop,noop1000,heavy,first", "joblib/dask"
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--pair-sizes", default="100000,1000000", help="the sizes of the pairs rows")
    args = parser.parse_args(argv)
    if args.extra_path:
        sys.path.append(args.extra_path)
    if args.trial:
        tool, workload, n = args.trial
        print(json.dumps(trial(tool, workload, int(n), args.workers)))
        return 0

    trees = [("starburst", "")] + [tuple(t.split("=", 1)) for t in args.tree]  # type: ignore[misc]
    peers = [t for t in ("joblib", "dask") if available(t, args.extra_path)]
    rows = args.rows.split(",")
    cases: list[tuple[str, int, list[str]]] = []
    if "noop" in rows:
        cases += [("noop", int(n), ["ppe", *peers]) for n in args.sizes.split(",")]
    if "pairs" in rows:
        cases += [("pairs", int(n), ["ppe"]) for n in args.pair_sizes.split(",")]
    if "noop1000" in rows:
        cases.append(("noop", 1000, ["ppe1"]))
    if "heavy" in rows:
        cases.append(("heavy", 200, ["ppe1", *[p for p in peers if p == "joblib"]]))
    if "first" in rows:
        cases.append(("first", 1, ["ppe1", *[p for p in peers if p == "joblib"]]))
    results: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sb-many-") as home:
        for _rep in range(args.reps):  # interleaved: every tool once per repetition, in turn
            for workload, n, others in cases:
                tools = [(name, path) for name, path in trees] + [(o, "") for o in others]
                if workload == "noop" and n >= 1_000_000:
                    tools = [t for t in tools if t[0] != "dask" or n <= 1_000_000]
                for name, path in tools:
                    tool = "starburst" if path or name == "starburst" else name
                    got = spawn(tool, path, workload, n, args.workers, args.extra_path, home)
                    results.setdefault((name, workload, n), []).append(got)
                    print(f"# {name} {workload} {n}: {got}", file=sys.stderr, flush=True)
    print(machine_line(load[0], args.workers, args.reps))
    print("| workload | items | tool | wall (s) | peak RSS (MB) | import (s, not in wall) |")
    print("|---|---|---|---|---|---|")
    for (name, workload, n), samples in results.items():
        ok = [s for s in samples if "error" not in s]
        if not ok:
            print(f"| {workload} | {n} | {name} | error: {samples[0]['error']} | |")
        elif workload == "first":
            cold = statistics.median(s["cold"] for s in ok)
            warm = statistics.median(s["warm"] for s in ok)
            imported = statistics.median(s.get("import", 0.0) for s in ok)
            print(f"| first task | 1 | {name} | cold {cold:.3f} / warm {warm:.3f} | | {imported:.3f} |")
        else:
            wall = statistics.median(s["wall"] for s in ok)
            rss = statistics.median(s["rss_mb"] for s in ok)
            imported = statistics.median(s.get("import", 0.0) for s in ok)
            print(f"| {workload} | {n} | {name} | {wall:.3f} | {rss:.0f} | {imported:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

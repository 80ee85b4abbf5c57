#!/usr/bin/env python
"""What a `%%burst` cell costs over the same burst_map, in one real kernel (issue 15: "the awaited %%burst
path adds no fixed poll delay to a job's end").

One IPython kernel (jupyter_client, the local backend, 2 workers, the warm pool on); after a warm-up, the
two are timed interleaved, `--reps` times each, from the client's execute request to the kernel's idle
status: a one-item `%%burst --map` cell, the same `burst_map` call in a plain cell, and an empty cell (the
kernel's own round trip). Medians and the load are printed as a table.

    python bench/cell_overhead.py [--reps 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CELLS = {
    "%%burst --map cell, 1 item": "%%burst --map v in x --workers 2\ny = v + 1",
    "burst_map, 1 item": "_ = list(burst_map(lambda x: x + 1, [1], workers=2))",
    "empty cell (kernel round trip)": "pass",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args(argv)
    from jupyter_client.manager import start_new_kernel

    with tempfile.TemporaryDirectory(prefix="sb-cell-") as home:
        env = dict(
            os.environ,
            STARBURST_HOME=home,
            PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
        )
        manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=home)
        try:
            setup = "%load_ext starburst_jupyter\nfrom starburst_jupyter import burst_map\nx = [1]"
            client.execute_interactive(setup, timeout=60)
            times: dict[str, list[float]] = {name: [] for name in CELLS}
            for rep in range(args.reps + 2):  # two warm-up rounds
                for name, code in CELLS.items():
                    t0 = time.perf_counter()
                    reply = client.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
                    took = time.perf_counter() - t0
                    if reply["content"]["status"] != "ok":
                        raise SystemExit(f"{name}: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
                    if rep >= 2:
                        times[name].append(took)
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load {load:.2f}; medians of {args.reps}; python {sys.version.split()[0]}")
    print("| cell | median (ms) | min (ms) |")
    print("|---|---|---|")
    for name, samples in times.items():
        print(f"| {name} | {statistics.median(samples) * 1000:.1f} | {min(samples) * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

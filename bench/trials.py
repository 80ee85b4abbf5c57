"""What the side-by-side benchmarks share: each trial runs in a fresh interpreter (this same script with
`--trial ...`, its result the last line of its output, as JSON), and an optional peer is used only where it
imports."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any


def importable(module: str, extra: str | None) -> bool:
    """Whether `module` imports here, with `extra` (a folder of bench-only packages) appended to sys.path."""
    code = f"import sys; sys.path.append({extra!r}) if {extra!r} != 'None' else None; import {module}"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def run_trial(script: str, trial: list[str], path: list[str], home: str) -> dict[str, Any]:
    """`python script --trial ...` with `path` as its PYTHONPATH and `home` as STARBURST_HOME and cwd (not a
    starburst tree, so `-m` finds the tree under test); {"error": its last line} when it fails."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p), STARBURST_HOME=home)
    done = subprocess.run(
        [sys.executable, script, "--trial", *trial], env=env, capture_output=True, text=True, timeout=1200, cwd=home
    )
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:120]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def side_by_side_parser(description: str, trial: tuple[str, ...], rows: str, peers: str) -> argparse.ArgumentParser:
    """The options every side-by-side bench takes; `--trial` (internal) names one trial's fields."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--trial", nargs=len(trial), metavar=trial)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows", default=rows, help="which rows (comma-separated)")
    parser.add_argument("--tree", action="append", default=[], help="NAME=PATH: a starburst tree to run too")
    parser.add_argument("--extra-path", default=None, help=f"a folder with {peers}, appended to sys.path")
    return parser


def machine_line(start_load: float, workers: int, reps: int) -> str:
    """What a table was measured on: it is printed above it."""
    return (
        f"machine: {os.cpu_count()} cores, load {start_load:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
        f"workers {workers}; medians of {reps}; python {sys.version.split()[0]}"
    )

"""What the side-by-side benchmarks share: each trial runs in a fresh interpreter (this same script with
`--trial ...`, its result the last line of its output, as JSON), and an optional peer is used only where it
imports."""

from __future__ import annotations

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

"""The lock of the test tools (.ci/test-tools.txt): written from an environment, compared with one.

Users get the newest versions of the product's runtime dependencies, so CI tests those; nobody gets our test
tools, so they are locked and a new release of one (moto 5.2.6 denied an assumed role what its policy allows)
never stops a landing. The lock holds the test tools named below and every package only they need; a package
the product or its Jupyter faces need too (boto3, which moto needs; jinja2, which moto and JupyterLab need)
is runtime and floats.

    python .ci/test_tools.py lock   # in a venv with everything installed: print the lock for that venv
    python .ci/test_tools.py diff   # in a venv: what differs from .ci/test-tools.txt (a note for the refresh)

Run with the venv's python (it reads that environment's installed metadata).
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

LOCK = Path(__file__).resolve().parent / "test-tools.txt"

#: The test tools: what runs the tests, stands in for AWS or drives the browser, and the linters.
TEST_TOOLS = [
    "moto[server]", "playwright", "pytest", "pytest-timeout", "nbclient", "hypothesis", "ruff", "mypy", "build",
    "import-linter",
]  # fmt: skip
#: What users run: the product's dependencies and the Jupyter pieces its faces live in (these float).
RUNTIME = [
    "starburst-jupyter", "numpy", "ipykernel", "docker", "jupyterlab", "notebook", "ipywidgets", "nbformat",
    "jupyter-server",
]  # fmt: skip


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> dict[str, str]:
    """name -> installed version of the roots and everything they require here (markers and extras applied)."""
    seen: dict[str, str] = {}
    todo = [(Requirement(root), "") for root in roots]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = norm(requirement.name)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        extras = set(requirement.extras)
        key = name + "[" + ",".join(sorted(extras)) + "]"
        if key in seen:
            continue
        seen[key] = dist.version
        for text in dist.requires or []:
            required = Requirement(text)
            if required.marker is None:
                todo.append((required, ""))
            else:
                for wanted in extras or {""}:
                    if required.marker.evaluate({"extra": wanted}):
                        todo.append((required, wanted))
                        break
    return {key.split("[", 1)[0]: version for key, version in seen.items()}


def lock() -> dict[str, str]:
    runtime = closure(RUNTIME)
    return {name: v for name, v in sorted(closure(TEST_TOOLS).items()) if name not in runtime}


def read_lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[norm(name)] = version
    return pins


def main(mode: str) -> None:
    if mode == "lock":
        print("# The test tools and what only they need, locked (.ci/test_tools.py; refresh: .ci/refresh-test-tools).")
        print("# Runtime dependencies are not here: they float to the newest allowed (see .ci/README.md).")
        for name, version in lock().items():
            print(f"{name}=={version}")
    elif mode == "diff":
        old, new = read_lock(), lock()
        changes = [f"{n}: {old.get(n, '-')} -> {new.get(n, '-')}" for n in sorted(old.keys() | new.keys())
                   if old.get(n) != new.get(n)]  # fmt: skip
        print("\n".join(changes) if changes else "the test tools resolved to the locked versions")
    else:
        sys.exit(f"usage: {sys.argv[0]} lock|diff")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")

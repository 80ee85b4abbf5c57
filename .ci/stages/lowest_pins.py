"""Check .ci/lowest-constraints.txt against pyproject.toml and the environment.

`pyproject` mode: every dependency and `test` dependency of pyproject.toml is pinned to its declared
lower bound (`>=X` -> `==X`, trailing `.0`s aside; those with an environment marker too, such as
`tomli; python_version < '3.11'`), and any other pin is the lower bound some other extra declares
(jupyterlab, from `browser`). `installed` mode: the running environment has exactly the pinned
versions, except pins whose requirements' markers all exclude this environment. Exits non-zero
naming every mismatch.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib
try:
    from packaging.requirements import Requirement
except ImportError:  # the host Python, before the venv has packaging: pip's copy
    from pip._vendor.packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / ".ci" / "lowest-constraints.txt"


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def pins() -> dict[str, str]:
    out = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line).groups()
            out[norm(name)] = version
    return out


def lower_bounds(requirements: list[str]) -> dict[str, tuple[str, bool]]:
    """name -> (lower bound, whether the requirement applies to this environment)."""
    out = {}
    for text in requirements:
        requirement = Requirement(text)
        bounds = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(bounds) != 1:
            sys.exit(f"pyproject.toml: {text!r} has no single `>=` lower bound; update .ci/stages/lowest_pins.py")
        applies = requirement.marker is None or requirement.marker.evaluate({"extra": ""})
        name = norm(requirement.name)
        _, applied = out.get(name, (None, False))
        out[name] = (bounds[0], applies or applied)
    return out


def main(mode: str) -> None:
    pinned, problems = pins(), []
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    bounds = lower_bounds(project["dependencies"] + extras["test"])
    others = {extra: lower_bounds(reqs) for extra, reqs in extras.items() if extra != "test"}
    if mode == "pyproject":
        for name, (bound, _) in bounds.items():
            if name not in pinned:
                problems.append(f"{name}>={bound} in pyproject.toml has no pin")
            elif release(pinned[name]) != release(bound):
                problems.append(f"{name}: pyproject.toml says >={bound}, pinned =={pinned[name]}")
        for name, version in pinned.items():
            if name in bounds:
                continue
            declared = [(extra, deps[name][0]) for extra, deps in others.items() if name in deps]
            if not any(release(bound) == release(version) for _, bound in declared):
                problems.append(
                    f"{name}=={version} is pinned but pyproject.toml declares "
                    + (", ".join(f"{name}>={b} in [{e}]" for e, b in declared) or "no such dependency")
                )
    else:
        from importlib.metadata import PackageNotFoundError, version

        for name, want in pinned.items():
            if name in bounds and not bounds[name][1]:
                continue  # e.g. tomli on Python 3.11+
            try:
                got = version(name)
            except PackageNotFoundError:
                got = "not installed"
            if got != want:
                problems.append(f"{name}: pinned {want}, installed {got}")
    if problems:
        sys.exit(f"{CONSTRAINTS.relative_to(ROOT)} ({mode}):\n  " + "\n  ".join(problems))
    print(f"{CONSTRAINTS.relative_to(ROOT)}: the pins match ({mode})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "pyproject")

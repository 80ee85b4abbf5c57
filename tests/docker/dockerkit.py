"""Helpers the docker tests import (a module name of their own: tests/conftest.py is `conftest` too)."""

from __future__ import annotations

from pathlib import Path

MYLIB_PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = "mylib"
version = "0.1.0"

[tool.hatch.build.targets.wheel]
packages = ["mylib"]
"""


def make_mylib(root: Path, marker: str = "v1") -> Path:
    """A tiny local project (what a user keeps next to a notebook and installs with pip install -e)."""
    project = root / "mylib"
    (project / "mylib").mkdir(parents=True, exist_ok=True)
    (project / "pyproject.toml").write_text(MYLIB_PYPROJECT)
    (project / "mylib" / "__init__.py").write_text(f"MARKER = {marker!r}\n\ndef triple(x):\n    return 3 * x\n")
    return project


def python_in_image(client, image: str, code: str) -> str:
    out = client.containers.run(image, ["python", "-c", code], remove=True, network_mode="none")
    return out.decode().strip()

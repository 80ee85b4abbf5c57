"""Shared fixtures: an isolated STARBURST_HOME per test and a real IPython shell with the extension."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def starburst_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own $STARBURST_HOME, so nothing touches ~/.starburst."""
    home = tmp_path / "starburst-home"
    home.mkdir()
    monkeypatch.setenv("STARBURST_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def _ipython_shell(tmp_path_factory: pytest.TempPathFactory):
    """One IPython shell for the session (IPython keeps a singleton); the extension is loaded once."""
    ipython_dir = tmp_path_factory.mktemp("ipython-dir")
    old = os.environ.get("IPYTHONDIR")
    os.environ["IPYTHONDIR"] = str(ipython_dir)
    try:
        from IPython.testing import globalipapp

        globalipapp.start_ipython()  # returns None if it already ran in this process
        shell = globalipapp.get_ipython()
        shell.run_line_magic("load_ext", "starburst_jupyter")
        yield shell
    finally:
        if old is None:
            os.environ.pop("IPYTHONDIR", None)
        else:
            os.environ["IPYTHONDIR"] = old


@pytest.fixture
def ip(_ipython_shell):
    """The shell with a fresh, empty user namespace (the %%burst magics stay registered)."""
    _ipython_shell.reset(new_session=False)
    assert "burst" in _ipython_shell.magics_manager.magics["cell"]
    yield _ipython_shell
    _ipython_shell.reset(new_session=False)

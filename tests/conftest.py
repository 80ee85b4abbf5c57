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


@pytest.fixture
def umask_022():
    """Files made under the umask most machines have (0644 unless the code says otherwise)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


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


# ----- AWS stand-in (moto server mode) --------------------------------------------------------
@pytest.fixture(scope="session")
def moto_server():
    """moto's ThreadedMotoServer on 127.0.0.1 (a free port), one for the session.

    It changes no environment by itself: use `moto_env` (or `s3_bucket`) in a test to point boto3,
    in the test and in every subprocess it starts, at this server.
    """
    from moto_server import MotoServer

    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto_env(moto_server, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """This test (and the workers it spawns, which inherit os.environ) talks to moto: endpoint,
    dummy credentials, region; ~/.aws and any real profile are out of reach. Restored afterwards."""
    for name in moto_server.UNSET:
        monkeypatch.delenv(name, raising=False)
    nowhere = tmp_path_factory.mktemp("no-aws-config")
    env = {
        **moto_server.env,
        "AWS_CONFIG_FILE": str(nowhere / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(nowhere / "credentials"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_bucket(moto_server, moto_env) -> str:
    """A fresh, empty bucket in moto; emptied and deleted after the test."""
    from moto_server import new_bucket_name

    name = new_bucket_name()
    client = moto_server.client("s3")
    client.create_bucket(Bucket=name)
    yield name
    from starburst_jupyter.backends.fargate.setup import empty_and_delete_bucket

    empty_and_delete_bucket(client, name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The stand-in canary first: when moto breaks, its one line is the first thing the run says."""
    items.sort(key=lambda item: item.nodeid.partition("::")[0] != "tests/test_standin_canary.py")


# The Docker engine and worker image fixtures, shared by tests/docker and tests/test_contract.py.
pytest_plugins = ["backends_fixture"]

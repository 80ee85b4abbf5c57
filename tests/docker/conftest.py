"""The docker marker and a local registry for the docker/envimage tests.

The Docker engine, the base image and the worker image (`dockerd`, `docker_client`, `base_image`,
`worker_env`, `worker_config`, `worker_image`) live in tests/backends_fixture.py, a plugin of
tests/conftest.py, so the launcher contract suite (tests/test_contract.py) shares them.

* `registry`: Debian's docker-registry on 127.0.0.1 (stands in for ECR's registry endpoint).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from backends_fixture import _stop_pid, _unavailable, _wait_for


def pytest_configure(config):
    config.addinivalue_line("markers", "docker: needs a Docker engine (started by tests/docker/conftest.py)")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """Debian's docker-registry on 127.0.0.1:<free port>; yields host:port."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(binary).exists():
        _unavailable("docker-registry is not installed")
    folder = tmp_path_factory.mktemp("registry")
    port = _free_port()
    (folder / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
        "  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:%d\n" % (folder / "data", port)
    )
    log = folder / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "serve", str(folder / "config.yml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).status == 200
        except OSError:
            return False

    try:
        _wait_for(up, 30, "docker-registry", proc, log)
        yield {"host": f"127.0.0.1:{port}", "log": log, "pid": proc.pid}
    finally:
        _stop_pid(proc)

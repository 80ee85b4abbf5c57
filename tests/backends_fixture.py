"""The Docker engine, base image and worker image, shared by tests/docker and the launcher contract suite.

Moved here from tests/docker/conftest.py (which keeps the docker marker and the registry) so that
tests outside tests/docker (tests/test_contract.py) use the same session fixtures: one dockerd and
one worker image per session, not two. Registered as a plugin by tests/conftest.py.

* `dockerd`: started by this session on a private socket (never a system daemon's), stopped by its
  PID afterwards. Its data root persists under /var/lib/starburst-test-docker when no other test
  session holds it, so the base image and built layers are reused between runs.
* `base_image`: there is no Docker Hub here. Debian bookworm (debootstrap --variant=minbase) with
  Debian's python3 (3.11, this kernel's X.Y), imported with `docker import`; the root file system
  is cached as a tarball under ~/.cache/starburst-tests keyed by the recipe's hash.

Without docker/dockerd/debootstrap (run .ci/install.d/30-docker.sh) these tests skip; in CI (CI=true)
they fail instead, so a missing engine can never pass silently.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "docker"))
from dockerkit import make_mylib

DATA_ROOT = Path("/var/lib/starburst-test-docker")
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv")  # python3-venv: ensurepip, so the image can make its virtualenv
BASE_RECIPE = 2  # bump when the root file system recipe below changes
BASE_CHANGES = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["python3"]')
MIRROR = "http://deb.debian.org/debian"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "starburst-tests"


def pytest_configure(config):
    config.addinivalue_line("markers", "docker: needs a Docker engine (tests/backends_fixture.py starts one)")


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it with .ci/install.d/30-docker.sh)")
    pytest.skip(reason)


def _wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up in {timeout:.0f} s\n{tail}")


def _stop_pid(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """End a process this session started, by its PID: TERM, then KILL after the grace period."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory):
    """DOCKER_HOST of a dockerd of our own (host networking only: no bridge, no iptables)."""
    for tool in ("dockerd", "docker"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed")
    if os.geteuid() != 0:
        _unavailable("starting dockerd needs root")
    pytest.importorskip("docker")
    DATA_ROOT.parent.mkdir(parents=True, exist_ok=True)
    lock = open(f"{DATA_ROOT}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        data_root, shared = DATA_ROOT, True
    except BlockingIOError:  # another test session uses the persistent root: take a private one
        data_root, shared = Path(tempfile.mkdtemp(prefix="starburst-docker-", dir="/var/tmp")), False
    run = Path(tempfile.mkdtemp(prefix="sbd-", dir="/tmp"))  # short: a unix socket path is at most 107 bytes
    sock, log = run / "docker.sock", tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    argv = [
        "dockerd",
        "--host",
        f"unix://{sock}",
        "--data-root",
        str(data_root),
        "--exec-root",
        str(run / "exec"),
        "--pidfile",
        str(run / "docker.pid"),
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--log-level=warn",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    host = f"unix://{sock}"
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    try:
        import docker

        def up() -> bool:
            try:
                return docker.DockerClient(base_url=host, timeout=5).ping()
            except Exception:
                return False

        _wait_for(up, 60, "dockerd", proc, log)
        yield {"host": host, "log": log, "data_root": data_root, "pid": proc.pid}
    finally:
        if old is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = old
        try:
            import docker

            client = docker.DockerClient(base_url=host, timeout=30)
            for container in client.containers.list(all=True, filters={"label": "starburst.managed=true"}):
                container.remove(force=True)
        except Exception:  # the daemon may be gone already
            pass
        _stop_pid(proc)
        shutil.rmtree(run, ignore_errors=True)
        if not shared:
            shutil.rmtree(data_root, ignore_errors=True)
        lock.close()


@pytest.fixture(scope="session")
def docker_client(dockerd):
    import docker

    return docker.DockerClient(base_url=dockerd["host"], timeout=600)


def _base_key(*extra: str) -> str:
    recipe = f"{BASE_RECIPE}|{BASE_SUITE}|{','.join(BASE_PACKAGES)}|minbase|{os.uname().machine}|{'|'.join(extra)}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def _make_rootfs_tarball(target: Path) -> None:
    """debootstrap a minimal bookworm with python3 into a scratch folder, slim it, tar it."""
    if shutil.which("debootstrap") is None:
        _unavailable("debootstrap is not installed")
    root = Path(tempfile.mkdtemp(prefix="starburst-rootfs-", dir="/var/tmp"))
    try:
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", BASE_SUITE, str(root), MIRROR],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=1200,
        )
        for junk in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
            "usr/share/info",
            "var/log",
        ):
            shutil.rmtree(root / junk, ignore_errors=True)
            (root / junk).mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], check=True)
        os.replace(partial, target)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """A pinned local base image (Debian's python3), imported from the cached root file system."""
    import docker

    key = _base_key()
    ref = f"starburst-test-base:{BASE_SUITE}-{_base_key(*BASE_CHANGES)}"
    try:
        docker_client.images.get(ref)
        return ref
    except docker.errors.ImageNotFound:
        pass
    tarball = CACHE / f"base-{BASE_SUITE}-{key}.tar"
    if not tarball.exists():
        _make_rootfs_tarball(tarball)
    repo, tag = ref.split(":")
    with open(tarball, "rb") as data:
        docker_client.api.import_image_from_data(data, repository=repo, tag=tag, changes=list(BASE_CHANGES))
    docker_client.images.get(ref)
    return ref


# ----- the small worker environment every docker test uses ---------------------------------------


@pytest.fixture(scope="session")
def worker_env(tmp_path_factory) -> dict:
    """A requirements file naming a local editable project; the worker (this checkout of
    starburst-jupyter, installed editable) and cloudpickle are added by envimage itself."""
    root = tmp_path_factory.mktemp("worker-env")
    make_mylib(root)
    requirements = root / "requirements.txt"
    requirements.write_text("# the notebook's own helpers\n-e ./mylib\n")
    return {"root": root, "requirements": requirements}


@pytest.fixture(scope="session")
def worker_config(base_image, worker_env):
    from starburst_jupyter.core.config import Config

    return Config().with_values(
        {
            "base_image": base_image,
            "requirements": str(worker_env["requirements"]),
            "ecr_repository": "starburst-test-worker",
        }
    )


@pytest.fixture(scope="session")
def worker_image(docker_client, worker_config) -> dict:
    """This environment's image on the engine (built when missing): ref, events and build facts."""
    from starburst_jupyter import envimage

    events: list = []
    started = time.monotonic()
    env = envimage.capture(worker_config)  # once: other work in this checkout must not move the tag mid-session
    ref = envimage.ensure_local_image(worker_config, on_progress=events.append, client=docker_client, env=env)
    facts = dict(envimage.last_result)
    facts["ensure_seconds"] = time.monotonic() - started
    return {"ref": ref, "env": env, "events": events, "facts": facts}

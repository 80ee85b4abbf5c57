"""Build context (wheels made on the host + the Dockerfile) and the build through the Docker SDK,
reported as ImageBuildProgress events so a first build (minutes) never looks frozen."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starburst_jupyter.core.events import ImageBuildProgress
from starburst_jupyter.envimage.errors import BurstImageError
from starburst_jupyter.envimage.snapshot import SELF, EnvSpec, canonical, host_arch
from starburst_jupyter.envimage.template import render

Progress = Callable[[ImageBuildProgress], None]

#: Headroom asked for beyond what the context and the image will take.
DISK_MARGIN = 1024**3
_STEP = re.compile(r"^Step (\d+)/(\d+) :")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MANYLINUX = (
    "manylinux2014",
    "manylinux_2_17",
    "manylinux_2_24",
    "manylinux_2_27",
    "manylinux_2_28",
    "manylinux_2_31",
    "manylinux_2_34",
    "manylinux_2_35",
    "manylinux_2_36",
)


class Reporter:
    """Sends progress events to a callback (never raises into the build) and keeps the last lines."""

    def __init__(self, on_progress: Progress | None, job_id: str = "", image: str = ""):
        self.on_progress, self.job_id, self.image = on_progress, job_id, image
        self.tail: list[str] = []

    def __call__(self, phase: str, message: str, current: int | None = None, total: int | None = None) -> None:
        message = _ANSI.sub("", message).rstrip()
        if message:
            self.tail = (self.tail + [message])[-30:]
        if self.on_progress is not None:
            try:
                self.on_progress(
                    ImageBuildProgress(
                        self.job_id, phase=phase, message=message, current=current, total=total, image=self.image
                    )
                )
            except Exception:  # a broken display never breaks a build
                pass


# ----- disk -----------------------------------------------------------------------------------------


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_disk(paths: list[Path | str], need: int, what: str) -> None:
    """Refuse before starting when a filesystem the build writes to has less than `need` bytes free."""
    seen: set[int] = set()
    for path in paths:
        path = Path(path)
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            device = path.stat().st_dev
            free = shutil.disk_usage(path).free
        except OSError:
            continue
        if device in seen:
            continue
        seen.add(device)
        if free < need:
            raise BurstImageError(
                f"Not enough free disk space for {what}: it needs about {need / 1024**3:.1f} GB free at {path}, "
                f"which has {free / 1024**3:.1f} GB. Free some space (e.g. `docker image prune`) and try again."
            )


# ----- context ----------------------------------------------------------------------------------------


def _pip(args: list[str], report: Reporter, what: str) -> None:
    """Run the kernel's pip (with this machine's pip settings) and stream its output as progress."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--timeout", "60", *args]
    report("context", f"{what}: pip {' '.join(args[:1])} ...")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, bufsize=1
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        report("context", line)
    if proc.wait() != 0:
        tail = "\n".join(report.tail[-12:])
        raise BurstImageError(f"Could not gather the packages for the worker image ({what}); pip said:\n{tail}")


def _platform_args(env: EnvSpec) -> list[str]:
    """pip download flags for another architecture's wheels (binary only: nothing can be compiled for it)."""
    machine = {"x86_64": "x86_64", "arm64": "aarch64"}[env.arch]
    args = [
        "--only-binary=:all:",
        "--python-version",
        env.python,
        "--implementation",
        "cp",
        "--abi",
        "cp" + env.python.replace(".", ""),
    ]
    for tag in _MANYLINUX:
        args += ["--platform", f"{tag}_{machine}"]
    return args


def wheel_name(filename: str) -> tuple[str, str]:
    """('cloudpickle', '3.1.1') from 'cloudpickle-3.1.1-py3-none-any.whl'."""
    parts = filename[:-4].split("-")
    return canonical(parts[0]), parts[1]


def assemble_context(env: EnvSpec, dest: Path, report: Reporter) -> dict[str, str]:
    """Fill dest with wheels/ (every distribution the image installs), env.json and the Dockerfile.

    Returns {name: version} of what the image holds."""
    wheels, local_dir = dest / "wheels", dest / "local"
    wheels.mkdir(parents=True, exist_ok=True)
    local_dir.mkdir(exist_ok=True)
    same_arch = env.arch == host_arch()
    # 1. Local projects (editable or from a folder/file): built into wheels here, never dropped.
    self_wheels: list[Path] = []
    user_local: list[Path] = []
    for project in env.local:
        before = set(local_dir.iterdir())
        if project.path.endswith(".whl"):
            shutil.copy2(project.path, local_dir)
        else:
            _pip(["wheel", "--no-deps", "-w", str(local_dir), project.path], report, f"building {project.name}")
        made = sorted(set(local_dir.iterdir()) - before)
        if not made:
            raise BurstImageError(f"Building {project.name} from {project.path} made no wheel.")
        (self_wheels if project.name == SELF else user_local).extend(made)
    # 2. Everything else from the package index (this machine's pip settings), as wheels for the image.
    #    The kernel's set is complete and pinned: nothing to resolve. A requirements file is resolved with
    #    its dependencies (the user's local projects' too); the worker itself comes without its notebook-side
    #    dependencies (IPython, widgets), which workers never import.
    is_self = [canonical(re.split(r"[\s=@]", pin, maxsplit=1)[0]) == SELF for pin in env.pins]
    if env.source == "kernel":
        batches = [(list(env.pins), True)]
    else:
        batches = [
            ([p for p, s in zip(env.pins, is_self) if s], True),
            ([*env.requirements, *(p for p, s in zip(env.pins, is_self) if not s), *map(str, user_local)], False),
        ]
        user_local = []
    for reqs, no_deps in batches:
        if not reqs:
            continue
        req_file = dest / "requirements.in"
        req_file.write_text("\n".join(reqs) + "\n")
        extra = ["--no-deps"] if no_deps else []
        if same_arch:
            _pip(["wheel", *extra, "-w", str(wheels), "-r", str(req_file)], report, "gathering packages")
        else:
            _pip(
                ["download", *extra, *_platform_args(env), "-d", str(wheels), "-r", str(req_file)],
                report,
                f"gathering {env.arch} packages",
            )
        req_file.unlink()
    for path in self_wheels + user_local:
        shutil.move(str(path), wheels / path.name)
    shutil.rmtree(local_dir, ignore_errors=True)
    stray = [p for p in wheels.iterdir() if not p.name.endswith(".whl")]
    if stray:
        raise BurstImageError(f"pip left files that are not wheels in the build context: {[p.name for p in stray]}")
    packages = dict(sorted(wheel_name(p.name) for p in wheels.iterdir()))
    (dest / "env.json").write_text(json.dumps({**image_env(env, packages)}, indent=1, sort_keys=True))
    (dest / "Dockerfile").write_text(render(base_image=env.base_image, python=env.python, env_hash=env.hash))
    return packages


def image_env(env: EnvSpec, packages: dict[str, str]) -> dict[str, Any]:
    """What the image records about itself (a label and /opt/starburst/env.json): checked for skew."""
    return {
        "hash": env.hash,
        "python": env.python,
        "arch": env.arch,
        "base_image": env.base_image,
        "source": env.source,
        "packages": packages,
    }


# ----- build ------------------------------------------------------------------------------------------

LABEL_ENV = "org.starburst.env"
LABEL_HASH = "org.starburst.env-hash"


def build(
    env: EnvSpec,
    ref: str,
    *,
    client: Any,
    on_progress: Progress | None = None,
    force: bool = False,
    job_id: str = "",
    work_dir: Path | None = None,
) -> dict[str, Any]:
    """Build the worker image `ref` for env through the Docker SDK. Returns facts about the build."""
    report = Reporter(on_progress, job_id, ref)
    started = time.monotonic()
    docker_root = Path(_docker_root(client) or "/var/lib/docker")
    work_dir = Path(work_dir or tempfile.gettempdir())
    report("check", "checking free disk space")
    check_disk([work_dir, docker_root], DISK_MARGIN, "building the worker image")
    ctx = Path(tempfile.mkdtemp(prefix="starburst-image-", dir=work_dir))
    try:
        packages = assemble_context(env, ctx, report)
        context_bytes = _size(ctx / "wheels")
        # The image holds the unpacked wheels (about 3x) next to the base; the context is sent once more.
        check_disk([docker_root], 4 * context_bytes + DISK_MARGIN, "building the worker image")
        report(
            "build",
            f"building {ref} from {env.base_image} ({len(packages)} packages, "
            f"{context_bytes / 1024**2:.1f} MB of wheels)",
        )
        labels = {LABEL_HASH: env.hash, LABEL_ENV: json.dumps(image_env(env, packages), sort_keys=True)}
        image_id = None
        stream = client.api.build(
            path=str(ctx),
            tag=ref,
            rm=True,
            forcerm=True,
            decode=True,
            pull=False,
            nocache=force,
            network_mode="none",
            platform=env.platform,
            labels=labels,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                tail = "\n".join(report.tail[-10:])
                raise BurstImageError(f"Building the worker image {ref} failed: {detail.strip()}\n{tail}")
            text = chunk.get("stream") or chunk.get("status") or ""
            for line in text.splitlines():
                step = _STEP.match(line)
                report("build", line, *(map(int, step.groups()) if step else (None, None)))
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    image = client.images.get(ref)
    seconds = time.monotonic() - started
    report("done", f"built {ref} in {seconds:.0f} s ({image.attrs.get('Size', 0) / 1024**2:.0f} MB)")
    return {
        "image": ref,
        "id": image_id or image.id,
        "seconds": seconds,
        "size": image.attrs.get("Size"),
        "packages": packages,
    }


def _docker_root(client: Any) -> str | None:
    try:
        root = client.info().get("DockerRootDir")
    except Exception:
        return None
    return root if root and os.path.isdir(root) else None

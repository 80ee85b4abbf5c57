"""What the worker image must hold, and its content hash (the image tag).

Two sources: the kernel's own environment (every installed distribution pinned; editable and
local-path installs become local projects that are built into wheels for the image, never
dropped), or a user's requirements file (plus the worker itself). The same environment always
gives the same hash: the manifest is canonical JSON and local projects are hashed by content.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from starburst_jupyter.envimage.errors import BurstImageError
from starburst_jupyter.envimage.template import TEMPLATE_DIGEST

#: Bumped when the Dockerfile template or the way an image is assembled changes (part of the hash).
FORMAT = 1
#: The distribution of this project: always in the image (the worker entry point lives there).
SELF = "starburst-jupyter"
#: Not pinned into the image: the image's virtualenv brings its own installer.
SKIP = frozenset({"pip"})
#: Folders never part of a local project's content hash.
_JUNK_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "__pycache__",
        "node_modules",
        "build",
        "dist",
        ".tox",
        ".nox",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
        "artifacts",
        ".eggs",
    }
)
_PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def platform_for(arch: str) -> str:
    """Docker's --platform for a Fargate architecture (config `arch`: x86_64 or arm64)."""
    try:
        return _PLATFORMS[arch]
    except KeyError:
        raise BurstImageError(f"arch {arch!r} is not x86_64 or arm64") from None


def host_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def python_xy() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def default_base_image() -> str:
    """The official slim image of exactly this kernel's Python (a pinned version, never :latest)."""
    v = sys.version_info
    return f"python:{v.major}.{v.minor}.{v.micro}-slim-bookworm"


def check_base_image(ref: str) -> str:
    """A base image must be pinned: by digest or an exact tag, never :latest or no tag."""
    ref = ref.strip()
    if "@sha256:" in ref:
        return ref
    last = ref.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    if not tag or tag == "latest":
        raise BurstImageError(
            f"base_image {ref!r} is not pinned: give an exact version tag (e.g. python:3.11.7-slim-bookworm) or a "
            f"digest (name@sha256:...), never :latest, so the same environment always builds the same image."
        )
    return ref


@dataclass(frozen=True)
class LocalProject:
    """A distribution installed from a folder or a file on this machine (editable or not)."""

    name: str
    version: str
    path: str  # a project folder, or a wheel/sdist file
    editable: bool
    digest: str  # content hash of the folder (or file)


@dataclass(frozen=True)
class EnvSpec:
    python: str  # "3.11": what the image's Python must be
    arch: str  # x86_64 | arm64
    base_image: str
    pins: tuple[str, ...]  # "name==version" from an index (or "name @ url"), sorted
    local: tuple[LocalProject, ...]  # built into wheels on the host, installed in the image
    requirements: tuple[str, ...] = ()  # the lines of a requirements file (resolved with dependencies)
    source: str = "kernel"  # "kernel" or "requirements:<path>"
    skipped: tuple[str, ...] = field(default=(), compare=False)  # told to the user, never silent

    @property
    def platform(self) -> str:
        return platform_for(self.arch)

    def manifest(self) -> dict[str, Any]:
        """Everything that decides the image's content, in canonical form (paths are not content)."""
        return {
            "format": FORMAT,
            "template": TEMPLATE_DIGEST,
            "python": self.python,
            "arch": self.arch,
            "base_image": self.base_image,
            "pins": list(self.pins),
            "requirements": list(self.requirements),
            "local": [{"name": p.name, "version": p.version, "digest": p.digest} for p in self.local],
        }

    @property
    def hash(self) -> str:
        text = json.dumps(self.manifest(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def tag(self) -> str:
        """The image tag: the content hash (shortened; 128 bits)."""
        return self.hash[:32]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "hash": self.hash, "tag": self.tag}


# ----- local projects -----------------------------------------------------------------------------


def _direct_url(dist: md.Distribution) -> dict[str, Any] | None:
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _file_path(url: str) -> str | None:
    parsed = urlparse(url)
    return unquote(parsed.path) if parsed.scheme == "file" else None


def tree_digest(root: Path) -> str:
    """Content hash of a project folder: every file git would see (or every file outside junk folders)."""
    root = root.resolve()
    files: list[str] | None = None
    if (root / ".git").exists() or _inside_git(root):
        try:
            out = subprocess.run(
                ["git", "-C", str(root), "ls-files", "-z", "-c", "-o", "--exclude-standard"],
                capture_output=True,
                check=True,
                timeout=60,
            ).stdout
            files = [f for f in out.decode().split("\0") if f]
        except (OSError, subprocess.SubprocessError):
            files = None
    if files is None:
        files = []
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in _JUNK_DIRS and not d.endswith(".egg-info"))
            rel = os.path.relpath(folder, root)
            files.extend(os.path.normpath(os.path.join(rel, n)) for n in names)
    digest = hashlib.sha256()
    for rel in sorted(set(files)):
        parts = Path(rel).parts
        if any(p in _JUNK_DIRS or p.endswith(".egg-info") for p in parts) or rel.endswith((".pyc", ".pyo")):
            continue
        path = root / rel
        if not path.is_file():  # deleted but still tracked, or a socket
            continue
        digest.update(rel.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _inside_git(root: Path) -> bool:
    return any((parent / ".git").exists() for parent in root.parents)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _local_project(name: str, version: str, url: dict[str, Any]) -> LocalProject | None:
    path = _file_path(url.get("url", ""))
    if path is None:
        return None
    target = Path(path)
    if not target.exists():
        raise BurstImageError(
            f"{name} {version} was installed from {path}, which no longer exists, so it cannot be put in the worker "
            f"image. Reinstall it, or give a requirements file (config `requirements`) that names it another way."
        )
    editable = bool(url.get("dir_info", {}).get("editable"))
    digest = tree_digest(target) if target.is_dir() else file_digest(target)
    return LocalProject(name, version, str(target.resolve()), editable, digest)


# ----- the kernel's environment -------------------------------------------------------------------


def installed_distributions() -> dict[str, md.Distribution]:
    """Canonical name -> distribution, first on sys.path wins (as import does)."""
    found: dict[str, md.Distribution] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name and canonical(name) not in found:
            found[canonical(name)] = dist
    return found


def kernel_versions() -> dict[str, str]:
    """Canonical name -> version of every distribution this kernel sees."""
    return {name: dist.version for name, dist in installed_distributions().items()}


def _pin_or_local(name: str, dist: md.Distribution) -> tuple[str | None, LocalProject | None]:
    url = _direct_url(dist)
    if url is None:
        return f"{name}=={dist.version}", None
    if "vcs_info" in url:
        vcs = url["vcs_info"]
        return f"{name} @ {vcs['vcs']}+{url['url']}@{vcs.get('commit_id', '')}", None
    local = _local_project(name, dist.version, url)
    if local is not None:
        return None, local
    return f"{name} @ {url['url']}", None  # an archive from a URL


def _self_entry(dists: dict[str, md.Distribution]) -> tuple[str | None, LocalProject | None]:
    dist = dists.get(SELF)
    if dist is None:  # running from a source tree that is not installed: package the tree
        root = Path(__file__).resolve().parents[2]
        if not (root / "pyproject.toml").exists():
            raise BurstImageError(
                "starburst-jupyter is not installed as a distribution and its source tree has no "
                "pyproject.toml, so the worker cannot be put in an image. pip install it first."
            )
        from starburst_jupyter import __version__

        return None, LocalProject(SELF, __version__, str(root), True, tree_digest(root))
    return _pin_or_local(SELF, dist)


def capture_kernel(*, arch: str = "x86_64", base_image: str | None = None) -> EnvSpec:
    """The kernel's environment: its Python X.Y and every installed distribution, pinned."""
    dists = installed_distributions()
    pins: list[str] = []
    local: list[LocalProject] = []
    skipped: list[str] = []
    for name in sorted(dists):
        if name in SKIP:
            skipped.append(f"{name} (the image's virtualenv has its own)")
            continue
        pin, project = _self_entry(dists) if name == SELF else _pin_or_local(name, dists[name])
        if pin:
            pins.append(pin)
        if project:
            local.append(project)
    if SELF not in dists:
        pin, project = _self_entry(dists)
        local.extend([project] if project else [])
        pins.extend([pin] if pin else [])
    return EnvSpec(
        python_xy(),
        arch,
        check_base_image(base_image or default_base_image()),
        tuple(sorted(pins)),
        tuple(sorted(local, key=lambda p: p.name)),
        (),
        "kernel",
        tuple(skipped),
    )


# ----- a requirements file ------------------------------------------------------------------------

_LOCAL_PREFIXES = (".", "/", "~", "file:")


def _read_lines(path: Path, seen: set[Path]) -> list[str]:
    """Logical lines of a requirements file: comments and blanks dropped, continuations joined, -r followed."""
    path = path.resolve()
    if path in seen:
        return []
    seen.add(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise BurstImageError(f"Cannot read the requirements file {path}: {exc}") from None
    text = re.sub(r"\\\n", " ", text)
    lines: list[str] = []
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        flag, _, rest = line.partition(" ")
        if flag in ("-r", "--requirement"):
            lines.extend(_read_lines((path.parent / rest.strip()).expanduser(), seen))
        else:
            lines.append(" ".join(line.split()))
    return lines


def _local_from_line(line: str, base: Path) -> LocalProject | None:
    """`-e ./mylib`, `./mylib`, `/abs/pkg.whl` or `file:///...`: a project on this machine."""
    editable = False
    flag, _, rest = line.partition(" ")
    if flag in ("-e", "--editable"):
        editable, line = True, rest.strip()
    if not line.startswith(_LOCAL_PREFIXES):
        if editable:
            raise BurstImageError(f"Requirement {line!r}: only local folders can be editable in a worker image.")
        return None
    target = Path(_file_path(line) or os.path.expanduser(line))
    target = target if target.is_absolute() else base / target
    if not target.exists():
        raise BurstImageError(f"The requirements file names {line!r}, but {target} does not exist.")
    target = target.resolve()
    name = target.name.split("-")[0] if target.is_file() else target.name
    digest = tree_digest(target) if target.is_dir() else file_digest(target)
    return LocalProject(canonical(name), "", str(target), editable, digest)


def capture_requirements(path: str | os.PathLike, *, arch: str = "x86_64", base_image: str | None = None) -> EnvSpec:
    """A user's requirements file (resolved with its dependencies), plus the worker: this kernel's
    starburst-jupyter (without its notebook-side dependencies) and its cloudpickle version, unless named."""
    path = Path(path).expanduser()
    lines = _read_lines(path, set())
    requirements: list[str] = []
    local: list[LocalProject] = []
    for line in lines:
        project = _local_from_line(line, path.resolve().parent)
        if project is not None:
            local.append(project)
        elif line.startswith("-") and line.split()[0] not in (
            "--index-url",
            "-i",
            "--extra-index-url",
            "--find-links",
            "-f",
            "--pre",
            "--prefer-binary",
            "--only-binary",
            "--no-binary",
        ):
            raise BurstImageError(f"Requirements line {line!r} is not supported in a worker image file.")
        else:
            requirements.append(line)
    named = {canonical(re.split(r"[\s<>=!~;\[@]", r, maxsplit=1)[0]) for r in requirements if not r.startswith("-")}
    named |= {p.name for p in local}
    dists = installed_distributions()
    pins: list[str] = []
    if SELF not in named:
        pin, project = _self_entry(dists)
        pins.extend([pin] if pin else [])
        local.extend([project] if project else [])
    if "cloudpickle" not in named:
        pins.append(f"cloudpickle=={md.version('cloudpickle')}")
    return EnvSpec(
        python_xy(),
        arch,
        check_base_image(base_image or default_base_image()),
        tuple(sorted(pins)),
        tuple(sorted(local, key=lambda p: p.name)),
        tuple(requirements),
        f"requirements:{path.resolve()}",
    )


def capture(config: Any) -> EnvSpec:
    """The environment a config asks for: its `requirements` file, else the kernel's."""
    if getattr(config, "requirements", None):
        return capture_requirements(config.requirements, arch=config.arch, base_image=config.base_image)
    return capture_kernel(arch=config.arch, base_image=config.base_image)

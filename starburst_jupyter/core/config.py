"""Defaults for every job: built-in values < $STARBURST_HOME/config.toml < %burst_config < options.

Every key has one parser that refuses bad values with a message naming the key.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from starburst_jupyter.backends.base import BACKEND_NAMES
from starburst_jupyter.core.options import ON_ERROR, keep_warm_minutes
from starburst_jupyter.core.sizes import parse_bytes, parse_cpu, parse_memory, validate_size
from starburst_jupyter.errors import BurstConfigError, BurstValidationError

BACKENDS = BACKEND_NAMES  # the registry in backends/base.py is the only list


def starburst_home() -> Path:
    """Where config, the job store and local job folders live (`STARBURST_HOME`, default ~/.starburst)."""
    return Path(os.environ.get("STARBURST_HOME") or Path.home() / ".starburst").expanduser()


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in options:
            raise BurstValidationError(f"{value!r} is not one of {', '.join(options)}")
        return text

    return parse


def _positive_int(value: Any) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise BurstValidationError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise BurstValidationError(f"{value!r} must be 1 or more")
    return number


def _non_negative_int(value: Any) -> int:
    text = str(value).strip()
    if not text.isdigit():
        raise BurstValidationError(f"{value!r} is not a whole number of 0 or more")
    return int(text)


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse_optional(value: Any) -> Any:
        if value is None or str(value).strip().lower() in ("", "none", "auto"):
            return None
        return parse(value)

    return parse_optional


def _positive_float(value: Any) -> float:
    try:
        number = float(str(value).strip().lstrip("$"))
    except ValueError:
        raise BurstValidationError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise BurstValidationError(f"{value!r} is not a finite number (nan and inf are refused)")
    if number <= 0:
        raise BurstValidationError(f"{value!r} must be above 0")
    return number


def _non_negative_float(value: Any) -> float:
    try:
        return 0.0 if float(str(value).strip()) == 0 else _positive_float(value)
    except ValueError:
        raise BurstValidationError(f"{value!r} is not a number of 0 or more") from None


def _bytes(value: Any) -> int:
    return parse_bytes(value if isinstance(value, int) else str(value), "max_result_bytes")


def _bool(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BurstValidationError(f"{value!r} is not true or false")


def _cpu(value: Any) -> float:
    return parse_cpu(value) / 1024


def _memory(value: Any) -> str:
    parse_memory(value)
    return str(value).strip()


def _region(value: Any) -> str:
    text = str(value).strip()
    if not text or " " in text:
        raise BurstValidationError(f"{value!r} is not an AWS region name such as us-east-1")
    return text


def _text(value: Any) -> str:
    text = str(value).strip()
    if not text or any(c.isspace() for c in text):
        raise BurstValidationError(f"{value!r} must be one word with no spaces")
    return text


def _names(value: Any) -> tuple[str, ...]:
    """A list in TOML, or 'a,b' from %burst_config."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    if any(any(c.isspace() for c in name) for name in names):
        raise BurstValidationError(f"{value!r}: give names separated by commas, without spaces")
    return names


@dataclass(frozen=True)
class Config:
    backend: str = "local"
    workers: int | None = None  # None: as many as the backend's concurrency allows
    max_workers: int = 256
    cpu: float = 1.0
    memory: str = "2GB"
    timeout: float = 6 * 3600.0
    on_error: str = "raise"
    max_result_bytes: int = 256 * 1024 * 1024
    max_cost: float | None = None
    local_concurrency: int | None = None  # None: os.cpu_count()
    local_warm_seconds: float = 600.0  # the local fork server's idle life; 0: a new process per worker
    retries: int = 1
    region: str = "us-east-1"
    arch: str = "x86_64"
    keep_payloads: bool = False
    # fargate: what `starburst setup` creates and saves (see aws/setup.py)
    bucket: str | None = None
    cluster: str = "starburst"
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: bool = True
    execution_role_arn: str | None = None
    task_role_arn: str | None = None
    driver_role_arn: str | None = None  # a detached job's driver task (fargate); None: the task role
    log_group: str = "/starburst/workers"
    ecr_repository: str = "starburst-worker"
    image: str | None = None  # worker image URI; None: the environment image (envimage) for this kernel
    fargate_vcpu_quota: int | None = None  # None: read Service Quotas (L-3032A538 / Spot L-36FBB829)
    spot: bool = False
    keep_warm: float = 0.0  # minutes a finished worker waits for the next job of the same spec
    # docker and the worker image (envimage)
    base_image: str | None = None  # None: python:<this kernel's X.Y.Z>-slim-bookworm
    requirements: str | None = None  # a requirements file to use instead of the kernel's packages
    auto_build: bool = False  # build and push a missing worker image before launching

    def with_values(self, values: dict[str, Any]) -> Config:
        merged = replace(self, **{key: parse_value(key, value) for key, value in values.items()})
        try:
            validate_size(parse_cpu(merged.cpu), parse_memory(merged.memory))
        except BurstValidationError as exc:
            raise BurstConfigError(
                f"Config cpu={merged.cpu:g} memory={merged.memory} refused: {exc} Set both "
                f"together, e.g. %burst_config cpu=2 memory=4GB."
            ) from None
        return merged


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "backend": _choice(BACKENDS),
    "workers": _optional(_positive_int),
    "max_workers": _positive_int,
    "cpu": _cpu,
    "memory": _memory,
    "timeout": _positive_float,
    "on_error": _choice(ON_ERROR),
    "max_result_bytes": _bytes,
    "max_cost": _optional(_positive_float),
    "local_concurrency": _optional(_positive_int),
    "local_warm_seconds": _non_negative_float,
    "retries": _non_negative_int,
    "region": _region,
    "arch": _choice(("x86_64", "arm64")),
    "keep_payloads": _bool,
    "bucket": _optional(_text),
    "cluster": _text,
    "subnets": _names,
    "security_groups": _names,
    "assign_public_ip": _bool,
    "execution_role_arn": _optional(_text),
    "task_role_arn": _optional(_text),
    "driver_role_arn": _optional(_text),
    "log_group": _text,
    "ecr_repository": _text,
    "image": _optional(_text),
    "fargate_vcpu_quota": _optional(_positive_int),
    "spot": _bool,
    "keep_warm": keep_warm_minutes,  # the same rule as --keep-warm (0 to 60 minutes)
    "base_image": _optional(_text),
    "requirements": _optional(_text),
    "auto_build": _bool,
}
KEYS = tuple(f.name for f in fields(Config))
assert set(KEYS) == set(_PARSERS)


def parse_value(key: str, value: Any) -> Any:
    if key not in _PARSERS:
        close = difflib.get_close_matches(key, KEYS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise BurstConfigError(f"Unknown config key {key!r}.{hint} Valid keys: {', '.join(KEYS)}.")
    try:
        return _PARSERS[key](value)
    except BurstValidationError as exc:
        raise BurstConfigError(f"Config {key}={value!r} refused: {str(exc).rstrip('.')}.") from None


def config_path() -> Path:
    return starburst_home() / "config.toml"


def load_config(path: Path | None = None) -> Config:
    """Read the config file; a broken file is an error naming the file, never silently ignored."""
    path = path or config_path()
    if not path.exists():
        return Config()
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BurstConfigError(f"Cannot read {path}: {exc}. Fix or delete the file.") from None
    try:
        return Config().with_values(raw)
    except BurstConfigError as exc:
        raise BurstConfigError(f"In {path}: {exc}") from None


def save_values(values: dict[str, Any], path: Path | None = None) -> Path:
    """Validate and merge key=value pairs into the config file (written atomically)."""
    path = path or config_path()
    Config().with_values(values)  # refuse before touching the file
    current = tomllib.loads(path.read_text()) if path.exists() else {}
    for key, value in values.items():
        parsed = parse_value(key, value)
        if parsed is None:
            current.pop(key, None)
        else:
            current[key] = parsed
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.unlink(missing_ok=True)
    # 0600 whatever the umask: the config may name a registry, buckets and roles of the user's account
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(tomli_w.dumps(current))
    os.replace(tmp, path)
    return path


def parse_assignments(text: str) -> dict[str, str]:
    """'workers=8 memory=4GB' -> {'workers': '8', 'memory': '4GB'}."""
    values: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise BurstConfigError(f"{token!r} is not key=value. Example: %burst_config workers=8 memory=4GB")
        values[key.strip()] = value.strip()
    return values

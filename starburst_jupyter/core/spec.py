"""JobSpec: what a job asks for, validated before anything is launched, free of secrets."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from starburst_jupyter.core.config import BACKENDS, ON_ERROR, Config
from starburst_jupyter.core.sizes import format_memory, format_vcpu, parse_cpu, parse_memory, validate_size
from starburst_jupyter.errors import BurstBackendUnavailable, BurstValidationError


def backend_available(name: str) -> bool:
    """A backend is available once its module ships (they land one by one)."""
    return importlib.util.find_spec(f"starburst_jupyter.backends.{name}") is not None


_NAME_RE = re.compile(r"^[\w .:@+-]{1,64}$")


@dataclass(frozen=True)
class JobSpec:
    mode: str  # "map" (one task per item), "single" (one task, names come back), "executor"
    backend: str
    workers: int | None  # None: as many as the backend's quota allows (capped by items)
    cpu_units: int
    memory_mib: int
    timeout: float
    on_error: str
    max_result_bytes: int
    max_cost: float | None
    retries: int
    region: str
    arch: str
    name: str = ""
    spot: bool = False  # Fargate Spot: about 70% cheaper, may be interrupted (work is retried)
    keep_warm: float = 0.0  # minutes a finished worker waits for the next job of the same spec (fargate)
    source: str = ""  # the cell or function, for display; never holds captured values
    map_expr: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def describe_size(self) -> str:
        return f"{format_vcpu(self.cpu_units)} vCPU / {format_memory(self.memory_mib)}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["source"] = self.source[:4000]
        return data


def build_spec(config: Config, *, mode: str, source: str = "", map_expr: str = "", **options: Any) -> JobSpec:
    """Merge options over config and refuse anything Fargate or the config would refuse."""
    unknown = set(options) - {
        "backend",
        "workers",
        "cpu",
        "memory",
        "timeout",
        "on_error",
        "max_result_bytes",
        "max_cost",
        "retries",
        "name",
        "spot",
        "keep_warm",
    }
    if unknown:
        raise BurstValidationError(f"Unknown job option(s): {', '.join(sorted(unknown))}.")
    pick = lambda key: options[key] if options.get(key) is not None else getattr(config, key)

    backend = str(pick("backend")).lower()
    if backend not in BACKENDS:
        raise BurstValidationError(f"Unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}.")
    if not backend_available(backend):
        raise BurstBackendUnavailable(
            f"The {backend!r} backend is not available in this version yet; use --backend local "
            f"(workers on this machine) meanwhile."
        )

    workers = options.get("workers") if options.get("workers") is not None else config.workers
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int):
            raise BurstValidationError(f"--workers {workers!r} must be a whole number.")
        if workers < 1:
            raise BurstValidationError(f"--workers {workers} must be at least 1.")
        if workers > config.max_workers:
            raise BurstValidationError(
                f"--workers {workers} is above the maximum of {config.max_workers}; lower it, or raise "
                f"the limit with %burst_config max_workers={workers}."
            )

    cpu_units = parse_cpu(pick("cpu"))
    memory_mib = parse_memory(pick("memory"))
    validate_size(cpu_units, memory_mib)

    timeout = float(pick("timeout"))
    if timeout <= 0:
        raise BurstValidationError(f"--timeout {timeout:g} must be above 0 seconds.")
    on_error = str(pick("on_error"))
    if on_error not in ON_ERROR:
        raise BurstValidationError(f"--on-error {on_error!r} must be one of {', '.join(ON_ERROR)}.")
    max_cost = pick("max_cost")
    if max_cost is not None and float(max_cost) <= 0:
        raise BurstValidationError(f"--max-cost {max_cost} must be above 0 USD.")
    max_result_bytes = int(pick("max_result_bytes"))
    if max_result_bytes < 1:
        raise BurstValidationError("max_result_bytes must be at least 1 byte.")
    name = str(options.get("name") or "")
    if name and not _NAME_RE.match(name):
        raise BurstValidationError(f"--name {name!r}: use up to 64 letters, digits, spaces and . : @ + - _ characters.")
    return JobSpec(
        mode=mode,
        backend=backend,
        workers=workers,
        cpu_units=cpu_units,
        memory_mib=memory_mib,
        timeout=timeout,
        on_error=on_error,
        max_result_bytes=max_result_bytes,
        max_cost=float(max_cost) if max_cost is not None else None,
        retries=int(pick("retries")),
        region=config.region,
        arch=config.arch,
        name=name,
        source=source,
        map_expr=map_expr,
        spot=bool(pick("spot")),
        keep_warm=_keep_warm(pick("keep_warm")),
    )


def _keep_warm(value: Any) -> float:
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        raise BurstValidationError(f"--keep-warm {value!r} is not a number of minutes.") from None
    if not 0 <= minutes <= 60:
        raise BurstValidationError(
            f"--keep-warm {minutes:g} must be between 0 and 60 minutes (warm workers are billed)."
        )
    return minutes

"""JobSpec: what a job asks for, validated before anything is launched, free of secrets."""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from starburst_jupyter.core.config import Config
from starburst_jupyter.core.options import resolve as resolve_options
from starburst_jupyter.core.sizes import format_memory, format_vcpu, validate_size
from starburst_jupyter.errors import BurstBackendUnavailable, DamagedJobFile

if TYPE_CHECKING:
    from starburst_jupyter.core.record import JobRecord


def backend_available(name: str) -> bool:
    """A backend is available once its module ships (they land one by one)."""
    return importlib.util.find_spec(f"starburst_jupyter.backends.{name}") is not None


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
    """Merge options over config and refuse anything Fargate or the config would refuse.

    The accepted options, their defaults and their rules are the table in `core/options.py`."""
    values = resolve_options(config, options)
    backend = values["backend"]
    if not backend_available(backend):
        raise BurstBackendUnavailable(
            f"The {backend!r} backend is not available in this version yet; use --backend local "
            f"(workers on this machine) meanwhile."
        )
    validate_size(values["cpu_units"], values["memory_mib"])
    return JobSpec(
        mode=mode,
        region=config.region,
        arch=config.arch,
        source=source,
        map_expr=map_expr,
        **values,
    )


def spec_from_record(record: JobRecord) -> JobSpec:
    """The JobSpec a record holds (fields this version does not know are left out). DamagedJobFile, naming the
    job and its record, when the spec lacks a field a JobSpec needs (a record without `spec`, as one planted in
    a bucket): `JobSpec(**spec)` raised a TypeError that named neither, as a traceback from attach and collect."""
    known: dict[str, Any] = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in record.spec.items() if k in JobSpec.__dataclass_fields__
    }
    needed = [
        f.name
        for f in dataclasses.fields(JobSpec)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in needed if name not in known]
    if missing:
        problem = "it has no spec" if not record.spec else f"its spec lacks {', '.join(missing)}"
        hint = f"It cannot be followed or collected; `starburst status {record.id}` shows what it holds."
        raise DamagedJobFile(record.id, f"its record ({_record_file(record)})", problem, hint)
    return JobSpec(**known)


def _record_file(record: JobRecord) -> str:
    """Where a record lives, as far as it says (its store's address and prefix), else its file's name."""
    url, prefix = record.store.get("url"), record.store.get("prefix")
    if isinstance(url, str) and isinstance(prefix, str):
        return f"{url.rstrip('/')}/{prefix}record.json"
    return "record.json"

"""Fargate task sizes: the one table of valid vCPU/memory pairs, and parsers for user input.

Validated on every backend so a spec that passes locally also passes on Fargate.
"""

from __future__ import annotations

import math
import re

from starburst_jupyter.errors import BurstValidationError

GIB = 1024

#: vCPU units (1024 = 1 vCPU) -> valid memory sizes in MiB.
FARGATE_SIZES: dict[int, list[int]] = {
    256: [512, 1024, 2048],
    512: list(range(1 * GIB, 4 * GIB + 1, GIB)),
    1024: list(range(2 * GIB, 8 * GIB + 1, GIB)),
    2048: list(range(4 * GIB, 16 * GIB + 1, GIB)),
    4096: list(range(8 * GIB, 30 * GIB + 1, GIB)),
    8192: list(range(16 * GIB, 60 * GIB + 1, 4 * GIB)),
    16384: list(range(32 * GIB, 120 * GIB + 1, 8 * GIB)),
}

_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|[KMGT]?)\s*$", re.IGNORECASE)
_UNIT_MIB = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_cpu(value: str | float | int) -> int:
    """'0.25', '.5', '2', 4 -> CPU units (1024 per vCPU)."""
    try:
        vcpu = float(value)
    except (TypeError, ValueError):
        raise BurstValidationError(f"--cpu {value!r} is not a number of vCPUs; use one of {format_cpus()}.") from None
    if not math.isfinite(vcpu):
        raise BurstValidationError(f"--cpu {value!r} is not a finite number; use one of {format_cpus()} vCPU.")
    units = round(vcpu * 1024)
    if units not in FARGATE_SIZES:
        raise BurstValidationError(f"--cpu {value} is not a Fargate size; use one of {format_cpus()} vCPU.")
    return units


def parse_memory(value: str | int | float) -> int:
    """'4GB', '512MB', '0.5GiB', 2048 (MiB) -> MiB."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        mib = float(value)
    else:
        match = _MEMORY_RE.match(str(value))
        if not match:
            raise BurstValidationError(
                f"--memory {value!r} is not a memory size; write it like 4GB, 512MB or 2048 (MiB)."
            )
        unit = match.group(2).upper()[:1]
        mib = float(match.group(1)) * _UNIT_MIB[unit]
    if not math.isfinite(mib) or mib <= 0 or mib != int(mib):
        raise BurstValidationError(f"--memory {value!r} must be a positive whole number of MiB.")
    return int(mib)


_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(?:([KMGT])i?B?|B?)\s*$", re.IGNORECASE)
_UNIT_BYTES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
#: The largest result size limit taken: no worker has more memory (Fargate's largest task has 120 GB).
MAX_RESULT_BYTES = 1024**4


def parse_bytes(value: str | int, flag: str = "--max-result-bytes") -> int:
    """A limit on result sizes in bytes: 1000, '1000', '512KB', '64MB', '1.5GiB' (units of 1024), at least one
    byte and at most a TB. BurstValidationError naming `flag` and saying it is about result sizes (a size like
    '1KB' once went through the --memory parser, which counts whole MiB, and was refused as a --memory)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BurstValidationError(f"{flag} {value!r} is not a size: {_BYTES_HINT}")
    match = _BYTES_RE.match(value) if isinstance(value, str) else None
    if isinstance(value, str) and match is None:
        raise BurstValidationError(f"{flag} {value!r} is not a size: {_BYTES_HINT}")
    size = value if isinstance(value, int) else _scaled(match)
    if size != int(size) or not 1 <= size <= MAX_RESULT_BYTES:
        raise BurstValidationError(f"{flag} {value!r} must be a whole number of bytes from 1 to 1TB: {_BYTES_HINT}")
    return int(size)


_BYTES_HINT = "write the largest result one item may send back as bytes (1000) or a size like 512KB or 64MB."


def _scaled(match: re.Match[str] | None) -> float:
    assert match is not None
    number = float(match.group(1))
    return number * _UNIT_BYTES[(match.group(2) or "").upper()]


def format_cpus() -> str:
    return ", ".join(format_vcpu(c) for c in FARGATE_SIZES)


def format_vcpu(units: int) -> str:
    return f"{units / 1024:g}"


def format_memory(mib: int) -> str:
    return f"{mib / GIB:g}GB" if mib % 512 == 0 and mib >= 512 else f"{mib}MB"


def _describe_range(sizes: list[int]) -> str:
    if len(sizes) <= 3:
        return ", ".join(format_memory(m) for m in sizes)
    step = sizes[1] - sizes[0]
    return f"{format_memory(sizes[0])} to {format_memory(sizes[-1])} in {format_memory(step)} steps"


def validate_size(cpu_units: int, memory_mib: int) -> None:
    """Refuse a pair Fargate would refuse, naming the valid neighbours."""
    valid = FARGATE_SIZES[cpu_units]
    if memory_mib in valid:
        return
    fits = [c for c, mems in FARGATE_SIZES.items() if memory_mib in mems]
    hint = (
        f" {format_memory(memory_mib)} is valid with --cpu {' or '.join(format_vcpu(c) for c in fits)}." if fits else ""
    )
    raise BurstValidationError(
        f"--cpu {format_vcpu(cpu_units)} --memory {format_memory(memory_mib)} is not a valid Fargate size: "
        f"with {format_vcpu(cpu_units)} vCPU, memory must be {_describe_range(valid)}.{hint}"
    )

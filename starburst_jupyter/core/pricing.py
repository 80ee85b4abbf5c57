"""Fargate prices (USD, Linux) and cost arithmetic with per-second billing and a one-minute minimum.

Prices change rarely; the table is dated (PRICES_AS_OF, shown next to every cost). It cannot be overridden
yet; a region missing from it is priced as us-east-1.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2026-11"
MINIMUM_BILLED_SECONDS = 60.0


@dataclass(frozen=True)
class Rate:
    vcpu_hour: float
    gb_hour: float


# (region, arch, spot) -> Rate. Spot prices move; these are typical recent figures.
_ON_DEMAND_X86 = {
    "us-east-1": Rate(0.04048, 0.004445),
    "us-east-2": Rate(0.04048, 0.004445),
    "us-west-2": Rate(0.04048, 0.004445),
    "us-west-1": Rate(0.04656, 0.00511),
    "eu-west-1": Rate(0.04048, 0.004445),
    "eu-central-1": Rate(0.04656, 0.00511),
    "eu-west-2": Rate(0.04656, 0.00511),
    "ap-southeast-1": Rate(0.05056, 0.00553),
    "ap-southeast-2": Rate(0.04856, 0.00532),
    "ap-northeast-1": Rate(0.05056, 0.00553),
}
ARM_DISCOUNT = 0.8  # Graviton Fargate is 20% cheaper in every region listed.
SPOT_FRACTION = 0.3  # Fargate Spot typically runs at about 70% off On-Demand.
DEFAULT_REGION = "us-east-1"


def rate_for(region: str, arch: str = "x86_64", spot: bool = False) -> Rate:
    base = _ON_DEMAND_X86.get(region, _ON_DEMAND_X86[DEFAULT_REGION])
    factor = (ARM_DISCOUNT if arch in ("arm64", "aarch64") else 1.0) * (SPOT_FRACTION if spot else 1.0)
    return Rate(base.vcpu_hour * factor, base.gb_hour * factor)


def per_second(rate: Rate, cpu_units: int, memory_mib: int) -> float:
    """Cost of one worker of this size for one second."""
    return (rate.vcpu_hour * cpu_units / 1024 + rate.gb_hour * memory_mib / 1024) / 3600.0

"""How many Fargate vCPUs this account may run at once: the quota minus what already runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starburst_jupyter.backends.fargate.clients import error_code

if TYPE_CHECKING:
    from starburst_jupyter.core.config import Config

ON_DEMAND_QUOTA = "L-3032A538"  # Fargate On-Demand vCPU resource count
SPOT_QUOTA = "L-36FBB829"  # Fargate Spot vCPU resource count
DEFAULT_VCPUS = 6  # what new accounts get; used (and said) when the quota cannot be read


@dataclass(frozen=True)
class Quota:
    vcpus: float
    source: str  # "service-quotas", "config" or "default"
    running_vcpus: float = 0.0
    note: str = ""

    @property
    def free_vcpus(self) -> float:
        return max(0.0, self.vcpus - self.running_vcpus)


def read_quota(quotas: Any, spot: bool, region: str) -> Quota:
    code = SPOT_QUOTA if spot else ON_DEMAND_QUOTA
    try:
        value = float(quotas.get_service_quota(ServiceCode="fargate", QuotaCode=code)["Quota"]["Value"])
        return Quota(value, "service-quotas")
    except Exception as exc:  # any failure to read means: say so and use the default
        note = (
            f"Could not read the Fargate {'Spot' if spot else 'On-Demand'} vCPU quota ({code}) in {region}: "
            f"{error_code(exc)}. Planning with the default of {DEFAULT_VCPUS} vCPUs; set your account's "
            f"figure with %burst_config fargate_vcpu_quota=N (see `starburst quota`)."
        )
        return Quota(DEFAULT_VCPUS, "default", note=note)


def running_vcpus(ecs: Any, cluster: str) -> float:
    """vCPUs of the cluster's tasks that are running or about to (they count against the quota)."""
    arns: list[str] = []
    for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus="RUNNING"):
        arns.extend(page.get("taskArns", ()))
    total = 0.0
    for start in range(0, len(arns), 100):
        for task in ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100]).get("tasks", ()):
            total += int(task.get("cpu") or 0) / 1024
    return total


def request_increase(quotas: Any, vcpus: float, spot: bool = False) -> dict[str, Any]:
    code = SPOT_QUOTA if spot else ON_DEMAND_QUOTA
    reply = quotas.request_service_quota_increase(ServiceCode="fargate", QuotaCode=code, DesiredValue=float(vcpus))
    requested: dict[str, Any] = reply.get("RequestedQuota", {})
    return requested


def describe_quota(config: Config, spot: bool = False) -> str:
    """What `starburst quota` prints: the quota, what runs, and how many workers of the default size fit."""
    from starburst_jupyter.backends.fargate.clients import client

    quotas = client("service-quotas", config.region)
    quota = (
        Quota(float(config.fargate_vcpu_quota), "config")
        if config.fargate_vcpu_quota
        else read_quota(quotas, spot, config.region)
    )
    kind = "Spot" if spot else "On-Demand"
    lines = [f"Fargate {kind} vCPU quota in {config.region}: {quota.vcpus:g} ({quota.source})"]
    if quota.note:
        lines.append(quota.note)
    try:
        running = running_vcpus(client("ecs", config.region), config.cluster)
        lines.append(f"running now in cluster {config.cluster}: {running:g} vCPUs")
    except Exception as exc:
        running = 0.0
        lines.append(f"cluster {config.cluster}: not readable ({error_code(exc)}); run `starburst setup`")
    per_worker = float(config.cpu)
    lines.append(f"workers of {per_worker:g} vCPU that fit now: {int(max(0.0, quota.vcpus - running) // per_worker)}")
    return "\n".join(lines)

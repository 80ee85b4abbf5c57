"""Backends: where workers run (local processes, docker containers, Fargate tasks); the contract is in base.py."""

from starburst_jupyter.backends.base import (
    BACKEND_NAMES,
    Backend,
    Capabilities,
    LaunchFailure,
    OneByOneBackend,
    WorkerRef,
    WorkerStart,
    capabilities_of,
    make_backend,
)

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "Capabilities",
    "LaunchFailure",
    "OneByOneBackend",
    "WorkerRef",
    "WorkerStart",
    "capabilities_of",
    "make_backend",
]

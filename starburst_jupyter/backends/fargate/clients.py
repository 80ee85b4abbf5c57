"""boto3 clients with botocore's standard retry mode and timeouts, and a count of every API call.

Calls are counted per job by the thread that makes them (each job's monitor thread is named
after its job), so a record can say what a job cost in API calls, not only in dollars.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeAlias

from starburst_jupyter.protocol import keys

# A boto3 client. Typed as Any on purpose: the call sites are thin and read replies as plain dicts,
# and boto3-stubs for every service used would be a large dependency for little checking.
AwsClient: TypeAlias = Any

RETRY_CONFIG = dict(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=30)


class ApiCalls:
    """{thread or job: Counter({'ecs.RunTask': n, ...})}; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_owner: dict[str, Counter[str]] = {}

    def hook(self, service: str) -> Callable[..., None]:
        def count(model: Any, params: dict[str, Any] | None = None, **_: Any) -> None:  # botocore OperationModel
            owner = threading.current_thread().name
            name = f"{service}.{model.name}"
            key = (params or {}).get("Key", "") if service == "s3" else ""
            if key:  # which of the job's objects: the cancel marker (every poll) or results/claims (data)
                name += ":" + keys.object_kind(key)
            with self._lock:
                self.by_owner.setdefault(owner, Counter())[name] += 1

        return count

    def attach(self, client: AwsClient, service: str) -> AwsClient:
        # before-parameter-build sees the API parameters (the S3 key); it fires once per call, not per retry
        client.meta.events.register("before-parameter-build", self.hook(service))
        return client

    def for_job(self, job_id: str) -> dict[str, int]:
        with self._lock:
            return dict(self.by_owner.get(f"starburst-{job_id}", {}))

    def total(self) -> Counter[str]:
        with self._lock:
            return sum(self.by_owner.values(), Counter())


def client(service: str, region: str, calls: ApiCalls | None = None, **overrides: Any) -> AwsClient:
    """A client of the default boto3 session: the user's credential chain and endpoints, our retries."""
    import boto3
    from botocore.config import Config

    made = boto3.session.Session().client(
        service, region_name=region, config=Config(**{**copy.deepcopy(RETRY_CONFIG), **overrides})
    )
    return calls.attach(made, service) if calls is not None else made


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(exc).__name__))


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Message", exc))

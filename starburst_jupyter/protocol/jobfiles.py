"""The job protocol: the only definition of where each of a job's objects lives in a store.

<prefix>/spec.json            what was asked (no secrets)
<prefix>/program.pkl          the code and captured names every task runs with
<prefix>/tasks/<block>.pkl    [(item_index, item)], claimed whole by one worker
<prefix>/claims/<block>       created exclusively by the worker that takes the block
<prefix>/results/<ms>-<block>-<part>.pkl   [ItemResult], flushed as the block progresses; <ms> (the
                              writer's clock) orders keys by time, so a reader lists only recent ones
<prefix>/heartbeat/<worker>   JSON liveness, rewritten every few seconds
<prefix>/logs/<worker>.log    the worker's stdout and stderr
<prefix>/cancel               any face writes it; workers exit when they see it
<prefix>/closed               an open job (BurstExecutor) gets no more tasks
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from starburst_jupyter.protocol import serialize
from starburst_jupyter.stores.objects import ObjectStore


def worker_name(index: int) -> str:
    return f"worker-{index:04d}"


@dataclass
class ItemResult:
    """What one item produced on a worker."""

    index: int
    ok: bool
    value: Any = None  # the value, or the exception when not ok
    traceback: str = ""
    stdout: str = ""
    stderr: str = ""
    started: float = 0.0
    duration: float = 0.0
    worker: int = -1


@dataclass
class Claim:
    block: int
    worker: int
    at: float = field(default_factory=time.time)


class JobFiles:
    """Typed access to one job's objects in a store."""

    def __init__(self, store: ObjectStore, job_id: str, prefix: str | None = None):
        self.store = store
        self.job_id = job_id
        self.prefix = prefix if prefix is not None else f"jobs/{job_id}/"

    def key(self, name: str) -> str:
        return self.prefix + name

    # what was asked
    def write_spec(self, spec: dict) -> None:
        self.store.put(self.key("spec.json"), [json.dumps(spec, indent=1).encode()])

    def read_spec(self) -> dict:
        return json.loads(self.store.get(self.key("spec.json")))

    def write_program(self, chunks: list) -> None:
        self.store.put(self.key("program.pkl"), chunks)

    def read_program(self) -> Any:
        return serialize.loads(self.store.get(self.key("program.pkl")))

    # work
    def block_key(self, block: int) -> str:
        return self.key(f"tasks/{block:06d}.pkl")

    def write_block(self, block: int, items: list[tuple[int, Any]]) -> None:
        self.store.put(self.block_key(block), serialize.dumps_chunks(items))

    def read_block(self, block: int) -> list[tuple[int, Any]]:
        return serialize.loads(self.store.get(self.block_key(block)))

    def list_blocks(self, after: int = -1) -> list[int]:
        start = self.block_key(after) if after >= 0 else None
        return sorted(int(k.rsplit("/", 1)[1][:-4]) for k in self.store.list(self.key("tasks/"), start))

    def claim(self, block: int, worker: int) -> bool:
        body = json.dumps(asdict(Claim(block, worker))).encode()
        return self.store.create_exclusive(self.key(f"claims/{block:06d}"), body)

    def list_claimed(self, after: int = -1) -> set[int]:
        """Claimed blocks (with `after`, only those above it: claims come roughly in block order)."""
        start = self.key(f"claims/{after:06d}") if after >= 0 else None
        return {int(k.rsplit("/", 1)[1]) for k in self.store.list(self.key("claims/"), start)}

    def read_claim(self, block: int) -> Claim:
        return Claim(**json.loads(self.store.get(self.key(f"claims/{block:06d}"))))

    # results
    def write_results(self, block: int, part: int, results: list[ItemResult]) -> None:
        stamp = int(time.time() * 1000)
        self.store.put(self.key(f"results/{stamp:013d}-{block:06d}-{part:04d}.pkl"), serialize.dumps_chunks(results))

    def list_result_keys(self, since: float | None = None) -> list[str]:
        """Result objects, oldest first; with `since` (epoch seconds), only those written from then on."""
        start = self.key(f"results/{max(0, int(since * 1000) - 1):013d}~") if since is not None else None
        return self.store.list(self.key("results/"), start)

    @staticmethod
    def result_time(key: str) -> float:
        """When a result object was written (by its writer's clock)."""
        return int(key.rsplit("/", 1)[1].split("-", 1)[0]) / 1000

    def read_results(self, key: str) -> list[ItemResult]:
        return serialize.loads(self.store.get(key))

    # liveness and control
    def write_heartbeat(self, worker: int, info: dict) -> None:
        self.store.put(self.key(f"heartbeat/{worker_name(worker)}"), [json.dumps(info).encode()])

    def log_key(self, worker: int) -> str:
        return self.key(f"logs/{worker_name(worker)}.log")

    def request_cancel(self, reason: str) -> None:
        self.store.put(self.key("cancel"), [json.dumps({"reason": reason, "at": time.time()}).encode()])

    def cancel_requested(self) -> bool:
        return self.store.exists(self.key("cancel"))

    def cancel_reason(self) -> str | None:
        """Why the job was cancelled, or None while it is not."""
        try:
            return json.loads(self.store.get(self.key("cancel"))).get("reason") or "cancelled"
        except FileNotFoundError:
            return None

    def close(self) -> None:
        self.store.put(self.key("closed"), [b"{}"])

    def is_closed(self) -> bool:
        return self.store.exists(self.key("closed"))

    def delete_payloads(self) -> None:
        """Drop the bulky objects once results are collected; spec, logs and record stay."""
        for name in ("tasks/", "claims/", "results/", "heartbeat/"):
            self.store.delete_prefix(self.key(name))
        self.store.delete(self.key("program.pkl"))

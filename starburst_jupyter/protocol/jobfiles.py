"""Typed reads and writes of one job's objects in a store. Where each object lives is protocol.keys."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starburst_jupyter.errors import DamagedJobFile
from starburst_jupyter.protocol import buffers, keys, serialize
from starburst_jupyter.protocol.workerspec import WorkerSpec
from starburst_jupyter.stores.objects import ObjectStore, ObjectTooLarge

logger = logging.getLogger(__name__)

#: The largest of a job's small JSON files a reader takes; starburst's own are far smaller (a record of a million
#: items a few hundred bytes as runs, ~100 MB as letters at core/record.MAX_ITEMS; driver.json a few KB; a journal
#: batch of BATCH_EVENTS events a few MB). A bigger one is damaged and is not read into memory.
MAX_RECORD_BYTES = 128 << 20
MAX_DRIVER_CONFIG_BYTES = 1 << 20
MAX_EVENT_BATCH_BYTES = 64 << 20


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
        self.prefix = prefix if prefix is not None else keys.job_prefix(job_id)

    # what was asked
    def write_spec(self, spec: WorkerSpec) -> None:
        self.store.put(keys.spec_key(self.prefix), [spec.encode()])

    def read_spec(self) -> WorkerSpec:
        return WorkerSpec.decode(self.store.get(keys.spec_key(self.prefix)))

    def write_program(self, chunks: list[bytes | memoryview]) -> None:
        """serialize.dumps_chunks' program; its large buffers go to objects of their own (protocol/buffers.py)."""
        buffers.write(self.store, self.prefix, chunks)

    def read_program(self) -> Any:
        """The program, its large captured arrays shared read-only (mapped from a folder store)."""
        return buffers.read(self.store, self.prefix)

    # work
    def block_key(self, block: int) -> str:
        return keys.task_key(self.prefix, block)

    def write_block(self, block: int, items: list[tuple[int, Any]]) -> None:
        self.store.put(self.block_key(block), serialize.dumps_chunks(_block_body(items)))

    def write_block_run(self, block: int, first: int, values: list[Any]) -> None:
        """A block of the items first, first + 1, ...: their values as one list (no tuple per item to pickle)."""
        self.store.put(self.block_key(block), serialize.dumps_chunks((BLOCK_RUN, first, values)))

    def create_block(self, block: int, items: list[tuple[int, Any]]) -> bool:
        """Write a block only if no other writer took its number (an open job another process also feeds)."""
        return self.store.create_exclusive(self.block_key(block), serialize.dumps(_block_body(items)))

    def take_index(self, index: int) -> bool:
        """Claim item number `index` of an open job for this caller alone (another process feeding the same job
        may be choosing numbers at this moment)."""
        return self.store.create_exclusive(keys.item_claim_key(self.prefix, index), b"")

    def read_block_items(self, block: int) -> tuple[Sequence[int], list[Any]]:
        """A block's item indices (a range for a run) and their values."""
        body = serialize.loads(self.store.get(self.block_key(block)))
        if type(body) is tuple and len(body) == 3 and body[0] == BLOCK_RUN:
            _, first, values = body
            return range(first, first + len(values)), values
        return [i for i, _ in body], [v for _, v in body]  # pairs (a retry's lone item, an open job's items)

    def read_block(self, block: int) -> list[tuple[int, Any]]:
        indices, values = self.read_block_items(block)
        return list(zip(indices, values))

    def list_blocks(self, after: int = -1) -> list[int]:
        start = self.block_key(after) if after >= 0 else None
        return sorted(keys.task_block(k) for k in self.store.list(keys.tasks_prefix(self.prefix), start))

    def claim(self, block: int, worker: int) -> bool:
        body = json.dumps(asdict(Claim(block, worker))).encode()
        return self.store.create_exclusive(keys.claim_key(self.prefix, block), body)

    def list_claimed(self, after: int = -1) -> set[int]:
        """Claimed blocks (with `after`, only those above it: claims come roughly in block order)."""
        start = keys.claim_key(self.prefix, after) if after >= 0 else None
        return {keys.claim_block(k) for k in self.store.list(keys.claims_prefix(self.prefix), start)}

    def read_claim(self, block: int) -> Claim:
        return Claim(**json.loads(self.store.get(keys.claim_key(self.prefix, block))))

    # results
    def write_results(
        self, block: int, part: int, results: list[ItemResult], quiet: serialize.QuietRun | None = None
    ) -> None:
        """One object per flushed batch: the items' fields and one stream of their values (serialize.pack_results;
        a value is a serialize.Packed from the worker's ValueWriter, or an Encoded), and the quiet run's columns."""
        key = keys.result_key(self.prefix, block, part, int(time.time() * 1000))
        metas = [(r.index, r.ok, r.traceback, r.stdout, r.stderr, r.started, r.duration, r.worker) for r in results]
        self.store.put(key, serialize.pack_results(metas, [r.value for r in results], quiet))

    def list_result_keys(self, since: float | None = None) -> list[str]:
        """Result objects, oldest first; with `since` (epoch seconds), only those written from then on."""
        start = keys.results_after(self.prefix, since) if since is not None else None
        return self.store.list(keys.results_prefix(self.prefix), start)

    result_time = staticmethod(keys.result_time)  # when a result object was written (by its writer's clock)

    def read_result_batch(self, key: str) -> tuple[list[tuple[tuple[Any, ...], Any]], serialize.QuietRun | None]:
        """A batch as (fields, decoded value) pairs, fields in ItemResult's order without the value, and its
        quiet run (columns): what the ledger reads (no ItemResult, nor a tuple, per item for the million quiet
        ones)."""
        obj = serialize.loads(self.store.get(key))
        pairs = serialize.unpack_results(obj, True)
        if pairs is not None:
            return pairs, serialize.unpack_quiet(obj)
        return [(_fields(r), r.value) for r in self._legacy(obj, decode=True)], None

    def read_result_pairs(self, key: str) -> list[tuple[tuple[Any, ...], Any]]:
        """Every item of a batch as (fields, decoded value), the quiet run's too."""
        pairs, quiet = self.read_result_batch(key)
        return pairs + [(m, v) for m, v in _quiet_pairs(quiet)]

    def read_results(self, key: str, decode: bool = False) -> list[ItemResult]:
        """A batch's results; each value an Encoded, or with `decode` the value itself, unpickled in one pass
        over the batch (a serialize.Undecodable for one the kernel cannot unpickle: that item's failure)."""
        obj = serialize.loads(self.store.get(key))
        pairs = serialize.unpack_results(obj, decode)
        if pairs is None:  # a list of ItemResults (a worker of an earlier version)
            return self._legacy(obj, decode)
        pairs += [(m, v if decode else serialize.encode(v)) for m, v in _quiet_pairs(serialize.unpack_quiet(obj))]
        return [ItemResult(m[0], m[1], value, *m[2:]) for m, value in pairs]

    @staticmethod
    def _legacy(results: list[ItemResult], decode: bool) -> list[ItemResult]:
        if decode:
            for r in results:
                try:
                    r.value = serialize.decode(r.value)
                except Exception as exc:
                    r.value = serialize.Undecodable(exc)
        return results

    # liveness and control
    def write_heartbeat(self, worker: int, info: dict[str, Any]) -> None:
        self.store.put(keys.heartbeat_key(self.prefix, worker), [json.dumps(info).encode()])

    def log_key(self, worker: int) -> str:
        return keys.log_key(self.prefix, worker)

    def request_cancel(self, reason: str) -> None:
        self.store.put(keys.cancel_key(self.prefix), [json.dumps({"reason": reason, "at": time.time()}).encode()])

    def cancel_requested(self) -> bool:
        return self.store.exists(keys.cancel_key(self.prefix))

    def cancel_reason(self) -> str | None:
        """Why the job was cancelled, or None while it is not."""
        try:
            return json.loads(self.store.get(keys.cancel_key(self.prefix))).get("reason") or "cancelled"
        except FileNotFoundError:
            return None

    def extend_deadline(self, deadline: float) -> None:
        """A later deadline for the whole job (workers and driver read it as they near the old one)."""
        self.store.put(keys.deadline_key(self.prefix), [json.dumps({"deadline": deadline, "at": time.time()}).encode()])

    def deadline(self, written: float) -> float:
        """The job's deadline: `written` (the spec's), or a later one `extend_deadline` stored."""
        try:
            later = float(json.loads(self.store.get(keys.deadline_key(self.prefix)))["deadline"])
        except (FileNotFoundError, KeyError, ValueError, TypeError):
            return written
        return max(written, later)

    # the record and a detached driver's side
    def record_file(self) -> Path | None:
        """Where the record's copy lives on this machine (a folder store), else None."""
        path = getattr(self.store, "path", None)
        return Path(path(keys.record_key(self.prefix))) if callable(path) else None

    def write_record(self, data: bytes) -> None:
        self.store.put(keys.record_key(self.prefix), [data])

    def where(self, key: str) -> str:
        """A key as a user finds it: the store's address and the key (file:///... or s3://...)."""
        return f"{self.store.url.rstrip('/')}/{key}"

    def read_record(self) -> bytes | None:
        """The record's bytes (None when there is none; ObjectTooLarge, an OSError, above MAX_RECORD_BYTES)."""
        try:
            return bytes(self.store.get(keys.record_key(self.prefix), limit=MAX_RECORD_BYTES))
        except FileNotFoundError:
            return None

    def write_driver_config(self, config: dict[str, Any]) -> None:
        self.store.put(keys.driver_key(self.prefix), [json.dumps(config).encode()])

    def read_driver_config(self) -> dict[str, Any]:
        """driver.json as `write_driver_config` wrote it: an object whose `config` (and `timings`, when given) are
        objects. FileNotFoundError when there is none; DamagedJobFile, naming the job and the file, for anything
        else (not JSON, too large, another shape): a driver must not start from half a configuration."""
        key = keys.driver_key(self.prefix)
        try:
            data = json.loads(self.store.get(key, limit=MAX_DRIVER_CONFIG_BYTES))
        except ObjectTooLarge as exc:
            raise DamagedJobFile(self.job_id, self.where(key), f"{exc.size:,} bytes") from None
        except (ValueError, RecursionError) as exc:  # (UnicodeDecodeError is a ValueError)
            raise DamagedJobFile(self.job_id, self.where(key), f"not JSON: {str(exc)[:80]}") from None
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise DamagedJobFile(self.job_id, self.where(key), "it holds no `config` object")
        if not isinstance(data.get("timings", {}), dict):
            raise DamagedJobFile(self.job_id, self.where(key), "its `timings` is not an object")
        return data

    def write_events(self, seq: int, events: list[dict[str, Any]]) -> None:
        self.store.put(keys.events_key(self.prefix, seq), [json.dumps(events).encode()])

    def read_events(self, after: int = -1) -> list[tuple[int, list[dict[str, Any]]]]:
        """Event batches numbered above `after`, in order (a damaged batch as an empty one: see iter_events)."""
        return list(self.iter_events(after))

    def iter_events(self, after: int = -1) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Event batches numbered above `after`, in order, read one at a time. A batch that is not a JSON list of
        objects (or is above MAX_EVENT_BATCH_BYTES) comes as an empty batch, logged once naming the job and the
        file: the journal only shows progress, the results are elsewhere, so one damaged batch must never stop
        a follower from collecting a job (a key in the folder that is not a batch number is left alone)."""
        start = keys.events_key(self.prefix, after) if after >= 0 else None
        for key in self.store.list(keys.events_prefix(self.prefix), start):
            seq = _event_seq(key)
            if seq is None or seq <= after:
                continue
            try:
                raw = self.store.get(key, limit=MAX_EVENT_BATCH_BYTES)
            except FileNotFoundError:  # pruned meanwhile
                return
            except ObjectTooLarge as exc:
                yield seq, self._damaged_batch(key, f"{exc.size:,} bytes")
                continue
            batch, problem = _event_batch(raw)
            yield seq, batch if batch is not None else self._damaged_batch(key, problem)

    def _damaged_batch(self, key: str, problem: str) -> list[dict[str, Any]]:
        logger.warning(
            "job %s: skipped a damaged journal batch %s (%s); the job's results are not affected",
            self.job_id,
            self.where(key),
            problem,
        )
        return []

    def close(self) -> None:
        self.store.put(keys.closed_key(self.prefix), [b"{}"])

    def is_closed(self) -> bool:
        return self.store.exists(keys.closed_key(self.prefix))

    def delete_payloads(self, at_once: bool = False, keep_results: bool = False) -> None:
        """Drop the bulky objects once results are collected; spec, logs and record stay. `at_once`: their space
        is free when this returns (a folder store otherwise unlinks them in the background). `keep_results`:
        what finished stays collectable (a detached job whose disk filled: nobody has collected it yet), with
        the claims and journal that say what it is; tasks, program and buffers go."""
        kept = {keys.results_prefix(self.prefix), keys.claims_prefix(self.prefix), keys.events_prefix(self.prefix)}
        for folder in keys.payload_prefixes(self.prefix):
            if not (keep_results and folder in kept):
                self.store.delete_prefix(folder, at_once=at_once)
        self.store.delete(keys.program_key(self.prefix))
        self.store.delete_prefix(keys.program_buffers_prefix(self.prefix), at_once=at_once)


#: A block object holding a run of items: (BLOCK_RUN, first index, values). Pickling a million (index, value)
#: tuples took 0.38 s and reading them 0.25 s; the run's one list takes 0.02 s and 0.05 s.
BLOCK_RUN = "SBB1"


def _block_body(items: list[tuple[int, Any]]) -> Any:
    indices = [i for i, _ in items]
    if len(items) > 1 and indices == list(range(indices[0], indices[0] + len(indices))):
        return (BLOCK_RUN, indices[0], [v for _, v in items])
    return items


def _event_seq(key: str) -> int | None:
    """The batch number of an events/ key, None for anything else (a stray or planted name)."""
    name = keys.leaf(key).removesuffix(".json")
    return int(name) if len(name) <= 18 and name.isascii() and name.isdigit() else None


def _event_batch(raw: bytes | bytearray) -> tuple[list[dict[str, Any]] | None, str]:
    """A journal batch as written (a JSON list of objects) and "", else None and why not, in a few words."""
    try:
        batch = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # (UnicodeDecodeError is a ValueError)
        return None, f"not JSON: {str(exc)[:80]}"
    if not isinstance(batch, list):
        return None, "not a list of events"
    if not all(isinstance(event, dict) for event in batch):
        return None, "an entry is not an event"
    return batch, ""


def _fields(r: ItemResult) -> tuple[Any, ...]:
    return (r.index, r.ok, r.traceback, r.stdout, r.stderr, r.started, r.duration, r.worker)


def _quiet_pairs(quiet: serialize.QuietRun | None) -> list[tuple[tuple[Any, ...], Any]]:
    """A quiet run as (fields, value) pairs, for readers that want every item alike (the columns carry no
    start time: 0.0)."""
    if quiet is None:
        return []
    w = quiet.worker
    return [((i, True, "", "", "", 0.0, d, w), v) for i, v, d in zip(quiet.indices, quiet.values, quiet.durations)]

"""The object-store key layout: the one module that names where each object lives in a job's store.

Everything starburst writes in a store (a folder, an S3 bucket or a prefix of one) is under one of:

jobs/<id>/spec.json            what was asked and how workers behave (protocol.workerspec)
jobs/<id>/program.pkl          the code and captured names every task runs with
jobs/<id>/buffers/<n>.buf      a large buffer the program captured (an array of 1 MiB or more), raw bytes: a
                               local worker maps it read-only (one copy per machine), an S3 one GETs it once
jobs/<id>/tasks/<block>.pkl    [(item_index, item)], claimed whole by one worker
jobs/<id>/claims/<block>       created exclusively by the worker that takes the block
jobs/<id>/results/<ms>-<block>-<part>.pkl   [ItemResult], flushed as the block progresses; <ms> (the
                               writer's clock) orders keys by time, so a reader lists only recent ones
jobs/<id>/heartbeat/<worker>   JSON liveness, rewritten every few seconds
jobs/<id>/released/<worker>    JSON: a worker told to stop (SIGTERM) hands back the items it claimed and
                               did not finish, so they are redone without counting against --retries
jobs/<id>/logs/<worker>.log    the worker's stdout and stderr
jobs/<id>/cancel               any face writes it; workers exit when they see it
jobs/<id>/deadline             JSON: a later deadline (`starburst extend`), read by whoever nears the old one
jobs/<id>/record.json          the job's record (core/record.py), so any machine with the bucket lists the job
jobs/<id>/driver.json          how a detached driver rebuilds the job's backend (the launching config, no secrets)
jobs/<id>/events/<seq>.json    a detached driver's events in order, batched: a kernel anywhere replays them
jobs/<id>/closed               an open job (BurstExecutor) gets no more tasks
jobs/<id>/lease/<epoch>        JSON: the driver that holds the job (core/lease.py); epoch + 1 is created
                               exclusively by the one driver that takes over
jobs/<id>/items/<index>        created exclusively by the process that queues item <index> of an open job fed
                               from several processes (a detached BurstExecutor): one index, one caller
warm/<shape>[-spot]/<job>-<worker>.json    a finished worker waiting for the next job of its shape
warm/<shape>[-spot]/<job>-<worker>.assign  created exclusively: by a launcher taking it, or by the worker
                                           itself when its time is up (so it is never both taken and gone)

A job's prefix is passed around (JobFiles.prefix, the worker's --prefix), so the functions below take it
rather than a job id. Fixed-width numbers keep key order equal to number order, which listings rely on.
Pure functions: nothing here touches a store.
"""

from __future__ import annotations

JOBS = "jobs/"  # every job's objects (the bucket's lifecycle rule expires them)
WARM = "warm/"  # the warm pools (short-lived: leftovers expire after a day)
TOP_PREFIXES = (JOBS, WARM)  # all a worker may read and write in a bucket (its IAM policy names these)

_TASKS, _CLAIMS, _RESULTS, _HEARTBEATS, _LOGS = "tasks/", "claims/", "results/", "heartbeat/", "logs/"
_RELEASED, _EVENTS, _BUFFERS, _ITEMS, _LEASE = "released/", "events/", "buffers/", "items/", "lease/"
_PICKLE = ".pkl"
_ENTRY, _ASSIGN = ".json", ".assign"


def worker_name(index: int) -> str:
    """A worker's name in keys and logs (zero-padded, so its objects list in worker order)."""
    return f"worker-{index:04d}"


def leaf(key: str) -> str:
    """The last part of a key (listings are compared by leaf names)."""
    return key.rsplit("/", 1)[-1]


# ----- one job -------------------------------------------------------------------------------------
def job_prefix(job_id: str) -> str:
    """Where a job's objects live, unless it was given another prefix."""
    return f"{JOBS}{job_id}/"


def spec_key(prefix: str) -> str:
    return prefix + "spec.json"


def program_key(prefix: str) -> str:
    return prefix + "program" + _PICKLE


def program_buffers_prefix(prefix: str) -> str:
    return prefix + _BUFFERS


def program_buffer_key(prefix: str, number: int) -> str:
    """The program's out-of-band buffer `number` (protocol/buffers.py), in pickling order."""
    return f"{prefix}{_BUFFERS}{number:04d}.buf"


def tasks_prefix(prefix: str) -> str:
    return prefix + _TASKS


def task_key(prefix: str, block: int) -> str:
    """A block of items; six digits so that listing in key order is listing in block order."""
    return f"{prefix}{_TASKS}{block:06d}{_PICKLE}"


def task_block(key: str) -> int:
    """The block number of a task key."""
    return int(leaf(key).removesuffix(_PICKLE))


def leases_prefix(prefix: str) -> str:
    return prefix + _LEASE


def lease_key(prefix: str, epoch: int) -> str:
    """A driver's lease on the job: the highest epoch holds it (core/lease.py)."""
    return f"{prefix}{_LEASE}{epoch:06d}"


def lease_epoch(key: str) -> int:
    """The epoch a lease key names (0 for anything else in that folder: a temporary file)."""
    name = leaf(key)
    return int(name) if name.isdigit() else 0


def item_claim_key(prefix: str, index: int) -> str:
    """Taken exclusively by the one process that queues item `index` of an open job several processes feed."""
    return f"{prefix}{_ITEMS}{index:09d}"


def claims_prefix(prefix: str) -> str:
    return prefix + _CLAIMS


def claim_key(prefix: str, block: int) -> str:
    return f"{prefix}{_CLAIMS}{block:06d}"


def claim_block(key: str) -> int:
    """The block number of a claim key."""
    return int(leaf(key))


def results_prefix(prefix: str) -> str:
    return prefix + _RESULTS


def result_key(prefix: str, block: int, part: int, millis: int) -> str:
    """A flush of results; the writer's time comes first (13 digits) so that key order is time order."""
    return f"{prefix}{_RESULTS}{millis:013d}-{block:06d}-{part:04d}{_PICKLE}"


def results_after(prefix: str, since: float) -> str:
    """A StartAfter key that lists the result objects written from `since` (epoch seconds) on: '~' sorts
    after every digit and '-', so the key of the millisecond before is passed whatever its block."""
    return f"{prefix}{_RESULTS}{max(0, int(since * 1000) - 1):013d}~"


def result_time(key: str) -> float:
    """When a result object was written (epoch seconds, by its writer's clock)."""
    return int(leaf(key).split("-", 1)[0]) / 1000


def result_block(key: str) -> tuple[int, int]:
    """(block, part) of a result key."""
    _, block, part = leaf(key).removesuffix(_PICKLE).split("-")
    return int(block), int(part)


def heartbeats_prefix(prefix: str) -> str:
    return prefix + _HEARTBEATS


def heartbeat_key(prefix: str, worker: int) -> str:
    return prefix + _HEARTBEATS + worker_name(worker)


def release_key(prefix: str, worker: int) -> str:
    return prefix + _RELEASED + worker_name(worker)


def log_key(prefix: str, worker: int) -> str:
    return f"{prefix}{_LOGS}{worker_name(worker)}.log"


def cancel_key(prefix: str) -> str:
    return prefix + "cancel"


def closed_key(prefix: str) -> str:
    return prefix + "closed"


def deadline_key(prefix: str) -> str:
    return prefix + "deadline"


def record_key(prefix: str) -> str:
    return prefix + "record.json"


def driver_key(prefix: str) -> str:
    return prefix + "driver.json"


def events_prefix(prefix: str) -> str:
    return prefix + _EVENTS


def events_key(prefix: str, seq: int) -> str:
    return f"{prefix}{_EVENTS}{seq:010d}.json"


def events_seq(key: str) -> int:
    return int(leaf(key).removesuffix(".json"))


def job_of_folder(folder: str) -> str:
    """The job id of a folder listed under JOBS ('jobs/<id>/')."""
    return folder.removeprefix(JOBS).strip("/")


def payload_prefixes(prefix: str) -> tuple[str, ...]:
    """The bulky or transient folders dropped once results are collected (spec, logs and program are not here)."""
    return (
        tasks_prefix(prefix),
        claims_prefix(prefix),
        results_prefix(prefix),
        heartbeats_prefix(prefix),
        prefix + _RELEASED,
        events_prefix(prefix),
        prefix + _ITEMS,
    )


def object_kind(key: str) -> str:
    """What a key is, for counting API calls: 'tasks', 'claims' or 'results' for the many objects of a
    folder, else the object's own name ('spec.json', 'cancel', a warm entry...)."""
    parts = key.split("/")
    if len(parts) > 2 and parts[-2] + "/" in (_RESULTS, _CLAIMS, _TASKS):
        return parts[-2]
    return parts[-1]


# ----- warm pools ----------------------------------------------------------------------------------
def warm_pool(shape: str, spot: bool) -> str:
    """A pool per task shape (and Spot or not): a worker waiting there fits any job of that shape."""
    return f"{WARM}{shape}{'-spot' if spot else ''}/"


def warm_entry(pool: str, job_id: str, worker: int) -> str:
    """Where a finished worker registers while it waits."""
    return f"{pool}{job_id}-{worker:04d}{_ENTRY}"


def warm_assignment(entry: str) -> str:
    """The key whose exclusive creation takes (or, at expiry, retires) the worker of an entry."""
    return entry.removesuffix(_ENTRY) + _ASSIGN


def is_warm_entry(key: str) -> bool:
    return key.endswith(_ENTRY)


def warm_names(job_id: str, worker: int) -> set[str]:
    """The leaf names a job's worker has in a pool: waiting (entry) or taken by another job (assignment)."""
    entry = warm_entry("", job_id, worker)
    return {entry, warm_assignment(entry)}

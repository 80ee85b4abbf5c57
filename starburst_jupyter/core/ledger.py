"""A job's items as the driver knows them: which block holds each, who claimed it, what came back.

The ledger reads claims and results from the job's store, turns them into final outcomes (with the
events a face shows) and puts the unfinished work of a worker that ended back in the queue. It starts
no worker and reads no clock but the one it is given."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, overload

from starburst_jupyter.backends import WorkerRef
from starburst_jupyter.core import events as ev
from starburst_jupyter.core import record as rec
from starburst_jupyter.core.decisions import item_is_lost
from starburst_jupyter.errors import BurstError, RemoteTraceback, TaskCancelled, WorkerLost
from starburst_jupyter.protocol import keys, serialize
from starburst_jupyter.protocol.jobfiles import ItemResult, JobFiles

MAX_RECORDED_FAILURES = 50
#: A flushed batch of more items than this is published as one TasksFinished, not one TaskFinished per item:
#: a face needs counts, not a million messages (failures stay one TaskFailed each: they carry a traceback).
PER_ITEM_EVENTS = 16
_PENDING, _RUNNING = ord(rec.Outcome.PENDING.value), ord(rec.Outcome.RUNNING.value)
_DONE, _FAILED = ord(rec.Outcome.DONE.value), ord(rec.Outcome.FAILED.value)
_CANCELLED = ord(rec.Outcome.CANCELLED.value)
UNKNOWN_WORKER = -2  # a claim whose object cannot be read: someone has the block, we cannot tell who
WITHDRAWN = -1  # a block's claim by no worker: its item was taken back before it started
logger = logging.getLogger(__name__)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection while a bulk step makes objects that live on (they hold no cycles to find)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class ItemState(NamedTuple):
    """One item as the ledger knows it (a snapshot: the ledger keeps columns, not an object per item)."""

    final: bool
    failed: bool
    value: Any
    block: int
    attempts: int
    result: ItemResult | None  # what the worker reported, kept only when the item printed (outputs())


class _ItemsView(Sequence[ItemState]):
    def __init__(self, ledger: ItemLedger):
        self._ledger = ledger

    def __len__(self) -> int:
        return len(self._ledger._letters)

    @overload
    def __getitem__(self, index: int) -> ItemState: ...
    @overload
    def __getitem__(self, index: slice) -> list[ItemState]: ...
    def __getitem__(self, index: int | slice) -> ItemState | list[ItemState]:
        if isinstance(index, slice):
            return [self._ledger.item(i) for i in range(*index.indices(len(self)))]
        return self._ledger.item(range(len(self))[index])


def _run_or_list(indices: list[int]) -> Sequence[int]:
    """A block's items: a range when they are a run (a plan block: a few bytes, not a list of a million ints)."""
    if indices and indices[-1] - indices[0] == len(indices) - 1 and indices == list(range(indices[0], indices[-1] + 1)):
        return range(indices[0], indices[-1] + 1)
    return indices


_FINAL = frozenset((_DONE, _FAILED, _CANCELLED))


class ItemLedger:
    """Columns, one entry per item: the outcome letter (record.Outcome, also what `final` and `failed` are read
    from), the value, the block that holds it; attempts and printed output only for the few that have them.
    A million items cost ~17 bytes each beyond their values."""

    def __init__(self, files: JobFiles, bus: ev.EventBus, result_window: float):
        self.files, self.bus, self.job_id = files, bus, files.job_id
        self.result_window = result_window
        self._letters = bytearray()  # each item's outcome letter, kept as items change (record.Outcome)
        self._values: list[Any] = []  # each item's value (its exception when it failed); None until final
        self._block = array("l")  # the block that holds each item now (-1: none yet)
        self._attempts: dict[int, int] = {}  # items tried more than once
        self._printed: dict[int, ItemResult] = {}  # items that printed: their output (outputs())
        self._busy = 0.0  # seconds the finished items took
        self.claims: dict[int, int] = {}  # block -> worker (-1: withdrawn)
        self.blocks: dict[int, Sequence[int]] = {}
        self.claim_floor = 0  # every block below it is claimed
        self.seen_results: set[str] = set()
        self.newest_result = 0.0  # writer's time of the newest result object seen
        self.last_sweep = 0.0
        self.callbacks: list[Callable[[int, bool, Any], None]] = []
        self.shared = False  # True when another process also writes this job's blocks (see discover)

    # ----- what exists ------------------------------------------------------------------------
    @property
    def items(self) -> Sequence[ItemState]:
        """Every item, read-only (ItemState snapshots, made on access)."""
        return _ItemsView(self)

    def item(self, index: int) -> ItemState:
        letter = self._letters[index]
        printed = self._printed.get(index)
        return ItemState(
            letter in _FINAL,
            letter == _FAILED or letter == _CANCELLED,
            self._values[index],
            self._block[index],
            self._attempts.get(index, 1),
            printed,
        )

    def total(self) -> int:
        return len(self._letters)

    def _unfinished(self, indices: Sequence[int]) -> list[int]:
        letters = self._letters
        if type(indices) is range and indices.step == 1:  # (a run: counted at C speed, usually all final)
            a, b = indices.start, min(indices.stop, len(letters))
            if not letters.count(_PENDING, a, b) and not letters.count(_RUNNING, a, b):
                return []
        return [i for i in indices if letters[i] not in _FINAL]

    def is_final(self, index: int) -> bool:
        return self._letters[index] in _FINAL

    def value(self, index: int) -> Any:
        return self._values[index]

    def reset(self, total: int) -> None:
        """`total` items, none known yet (a new job, attach, a follower's collect)."""
        self._letters = bytearray([_PENDING]) * total
        self._values = [None] * total
        self._block = array("l", [-1]) * total
        self._attempts, self._printed, self._busy = {}, {}, 0.0

    def _extend_to(self, total: int) -> None:
        """Items appended (discover, append): pending, in no block yet."""
        more = total - len(self._letters)
        if more > 0:
            self._letters += bytes([_PENDING]) * more
            self._values += [None] * more
            self._block += array("l", [-1]) * more

    def _mark(self, index: int) -> None:
        """Item `index`'s letter while it is not final: running when its block is claimed by a worker."""
        if self._letters[index] not in _FINAL:
            running = self.claims.get(self._block[index], -1) >= 0
            self._letters[index] = _RUNNING if running else _PENDING

    def add_block(self, pairs: list[tuple[int, Any]]) -> int:
        if not self.shared:
            block = len(self.blocks)
            self.files.write_block(block, pairs)
        else:  # another process writes blocks of this job too: a number is taken by an exclusive create
            block = max(self.blocks, default=-1) + 1
            while not self.files.create_block(block, pairs):
                block += 1
        self.blocks[block] = _run_or_list([i for i, _ in pairs])
        return block

    def add_run(self, first: int, values: list[Any]) -> int:
        """A block of the items first, first + 1, ... (a plan block of a new job)."""
        if self.shared:
            return self.add_block(list(zip(range(first, first + len(values)), values)))
        block = len(self.blocks)
        self.files.write_block_run(block, first, values)
        self.blocks[block] = range(first, first + len(values))
        return block

    def discover(self) -> bool:
        """Blocks another process wrote (an open job fed from a kernel while a detached driver runs it, or the
        reverse): their items join the ledger."""
        known = max(self.blocks, default=-1)
        fresh = [b for b in self.files.list_blocks(after=known) if b not in self.blocks]
        for block in fresh:
            indices = _run_or_list(list(self.files.read_block_items(block)[0]))
            self.blocks[block] = indices
            if indices:
                self._extend_to(max(indices) + 1)
            for index in indices:
                if self._letters[index] not in _FINAL:
                    self._block[index] = block
                self._mark(index)
        return bool(fresh)

    def start(self, blocks: list[Sequence[int]], items: list[Any], open_job: bool) -> None:
        """Write the first blocks (a new job)."""
        with gc_paused():  # a million values at once: the cyclic GC would rescan them over and over (3-5x)
            self._start(blocks, items, open_job)

    def _start(self, blocks: list[Sequence[int]], items: list[Any], open_job: bool) -> None:
        for block in blocks:  # (plan blocks are runs of indices: sliced, not indexed one by one)
            run = bool(block) and block[-1] - block[0] == len(block) - 1
            if run:
                self.add_run(block[0], items[block[0] : block[-1] + 1])
            else:
                self.add_block([(i, items[i]) for i in block])
        if not open_job:
            self.reset(len(items))
            self._index_blocks()

    def reload(self, total: int) -> None:
        """Rebuild from the store (attach): which blocks hold which items; claims and results come with the
        first full scan. Later blocks (retries) supersede earlier ones."""
        for block in self.files.list_blocks():
            self.blocks[block] = _run_or_list(list(self.files.read_block_items(block)[0]))
        # An item in several blocks was requeued: each block after its first is an attempt used up (the count
        # lived in the driver that died), so --retries means the same after an attach. (A requeue that counted
        # no attempt, a SIGTERM's hand-back or a worker the user stopped, counts here too: an attach errs towards
        # fewer runs, never more.)
        seen: dict[int, int] = {}
        for indices in self.blocks.values():
            for index in indices if len(indices) == 1 else ():
                seen[index] = seen.get(index, 0) + 1
        first_blocks = {i for indices in self.blocks.values() if len(indices) > 1 for i in indices}
        attempts = {
            index: count + (1 if index in first_blocks else 0) for index, count in seen.items()
            if count + (1 if index in first_blocks else 0) > 1
        }  # fmt: skip
        # (an open job's blocks may hold items its record does not count yet: a kernel feeds it)
        highest = max((max(indices) for indices in self.blocks.values() if indices), default=-1)
        self.reset(max(total, highest + 1))
        self._attempts = attempts
        self._index_blocks()

    def _index_blocks(self) -> None:
        column = self._block
        for block_id, indices in self.blocks.items():
            if type(indices) is range and indices.step == 1:
                column[indices.start : indices.stop] = array("l", [block_id]) * len(indices)
            else:
                for i in indices:
                    column[i] = block_id
        if self.claims:  # (none yet for a new job, nor on attach before the first scan)
            for i in range(len(self._letters)):
                self._mark(i)

    def append(self, values: list[Any]) -> list[int]:
        """Queue items; their indices. When other processes feed the job too (`shared`), each index is taken by
        an exclusive create first: two feeders that both counted N items must not both queue an item N (each
        would then take the other's result)."""
        index = len(self._letters)
        indices = []
        for value in values:
            if self.shared:
                while not self.files.take_index(index):
                    index += 1
            block = self.add_block([(index, value)])  # first: an item that cannot be written is not queued
            self._extend_to(index + 1)
            self._block[index] = block
            self._mark(index)
            indices.append(index)
            index += 1
        return indices

    def end_unqueued(self) -> int:
        """End the items whose number a feeder took (an exclusive create) but whose block never came: its value
        could not be written, or it died in between. Called once the job is closed, when no feeder may still be
        writing; without it, such a gap in the numbers would keep the job open for good. How many ended."""
        ended = 0
        for index in range(len(self._letters)):
            if self._block[index] < 0 and self._letters[index] not in _FINAL:
                error = TaskCancelled(f"Item {index} was never queued: the process that took its number wrote no task.")
                self.finalize(index, False, error, None)
                ended += 1
        return ended

    def withdraw(self, index: int) -> bool:
        block = self._block[index]
        if self.is_final(index) or not self.files.claim(block, WITHDRAWN):  # a worker got there first
            return False
        self.claims[block] = WITHDRAWN
        self.finalize(index, False, TaskCancelled(f"Item {index} was withdrawn before it started."), None)
        return True

    # ----- questions --------------------------------------------------------------------------
    def complete(self) -> bool:
        return self.finished() == len(self._letters)

    def unclaimed(self) -> int:
        return sum(1 for b in self.blocks if b not in self.claims)

    def claimed_by(self, worker: int) -> bool:
        return worker in self.claims.values()

    def finished(self) -> int:
        """Items with their final word (counted from the letters: C speed, no pass over a million Items)."""
        return len(self._letters) - self._letters.count(_PENDING) - self._letters.count(_RUNNING)

    def any_failed(self) -> bool:
        return _FAILED in self._letters

    # ----- reading the store ------------------------------------------------------------------
    def scan_claims(self, full: bool = False) -> bool:
        """Claims come roughly in block order, so a quick scan lists only those from the first unclaimed block."""
        while self.claim_floor in self.claims:
            self.claim_floor += 1
        fresh = self.files.list_claimed(after=-1 if full else self.claim_floor - 1) - self.claims.keys()
        for block in sorted(fresh):
            try:
                worker = self.files.read_claim(block).worker
            except Exception as exc:  # one damaged object must not end the job: say so, go on
                self._unreadable(f"claim of block {block}", exc)
                worker = UNKNOWN_WORKER
            self.claims[block] = worker
            column, letters = self._block, self._letters
            letter = _RUNNING if worker >= 0 else _PENDING
            held = self.blocks.get(block, ())
            first, end = (held[0], held[-1] + 1) if held else (0, 0)
            if (
                held
                and end - first == len(held) <= len(letters) - first
                and column[first] == block == column[end - 1]
                and letters.count(_PENDING, first, end) == len(held)
            ):
                letters[first:end] = bytes([letter]) * len(held)  # a fresh plan block: a run of pending items
            else:
                for index in held:
                    if index < len(letters) and column[index] == block and letters[index] not in _FINAL:
                        letters[index] = letter
            if worker == WITHDRAWN:  # withdrawn by another process (a detached executor's kernel)
                for index in self.blocks.get(block, ()):
                    if index < len(letters) and letters[index] not in _FINAL:
                        cancelled = TaskCancelled(f"Item {index} was withdrawn before it started.")
                        self.finalize(index, False, cancelled, None)
            if worker >= 0:
                self.bus.publish(ev.TaskStarted(self.job_id, worker=worker, indices=tuple(self.blocks.get(block, ()))))
        return bool(fresh)

    def collect_results(self, full: bool = False) -> bool:
        """A quick listing covers the last `result_window` seconds of results; a full one runs now and then."""
        if full:
            self.last_sweep = time.time()
        since = None if full or not self.newest_result else self.newest_result - self.result_window
        keys = [k for k in self.files.list_result_keys(since) if k not in self.seen_results]
        for key in sorted(keys):
            self.seen_results.add(key)
            try:
                self.newest_result = max(self.newest_result, self.files.result_time(key))
                with gc_paused():
                    pairs, quiet = self.files.read_result_batch(key)  # one pass over the batch's values
            except Exception as exc:  # its items stay unfinished and are retried when their worker ends
                self._unreadable(f"result object {key}", exc)
                continue
            with gc_paused():
                self._take_batch(pairs, quiet)
        return bool(keys)

    def _take_batch(self, pairs: list[tuple[tuple[Any, ...], Any]], quiet: serialize.QuietRun | None = None) -> None:
        """A flushed batch: a quiet success (no output, a value that decoded, no callback waiting) is set in
        place, a quiet run's items by slices when they are a run of unfinished items; anything else goes through
        _take. A batch of more than PER_ITEM_EVENTS is one TasksFinished."""
        values, letters, quick = self._values, self._letters, not self.callbacks
        batched = len(pairs) + (len(quiet) if quiet is not None else 0) > PER_ITEM_EVENTS
        done: list[int] = []
        seconds, quiet_seconds, worker, count, undecodable = 0.0, 0.0, -1, len(letters), serialize.Undecodable
        events: list[ev.Event] = []
        for meta, value in pairs:
            index, ok, _, out, err, _, duration, worker = meta
            if index >= count or letters[index] in _FINAL:
                continue
            if ok and quick and not out and not err and type(value) is not undecodable:
                values[index] = value
                letters[index] = _DONE
                quiet_seconds += duration
                if not batched:
                    events.append(ev.TaskFinished(self.job_id, index=index, worker=worker, duration=duration))
            elif not self._take(ItemResult(meta[0], ok, value, *meta[2:]), publish_ok=not batched):
                continue
            done.append(index)
            seconds += duration
        if quiet is not None and len(quiet):
            worker = quiet.worker
            taken = sum(quiet.durations)
            run = quiet.indices
            if (
                quick
                and type(run) is range
                and run.stop <= count
                and letters.count(_PENDING, run.start, run.stop) + letters.count(_RUNNING, run.start, run.stop)
                == len(run)
            ):  # the usual case: a run of unfinished items, set by slices (C speed)
                values[run.start : run.stop] = quiet.values
                letters[run.start : run.stop] = bytes([_DONE]) * len(run)
                quiet_seconds += taken
                seconds += taken
                done.extend(run)
                if not batched:
                    events += [ev.TaskFinished(self.job_id, index=i, worker=worker, duration=d)
                               for i, d in zip(run, quiet.durations)]  # fmt: skip
            elif quick:  # not one run of unfinished items (a retry's, a mixed block's): one by one, no objects
                for index, value, duration in zip(run, quiet.values, quiet.durations):
                    if index >= count or letters[index] in _FINAL:
                        continue
                    values[index] = value
                    letters[index] = _DONE
                    quiet_seconds += duration
                    seconds += duration
                    done.append(index)
                    if not batched:
                        events.append(ev.TaskFinished(self.job_id, index=index, worker=worker, duration=duration))
            else:  # a callback waits (an executor's futures): each through finalize
                for index, value, duration in zip(run, quiet.values, quiet.durations):
                    if index >= count or letters[index] in _FINAL:
                        continue
                    result = ItemResult(index, True, value, "", "", "", 0.0, duration, worker)
                    if self._take(result, publish_ok=not batched):
                        done.append(index)
                        seconds += duration
        self._busy += quiet_seconds
        for event in events:
            self.bus.publish(event)
        if done and batched:  # one event for the batch (one worker wrote it)
            self.bus.publish(ev.TasksFinished(self.job_id, worker=worker, indices=tuple(done), duration=seconds))

    def _unreadable(self, what: str, exc: Exception) -> None:
        message = f"job {self.job_id}: the {what} could not be read ({type(exc).__name__}: {exc}); its work is redone"
        logger.warning(message)
        self.bus.publish(ev.LogLine(self.job_id, worker=-1, line=f"[starburst] {message}"))

    def requeue_unknown(self) -> None:
        """Blocks whose claim could not be read, once no worker is left that could be running them: their
        unfinished items go back in the queue (each alone, like a dead worker's)."""
        for block, worker in sorted(self.claims.items()):
            if worker != UNKNOWN_WORKER:
                continue
            self.claims[block] = -1  # handled
            missing = self._unfinished(self.blocks.get(block, ()))
            inputs = dict(self.files.read_block(block)) if missing else {}
            for index in missing:
                self._block[index] = self.add_block([(index, inputs[index])])
                self._mark(index)

    def _take(self, result: ItemResult, publish_ok: bool = True) -> bool:
        """Finalize one reported item (its value already decoded with its batch); whether it succeeded."""
        value = result.value
        if isinstance(value, serialize.Encoded):  # (read without decode)
            try:
                value = serialize.decode(value)
            except Exception as exc:
                value = serialize.Undecodable(exc)
        if isinstance(value, serialize.Undecodable):  # a value the kernel cannot unpickle is that item's failure
            why = value.error
            value = BurstError(
                f"Item {result.index}'s result could not be unpickled in this kernel: {type(why).__name__}: {why}. "
                f"Usually the worker and kernel have different package versions.",
                job_id=self.job_id,
            )
            result.ok = False
        if not result.ok and isinstance(value, BaseException) and result.traceback:
            value.__cause__ = RemoteTraceback(result.traceback)
        self.finalize(result.index, result.ok, value, result, publish_ok)
        return result.ok

    # ----- outcomes ---------------------------------------------------------------------------
    def finalize(self, index: int, ok: bool, value: Any, result: ItemResult | None, publish_ok: bool = True) -> None:
        if result is not None and not self.is_final(index):
            self._busy += result.duration
        self._values[index] = value
        cancelled = isinstance(value, TaskCancelled)
        self._letters[index] = _CANCELLED if cancelled else _DONE if ok else _FAILED
        if result is not None and (result.stdout or result.stderr):  # only an item that printed keeps its result
            self._printed[index] = ItemResult(
                result.index, ok, None, result.traceback, result.stdout, result.stderr, result.started,
                result.duration, result.worker,
            )  # fmt: skip
        else:
            self._printed.pop(index, None)
        worker = result.worker if result else -1
        if ok and not publish_ok:
            pass  # published with its batch (collect_results)
        elif ok:
            duration = result.duration if result else 0.0
            self.bus.publish(ev.TaskFinished(self.job_id, index=index, worker=worker, duration=duration))
        elif not cancelled:  # unfinished items of a cancelled job did not fail
            line = f"{type(value).__name__}: {value}".splitlines()[0][:300]
            tb = result.traceback if result else ""
            self.bus.publish(ev.TaskFailed(self.job_id, index=index, worker=worker, error=line, traceback=tb))
        for callback in self.callbacks:
            try:
                callback(index, ok, value)
            except Exception:  # a face's callback must not break the job
                logger.exception("an item callback of job %s failed", self.job_id)

    def end_unfinished(self, error: Callable[[int], BaseException]) -> None:
        """Every item not final yet ends with error(index) (a cancel, a start-up failure, a crash)."""
        letters = self._letters
        for index in range(len(letters)):
            if letters[index] not in _FINAL:
                self.finalize(index, False, error(index), None)

    def released(self, worker: int) -> dict[str, Any] | None:
        """What a worker told to stop (SIGTERM) handed back before it exited (keys.release_key), or None."""
        try:
            release: dict[str, Any] = json.loads(self.files.store.get(keys.release_key(self.files.prefix, worker)))
        except FileNotFoundError:
            return None
        except Exception as exc:  # then its work is redone as a crashed worker's
            self._unreadable(f"release of worker {worker}", exc)
            return None
        return release

    def requeue(self, ref: WorkerRef, retries: int, stopped_by_user: bool) -> None:
        """Items a worker held but never reported go to another worker, up to the retry limit."""
        release: dict[str, Any] | None = None
        for block, worker in sorted(self.claims.items()):
            if worker != ref.index:
                continue
            # Unflushed results are lost with the worker, so we cannot tell which item was running:
            # each one it held counts an attempt and goes alone to another worker, where a crash is its own.
            missing = self._unfinished(self.blocks[block])
            inputs = dict(self.files.read_block(block)) if missing else {}
            alone = len(self.blocks[block]) == 1  # only then is the item surely what the worker was running
            if missing and release is None:
                release = self.released(ref.index) or {}
            for index in missing:
                attempts = self._attempts.get(index, 1)
                # A worker that left on SIGTERM flushed what it finished, so what is missing never started
                # (but the item it was running): redone with no attempt counted, as after a stop by the user.
                if release and index != release.get("abandoned"):
                    self._block[index] = self.add_block([(index, inputs[index])])
                    self._mark(index)
                    continue
                if item_is_lost(attempts, retries, alone):
                    self.finalize(index, False, self._lost(index, ref, attempts), None)
                    continue
                if not stopped_by_user:  # a worker the user stopped is not the item's fault
                    attempts = self._attempts[index] = attempts + 1
                    reason = f"worker {ref.index}: {ref.reason}"
                    self.bus.publish(ev.TaskRetried(self.job_id, index=index, attempt=attempts, reason=reason))
                self._block[index] = self.add_block([(index, inputs[index])])
                self._mark(index)

    def _lost(self, index: int, ref: WorkerRef, attempts: int) -> WorkerLost:
        return WorkerLost(
            f"Item {index} was running on worker {ref.index} when that worker ended ({ref.reason}); it was tried "
            f"{attempts} time{'s' if attempts != 1 else ''}, on different workers, and each time the worker "
            f"died. Look for crashes or memory use in the item: %burst_logs {self.job_id} --worker {ref.index} "
            f"shows that worker's log.",
            job_id=self.job_id,
        )

    # ----- what the record and the caller get -------------------------------------------------
    def outcomes(self) -> tuple[str, dict[str, int], list[rec.Failure]]:
        """The record's outcome letters, counts per outcome, and the first failures. The letters are kept as
        items change (_mark), so a record written twice a second at a million items costs C-speed copies and
        counts, not a pass over every Item."""
        counts = {o.value: self._letters.count(ord(o.value)) for o in rec.Outcome}
        failures: list[rec.Failure] = []
        n = self._letters.find(_FAILED)
        while n >= 0 and len(failures) < MAX_RECORDED_FAILURES:
            value = self._values[n]
            failures.append(rec.Failure(n, f"{type(value).__name__}: {value}"[:500]))
            n = self._letters.find(_FAILED, n + 1)
        return self._letters.decode("ascii"), counts, failures

    def busy_seconds(self) -> float:
        return self._busy

    def values(self) -> list[Any]:
        """Every item's value, in order: the ledger's own column (the job is over when this is asked)."""
        return self._values

    def failures(self, cancelled: bool = False) -> list[tuple[int, BaseException]]:
        """(index, exception) of the failed items (with `cancelled`, of the cancelled ones too), in order."""
        letters, wanted = self._letters, (_FAILED, _CANCELLED) if cancelled else (_FAILED,)
        found = sorted(n for letter in wanted for n in _positions(letters, letter))
        return [(n, self._values[n]) for n in found]

    def done_count(self) -> int:
        return self._letters.count(_DONE)

    def outputs(self) -> dict[int, tuple[str, str]]:
        return {n: (r.stdout, r.stderr) for n, r in sorted(self._printed.items()) if r.stdout or r.stderr}


def _positions(letters: bytearray, letter: int) -> Iterator[int]:
    n = letters.find(letter)
    while n >= 0:
        yield n
        n = letters.find(letter, n + 1)

"""The remote side: `python -m starburst_jupyter.worker --store URL --job ID --worker N`.

Every backend starts exactly this. A worker claims blocks of items from the job's store until
none are left, writes results as it goes, heartbeats, and exits as soon as it sees the job's cancel
marker or passes the job's deadline, even mid-item. In a job of several waves it carries on from its share
of one wave into its share of the next (no new task, no cold start per wave); only an explicit --budget
makes it stop early. On SIGTERM (ECS
StopTask, a Spot interruption's notice, docker stop) it flushes what it finished, hands back what it
claimed and did not finish (keys.release_key) and exits well inside the stop timeout.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import io
import json
import os
import random
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn, cast

from starburst_jupyter.errors import RemoteTraceback, ResultTooLarge, StorageFull, no_room
from starburst_jupyter.protocol import keys, serialize, sourcemap
from starburst_jupyter.protocol.exits import (
    EXIT_CANCELLED,
    EXIT_DEADLINE,
    EXIT_NO_PROGRAM,
    EXIT_OK,
    EXIT_TERMINATED,
)
from starburst_jupyter.protocol.jobfiles import ItemResult, JobFiles
from starburst_jupyter.protocol.sourcemap import SourceMap
from starburst_jupyter.protocol.workerspec import WorkerSpec
from starburst_jupyter.stores.objects import open_store


def log(message: str) -> None:
    stream = sys.__stderr__
    if stream is not None:  # None only in a process started without a stderr
        stream.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
        stream.flush()


#: Characters of an item's stdout (and of its stderr) kept at each end for its result, i.e. the cell output.
ITEM_KEEP = 32 * 1024
#: Characters of one item's stream written to the worker log; the rest is counted, not logged.
ITEM_LOG_HEAD = 1024 * 1024
#: Characters of item output one worker writes to its log in all. The worker's stdout is its log on every
#: backend (a file, the engine's log, CloudWatch), so the worker bounds it: rotation would need the backend to
#: reopen a stream only local workers have as a file. Each item's first and last ITEM_KEEP still come back.
WORKER_LOG_CAP = 64 * 1024 * 1024


#: Seconds the item running when SIGTERM comes may take to finish before the worker leaves without it (it
#: is redone elsewhere). ECS kills 30 s (the default stopTimeout) after SIGTERM; the flush must fit too.
STOP_GRACE_MAX = 10.0
#: What a process ended by SIGTERM reports in a container (128 + 15); exits.describe() names it so.


class StopSignal:
    """SIGTERM, noted twice: by a Python handler (it runs in the main thread between bytecodes, so the item
    loop sees it between items) and through a wakeup pipe that the C-level handler writes even while the
    main thread is stuck in a long C call, which the control thread watches."""

    def __init__(self) -> None:
        self.at: float | None = None
        self._pipe = -1

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # a worker run inside a test thread: no handler (only the main thread may set one)
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        signal.signal(signal.SIGTERM, self._note)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        self._pipe = read

    def _note(self, signum: int, frame: Any) -> None:
        self.at = self.at or time.time()  # no I/O here: it may interrupt a write of the main thread

    @property
    def seen(self) -> bool:
        return self.at is not None

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early when a signal comes; whether SIGTERM has come."""
        if self._pipe < 0:
            time.sleep(seconds)
            return self.seen
        ready, _, _ = select.select([self._pipe], [], [], seconds)
        if ready:
            with contextlib.suppress(BlockingIOError):
                if signal.SIGTERM in os.read(self._pipe, 512):
                    self.at = self.at or time.time()
        return self.seen


_STOP = StopSignal()


def _size(chars: int) -> str:
    return f"{chars / 1e6:.1f} MB" if chars >= 100_000 else f"{chars:,} characters"


class _LogBudget:
    """How much item output this worker may still write to its log."""

    def __init__(self, cap: int = WORKER_LOG_CAP):
        self.left = cap
        self.cap = cap
        self.said = False


_BUDGET = _LogBudget()


class _Capture:
    """An item's stream for its result: its first and last `keep` characters, and how many were cut between."""

    def __init__(self, keep: int = ITEM_KEEP):
        self.keep = keep
        self.head = io.StringIO()
        self.head_len = 0
        self.tail: collections.deque[str] = collections.deque()
        self.tail_len = 0
        self.total = 0

    def write(self, text: str) -> None:
        self.total += len(text)
        room = self.keep - self.head_len
        if room > 0:
            self.head.write(text[:room])
            self.head_len += min(room, len(text))
            text = text[room:]
        if not text:
            return
        self.tail.append(text[-self.keep :])
        self.tail_len += len(self.tail[-1])
        while self.tail_len - len(self.tail[0]) >= self.keep:
            self.tail_len -= len(self.tail.popleft())

    @property
    def cut(self) -> int:
        return self.total - self.head_len - min(self.tail_len, self.keep)

    def getvalue(self, note: str = "") -> str:
        tail = "".join(self.tail)[-self.keep :] if self.tail else ""
        if not self.cut:
            return self.head.getvalue() + tail
        return f"{self.head.getvalue()}\n[... {_size(self.cut)} cut{note}]\n{tail}"


class _Tee(io.TextIOBase):
    """Sends an item's prints to its capture (for the result) and to the worker log, both bounded: the
    result keeps the first and last ITEM_KEEP characters, the log the first ITEM_LOG_HEAD of each item
    (within the worker's WORKER_LOG_CAP)."""

    def __init__(self, capture: _Capture, log_stream: Any, budget: _LogBudget | None = None):
        self.capture, self.log_stream = capture, log_stream
        self.budget = budget or _BUDGET
        self.logged = 0
        self.unlogged = 0

    def write(self, text: str) -> int:
        self.capture.write(text)
        if self.log_stream is None:
            return len(text)
        allowed = max(0, min(len(text), ITEM_LOG_HEAD - self.logged, self.budget.left))
        if allowed:
            self.log_stream.write(text[:allowed])
            self.logged += allowed
            self.budget.left -= allowed
        self.unlogged += len(text) - allowed
        if self.unlogged and self.budget.left <= 0 and not self.budget.said:
            self.budget.said = True
            self.log_stream.write(
                f"\n[starburst: this worker has logged {_size(self.budget.cap)} of item output, its cap; later "
                f"item output is not logged (each item's first and last {_size(ITEM_KEEP)} come back with its "
                f"result)]\n"
            )
        return len(text)

    def flush(self) -> None:
        if self.log_stream is not None:
            self.log_stream.flush()

    def close_item(self, index: int, stream: str) -> None:
        """After the item: say in the log what of its output was not logged."""
        if self.unlogged and self.log_stream is not None and self.budget.left > 0:
            self.log_stream.write(
                f"\n[... {_size(self.unlogged)} of item {index}'s {stream} not logged (a worker logs the "
                f"first {_size(ITEM_LOG_HEAD)} of each item's output)]\n"
            )
            self.log_stream.flush()


class Control(threading.Thread):
    """Heartbeats and hard-exits on cancel or deadline, even while an item holds the main thread."""

    def __init__(self, files: JobFiles, worker: int, spec: WorkerSpec):
        super().__init__(daemon=True, name="starburst-control")
        self.files, self.worker = files, worker
        self.deadline = spec.deadline
        self.poll = spec.timing.control_poll_seconds
        self.beat_every = spec.timing.heartbeat_seconds
        self.status: dict[str, Any] = {"block": None, "done": 0}
        self.active = True  # False once the worker has left this job (to wait warm for the next one)
        self.on_stop: Any = None  # the worker's leave(): called when the running item outlasts the grace
        # within the backend's own stop grace (local: 2 s; ECS: 30 s), with room to flush and hand back
        self.stop_grace = min(STOP_GRACE_MAX, 3 * spec.timing.flush_seconds)

    def check(self) -> None:
        if self.files.cancel_requested():
            log(f"worker {self.worker}: job cancelled, exiting")
            os._exit(EXIT_CANCELLED)
        self.check_deadline()

    def check_deadline(self) -> None:
        """The deadline is on this worker's clock: no read until it has passed."""
        if time.time() > self.deadline:
            self.deadline = self.files.deadline(self.deadline)  # (`starburst extend` may have moved it)
        if time.time() > self.deadline:
            log(f"worker {self.worker}: job deadline passed, exiting")
            os._exit(EXIT_DEADLINE)

    def run(self) -> None:
        """The cancel marker is read every `poll` seconds, jittered (0.5-1.5x, and a random first offset) so
        that thousands of workers started together do not read in lockstep; the spec's pace already keeps
        the job's reads per second bounded however many workers run (core/decisions.worker_timing). The
        deadline is watched on the clock, and SIGTERM's grace on its own timer, whatever the poll's pace."""
        now = time.time()
        last_beat, next_read = 0.0, now + random.uniform(0.0, self.poll)
        while self.active:
            now = time.time()
            try:
                if now >= next_read:
                    next_read = now + self.poll * random.uniform(0.5, 1.5)
                    self.check()
                else:
                    self.check_deadline()
            except OSError as exc:  # the store is unreachable for now: keep beating, check again soon
                log(f"worker {self.worker}: could not check for cancel: {exc}")
            now = time.time()
            if now - last_beat >= self.beat_every:
                info = {"worker": self.worker, "pid": os.getpid(), "host": socket.gethostname(), "at": now}
                with contextlib.suppress(OSError):
                    self.files.write_heartbeat(self.worker, {**info, **self.status})
                last_beat = now
            wake = min(next_read, last_beat + self.beat_every, max(self.deadline, now) + 0.05)
            if _STOP.at is not None:
                wake = min(wake, _STOP.at + self.stop_grace)
            if _STOP.wait(max(0.01, min(wake - now, self.poll))) and self.on_stop is not None:
                if time.time() - (_STOP.at or 0) >= self.stop_grace:
                    self.on_stop()


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # starburst_jupyter/


def format_remote_traceback(exc: BaseException, sources: SourceMap | None = None) -> str:
    """The user's frames only (starburst's own are noise), with the notebook's lines and cell names."""
    return sourcemap.format_exception(exc, sources or SourceMap(), skip_dir=_PACKAGE_DIR)


def _where_logged(tee: _Tee, where: str) -> str:
    """What the cut marker says of the worker log: whether the cut output can be read there."""
    if tee.log_stream is None:
        return ""
    if not tee.unlogged:
        return f"; all of it is in the worker log: {where}"
    if tee.logged:
        return f"; its first {_size(tee.logged)} are in the worker log: {where}"
    return "; the worker log has none of it (the worker's log cap was reached)"


class _ItemStream(io.TextIOBase):
    """sys.stdout (or stderr) for a whole block: each item's prints go to that item's own _Tee, made only
    when the item prints (a million quiet items make no capture at all)."""

    def __init__(self, log_stream: Any):
        self.log_stream = log_stream
        self.tee: _Tee | None = None

    def write(self, text: str) -> int:
        if self.tee is None:
            self.tee = _Tee(_Capture(), self.log_stream)
        return self.tee.write(text)

    def flush(self) -> None:
        if self.log_stream is not None:
            self.log_stream.flush()


class ItemStreams:
    """stdout and stderr redirected once per block, not per item (two context managers per item were a
    good part of a no-op item's cost); `begin` gives the next item fresh (lazy) captures."""

    def __init__(self) -> None:
        self.out, self.err = _ItemStream(sys.__stdout__), _ItemStream(sys.__stderr__)
        self.saved: tuple[Any, Any] = (None, None)

    def __enter__(self) -> ItemStreams:
        self.saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self.out, self.err
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout, sys.stderr = self.saved

    def begin(self) -> None:
        self.out.tee = self.err.tee = None
        if sys.stdout is not self.out or sys.stderr is not self.err:  # an item replaced them: back for the next
            sys.stdout, sys.stderr = self.out, self.err


def run_item(
    program: Any,
    index: int,
    item: Any,
    worker: int,
    max_result_bytes: int,
    job_id: str = "",
    values: serialize.ValueWriter | None = None,
    streams: ItemStreams | None = None,
) -> ItemResult:
    """Run one item. Its value is pickled now (a value mutated by a later item is not what comes back): into
    `values`, the flushed batch's one stream, when given, else on its own (serialize.encode). Its prints go
    to `streams` (installed for the block), else to streams redirected for this item alone."""
    if streams is None:
        with ItemStreams() as own:
            return run_item(program, index, item, worker, max_result_bytes, job_id, values, own)
    streams.begin()
    started = time.time()
    t0 = time.perf_counter()
    try:
        value = program.run(item)
        ok, tb = True, ""
    except BaseException as exc:  # the item's failure is its result
        value, ok = exc, False
        tb = format_remote_traceback(exc, getattr(program, "sources", None))
    duration = time.perf_counter() - t0
    return item_result(index, value, ok, tb, started, duration, worker, max_result_bytes, job_id, values, streams)


#: Ints inside this range fit in 8 bytes and travel inline at serialize's 16 bytes; a bigger one counts its bytes.
_SMALL_INT = 2**63


def int_size(value: int) -> int:
    """Bytes an int takes in a result batch: 16 (serialize's figure) for one of 8 bytes or fewer, else its
    two's-complement bytes (what pickle writes) and 8 of framing. serialize.inline_size counts every int 16 bytes,
    so an int of a million digits (415 KB) passed a max_result_bytes of 1 KB."""
    if -_SMALL_INT < value < _SMALL_INT:
        return 16
    return (value.bit_length() + 8) // 8 + 8


def inline_size(value: Any) -> int:
    """serialize.inline_size with each int at its real size (int_size), alone or in a tuple; -1 for a value that
    does not travel inline (an int above serialize.INLINE_MAX bytes is pickled and measured like any value)."""
    kind = type(value)
    if kind is int:
        size = int_size(value)
        return size if size <= serialize.INLINE_MAX else -1
    size = serialize.inline_size(value)
    if size < 0 or kind is not tuple:
        return size
    size += sum(int_size(v) - 16 for v in value if type(v) is int)
    return size if size <= serialize.INLINE_MAX else -1


def item_result(
    index: int,
    value: Any,
    ok: bool,
    tb: str,
    started: float,
    duration: float,
    worker: int,
    max_result_bytes: int,
    job_id: str,
    values: serialize.ValueWriter | None,
    streams: ItemStreams,
) -> ItemResult:
    """An item that ran, ready to travel: its value pickled (or inline), too large a value or one that cannot
    be pickled made its failure, and what it printed."""
    inline = ok and values is not None and 0 <= inline_size(value) <= max_result_bytes
    if inline:
        encoded: Any = value  # a plain immutable value travels in the batch's fields (serialize.inline_size)
    else:
        encoded, ok = _encode(value, ok, tb, index, values)
    if ok and not inline and encoded.size > max_result_bytes:  # too large to bring back
        ok, tb = False, ""
        if isinstance(encoded, serialize.Packed):
            encoded.writer.drop(encoded)
        encoded = (values.add if values is not None else serialize.encode)(
            ResultTooLarge(
                f"Item {index} returned {encoded.size:,} bytes, above max_result_bytes ({max_result_bytes:,} bytes). "
                f"Return a "
                f"smaller value (or save it to storage and return its path), or raise the limit with "
                f"%burst_config max_result_bytes=..."
            )
        )
    tee_out, tee_err = streams.out.tee, streams.err.tee
    if tee_out is None and tee_err is None:  # printed nothing
        return ItemResult(index, ok, encoded, tb, "", "", started, duration, worker)
    where = f"%burst_logs {job_id} --worker {worker}" if job_id else f"the log of worker {worker}"
    outputs = []
    for tee, name in ((tee_out, "stdout"), (tee_err, "stderr")):
        if tee is None:
            outputs.append("")
            continue
        tee.close_item(index, name)
        outputs.append(tee.capture.getvalue(_where_logged(tee, where)))
    return ItemResult(index, ok, encoded, tb, outputs[0], outputs[1], started, duration, worker)


def _encode(
    value: Any, ok: bool, tb: str, index: int, values: serialize.ValueWriter | None = None
) -> tuple[serialize.Encoded | serialize.Packed, bool]:
    """The value ready to travel, and whether the item succeeded: a value that cannot travel is a failure."""
    encode = values.add if values is not None else serialize.encode
    try:
        return encode(value), ok
    except Exception as exc:
        if ok:
            value = TypeError(
                f"Item {index} returned a {type(value).__qualname__} that cannot be pickled: {exc}. "
                f"Return plain data (numbers, strings, lists, dicts, arrays) instead."
            )
        else:
            summary = "".join(traceback.format_exception_only(type(value), value)).strip()
            value = RuntimeError(f"{summary} (the original exception could not be pickled: {exc})")
        value.__cause__ = RemoteTraceback(tb) if tb else None
        return encode(value), False


def _new_quiet(worker: int) -> serialize.QuietRun:
    return serialize.QuietRun([], [], [], worker)


class Worker:
    def __init__(self, files: JobFiles, index: int, budget: int):
        self.files, self.index, self.budget = files, index, budget
        self.spec = files.read_spec()
        self.flush_seconds = self.spec.timing.flush_seconds
        self.idle_seconds = self.spec.idle_seconds
        self.max_result_bytes = self.spec.max_result_bytes
        self.known: list[int] = []  # blocks this worker may still try to claim, in order
        self.newest = -1  # the highest block id listed so far
        self.cursor = 0
        self.done = 0
        self.drained = False  # True once no work was left (not merely this worker's budget spent)
        self.share = self.spec.plan.budget  # items of one wave's share: progress in the log, never a limit
        # What SIGTERM's leave() flushes and hands back; the lock keeps it whole between the two threads.
        self.lock = threading.Lock()
        self.block: int | None = None  # the claimed block being run
        self.block_items: Sequence[int] = []
        self.control_status: dict[str, Any] = {}  # the heartbeat's (Control.status)
        self.flushed = 0  # items of the block flushed so far (a block's items run in order: a prefix of it)
        self.pending: list[ItemResult] = []
        self.values = serialize.ValueWriter()  # the pending results' values, pickled into one stream
        self.quiet = _new_quiet(index)  # the items since the last flush that succeeded quietly (columns)
        self.part = 0
        self.running: int | None = None  # the item running now
        self._last_block = 0  # items of the last block run

    def next_block(self) -> int | None:
        waited, pause = 0.0, 0.005
        while True:
            while self.cursor < len(self.known):
                block = self.known[self.cursor]
                self.cursor += 1
                if _STOP.seen:
                    return None
                with self.lock:  # a claim is never made while leave() hands back what this worker holds
                    if self.files.claim(block, self.index):
                        self.block, self.block_items, self.flushed, self.running = block, [], 0, None
                        return block
            fresh = self.files.list_blocks(after=self.newest)
            if fresh:
                # One listing of claims spares a late worker (a later wave) one losing claim per taken block.
                claimed = self.files.list_claimed(after=self.newest) if len(fresh) > 1 else set()
                self.known.extend(b for b in fresh if b not in claimed)
                self.newest = fresh[-1]
                continue
            if _STOP.seen or not self.spec.open or self.files.is_closed() or waited >= self.idle_seconds:
                return None
            time.sleep(pause)  # open job: wait for more work, up to the idle time
            waited += pause
            pause = min(pause * 1.5, 0.25)

    def run(self, control: Control) -> int:
        try:
            program = self.files.read_program()
        except Exception:  # say why in the log; the launcher reports it
            log(
                f"worker {self.index}: could not load the job's program (the cell or function and the names it "
                f"uses); usually a module or package the kernel has and this worker does not:\n"
                f"{traceback.format_exc()}"
            )
            return EXIT_NO_PROGRAM
        control.on_stop = self.leave
        self.control_status = control.status
        while not (self.budget and self.done >= self.budget):
            control.check()
            if self.share and self.done and self.done // self.share > (self.done - self._last_block) // self.share:
                log(f"worker {self.index}: finished its share of wave {self.done // self.share}; carrying on")
            block = self.next_block()
            if _STOP.seen:
                self.leave()
            if block is None:
                self.drained = True
                break
            control.status["block"] = block
            before = self.done
            self.run_block(program, block, control)
            self._last_block = self.done - before
        log(f"worker {self.index}: no more work after {self.done} items, exiting")
        return EXIT_OK

    def run_block(self, program: Any, block: int, control: Control) -> None:
        indices, values = self.files.read_block_items(block)
        items = zip(indices, values)
        with self.lock:
            self.block_items, self.flushed, self.pending, self.part = indices, 0, [], 0
        with ItemStreams() as streams:
            self._run_items(program, block, items, control, streams)
        with self.lock:
            if self.pending or len(self.quiet) or self.part == 0:
                self._flush(block)
            self.block = None

    def _run_items(
        self, program: Any, block: int, items: Iterable[tuple[int, Any]], control: Control, streams: ItemStreams
    ) -> None:
        """The hot loop. An item that succeeds quietly (prints nothing, leaves the streams alone, returns an
        inline value: most items of a big map) costs its call, one clock read and three appends to the quiet
        run's columns, with no lock (leave() counts the columns: a block's items run in order); any other goes
        through item_result (pickled value, output, traceback) under the lock."""
        job_id, limit, me, lock, stop = self.files.job_id, self.max_result_bytes, self.index, self.lock, _STOP
        run, clock, size_of = program.run, time.perf_counter, inline_size
        # (an int is inline at once only when it fits in 8 bytes: a bigger one is measured, int_size)
        small = _SMALL_INT if limit >= serialize.inline_size(0) else 0
        low = -small  # (computed once: negating a big int in the loop allocated one per item)
        scalars = serialize.INLINE_SCALARS - {int} if small else frozenset()
        sources = getattr(program, "sources", None)
        out, err = streams.out, streams.err
        quiet = self.quiet
        # (the worker's quiet run holds lists: serialize.QuietRun's wider types are for the reader)
        indices, values, durations = cast(list[int], quiet.indices), quiet.values, cast(list[float], quiet.durations)
        flush_every = self.flush_seconds
        flush_at = clock() + flush_every
        t0 = clock()
        for index, item in items:
            if stop.seen:
                self.leave()
            self.running = index
            try:
                value = run(item)
            except BaseException as exc:  # the item's failure is its result
                t1 = clock()
                tb = format_remote_traceback(exc, sources)
                result = item_result(
                    index, exc, False, tb, time.time() - (t1 - t0), t1 - t0, me, limit, job_id, self.values, streams
                )
            else:
                t1 = clock()
                if (
                    out.tee is None
                    and err.tee is None
                    and sys.stdout is out
                    and sys.stderr is err
                    and (
                        ((kind := type(value)) is int and low < value < small)  # (ints first: the usual value)
                        or kind in scalars
                        or 0 <= size_of(value) <= limit
                    )
                ):
                    indices.append(index)
                    values.append(value)
                    durations.append(t1 - t0)
                    t0 = t1
                    if t1 >= flush_at:
                        with lock:
                            self._flush(block)
                        flush_at = clock() + flush_every
                    continue
                result = item_result(
                    index, value, True, "", time.time() - (t1 - t0), t1 - t0, me, limit, job_id, self.values, streams
                )
            if not result.ok:
                first = result.traceback.strip().splitlines()[-1:] or ["failed"]
                log(f"worker {me}: item {index} failed: {first[0]}")
            with lock:
                self.pending.append(result)
                if clock() >= flush_at:
                    self._flush(block)
                    flush_at = clock() + flush_every
            streams.begin()  # (its prints, or streams it replaced, are not the next item's)
            t0 = clock()

    def _unflushed(self) -> int:
        return len(self.pending) + len(self.quiet)

    def _flush(self, block: int) -> None:
        """Write the pending results and the quiet run as the block's next part (called with the lock held).
        The quiet run's lists are emptied in place: the hot loop holds them."""
        count = self._unflushed()
        self.write_results(block, self.part, self.pending, self.quiet)
        self.pending, self.part, self.values = [], self.part + 1, serialize.ValueWriter()
        for column in (self.quiet.indices, self.quiet.values, self.quiet.durations):
            del cast(list[Any], column)[:]
        self.flushed += count
        self.done += count
        self.control_status["done"] = self.done

    def leave(self) -> NoReturn:
        """SIGTERM: flush what finished, hand back what was claimed and not finished (the item running now
        is abandoned: redone elsewhere) and exit, within the stop timeout. Holds the lock to the end, so the
        other thread can neither claim nor flush meanwhile."""
        self.lock.acquire()
        block, running = self.block, self.running
        # The hot loop appends to the quiet run without the lock, one column after another: take the whole rows
        # (a row caught half-written is the item running now), as a copy the loop no longer touches.
        quiet = self.quiet
        rows = min(len(quiet.indices), len(quiet.values), len(quiet.durations))
        self.quiet = serialize.QuietRun(
            list(quiet.indices[:rows]), list(quiet.values[:rows]), list(quiet.durations[:rows]), self.index
        )
        finished = self.flushed + len(self.pending) + rows  # a block's items run in order: a prefix of it
        if running is not None and running in self.block_items[:finished]:
            running = None  # (it finished; the next had not started)
        unfinished = [i for i in self.block_items[finished:] if i != running]
        try:
            if block is None:
                log(f"worker {self.index}: SIGTERM: holding no work, exiting")
            else:
                if self.pending or len(self.quiet):
                    self._flush(block)
                release = {
                    "worker": self.index,
                    "at": time.time(),
                    "block": block,
                    "abandoned": running,
                    "not_started": unfinished if self.block_items else None,  # None: the block was not read yet
                }
                self.files.store.put(keys.release_key(self.files.prefix, self.index), [json.dumps(release).encode()])
                log(
                    f"worker {self.index}: SIGTERM: flushed what finished, handed back block {block}'s unfinished "
                    f"items{f' (item {running} was running: it is redone)' if running is not None else ''}, exiting"
                )
        except Exception as exc:  # the store is unreachable: the driver redoes what this worker held, as after a crash
            log(f"worker {self.index}: SIGTERM: could not flush or hand back its work ({exc}); exiting")
        for stream in (sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.flush()
        os._exit(EXIT_TERMINATED)

    def write_results(
        self, block: int, part: int, results: list[ItemResult], quiet: serialize.QuietRun | None = None
    ) -> None:
        """Flush results; when the store has no room for them (disk full, quota, file-size limit) each item
        fails with a short error saying so, which is small enough to fit where the values did not."""
        try:
            self.files.write_results(block, part, results, quiet)
        except OSError as exc:
            if not no_room(exc):
                raise
            log(f"worker {self.index}: no room to store results of block {block}: {exc}")
            if quiet is not None:
                results = results + [
                    ItemResult(i, True, serialize.encode(v), "", "", "", 0.0, d, self.index)
                    for i, v, d in zip(quiet.indices, quiet.values, quiet.durations)
                ]
            self.files.write_results(block, part, [self._no_room(r, exc) for r in results])

    def _no_room(self, result: ItemResult, exc: OSError) -> ItemResult:
        size = result.value.size if isinstance(result.value, (serialize.Encoded, serialize.Packed)) else 0
        error = StorageFull(
            f"Item {result.index}'s result ({size:,} bytes) could not be stored in {self.files.store.url}: "
            f"{exc.strerror or exc} (disk full, quota or file-size limit). Free space where the job's files live, "
            f"or return a smaller value (e.g. save large outputs yourself and return their path).",
            job_id=self.files.job_id,
        )
        return dataclasses.replace(result, ok=False, value=serialize.encode(error), traceback="")


def wait_warm(files: JobFiles, worker: int, spec: WorkerSpec) -> tuple[JobFiles, int] | None:
    """Keep-warm: register in the job's warm pool and wait up to keep_warm_seconds for a launcher to assign
    this worker to a new job of the same spec (no cold start for it). The assignment key is created
    exclusively, by the launcher or, on expiry, by the worker itself, so a worker is never both."""
    pool, seconds = spec.warm_pool, spec.keep_warm_seconds
    if not pool or seconds <= 0 or files.cancel_requested():
        return None
    store, entry = files.store, keys.warm_entry(pool, files.job_id, worker)
    assign = keys.warm_assignment(entry)
    until = time.time() + seconds
    store.put(
        entry,
        [json.dumps({"job": files.job_id, "worker": worker, "until": until, "task_arn": _own_task_arn()}).encode()],
    )
    log(f"worker {worker}: job {files.job_id} done; kept warm for the next job for {seconds:g} s")
    try:
        while True:  # on SIGTERM (nothing is held) it goes at once, unless a launcher has just taken it
            if (time.time() >= until or _STOP.seen) and store.create_exclusive(assign, b'{"expired": true}'):
                log(f"worker {worker}: {'SIGTERM' if _STOP.seen else f'no new job within {seconds:g} s'}, exiting")
                return None
            try:
                assignment = json.loads(store.get(assign))
            except FileNotFoundError:
                time.sleep(1.0)
                continue
            if assignment.get("expired"):
                return None
            log(f"worker {worker}: taken warm by job {assignment['job']} as its worker {assignment['worker']}")
            # (the assignment stays: it tells this job's launcher the worker left for another job, not to stop it)
            return JobFiles(open_store(assignment["store"]), assignment["job"], assignment["prefix"]), int(
                assignment["worker"]
            )
    finally:
        with contextlib.suppress(OSError):
            store.delete(entry)


def _own_task_arn() -> str | None:
    """This task's ARN from the ECS task metadata endpoint (Fargate sets the variable), else None."""
    base = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if not base:
        return None
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base}/task", timeout=2) as reply:
            return json.loads(reply.read()).get("TaskARN")
    except (OSError, ValueError):
        return None


def run_job(files: JobFiles, index: int, budget: int | None = None) -> int:
    """A worker takes blocks until none is left: the plan's budget is a wave's share, which a worker carries
    on past into the next wave's (the launcher starts no worker per wave). `budget` > 0 stops it early."""
    worker = Worker(files, index, budget or 0)
    log(f"worker {index} of job {files.job_id} started (pid {os.getpid()} on {socket.gethostname()})")
    control = Control(files, index, worker.spec)
    control.check()
    control.start()
    code = worker.run(control)
    control.active = False
    if code == EXIT_OK and worker.drained:  # (one stopped by an explicit --budget does not wait warm)
        taken = wait_warm(files, index, worker.spec)
        if taken is not None:
            return run_job(*taken)
    return code


def main(argv: list[str] | None = None) -> int:
    """Arguments, or (on Fargate, where a task gets only environment overrides) STARBURST_* variables."""
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m starburst_jupyter.worker")
    parser.add_argument("--store", default=env("STARBURST_STORE"), help="object store URL (file:///... or s3://...)")
    parser.add_argument("--job", default=env("STARBURST_JOB"))
    parser.add_argument("--prefix", default=env("STARBURST_PREFIX"), help="the job's key prefix in the store")
    parser.add_argument("--worker", type=int, default=env("STARBURST_WORKER"))
    parser.add_argument("--budget", type=int, default=None, help="items to take before exiting (default: no limit)")
    args = parser.parse_args(argv)
    missing = [name for name in ("store", "job", "worker") if getattr(args, name) in (None, "")]
    if missing:
        parser.error(f"give --{' --'.join(missing)} (or STARBURST_STORE, STARBURST_JOB, STARBURST_WORKER)")
    _STOP.install()
    return run_job(JobFiles(open_store(args.store), args.job, args.prefix), args.worker, args.budget)


if __name__ == "__main__":
    sys.exit(main())

"""Pickle protocol 5 with out-of-band buffers, so large arrays are written and read without extra copies.

Frame: MAGIC, buffer count, pickle length, each buffer's length, a digest, the pickle, then the raw buffers.
Writers hand the list of chunks straight to the store; readers slice one bytearray (writable,
so arrays that come back can be modified like local ones).

The digest (BLAKE2b, 16 bytes, over the header, the pickle and every buffer) is checked before anything is
unpickled: a truncated, extended or damaged frame is refused as damaged (DamagedFrame), never decoded to other
values. It guards against damage, not against a writer with access to the store: a per-job key (HMAC) for that
is the next step (issue 22, item 7), and slots in here.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import pickle
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle

MAGIC = b"SBJ2"
_OLD_MAGIC = b"SBJ1"  # frames without a digest (before 0.1.0's issue 22): refused, never guessed at
_HEAD = struct.Struct("<4sIQ")
_LEN = struct.Struct("<Q")
DIGEST_SIZE = 16


class DamagedFrame(ValueError):
    """A frame that is not exactly what its writer wrote (truncated, extended, altered): nothing of it is loaded."""


def _digest(header: bytes | memoryview, payload: bytes | memoryview, views: Sequence[Any]) -> bytes:
    digest = hashlib.blake2b(header, digest_size=DIGEST_SIZE)
    digest.update(payload)
    for view in views:
        digest.update(view)
    return digest.digest()


def seal(payload: bytes | memoryview, views: list[memoryview]) -> list[bytes | memoryview]:
    """[header with digest, payload, *views]: a frame's chunks (nothing copied but the header)."""
    header = _HEAD.pack(MAGIC, len(views), memoryview(payload).nbytes) + b"".join(_LEN.pack(v.nbytes) for v in views)
    return [header + _digest(header, payload, views), payload, *views]


def unseal(data: bytes | bytearray | memoryview) -> tuple[memoryview, list[memoryview]]:
    """(payload, buffers) of a frame whose digest matches; DamagedFrame (saying how) for anything else."""
    view = memoryview(data).cast("B") if memoryview(data).format != "B" else memoryview(data)
    if view.nbytes < _HEAD.size:
        raise DamagedFrame(f"not a starburst frame: {view.nbytes} bytes, shorter than a header")
    magic, count, payload_len = _HEAD.unpack_from(view, 0)
    if magic == _OLD_MAGIC:
        raise DamagedFrame("a frame written by an older starburst-jupyter (no digest): collect it with that version")
    if magic != MAGIC:
        raise DamagedFrame("not a starburst frame (wrong magic); the file is damaged or from another tool")
    lengths_end = _HEAD.size + count * _LEN.size
    if lengths_end + DIGEST_SIZE > view.nbytes:
        raise DamagedFrame(f"a damaged frame: it names {count} buffers and is {view.nbytes} bytes long")
    lengths = [_LEN.unpack_from(view, _HEAD.size + i * _LEN.size)[0] for i in range(count)]
    start = lengths_end + DIGEST_SIZE
    if start + payload_len + sum(lengths) != view.nbytes:
        raise DamagedFrame(
            f"a damaged frame: {view.nbytes} bytes where its header says {start + payload_len + sum(lengths)}"
        )
    payload = view[start : start + payload_len]
    offset, buffers = start + payload_len, []
    for length in lengths:
        buffers.append(view[offset : offset + length])
        offset += length
    if not hmac.compare_digest(_digest(view[:lengths_end], payload, buffers), view[lengths_end:start]):
        raise DamagedFrame("a damaged frame: its digest does not match its contents")
    return payload, buffers


_Buffer = pickle.PickleBuffer | memoryview | bytes | bytearray  # what Encoded holds: made, or after a round trip


def dumps_chunks(obj: Any) -> list[bytes | memoryview]:
    """Serialize obj; returns chunks to write in order (buffers are views, not copies)."""
    buffers: list[pickle.PickleBuffer] = []
    payload = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return seal(payload, [buf.raw() for buf in buffers])


@dataclass
class Encoded:
    """One object pickled on its own: its size is known before it is shipped, and its buffers
    stay out-of-band when the Encoded itself is pickled (so arrays are never joined into bytes)."""

    payload: bytes
    buffers: list[_Buffer]

    @property
    def size(self) -> int:
        return len(self.payload) + sum(memoryview(b).nbytes for b in self.buffers)


def encode(obj: Any) -> Encoded:
    buffers: list[_Buffer] = []
    payload = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return Encoded(payload, buffers)


def decode(encoded: Encoded) -> Any:
    return pickle.loads(encoded.payload, buffers=encoded.buffers)


def chunks_size(chunks: list[bytes | memoryview]) -> int:
    return sum(memoryview(c).nbytes for c in chunks)


def dumps(obj: Any) -> bytes:
    return b"".join(bytes(c) if isinstance(c, memoryview) else c for c in dumps_chunks(obj))


def loads(data: bytes | bytearray | memoryview) -> Any:
    payload, buffers = unseal(data)
    return pickle.loads(payload, buffers=buffers)


# ----- results: one stream per flushed batch --------------------------------------------------
# A worker pickles each item's value when the item ends (so a value mutated later is not what comes back)
# with ONE cloudpickle Pickler per flushed batch into one stream (its memo cleared after each value); the
# batch travels as one frame and the kernel reads each value from its own slice. An item whose value cannot
# be pickled (or unpickled) fails alone: its bytes are rolled back (on the worker) or skipped (in the
# kernel), the others stand.

RESULTS_TAG = "SBR1"
_SCALARS = (int, float, bool, complex, type(None))
INLINE_SCALARS = frozenset(_SCALARS)  # types whose values always travel inline (inline_size 16)
INLINE_MAX = 4096  # bytes of str/bytes (in all, for a tuple) a value may hold to travel inline


def inline_size(value: Any) -> int:
    """Bytes of an immutable plain value (a number, None, a short str or bytes, a short tuple of those) that
    travels in its batch's fields, pickled with them by the C pickler: nothing to snapshot (it cannot change
    after its item returned) and no Pickler call of its own. -1 for any other value."""
    kind = type(value)
    if kind in _SCALARS:
        return 16
    if kind is str or kind is bytes:
        return len(value) if len(value) <= INLINE_MAX else -1
    if kind is tuple and len(value) <= 16:
        total = 16
        for v in value:
            size = inline_size(v) if type(v) is not tuple else -1
            if size < 0:
                return -1
            total += size
        return total if total <= INLINE_MAX else -1
    return -1


@dataclass
class Packed:
    """Where one value sits in a ValueWriter's stream: `length` bytes from `start`, then `count` buffers."""

    writer: ValueWriter
    start: int
    length: int
    first: int
    count: int
    size: int


class ValueWriter:
    """Pickles values one after another into one stream with one reused Pickler (a new Pickler per item
    was most of a worker's time on no-op items); each value is a whole pickle of its own (memo cleared)."""

    def __init__(self) -> None:
        self.stream = io.BytesIO()
        self.buffers: list[pickle.PickleBuffer] = []
        self.pickler = cloudpickle.Pickler(self.stream, protocol=5, buffer_callback=self.buffers.append)

    def add(self, value: Any) -> Packed:
        """Append value; raises (leaving the stream as it was) when it cannot be pickled."""
        stream, buffers = self.stream, self.buffers
        start, first = stream.tell(), len(buffers)
        try:
            self.pickler.dump(value)
        except BaseException:
            self.drop_to(start, first)
            raise
        finally:
            self.pickler.clear_memo()
        length, count = stream.tell() - start, len(buffers) - first
        size = length + sum(b.raw().nbytes for b in buffers[first:]) if count else length
        return Packed(self, start, length, first, count, size)

    def drop(self, packed: Packed) -> None:
        """Take back the value added last (e.g. one too large to bring back)."""
        self.drop_to(packed.start, packed.first)

    def drop_to(self, start: int, first: int) -> None:
        self.stream.seek(start)
        self.stream.truncate()
        del self.buffers[first:]


def _value_parts(value: Any) -> tuple[bytes | memoryview, list[Any]]:
    """(pickle bytes, out-of-band buffers) of a Packed or an Encoded value (the latter: made by serialize.encode)."""
    if isinstance(value, Packed):
        view = value.writer.stream.getbuffer()[value.start : value.start + value.length]
        return view, [b.raw() for b in value.writer.buffers[value.first : value.first + value.count]]
    if isinstance(value, Encoded):
        return value.payload, [memoryview(b).cast("B") if not isinstance(b, pickle.PickleBuffer) else b.raw()
                               for b in value.buffers]  # fmt: skip
    encoded = encode(value)
    return _value_parts(encoded)


@dataclass
class QuietRun:
    """Items that succeeded quietly (printed nothing, returned an inline value): columns, not a tuple per item.
    Most items of a big map are these; the kernel takes a run of them with slice assignments."""

    indices: list[int] | range
    values: list[Any]
    durations: Sequence[float]
    worker: int = -1

    def __len__(self) -> int:
        return len(self.values)

    def wire(self) -> tuple[Any, list[Any], bytes, int]:
        """(indices as (first, count) when they are a run, the values, the durations as packed doubles, worker)."""
        idx = self.indices
        first = idx[0] if len(idx) else 0
        run = len(idx) > 0 and idx[-1] - first == len(idx) - 1 and (type(idx) is range or _ascending(idx))
        durations = array("d", self.durations).tobytes()
        return ((first, len(idx)) if run else list(idx)), self.values, durations, self.worker

    @classmethod
    def from_wire(cls, wire: tuple[Any, list[Any], bytes, int]) -> QuietRun:
        spec, values, durations, worker = wire
        indices = range(spec[0], spec[0] + spec[1]) if type(spec) is tuple else spec
        times = array("d")
        times.frombytes(durations)
        if len(indices) != len(values) or len(times) != len(values):
            raise ValueError("a quiet run's columns differ in length (a damaged result object)")
        return cls(indices, values, times, worker)


def _ascending(indices: list[int]) -> bool:
    """Whether a list of ints counts up by one (a plan block's items, run in order)."""
    return indices == list(range(indices[0], indices[0] + len(indices)))


def pack_results(
    metas: list[tuple[Any, ...]], values: list[Any], quiet: QuietRun | None = None
) -> list[bytes | memoryview]:
    """One frame for a batch: the items' plain fields (`metas`, pickled by the C pickler), every value's
    pickle joined into one stream, the values' buffers out-of-band (never copied), and the quiet run."""
    packed = [v for v in values if isinstance(v, Packed)]
    writer = (
        packed[0].writer if packed and len(packed) + sum(inline_size(v) >= 0 for v in values) == len(values) else None
    )
    if writer is not None and _one_run(packed, writer):  # the usual batch: one slice of one writer's stream
        stream: Any = writer.stream.getbuffer()[packed[0].start : packed[-1].start + packed[-1].length]
        # (an inline value's entry is (-1, the value): it travels here, pickled with the fields)
        lengths = [(v.length, v.count) if isinstance(v, Packed) else (-1, v) for v in values]
        buffers = [
            pickle.PickleBuffer(b.raw()) for b in writer.buffers[packed[0].first : packed[-1].first + packed[-1].count]
        ]
    elif not packed and all(inline_size(v) >= 0 for v in values):  # all inline (or none at all)
        stream, lengths, buffers = bytearray(), [(-1, v) for v in values], []
    else:
        stream, lengths, buffers = bytearray(), [], []
        for v in values:
            if inline_size(v) >= 0:
                lengths.append((-1, v))
                continue
            payload, bufs = _value_parts(v)
            stream += payload
            lengths.append((memoryview(payload).nbytes, len(bufs)))
            buffers.extend(pickle.PickleBuffer(b) for b in bufs)
    out: list[pickle.PickleBuffer] = []
    frame: tuple[Any, ...] = (RESULTS_TAG, metas, lengths, pickle.PickleBuffer(stream), buffers)
    if quiet is not None and len(quiet):
        frame += (quiet.wire(),)
    body = pickle.dumps(frame, protocol=5, buffer_callback=out.append)
    return seal(body, [b.raw() for b in out])


def _one_run(values: list[Any], writer: ValueWriter) -> bool:
    """Whether values are Packed in one writer, each right after the one before (stream and buffers)."""
    end, buffer_end = values[0].start, values[0].first
    for v in values:
        if not isinstance(v, Packed) or v.writer is not writer or v.start != end or v.first != buffer_end:
            return False
        end, buffer_end = v.start + v.length, v.first + v.count
    return True


@dataclass
class Undecodable:
    """A value the kernel could not unpickle (its item's failure), and why."""

    error: BaseException


def unpack_results(obj: Any, decode_values: bool) -> list[tuple[tuple[Any, ...], Any]] | None:
    """(meta, value) pairs of a frame `pack_results` wrote, or None for another object (an older list).
    With decode_values each value is unpickled from its own slice of the stream by its own unpickler: the
    writer cleared its memo after each value, so each value's memo references count from zero, and one
    Unpickler over the whole stream (whose memo keeps growing) would resolve a later value's references to an
    earlier value's objects. (Clearing a C Unpickler's memo between loads is no way out: `memo.clear()` keeps
    its length and `memo = {}` crashed CPython 3.11 here.) An item that fails to load is an Undecodable; the
    others stand. Without decode_values each value is an Encoded."""
    if not (isinstance(obj, tuple) and obj and obj[0] == RESULTS_TAG):
        return None
    _, metas, lengths, stream, buffers = obj[:5]
    view = memoryview(stream)
    if len(metas) != len(lengths):
        raise ValueError("a result batch's fields and values differ in length (a damaged result object)")
    if decode_values:  # the usual batch: every value loads (the frame's digest vouched for every byte)
        try:
            return list(zip(metas, _load_all(view, lengths, buffers)))
        except Exception:  # one item's value does not load: the loop below finds which, the others stand
            pass
    out: list[tuple[tuple[Any, ...], Any]] = []
    offset, first = 0, 0
    loads = pickle.loads
    for meta, (length, count) in zip(metas, lengths):
        if length < 0:  # inline: the value itself
            out.append((meta, count if decode_values else encode(count)))
            continue
        if offset + length > view.nbytes or first + count > len(buffers):
            raise ValueError("a result batch's values run past its stream (a damaged result object)")
        piece = view[offset : offset + length]
        if not decode_values:
            out.append((meta, Encoded(bytes(piece), list(buffers[first : first + count]))))
        elif length == 0 or piece[length - 1] != _STOP:
            out.append((meta, Undecodable(ValueError("a value's pickle does not end where its length says"))))
        else:
            try:
                value = loads(piece, buffers=buffers[first : first + count])
            except Exception as exc:  # that item's failure alone
                value = Undecodable(exc)
            out.append((meta, value))
        offset, first = offset + length, first + count
    if offset != view.nbytes:
        raise ValueError("a result batch's stream is longer than its values (a damaged result object)")
    return out


_STOP = pickle.STOP[0]


def _load_all(view: memoryview, lengths: list[tuple[int, Any]], buffers: list[Any]) -> list[Any]:
    """Every value of a batch, each by its own pickle.loads of its own slice; raises at the first that fails."""
    if sum(n for n, _ in lengths if n >= 0) != view.nbytes:
        raise ValueError("a result batch's stream and its values' lengths differ")
    values: list[Any] = []
    loads, append, offset, first = pickle.loads, values.append, 0, 0
    for length, count in lengths:
        if length < 0:
            append(count)  # inline: the value itself
            continue
        end = offset + length
        if count:
            append(loads(view[offset:end], buffers=buffers[first : first + count]))
            first += count
        else:
            append(loads(view[offset:end]))
        offset = end
    return values


def unpack_quiet(obj: Any) -> QuietRun | None:
    """The quiet run of a frame `pack_results` wrote (None when it has none, or for another object)."""
    if isinstance(obj, tuple) and len(obj) > 5 and obj[0] == RESULTS_TAG:
        return QuietRun.from_wire(obj[5])
    return None

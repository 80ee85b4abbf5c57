"""Pickle protocol 5 with out-of-band buffers, so large arrays are written and read without extra copies.

Frame: MAGIC, buffer count, pickle length, each buffer's length, the pickle, then the raw buffers.
Writers hand the list of chunks straight to the store; readers slice one bytearray (writable,
so arrays that come back can be modified like local ones).
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from typing import Any

import cloudpickle

MAGIC = b"SBJ1"
_HEAD = struct.Struct("<4sIQ")
_LEN = struct.Struct("<Q")

_Buffer = pickle.PickleBuffer | memoryview | bytes | bytearray  # what Encoded holds: made, or after a round trip


def dumps_chunks(obj: Any) -> list[bytes | memoryview]:
    """Serialize obj; returns chunks to write in order (buffers are views, not copies)."""
    buffers: list[pickle.PickleBuffer] = []
    payload = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    views = [buf.raw() for buf in buffers]
    header = _HEAD.pack(MAGIC, len(views), len(payload)) + b"".join(_LEN.pack(v.nbytes) for v in views)
    return [header, payload, *views]


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
    view = memoryview(data)
    magic, count, payload_len = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise ValueError("not a starburst frame (wrong magic); the file is damaged or from another tool")
    offset = _HEAD.size
    lengths = [_LEN.unpack_from(view, offset + i * _LEN.size)[0] for i in range(count)]
    offset += count * _LEN.size
    payload = view[offset : offset + payload_len]
    offset += payload_len
    buffers = []
    for length in lengths:
        buffers.append(view[offset : offset + length])
        offset += length
    return pickle.loads(payload, buffers=buffers)

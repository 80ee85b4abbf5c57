"""A program's large buffers travel as objects of their own, so a big captured input is shared, not copied.

The kernel pickles a program once (serialize.dumps_chunks: protocol 5, every contiguous buffer out-of-band,
as views on the kernel's own arrays). Written as one object, each worker used to read it whole into private
memory: a 400 MB array and 2 local workers made three 400 MB copies. Here each buffer of at least THRESHOLD
bytes is written straight from its view into `buffers/<n>.buf` next to the program (keys.program_buffer_key),
and program.pkl keeps the pickle, the small buffers and which buffer is where. A worker on a folder store
maps each buffer file read-only (mmap, like joblib's memmapping), so every worker of the machine reads the
same page cache; a worker on S3 GETs each buffer once. Either way the arrays come back READ-ONLY on workers
(the same on a laptop and on Fargate): an item that writes into one fails, and note_read_only says why and
how to get a writable copy (np.array(x)). Small buffers stay in program.pkl, as before (writable).
"""

from __future__ import annotations

import mmap
import pickle
import struct
from typing import Any

from starburst_jupyter.protocol import keys, serialize
from starburst_jupyter.stores.objects import LocalFolderStore, ObjectStore

THRESHOLD = 1 << 20  # bytes: a buffer this large gets its own object (joblib's max_nbytes default is also 1M)
MAGIC = b"SBP1"
_HEAD = struct.Struct("<4sIQ")  # magic, buffer count, pickle length
_BUF = struct.Struct("<Qb")  # a buffer's length, 1 if it is an object of its own else 0 (in this frame)

READ_ONLY_NOTE = (
    "Arrays the job captured from the kernel (1 MiB or more) are shared read-only by the job's workers, so "
    "one copy serves them all; copy one to change it, e.g. `x = np.array(x)` inside the item, or pass a "
    "writable copy per item."
)
_shared = False  # whether the program this worker runs came with shared read-only buffers


Chunks = list[bytes | memoryview]


def split(chunks: Chunks, threshold: int = THRESHOLD) -> tuple[Chunks, list[memoryview]]:
    """(program.pkl's chunks, the buffers that go to objects of their own) from serialize.dumps_chunks'
    [header, pickle, *buffers]; no buffer is copied."""
    if len(chunks) < 2 or bytes(memoryview(chunks[0])[:4]) != serialize.MAGIC:
        raise ValueError("a program must be written as serialize.dumps_chunks made it")
    payload, views = chunks[1], [memoryview(c).cast("B") for c in chunks[2:]]
    own = [v.nbytes >= threshold for v in views]
    head = _HEAD.pack(MAGIC, len(views), memoryview(payload).nbytes)
    head += b"".join(_BUF.pack(v.nbytes, big) for v, big in zip(views, own))
    return [head, payload, *(v for v, big in zip(views, own) if not big)], [v for v, big in zip(views, own) if big]


def write(store: ObjectStore, prefix: str, chunks: Chunks) -> None:
    """Write a program: its large buffers first (a worker that sees program.pkl finds them), then program.pkl."""
    frame, large = split(chunks)
    for number, view in enumerate(large):
        store.put(keys.program_buffer_key(prefix, number), [view])
    store.put(keys.program_key(prefix), frame)


def read(store: ObjectStore, prefix: str) -> Any:
    """Load a program; its large buffers mapped read-only from a folder store, else read once each."""
    global _shared
    data = store.get(keys.program_key(prefix))
    view = memoryview(data)
    magic, count, payload_len = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:  # one object with every buffer inside (as written before buffers had objects)
        _shared = False
        return serialize.loads(data)
    offset = _HEAD.size
    entries = [_BUF.unpack_from(view, offset + i * _BUF.size) for i in range(count)]
    offset += count * _BUF.size
    payload = view[offset : offset + payload_len]
    offset += payload_len
    buffers: list[memoryview] = []
    number = 0
    for length, own in entries:
        if own:
            buffers.append(_open(store, keys.program_buffer_key(prefix, number), length))
            number += 1
        else:
            buffers.append(view[offset : offset + length])
            offset += length
    _shared = number > 0
    return pickle.loads(payload, buffers=buffers)


def _open(store: ObjectStore, key: str, length: int) -> memoryview:
    """A read-only view of one buffer object: a shared mapping of its file, or its bytes read once."""
    if isinstance(store, LocalFolderStore):
        with open(store.path(key), "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)  # outlives the file handle
        view = memoryview(mapped)
    else:
        view = memoryview(store.get(key)).toreadonly()
    if view.nbytes != length:
        raise ValueError(f"{key} holds {view.nbytes} bytes where the program says {length}; it is damaged")
    return view


def note_read_only(exc: BaseException) -> None:
    """Add READ_ONLY_NOTE to an error that looks like a write into a shared buffer (numpy: 'assignment
    destination is read-only', 'output array is read-only', 'cannot set WRITEABLE flag'): a note (3.11+),
    else appended to the message (3.10 prints no notes)."""
    if not _shared or not isinstance(exc, (ValueError, TypeError, BufferError)):
        return
    text = str(exc)
    if not ("read-only" in text or "WRITEABLE" in text or "readonly" in text) or READ_ONLY_NOTE in text:
        return
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        if READ_ONLY_NOTE not in getattr(exc, "__notes__", ()):
            add_note(READ_ONLY_NOTE)
    elif exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]}\n{READ_ONLY_NOTE}", *exc.args[1:])

"""Worker log files in a local job folder (local and docker backends), read by offset or from the end.

A log may be hundreds of MB and is polled every second by the sidebar: reads seek and return at most
what was asked, never the whole file. Only a regular file in the job's own folders is read: a symlink
planted in the job's logs folder (or as that folder) is refused, so a log read cannot show another file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: The most a tail read goes back looking for line ends (a single line longer than this is cut).
TAIL_SCAN_BYTES = 4 * 1024 * 1024


class LogNotReadable(OSError):
    """The log path is not a plain file of the job (a symlink, a device, a folder)."""


def _open(path: Path) -> int | None:
    """A read descriptor for the log, None if there is none yet; LogNotReadable for anything but a regular file."""
    for folder in (path.parent, path.parent.parent):
        if folder.is_symlink():
            raise LogNotReadable(f"{folder} is a symbolic link; starburst reads only the job's own log files")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if path.is_symlink():
            raise LogNotReadable(f"{path} is a symbolic link; starburst reads only the job's own log files") from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LogNotReadable(f"{path} is not a regular file; starburst reads only the job's own log files")
    return fd


def read_range(path: Path, offset: int, limit: int) -> tuple[bytes, int, int]:
    """Up to `limit` bytes from `offset` (negative: from the end): (bytes, where they start, file size)."""
    fd = _open(path)
    if fd is None:
        return b"", 0, 0
    with open(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        start = max(0, size + offset) if offset < 0 else min(offset, size)
        handle.seek(start)
        return handle.read(max(0, limit)), start, size


def read_whole(path: Path) -> str:
    """The whole log as text ('' when there is none yet)."""
    fd = _open(path)
    if fd is None:
        return ""
    with open(fd, "rb") as handle:
        return handle.read().decode("utf-8", "replace")


def tail_lines(path: Path, lines: int) -> str:
    """The last `lines` lines, reading back from the end in blocks (at most TAIL_SCAN_BYTES)."""
    if lines <= 0:
        return ""
    fd = _open(path)
    if fd is None:
        return ""
    with open(fd, "rb") as handle:
        end = os.fstat(handle.fileno()).st_size
        data, start = b"", end
        while start > 0 and data.count(b"\n") <= lines and end - start < TAIL_SCAN_BYTES:
            step = min(64 * 1024, start)
            start -= step
            handle.seek(start)
            data = handle.read(step) + data
    return last_lines(data, lines, whole=start == 0)


def last_lines(data: bytes, lines: int, whole: bool = True) -> str:
    """The last `lines` lines of `data` as text (its first line dropped when `data` may start mid-line)."""
    parts = data.splitlines(keepends=True)
    if not whole and len(parts) > lines:
        parts = parts[1:]
    return b"".join(parts[-lines:]).decode("utf-8", "replace") if lines > 0 else ""

"""Object stores that hold a job's files. One interface for a local folder today and S3 later.

Writes are atomic (a reader sees the whole object or nothing), and `create_exclusive` is the
one primitive workers use to claim work (O_EXCL locally; a conditional PUT on S3).
A local store's folders are 0700 and its files 0600 whatever the umask: a job's program carries the
names the cell captured (an API key in the namespace), so only the user may read it.
"""

from __future__ import annotations

import bisect
import os
import shutil
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse


class ObjectStore(Protocol):
    url: str

    def put(self, key: str, chunks: Iterable[bytes | memoryview]) -> None: ...
    def get(self, key: str, limit: int | None = None) -> bytearray: ...
    def create_exclusive(self, key: str, data: bytes) -> bool: ...
    def exists(self, key: str) -> bool: ...
    def list_folders(self, prefix: str) -> list[str]: ...
    def list(self, prefix: str, start_after: str | None = None) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str, *, at_once: bool = False) -> None: ...


DIR_MODE = 0o700
FILE_MODE = 0o600


class ObjectTooLarge(OSError):
    """An object above the size its reader takes (`get(key, limit)`): a record, journal batch or setting file
    that large is damaged, or not starburst's, and is refused before it is read into memory."""

    def __init__(self, where: str, size: int, limit: int):
        super().__init__(f"{where} is {size:,} bytes, above the {limit:,} bytes a reader takes: it is damaged")
        self.where, self.size, self.limit = where, size, limit

    def __str__(self) -> str:
        return str(self.args[0])


def make_private_dirs(folder: Path) -> None:
    """Create `folder` and its missing parents as 0700 (pathlib's parents=True would give them the umask's mode)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not path.is_dir():
                raise


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """A file descriptor for writing `path`, created 0600 (the umask can only take bits away from that)."""
    return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), FILE_MODE)


def append_private(path: str | os.PathLike[str]) -> BinaryIO:
    """A log file opened for appending that only the user may read: created 0600 in a 0700 folder whatever the
    umask, and made 0600 if an older version left it readable (a driver's log names the job's captured names
    and errors; `open(path, "ab")` gave it the umask's 0644)."""
    target = Path(path)
    make_private_dirs(target.parent)
    fd = open_private(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:  # (a file of another user's we may append to but not chmod: still appended to)
        pass
    return open(fd, "ab")


def write_private(path: Path, data: bytes | str) -> None:
    """Write a new file that only the user may read."""
    with open(open_private(path), "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


class LocalFolderStore:
    """Keys are paths under a root folder."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()

    def path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, chunks: Iterable[bytes | memoryview]) -> None:
        target = self.path(key)
        make_private_dirs(target.parent)
        tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
                if isinstance(chunks, (bytes, bytearray, memoryview)):
                    chunks = [chunks]
                for chunk in chunks:
                    handle.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a half-written object must not fill a disk that is already full
            raise

    def get(self, key: str, limit: int | None = None) -> bytearray:
        """The object's bytes; ObjectTooLarge, before reading, when it holds more than `limit`."""
        with open(self.path(key), "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if limit is not None and size > limit:
                raise ObjectTooLarge(f"{self.url}/{key}", size, limit)
            data = bytearray(size)
            handle.readinto(data)
        return data

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Write then hard-link into place: the link fails if the key exists, and readers never see it empty."""
        target = self.path(key)
        make_private_dirs(target.parent)
        tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            write_private(tmp, data)
            os.link(tmp, target)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def list_folders(self, prefix: str) -> list[str]:
        """Sub-folders directly under a folder-like prefix, as prefixes ending in '/', sorted."""
        try:
            with os.scandir(self.path(prefix)) as entries:
                return sorted(prefix + e.name + "/" for e in entries if e.is_dir() and not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        """Keys directly under a folder-like prefix ending in '/', sorted; only those after `start_after`
        when given (as S3's ListObjectsV2 StartAfter)."""
        folder = self.path(prefix)
        try:
            with os.scandir(folder) as entries:
                keys = sorted(prefix + e.name for e in entries if not e.name.startswith(".tmp-") and e.is_file())
        except FileNotFoundError:
            return []
        if start_after is not None:
            keys = keys[bisect.bisect_right(keys, start_after) :]
        return keys

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass

    def delete_prefix(self, prefix: str, *, at_once: bool = False) -> None:
        """Gone at once, emptied later: the folder is renamed into the store's trash (one atomic step, so nobody
        sees it half deleted) and a background thread unlinks it (a finished job's caller does not wait for
        its thousands of objects). Trash a process left behind goes with the next deletion. `at_once`: the
        space is free when this returns (a job whose disk filled makes room for its record)."""
        source, trash = self.path(prefix), self.root / TRASH
        if at_once:
            shutil.rmtree(source, ignore_errors=True)
            return
        try:
            make_private_dirs(trash)
            os.rename(source, trash / uuid.uuid4().hex)
        except FileNotFoundError:
            return
        except OSError:  # (another file system, a busy folder: delete it in place)
            shutil.rmtree(source, ignore_errors=True)
            return
        _empty_later(trash)

    def empty_trash(self) -> int:
        """Unlink what waits in the trash now (folders deleted by a process that exited before its background
        thread was done); the bytes freed. A command that reports space freed calls this before it says so."""
        trash = self.root / TRASH
        freed = folder_bytes(trash)
        shutil.rmtree(trash, ignore_errors=True)
        return freed - folder_bytes(trash)


def folder_bytes(folder: Path) -> int:
    """The bytes of the files under `folder` (0 when there is none; links are not followed)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


#: The folder of a store's root where deleted folders wait to be unlinked (its name hides it from listings).
TRASH = ".trash"
_EMPTYING: set[Path] = set()  # trash folders a thread is emptying now
_EMPTYING_LOCK = threading.Lock()


def _empty_later(trash: Path) -> None:
    with _EMPTYING_LOCK:
        if trash in _EMPTYING:
            return  # (that thread looks again before it stops)
        _EMPTYING.add(trash)

    def empty() -> None:
        while True:
            with _EMPTYING_LOCK:
                try:
                    entries = list(trash.iterdir())
                except OSError:
                    entries = []
                if not entries:
                    _EMPTYING.discard(trash)
                    return
            for entry in entries:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    threading.Thread(target=empty, name="starburst-trash", daemon=True).start()


def open_store(url: str) -> ObjectStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalFolderStore(parsed.path)
    if parsed.scheme == "s3":
        from starburst_jupyter.stores.s3 import from_url  # boto3 is imported only by jobs that use S3

        return from_url(url)
    raise ValueError(f"No object store for {url!r}: use file:///path or s3://bucket[/prefix].")

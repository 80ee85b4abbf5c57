"""The job store: one JSON record per job, the single truth that magics, CLI and server read.

Records live at $STARBURST_HOME/jobs/<job_id>/record.json and are replaced atomically, so a
reader never sees half a record. They are written and read only through `core.record.JobRecord`
(strict JSON out, a tolerant reader in): a damaged record lists as damaged, it never hides the
others. The `*_record(s)` methods return JobRecords; `read`/`find`/`list`/`records`/`get` return
the same records as dicts (`JobRecord.to_json()`), for faces that still read dicts.
"""

from __future__ import annotations

import os
import re
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

from starburst_jupyter.core.config import starburst_home
from starburst_jupyter.core.record import (
    ACTIVE_STATES,
    MAX_RECORD_BYTES,
    TERMINAL_STATES,
    JobRecord,
    check_finite,
)
from starburst_jupyter.stores.objects import make_private_dirs, write_private

__all__ = ["ACTIVE_STATES", "TERMINAL_STATES", "JobIndex", "JobStore", "new_job_id"]


def _newest_first(records: list[JobRecord]) -> list[JobRecord]:
    return sorted(records, key=lambda r: (r.created, r.id), reverse=True)


def _read_file(path: Path, job_id: str) -> JobRecord | None:
    """The record in `path` (damaged if unreadable or above MAX_RECORD_BYTES, which is not read), None if there
    is no such file."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_RECORD_BYTES:
                return JobRecord.unreadable(
                    job_id, f"{path} is {size:,} bytes, above the {MAX_RECORD_BYTES:,} a record may hold"
                )
            raw = handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # e.g. permissions: still a job, shown as damaged
        return JobRecord.unreadable(job_id, f"cannot read: {exc}")
    return JobRecord.from_json(raw, job_id)


# Letters, digits, '.', '_', '-'; not starting with '.'; short enough to be a file name.
_JOB_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def new_job_id() -> str:
    """Sortable by creation time and unique: bj-20261123-101500-3f9a2c."""
    return time.strftime("bj-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


class JobStore:
    def __init__(self, home: Path | None = None):
        self.home = Path(home) if home else starburst_home()
        self.jobs_dir = self.home / "jobs"

    def job_dir(self, job_id: str) -> Path:
        """The job's folder; KeyError for anything that is not a plain job id (a path, a trailing
        newline, thousands of characters), so every face refuses it with one line."""
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            shown = job_id if not isinstance(job_id, str) or len(job_id) <= 80 else job_id[:60] + "..."
            raise KeyError(f"{shown!r} is not a job id (ids look like bj-20261123-101500-3f9a2c).")
        return self.jobs_dir / job_id

    def write(self, record: JobRecord | dict[str, Any]) -> None:
        """Replace a job's record (a dict is read through JobRecord first). RecordError on NaN or infinity."""
        if not isinstance(record, JobRecord):
            check_finite(record, f"job record {record.get('id')}")
            record = JobRecord.from_json(record)
        text = record.dumps()
        folder = self.job_dir(record.id)
        make_private_dirs(folder)  # 0700 / 0600 whatever the umask: the record names the job's workers and spec
        tmp = folder / f".record-{uuid.uuid4().hex}.tmp"
        try:
            write_private(tmp, text)
            os.replace(tmp, folder / "record.json")
        except BaseException:
            tmp.unlink(missing_ok=True)  # retried every half second while a disk is full: leave nothing behind
            raise

    def read_record(self, job_id: str) -> JobRecord:
        record = _read_file(self.job_dir(job_id) / "record.json", job_id)
        if record is None:
            raise KeyError(f"No job {job_id!r} in the job store at {self.jobs_dir}; %burst_status lists the jobs.")
        return record

    def read(self, job_id: str) -> dict[str, Any]:
        return self.read_record(job_id).to_json()

    def find(self, prefix: str) -> dict[str, Any]:
        """A job by id or unique id prefix (users type the short form)."""
        return self.find_record(prefix).to_json()

    def find_record(self, prefix: str) -> JobRecord:
        if not prefix.strip():
            raise KeyError("Give a job id (or the start of one); %burst_status lists the jobs.")
        self.job_dir(prefix)  # the start of an id is shaped like one: refuse anything else in one line
        try:
            return self.read_record(prefix)
        except KeyError:
            pass
        matches = [d.name for d in self._dirs() if d.name.startswith(prefix)]
        if len(matches) == 1:
            return self.read_record(matches[0])
        if not matches:
            raise KeyError(f"No job matches {prefix!r}; %burst_status lists the jobs.")
        raise KeyError(f"{prefix!r} matches {len(matches)} jobs ({', '.join(matches[:5])}...); give more of the id.")

    def _dirs(self) -> list[Path]:
        try:
            return [d for d in self.jobs_dir.iterdir() if d.is_dir()]
        except FileNotFoundError:
            return []

    def list_records(self, limit: int | None = None) -> list[JobRecord]:
        """Records newest first (by creation time: ids only have one-second resolution); damaged ones too."""
        records = [r for d in self._dirs() if (r := _read_file(d / "record.json", d.name)) is not None]
        records = _newest_first(records)
        return records[:limit] if limit else records

    def list(self, limit: int | None = None) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.list_records(limit)]


class JobIndex:
    """A cached view of a JobStore for readers that poll it (the Jupyter server's REST API).

    Each `records()` call lists the jobs folder and stats every record.json, but parses only the
    records whose (inode, mtime, size) changed since the last call: a record is replaced atomically
    on every write, so a new inode means new content. Hundreds of finished jobs cost one stat each.
    Thread-safe; `reads` counts the records parsed (tests check the cache with it).
    """

    def __init__(self, store: JobStore | None = None):
        import threading

        self.store = store or JobStore()
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int, int], JobRecord, dict[str, Any]]] = {}
        self.reads = 0

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self, job_id: str, path: Path) -> tuple[JobRecord, dict[str, Any]] | None:
        """The record of `job_id` and its dict, parsed again only when its file changed; None when it has none.
        A record that cannot be read is a damaged record, listed as such."""
        stamp = self._stamp(path)
        if stamp is None:
            self._cache.pop(job_id, None)
            return None
        cached = self._cache.get(job_id)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        record = _read_file(path, job_id)
        if record is None:  # replaced or removed between the stat and the read
            return (cached[1], cached[2]) if cached else None
        self.reads += 1
        self._cache[job_id] = (stamp, record, record.to_json())
        return record, self._cache[job_id][2]

    def records(self) -> list[dict[str, Any]]:
        """Every record as a dict, newest first (as JobStore.list)."""
        return [data for _, data in self._both()]

    def job_records(self) -> list[JobRecord]:
        """Every record, newest first (as JobStore.list_records)."""
        return [record for record, _ in self._both()]

    def _both(self) -> list[tuple[JobRecord, dict[str, Any]]]:
        with self._lock:
            try:
                entries = [
                    e
                    for e in os.scandir(self.store.jobs_dir)
                    if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
                ]
            except FileNotFoundError:
                entries = []
            seen = set()
            loaded = []
            for entry in entries:
                seen.add(entry.name)
                both = self._load(entry.name, Path(entry.path) / "record.json")
                if both is not None:
                    loaded.append(both)
            for gone in set(self._cache) - seen:
                del self._cache[gone]
        loaded.sort(key=lambda both: (both[0].created, both[0].id), reverse=True)
        return loaded

    def get_record(self, job_id: str) -> JobRecord:
        """One record by exact id (KeyError when there is none), re-read only if it changed."""
        path = self.store.job_dir(job_id) / "record.json"
        with self._lock:
            both = self._load(job_id, path)
        if both is None:
            raise KeyError(f"No job {job_id!r} in the job store at {self.store.jobs_dir}.")
        return both[0]

    def get(self, job_id: str) -> dict[str, Any]:
        """One record by exact id as a dict (KeyError when there is none)."""
        path = self.store.job_dir(job_id) / "record.json"
        with self._lock:
            both = self._load(job_id, path)
        if both is None:
            raise KeyError(f"No job {job_id!r} in the job store at {self.store.jobs_dir}.")
        return both[1]

    def version(self) -> str:
        """Changes whenever any cached record changes (call after `records()`)."""
        with self._lock:
            stamps = sorted((job_id, cached[0]) for job_id, cached in self._cache.items())
        return format(hash(tuple(stamps)) & 0xFFFFFFFFFFFF, "x")

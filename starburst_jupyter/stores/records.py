"""The job store: one JSON record per job, the single truth that magics, CLI and server read.

Records live at $STARBURST_HOME/jobs/<job_id>/record.json and are replaced atomically, so a
reader never sees half a record.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

from starburst_jupyter.core.config import starburst_home

TERMINAL_STATES = ("done", "failed", "cancelled")
ACTIVE_STATES = ("queued", "launching", "running", "collecting")


def new_job_id() -> str:
    """Sortable by creation time and unique: bj-20261123-101500-3f9a2c."""
    return time.strftime("bj-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


class JobStore:
    def __init__(self, home: Path | None = None):
        self.home = Path(home) if home else starburst_home()
        self.jobs_dir = self.home / "jobs"

    def job_dir(self, job_id: str) -> Path:
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise KeyError(f"{job_id!r} is not a job id")
        return self.jobs_dir / job_id

    def write(self, record: dict[str, Any]) -> None:
        folder = self.job_dir(record["id"])
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".record-{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(record, default=str))
        os.replace(tmp, folder / "record.json")

    def read(self, job_id: str) -> dict[str, Any]:
        path = self.job_dir(job_id) / "record.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise KeyError(
                f"No job {job_id!r} in the job store at {self.jobs_dir}; %burst_status lists the jobs."
            ) from None

    def find(self, prefix: str) -> dict[str, Any]:
        """A job by id or unique id prefix (users type the short form)."""
        if not prefix.strip():
            raise KeyError("Give a job id (or the start of one); %burst_status lists the jobs.")
        try:
            return self.read(prefix)
        except KeyError:
            pass
        matches = [d.name for d in self._dirs() if d.name.startswith(prefix)]
        if len(matches) == 1:
            return self.read(matches[0])
        if not matches:
            raise KeyError(f"No job matches {prefix!r}; %burst_status lists the jobs.")
        raise KeyError(f"{prefix!r} matches {len(matches)} jobs ({', '.join(matches[:5])}...); give more of the id.")

    def _dirs(self) -> list[Path]:
        try:
            return [d for d in self.jobs_dir.iterdir() if d.is_dir()]
        except FileNotFoundError:
            return []

    def list(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Records newest first (by creation time: ids only have one-second resolution)."""
        records = []
        for folder in self._dirs():
            try:
                records.append(json.loads((folder / "record.json").read_text()))
            except (FileNotFoundError, json.JSONDecodeError):
                continue
        records.sort(key=lambda r: (r.get("created", 0.0), r["id"]), reverse=True)
        return records[:limit] if limit else records


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
        self._cache: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
        self.reads = 0

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self, job_id: str, path: Path) -> dict[str, Any] | None:
        """The record of `job_id`, parsed again only when its file changed; None when it has none."""
        stamp = self._stamp(path)
        if stamp is None:
            self._cache.pop(job_id, None)
            return None
        cached = self._cache.get(job_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            record = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return cached[1] if cached else None
        self.reads += 1
        if not isinstance(record, dict) or record.get("id") != job_id:
            return None
        self._cache[job_id] = (stamp, record)
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every record, newest first (as JobStore.list)."""
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
            records = []
            for entry in entries:
                seen.add(entry.name)
                record = self._load(entry.name, Path(entry.path) / "record.json")
                if record is not None:
                    records.append(record)
            for gone in set(self._cache) - seen:
                del self._cache[gone]
        records.sort(key=lambda r: (r.get("created", 0.0), r["id"]), reverse=True)
        return records

    def get(self, job_id: str) -> dict[str, Any]:
        """One record by exact id (KeyError when there is none), re-read only if it changed."""
        path = self.store.job_dir(job_id) / "record.json"
        with self._lock:
            record = self._load(job_id, path)
        if record is None:
            raise KeyError(f"No job {job_id!r} in the job store at {self.store.jobs_dir}.")
        return record

    def version(self) -> str:
        """Changes whenever any cached record changes (call after `records()`)."""
        with self._lock:
            stamps = sorted((job_id, stamp) for job_id, (stamp, _) in self._cache.items())
        return format(hash(tuple(stamps)) & 0xFFFFFFFFFFFF, "x")

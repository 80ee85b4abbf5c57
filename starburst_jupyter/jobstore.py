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

from .config import starburst_home

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

"""Which jobs may go, and making them go: `starburst prune --older-than DAYS`.

A detached job keeps its results in its object store until someone collects them, so nothing removes them by
itself: the bucket's lifecycle rule is only a backstop (fargate/setup.py). `verdict` is the pure rule (no I/O,
no clock of its own; fast tests), `gather` lists the jobs of this machine and of the bucket once (the status
table uses it too), `prune` deletes a job's record folder and its whole prefix in its store.
"""

from __future__ import annotations

import calendar
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starburst_jupyter.backends.base import REGISTRY
from starburst_jupyter.core.record import JobRecord
from starburst_jupyter.stores.objects import LocalFolderStore, folder_bytes

if TYPE_CHECKING:
    from starburst_jupyter.core.launcher import Launcher

DAY = 86400.0
#: A damaged record that says its job is active is kept while it was written this recently: it may be a live job
#: whose record another version of starburst writes.
DAMAGED_ACTIVE_GRACE = 3600.0


@dataclass(frozen=True)
class Verdict:
    prune: bool
    why: str


def id_time(job_id: str) -> float | None:
    """When a job was created, by its id (bj-20261123-101500-3f9a2c is UTC); None for any other id."""
    parts = job_id.split("-")
    if len(parts) < 3 or parts[0] != "bj":
        return None
    try:
        return float(calendar.timegm(time.strptime(f"{parts[1]}-{parts[2]}", "%Y%m%d-%H%M%S")))
    except ValueError:
        return None


def check_days(days: float) -> float:
    """DAYS as given to --older-than: a finite number, 0 or more (ValueError with a one-line message)."""
    if not isinstance(days, (int, float)) or isinstance(days, bool) or not math.isfinite(days) or days < 0:
        raise ValueError(f"--older-than {days!r}: give a number of days, 0 or more (0: every finished job).")
    return float(days)


def verdict(record: JobRecord, now: float, days: float, written: float | None = None) -> Verdict:
    """May this job's record and results be deleted? Terminal jobs whose end (else last write, else creation)
    is more than `days` ago; never an active job; a damaged record by its latest time (else the record file's
    mtime `written`, else its id), but not one we could not read at all (a passing error must not cost a job)
    nor one that says active and was written within the hour."""
    limit = check_days(days) * DAY
    if record.damaged:
        if record.damaged.startswith("cannot read"):
            return Verdict(False, f"record could not be read ({record.damaged}); kept")
        times = [t for t in (record.finished, record.updated, record.created or None, written) if t]
        when = max(times) if times else id_time(record.id)
        if when is None:
            return Verdict(False, "damaged record of unknown age; kept")
        if record.is_active and now - when < DAMAGED_ACTIVE_GRACE:
            return Verdict(False, "damaged record of a job that may still run; kept")
        age = now - when
        return Verdict(age > limit, f"damaged record, {_age(age)} old")
    if record.is_active:
        return Verdict(False, f"still {record.state.value}: cancel it first")
    when = record.finished or record.updated or record.created or id_time(record.id)
    if when is None:
        return Verdict(False, "ended at an unknown time; kept")
    age = now - when
    return Verdict(age > limit, f"{record.state.value} {_age(age)} ago")


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= DAY:
        return f"{seconds / DAY:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


# ----- the jobs there are -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Found:
    """A job as listed: its newest record, and where it was seen."""

    record: JobRecord
    local: bool = False  # this machine's job store holds its record
    shared: bool = False  # the bucket holds its record
    written: float | None = None  # the local record file's mtime


@dataclass
class Gathered:
    jobs: list[Found] = field(default_factory=list)
    problem: str = ""  # the bucket could not be listed: why (the local jobs are still there)


def merge(local: list[JobRecord], shared: list[JobRecord]) -> list[JobRecord]:
    """One record per job id, the one written last (`updated`) winning; newest job first."""
    return [f.record for f in _merge_found([Found(r, local=True) for r in local], shared)]


def _merge_found(local: list[Found], shared: list[JobRecord]) -> list[Found]:
    by_id = {f.record.id: f for f in local}
    for record in shared:
        seen = by_id.get(record.id)
        if seen is None:
            by_id[record.id] = Found(record, shared=True)
        else:
            newer = record if (record.updated or 0) > (seen.record.updated or 0) else seen.record
            by_id[record.id] = Found(newer, local=seen.local, shared=True, written=seen.written)
    return sorted(by_id.values(), key=lambda f: (f.record.created, f.record.id), reverse=True)


def gather(launcher: Launcher, limit: int | None = None) -> Gathered:
    """The jobs of this machine's job store and, when a bucket is configured, of the bucket (no AWS call
    without one). A bucket that cannot be listed is said in `problem`; the local jobs are listed anyway."""
    local = []
    for record in launcher.store.list_records():
        path = launcher.store.jobs_dir / record.id / "record.json"
        try:
            written: float | None = path.stat().st_mtime
        except OSError:
            written = None
        local.append(Found(record, local=True, written=written))
    shared: list[JobRecord] = []
    problem = ""
    bucket = launcher.config.bucket
    if bucket:
        try:
            shared = launcher.shared_records()
        except Exception as exc:  # any AWS or network error: say it in one line, list what is here
            text = str(exc).splitlines()[0] if str(exc) else ""
            problem = (
                f"the jobs in bucket {bucket} could not be listed ({type(exc).__name__}: {text}); only this "
                f"machine's jobs are shown"
            )
    jobs = _merge_found(local, shared)
    return Gathered(jobs[:limit] if limit else jobs, problem)


# ----- deleting -----------------------------------------------------------------------------------------
@dataclass
class Pruned:
    removed: list[str] = field(default_factory=list)
    bytes: int = 0  # of the local folders removed (a bucket's objects are not sized: that costs a listing)
    errors: list[str] = field(default_factory=list)


def prune(launcher: Launcher, jobs: Sequence[Found]) -> Pruned:
    """Delete each job's record folder on this machine and its whole prefix in its object store (its own
    backend's store; the bucket's when the bucket listed it). A job whose deletion fails is named in `errors`;
    the others are still deleted. The space is free when this returns: a folder store deletes at once (its
    background trash thread would die with the `starburst` process, leaving the bytes it said were freed), and
    trash an earlier process left behind is emptied too, and counted."""
    done = Pruned()
    trashes: dict[str, LocalFolderStore] = {}
    for found in jobs:
        job_id = found.record.id
        try:
            folder = launcher.store.job_dir(job_id)
            backends = {found.record.backend} & set(REGISTRY) if found.local else set()
            if found.shared:
                backends.add("fargate")
            size = folder_bytes(folder) if folder.is_dir() else 0
            for name in sorted(backends):
                files = launcher.backend(name).job_files(job_id)
                files.store.delete_prefix(files.prefix, at_once=True)
                if isinstance(files.store, LocalFolderStore):
                    trashes[files.store.url] = files.store
            if folder.exists():
                shutil.rmtree(folder)
            done.bytes += size
            done.removed.append(job_id)
        except Exception as exc:  # one job's failure (a bucket refusing, a folder we may not write) is named
            done.errors.append(f"{job_id}: {type(exc).__name__}: {exc}")
    for store in trashes.values():
        done.bytes += store.empty_trash()
    return done

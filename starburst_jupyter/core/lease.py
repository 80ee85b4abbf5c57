"""One driver per job: a lease that only one driver can hold, taken by an exclusive create.

Why: "driver gone" used to be judged from the record's silence alone, so two attaches at once started two
drivers (items ran three times with --retries 0, both wrote the same journal numbers), a stopped driver (SIGSTOP,
a suspended laptop) got a second one and then went on writing when it woke, and every attach during a Fargate
driver's cold start could start another billed driver.

The lease of a job is the object `jobs/<id>/lease/<epoch>` with the highest epoch. Taking it creates epoch + 1
exclusively (so of two takers one wins), and only when the current one has expired: not renewed for its ttl, or
held by a process of this machine that is gone. Its holder renews it while it drives. Every write a driver
makes to the record or the journal is fenced: a driver that finds epoch + 1 (taken after its lease expired,
e.g. while it was stopped) raises LeaseLost and writes nothing more. The check runs whenever time has passed
since the last one (at most once a second while the driver runs), so a driver that wakes from SIGSTOP sees the
gap and checks before its next write. What remains is the instant between a check and the write it guards;
S3's If-Match on the record would close it (the next step of issue 22).

Starting a driver elsewhere (a process, a Fargate task) takes the lease first, with a ttl long enough for the
driver to start (Timings.driver_silent: a Fargate cold start), and hands the epoch to the new driver, which
adopts it. An attach that cannot take the lease follows the driver that holds it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from starburst_jupyter.errors import BurstError
from starburst_jupyter.protocol import keys
from starburst_jupyter.protocol.jobfiles import JobFiles

RECHECK_AFTER = 1.0  # seconds: a write this long after the last check checks again (a SIGSTOP shows as a gap)


class LeaseLost(BurstError):
    """Another driver took this job's lease: this one must write nothing more."""


@dataclass(frozen=True)
class LeaseInfo:
    """What a lease object says (the schema's one owner)."""

    epoch: int
    holder: str  # "pid 123 on host", or a Fargate task's ARN
    pid: int | None
    host: str
    renewed: float  # the holder's clock
    ttl: float

    def to_json(self) -> bytes:
        fields = {"holder": self.holder, "pid": self.pid, "host": self.host, "renewed": self.renewed, "ttl": self.ttl}
        return json.dumps(fields).encode()

    @classmethod
    def from_json(cls, epoch: int, data: bytes) -> LeaseInfo:
        raw = json.loads(data)
        pid = raw.get("pid")
        return cls(
            epoch=epoch,
            holder=str(raw.get("holder", ""))[:300],
            pid=int(pid) if isinstance(pid, int) and 0 < pid < 2**31 else None,
            host=str(raw.get("host", ""))[:300],
            renewed=_finite(raw.get("renewed"), 0.0),
            ttl=min(max(_finite(raw.get("ttl"), 60.0), 1.0), 86_400.0),
        )


def _finite(value: Any, default: float) -> float:
    if isinstance(value, (int, float)) and value == value and abs(value) < 1e12:
        return float(value)
    return default


def expired(info: LeaseInfo | None, now: float, host: str, alive: Any) -> bool:
    """Whether a lease may be taken over: none yet, not renewed within its ttl, or held by a process of this
    machine that no longer runs (`alive(pid)`). Pure: the clock, host and liveness are given."""
    if info is None:
        return True
    if info.pid is not None and info.host == host and not alive(info.pid):
        return True
    return now - info.renewed > info.ttl


def current(files: JobFiles) -> LeaseInfo | None:
    """The job's lease with the highest epoch (None when no driver ever took one: a job from before leases)."""
    epochs = [keys.lease_epoch(key) for key in files.store.list(keys.leases_prefix(files.prefix))]
    epochs = [epoch for epoch in epochs if epoch > 0]
    if not epochs:
        return None
    epoch = max(epochs)
    try:
        return LeaseInfo.from_json(epoch, bytes(files.store.get(keys.lease_key(files.prefix, epoch))))
    except (KeyError, FileNotFoundError, ValueError):
        # a lease being created this instant, or damaged: held, by a holder nobody can name, until its ttl
        return LeaseInfo(epoch, "unknown", None, "", time.time(), 60.0)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DriverLease:
    """The lease this process holds on one job (or holds for a driver it starts)."""

    def __init__(self, files: JobFiles, info: LeaseInfo):
        self.files, self.info = files, info
        self.checked = time.monotonic()
        self.renewed = time.monotonic()

    @property
    def epoch(self) -> int:
        return self.info.epoch

    @classmethod
    def take(
        cls, files: JobFiles, ttl: float, *, for_another: str = "", dead_epoch: int | None = None
    ) -> DriverLease | None:
        """The job's next lease, if the current one may be taken over and no other taker wins it; else None.
        `for_another`: taken to start a driver elsewhere (it adopts the epoch); bound to no pid then, so this
        process ending before that driver starts does not free it. `dead_epoch`: the epoch of a driver this
        process started and saw exit (its lease is over whatever its ttl says)."""
        host = socket.gethostname()
        now = time.time()
        found = current(files)
        if not (expired(found, now, host, pid_alive) or (found is not None and found.epoch == dead_epoch)):
            return None
        epoch = (found.epoch if found else 0) + 1
        pid = None if for_another else os.getpid()
        info = LeaseInfo(epoch, for_another or f"pid {pid} on {host}", pid, host, now, ttl)
        if not files.store.create_exclusive(keys.lease_key(files.prefix, epoch), info.to_json()):
            return None
        return cls(files, info)

    @classmethod
    def adopt(cls, files: JobFiles, epoch: int, ttl: float, holder: str | None = None) -> DriverLease:
        """Drive under the lease a starter took for this process (drive.py --lease); LeaseLost if it is gone."""
        host, pid = socket.gethostname(), os.getpid()
        info = LeaseInfo(epoch, holder or f"pid {pid} on {host}", pid, host, time.time(), ttl)
        lease = cls(files, info)
        lease.check()
        lease.renew()
        return lease

    def check(self) -> None:
        """LeaseLost when a later epoch exists: another driver took over."""
        self.checked = time.monotonic()
        if self.files.store.exists(keys.lease_key(self.files.prefix, self.epoch + 1)):
            taker = current(self.files)
            raise LeaseLost(
                f"Job {self.files.job_id}: another driver took over its lease (epoch {taker.epoch if taker else '?'}, "
                f"{taker.holder if taker else 'unknown'}); this driver (epoch {self.epoch}) stops without writing.",
                job_id=self.files.job_id,
            )

    def fence(self) -> None:
        """Before a write: check again when time has passed since the last check (a stopped process shows a gap)."""
        if time.monotonic() - self.checked >= RECHECK_AFTER:
            self.check()

    def renew(self) -> None:
        """Say this holder lives (after checking it still holds the lease)."""
        self.check()
        self.info = LeaseInfo(self.epoch, self.info.holder, self.info.pid, self.info.host, time.time(), self.info.ttl)
        self.files.store.put(keys.lease_key(self.files.prefix, self.epoch), [self.info.to_json()])
        self.renewed = time.monotonic()

    def renew_if_due(self) -> None:
        if time.monotonic() - self.renewed >= self.info.ttl / 4:
            self.renew()
        else:
            self.fence()

"""Exceptions a user can catch. Each message says what was attempted and what to do next."""

from __future__ import annotations

import errno
from typing import Any


class BurstError(Exception):
    """Base class of every starburst error; also raised when map items fail."""

    #: Every item's result (failed slots hold the exception); set on the errors raised for a job's items.
    results: list[Any]

    def __init__(
        self, message: str, *, job_id: str | None = None, failures: list[tuple[int, BaseException]] | None = None
    ):
        super().__init__(message)
        self.job_id = job_id
        #: [(item_index, exception)] for the items that failed, in item order.
        self.failures = failures or []

    def _render_traceback_(self) -> list[str]:
        """IPython shows our message, not the launcher's stack, for burst errors (IPython's hook, by name)."""
        return [f"{type(self).__name__}: {self}"]


class BurstValidationError(BurstError, ValueError):
    """A spec or option was refused before anything was launched."""


class BurstCaptureError(BurstError, TypeError):
    """A name the cell needs cannot be shipped to a worker."""


class BurstConfigError(BurstValidationError):
    """A config key or value was refused."""


class DamagedJobFile(BurstError):
    """One of a job's files (its record, driver.json, a journal batch) is not what starburst writes: the message
    names the job, the file and what is wrong with it."""

    def __init__(self, job_id: str, where: str, problem: str, hint: str = ""):
        super().__init__(f"Job {job_id}: {where} is damaged ({problem}).{' ' + hint if hint else ''}", job_id=job_id)
        self.where, self.problem = where, problem


class BurstCancelled(BurstError):
    """The job was cancelled (stop button, cancel call, --max-cost or --timeout)."""


class BurstInterrupted(BurstCancelled, KeyboardInterrupt):
    """The stop button (or Ctrl-C) cancelled the job while its cell waited. Still a KeyboardInterrupt, so what
    catches interrupts still does; IPython shows its one line, not the wait's stack."""


class BurstTimeout(BurstCancelled, TimeoutError):
    """The job passed its --timeout deadline and was cancelled."""


class BurstBackendUnavailable(BurstValidationError):
    """The chosen backend cannot run jobs on this machine yet."""


class WorkerLost(BurstError):
    """The worker running an item died (killed, segfault, os._exit) and the retries ran out."""


class StorageFull(BurstError):
    """The job's store refused a write: disk full, quota, or a file-size limit."""


#: The errnos that mean "no room to write": disk full, quota, file-size limit (RLIMIT_FSIZE).
NO_ROOM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def no_room(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in NO_ROOM_ERRNOS


class ResultTooLarge(BurstError):
    """An item's result was above the configured max_result_bytes."""


class TaskCancelled(BurstCancelled):
    """Placeholder in a result slot for an item that never ran because the job was cancelled."""


class RemoteTraceback(Exception):
    """Carries the worker's formatted traceback as the __cause__ of a remote exception."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb

"""What a submitted job is to its caller: a handle to wait on, cancel and watch, and its result.

The handle talks to the job's driver (core/driver.py) and nothing else; faces hold handles."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starburst_jupyter.core import events as ev
from starburst_jupyter.core.debuglog import trace
from starburst_jupyter.core.plan import Plan
from starburst_jupyter.core.spec import JobSpec
from starburst_jupyter.errors import (
    BurstCancelled,
    BurstError,
    BurstTimeout,
    RemoteTraceback,
)

if TYPE_CHECKING:
    from starburst_jupyter.core.driver import JobDriver


@dataclass
class JobResult:
    job_id: str
    state: str  # done, failed, cancelled
    values: list[Any]  # item order; failed slots hold the exception
    failures: list[tuple[int, BaseException]]
    outputs: dict[int, tuple[str, str]]  # item -> (stdout, stderr), where non-empty
    duration: float
    cost: float
    message: str = ""
    cancelled_by: str = ""  # "user", "timeout" or "max-cost" when state is "cancelled"

    @property
    def ok(self) -> bool:
        return self.state == "done" and not self.failures

    def failure_report(self, limit: int = 10) -> str:
        """One message naming every failed item. Items that failed the same way (the same last line: exception
        and message) are one group, shown with its items and one traceback; the first `limit` groups in full."""
        lines = [f"{len(self.failures)} of {len(self.values)} items failed in job {self.job_id}:"]
        if self.message and self.state == "failed":
            lines[0] += f" {self.message}."
        groups: dict[str, tuple[list[int], str]] = {}
        for index, exc in self.failures:
            cause = exc.__cause__.tb if isinstance(exc.__cause__, RemoteTraceback) else f"{type(exc).__name__}: {exc}\n"
            key = cause.rstrip().splitlines()[-1] if cause.strip() else type(exc).__name__
            groups.setdefault(key, ([], cause))[0].append(index)
        shown = list(groups.items())[:limit]
        for _, (indices, cause) in shown:
            label = f"item {indices[0]}" if len(indices) == 1 else f"{len(indices)} items: {_ranges(indices)}"
            lines.append(f"\n--- {label} ---\n{cause.rstrip()}")
        rest = [i for _, (indices, _) in list(groups.items())[limit:] for i in indices]
        if rest:
            listed = ", ".join(str(i) for i in rest[:40])
            more = "..." if len(rest) > 40 else ""
            lines.append(f"\n... and {len(rest)} more failed items: {listed}{more}")
        return "\n".join(lines)


def _ranges(indices: list[int]) -> str:
    """0, 1, 2, 5, 7, 8 -> '0-2, 5, 7-8' (at most 20 runs shown)."""
    runs: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(runs[:20]) + (", ..." if len(runs) > 20 else "")


class JobHandle:
    """A submitted job: wait for it, cancel it, watch its events."""

    def __init__(self, job_id: str, spec: JobSpec, events: ev.EventBus):
        self.id, self.spec, self.events = job_id, spec, events
        self.state = "queued"
        self._finished = threading.Event()
        self._result: JobResult | None = None
        self._error: BaseException | None = None  # why the driver ended without a result (another took over)
        self._monitor: JobDriver | None = None

    def bind(self, driver: JobDriver) -> None:
        """The launcher gives the handle the driver it talks to."""
        self._monitor = driver

    def settle(self, result: JobResult | None = None, error: BaseException | None = None) -> None:
        """The driver's last word: the result (when it has one), or why it has none; no wait() blocks after this."""
        if result is not None:
            self._result = result
        if error is not None:
            self._error = error
        trace("handle: settled", job=self.id, state=result.state if result else None)
        self._finished.set()

    @property
    def _driver(self) -> JobDriver:
        if self._monitor is None:  # the launcher sets it as soon as it makes the job
            raise RuntimeError(f"job {self.id} has no driver yet")
        return self._monitor

    @property
    def plan(self) -> Plan:
        return self._driver.plan

    @property
    def outcome(self) -> JobResult | None:
        """The result once the job has ended, else None."""
        return self._result

    def start(self) -> None:
        """Launch a job submitted with start=False."""
        self._driver.start()

    def done(self) -> bool:
        return self._finished.is_set()

    def wait_settled(self, timeout: float | None = None) -> bool:
        """Block until the driver's last word (no result, no raise): what an awaited cell runs in a thread, so the
        job's end wakes it at once instead of at its next poll."""
        return self._finished.wait(timeout)

    def cancel(self, reason: str = "cancelled by user") -> None:
        trace("handle: cancel", job=self.id, reason=reason, has_driver=self._monitor is not None)
        if self._monitor is not None:
            self._monitor.request_cancel(reason)

    def add_items(self, items: list[Any]) -> list[int]:
        """Queue more items on an open job (BurstExecutor); returns their indices."""
        return self._driver.add_items(items)

    def on_item(self, callback: Callable[[int, bool, Any], None]) -> None:
        """callback(index, ok, value_or_exception) as each item gets its final outcome (from the job's thread)."""
        self._driver.ledger.callbacks.append(callback)

    def stop_worker(self, worker: int) -> None:
        """End one worker; what it held goes to the others without counting as a crash."""
        self._driver.workforce.stop_requests.add(worker)

    def withdraw(self, index: int) -> bool:
        """Take a not-yet-started item out of the queue; False if a worker already has it."""
        return self._driver.withdraw(index)

    def close(self) -> None:
        """An open job takes no more items and finishes when the queued ones are done."""
        self._driver.close()

    def wait(self, timeout: float | None = None) -> JobResult:
        """Block until the job ends. The stop button (KeyboardInterrupt) cancels the job first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._finished.wait(0.1):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} still running after {timeout} s (it goes on)")
        except KeyboardInterrupt:
            self.cancel("interrupted (stop button / Ctrl-C)")
            self._finished.wait()  # the workers are being ended; a second interrupt stops waiting
            raise
        if self._result is None and self._error is not None:
            raise self._error
        if self._result is None:  # the driver itself failed before it could say how the job ended
            raise BurstError(
                f"Job {self.id} ended without a result: its driver failed (the log above says why). "
                f"%burst_status {self.id} shows what its record holds.",
                job_id=self.id,
            )
        return self._result

    def result(self) -> JobResult:
        """Wait, then raise for a cancelled job; failed items stay in the result for the face to report."""
        return raise_if_cancelled(self.wait())


def raise_if_cancelled(result: JobResult) -> JobResult:
    """The result, or for a cancelled job the error that says why (BurstTimeout for --timeout), with what
    finished in its .results."""
    if result.state == "cancelled":
        kind = BurstTimeout if result.cancelled_by == "timeout" else BurstCancelled
        error = kind(
            f"Job {result.job_id} was cancelled: {result.message}. Results of the items that finished "
            f"are in this error's .results.",
            job_id=result.job_id,
            failures=result.failures,
        )
        error.results = result.values
        raise error
    return result

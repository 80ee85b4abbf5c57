"""What a worker's exit code says, and what it cannot say.

A worker runs the user's code in its own process, and that code may end the process with any code
(`os._exit(3)`, a C library calling `exit(1)`, the kernel's OOM killer...). So an exit code never
carries the job's meaning on its own: the DRIVER decides what happened from the job's state (was a
cancel requested? has the deadline passed? did the worker's claims and results arrive?), and uses
the code only as a hint and for display. To make a collision unlikely, the worker's own codes sit in
a range user code rarely uses (90+), apart from 0 for a clean end.
"""

from __future__ import annotations

import signal

EXIT_OK = 0  # no more work (or budget spent), or the worker left for another job from the warm pool
EXIT_CANCELLED = 91  # the worker saw the job's cancel marker and ended itself
EXIT_DEADLINE = 92  # the worker passed the job's deadline and ended itself
EXIT_NO_PROGRAM = 93  # the job's program could not be loaded (usually a module missing on the worker)
EXIT_TERMINATED = 143  # 128 + SIGTERM: the worker was told to stop (StopTask, a Spot notice) and left in order

_WORKER_REASONS = {
    EXIT_OK: "finished",
    EXIT_CANCELLED: "stopped: job cancelled",
    EXIT_DEADLINE: "stopped: job deadline passed",
    EXIT_NO_PROGRAM: "could not load the job's program",
}
_SIGNAL_NAMES = {s.value: s.name for s in signal.Signals}


def describe(code: int | None) -> str:
    """A human reason for an exit code. Only the worker's own codes are named; any other code is reported
    as the number it is ("exited with code N"), with at most a hint, never a claimed cause."""
    if code is None:
        return "still running"
    if code < 0:  # a subprocess ended by a signal
        return f"killed by {_SIGNAL_NAMES.get(-code, f'signal {-code}')}"
    if code in _WORKER_REASONS:
        return _WORKER_REASONS[code]
    if 128 < code < 128 + 65 and code - 128 in _SIGNAL_NAMES:  # a container's shell convention: 128 + signal
        return f"exited with code {code} (128 + {_SIGNAL_NAMES[code - 128]})"  # the cause is the backend's to say
    return f"exited with code {code}"

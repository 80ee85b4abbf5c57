"""An opt-in trace file for timing questions no test output answers (e.g. "was the Cancel click lost?").

Set STARBURST_DEBUG_LOG=/some/path in the kernel's environment: starburst code in that process appends
one line per traced step (time, thread, what happened). Unset, `trace` costs one dict lookup and writes
nothing. Lines are whole `write` calls on a file opened in append mode, so threads do not interleave them.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

ENV = "STARBURST_DEBUG_LOG"
_lock = threading.Lock()


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def trace(what: str, **details: Any) -> None:
    """Append `what` and its details to the file STARBURST_DEBUG_LOG names (nothing when unset)."""
    path = os.environ.get(ENV)
    if not path:
        return
    extra = " ".join(f"{k}={v!r}" for k, v in details.items())
    line = f"{time.time():.3f} pid={os.getpid()} [{threading.current_thread().name}] {what} {extra}".rstrip()
    try:
        with _lock, open(path, "a", encoding="utf-8") as log:
            log.write(line + "\n")
    except OSError:  # a debugging aid never breaks a job
        pass


def trace_kernel_comms(kernel: Any) -> None:
    """Trace every comm message the kernel's shell hands to its comm manager, before any widget sees it:
    tells "the click never reached the kernel" apart from "it reached it and nothing acted on it"."""
    if not enabled() or kernel is None or getattr(kernel, "_starburst_traced", False):
        return
    handlers = getattr(kernel, "shell_handlers", None)
    original = handlers.get("comm_msg") if isinstance(handlers, dict) else None
    if handlers is None or original is None:
        return

    def comm_msg(stream: Any, ident: Any, msg: Any) -> Any:
        content = msg.get("content", {}) if isinstance(msg, dict) else {}
        data = content.get("data", {}) or {}
        comm_id = content.get("comm_id")
        manager = getattr(kernel, "comm_manager", None)
        known = manager.get_comm(comm_id) is not None if manager is not None else None
        trace(
            "kernel: comm_msg in",
            comm=str(comm_id)[:8],
            known=known,
            method=data.get("method"),
            content=str(data.get("content") or data.get("state") or "")[:80],
            subshell=msg.get("header", {}).get("subshell_id") if isinstance(msg, dict) else None,
        )
        return original(stream, ident, msg)

    handlers["comm_msg"] = comm_msg
    kernel._starburst_traced = True
    import sys

    trace("kernel: comm tracing on", sys_path=sys.path[:4])

"""Small helpers shared by test modules (importable because tests/ is on sys.path via rootdir conftest)."""

from __future__ import annotations

import os
import time

from starburst_jupyter.stores.records import JobStore


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not running; it only waits for its parent to reap it
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def worker_pids(record: dict) -> list[int]:
    return [w["pid"] for w in record["workers"].values() if w.get("pid")]


def latest_record() -> dict:
    records = JobStore().list(limit=1)
    assert records, "no job was recorded"
    return records[0]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def file_tail(path, lines: int) -> str:
    """The last lines of a log file, for a failing test's message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"

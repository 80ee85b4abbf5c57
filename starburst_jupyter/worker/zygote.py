"""The local fork server: `python -m starburst_jupyter.worker.zygote --idle SECONDS`.

A new `python -m starburst_jupyter.worker` costs ~0.14 s (the interpreter, cloudpickle, the runner); a fork of
a process that already holds them costs ~2 ms. This process imports only the runner (never user code), so a
worker forked from it imports the user's modules fresh, from disk, as a new process would: a module edited
between two cells cannot run stale. Single-threaded on purpose (fork copies only the calling thread).

Protocol, one line each way (the kernel side is backends/zygote.py):
  in:  {"argv": [...runner args], "env": {...}, "cwd": "...", "path": [...sys.path], "log": "/.../007.log"}
  out: `started <pid>` (or `error <why>`) for each command, in order; `exit <pid> <code>` when a child ends
       (a signal death as minus the signal number, as Popen reports it).
It exits on stdin EOF (its kernel ended or let it go: running workers go on, as they outlive a killed kernel)
and after `--idle` seconds with no live child and no command.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import locale
import os
import select
import signal
import sys
import time
from typing import Any, NoReturn

import cloudpickle  # noqa: F401  (imported once here, so no forked worker pays for it)

from starburst_jupyter.protocol import programs  # noqa: F401  (what every job's program unpickles into)
from starburst_jupyter.stores.objects import open_private
from starburst_jupyter.worker import runner

locale.getpreferredencoding(False)  # (what a worker's first text file would import and ask)

#: The environment's own entries of sys.path (stdlib, site-packages), without what PYTHONPATH added.
_STARTUP_PYTHONPATH = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
_BASE_PATH = [p for p in sys.path[1:] if p not in _STARTUP_PYTHONPATH]


#: How often the server checks that its kernel still runs (EOF on stdin is the usual sign; see serve).
PARENT_CHECK_SECONDS = 1.0


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _unbuffered(fd: int) -> io.TextIOWrapper:
    raw = open(fd, "wb", buffering=0, closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True, write_through=True)


def _child(command: dict[str, Any], wakeup: tuple[int, int]) -> NoReturn:
    """In the forked child: become a worker as `python -m starburst_jupyter.worker ARGV` would, then _exit."""
    code = 1
    try:
        os.setsid()  # its own session and group, as a Popen(start_new_session=True) worker: stop_job ends the group
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # what the zygote changed (SIGPIPE stays ignored, as in Python)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in wakeup:
            os.close(fd)
        log = open_private(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        sys.stdout, sys.stderr = _unbuffered(1), _unbuffered(2)  # as PYTHONUNBUFFERED=1 makes them for a new worker
        sys.stdin = open(0, closefd=False)
        os.chdir(command["cwd"])
        os.environ.clear()
        os.environ.update(command["env"])
        sys.path[:] = list(dict.fromkeys([command["cwd"], *command["path"], *_BASE_PATH]))
        importlib.invalidate_caches()
        sys.argv = [runner.__file__, *command["argv"]]
        code = runner.main(command["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)  # as the interpreter does with sys.exit("message")
    except BaseException:  # reported in the worker's log, as an exec'd worker's traceback would be
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # (a closed log: nothing to tell)
                pass
    os._exit(code)  # never the zygote's atexit handlers or buffers


def _reap(children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        _say(f"exit {pid} {os.waitstatus_to_exitcode(status)}")


def serve(idle: float) -> int:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd wakes select on a child's end
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the kernel's to handle
    children: set[int] = set()
    buffer = b""
    last = time.monotonic()  # the last command or child's end: idle time counts from there
    parent = os.getppid()
    while True:
        if not children and time.monotonic() - last >= idle:
            return 0  # idle: nothing running, nothing asked
        if os.getppid() != parent:
            return 0  # the kernel is gone, though a process it forked still holds our stdin open (no EOF)
        timeout = PARENT_CHECK_SECONDS if children else min(PARENT_CHECK_SECONDS, last + idle - time.monotonic())
        ready, _, _ = select.select([0, wake_r], [], [], max(0.0, timeout))
        if wake_r in ready:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        running = len(children)
        _reap(children)
        if len(children) < running:
            last = time.monotonic()
        if 0 not in ready:
            continue
        data = os.read(0, 65536)
        if not data:
            return 0  # the kernel is gone or let us go; running workers go on
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            last = time.monotonic()
            try:
                command = json.loads(line)
                pid = os.fork()
            except (ValueError, OSError) as exc:
                _say(f"error {type(exc).__name__}: {exc}".replace("\n", " "))
                continue
            if pid == 0:
                _child(command, (wake_r, wake_w))
            children.add(pid)
            _say(f"started {pid}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m starburst_jupyter.worker.zygote")
    parser.add_argument("--idle", type=float, default=600.0, help="exit after this long with nothing running")
    return serve(parser.parse_args(argv).idle)


if __name__ == "__main__":
    sys.exit(main())

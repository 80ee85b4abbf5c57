"""The kernel's side of the warm local pool: one fork server (worker/zygote.py) per process, started lazily.

Why: a local worker started as a new interpreter costs ~0.14 s; forked by a zygote that already imported the
runner it costs a few ms, so a second job's first task starts in milliseconds. The zygote never imports user
code, so a forked worker imports the user's modules fresh. It lives `local_warm_seconds` with nothing to do,
and ends when this process ends (its stdin is our pipe: EOF). Workers it forked outlive it (as they outlive a
killed kernel), and their ends are still found: `spawn`'s `orphan` gives a handle (local.AdoptedWorker) that
tells a worker's end from /proc and its log once the zygote can no longer report it.
No IPython here: the detached driver (core/drive.py) uses the same pool, its own per process.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from starburst_jupyter.stores.objects import make_private_dirs, open_private

#: The module a zygote runs: its argv marks it (and the workers it forks, which keep its command line).
ZYGOTE_MODULE = "starburst_jupyter.worker.zygote"
#: The folder holding the starburst_jupyter package this process runs (the zygote must run the same code).
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
#: How long a spawn waits for the zygote's answer before starting another one.
ANSWER_SECONDS = 10.0


class Pollable(Protocol):
    def poll(self) -> int | None: ...


class ZygoteChild:
    """A Popen-like handle (pid, poll, wait, returncode) for a worker the zygote forked."""

    def __init__(self, pid: int, orphan: Callable[[int], Pollable]):
        self.pid = pid
        self.returncode: int | None = None
        self._orphan_of = orphan
        self._orphan: Pollable | None = None  # set once the zygote can no longer report this child's end
        self._ended = threading.Event()

    def _exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self._ended.set()

    def _orphaned(self) -> None:
        if self._orphan is None:
            self._orphan = self._orphan_of(self.pid)
        self._ended.set()  # wake a wait(): it polls from now on

    @property
    def orphaned(self) -> bool:
        """The zygote is gone: this child's end is read from /proc and its log, its exit code is not known."""
        return self._orphan is not None

    def poll(self) -> int | None:
        if self.returncode is None and self._orphan is not None:
            self.returncode = self._orphan.poll()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"worker pid {self.pid}", timeout or 0.0)
            if self._orphan is None:
                self._ended.wait(left)
            else:
                time.sleep(0.02 if left is None else min(0.02, left))
        return code


class _Zygote:
    """One running fork server: its process, the reader thread and the children it reported."""

    def __init__(self, idle: float, log_path: Path):
        make_private_dirs(log_path.parent)
        with open(open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", ZYGOTE_MODULE, "--idle", repr(float(idle))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)),
                cwd=_PACKAGE_ROOT,  # `-m` looks in the cwd first: this way it imports the kernel's own package
                start_new_session=True,  # a terminal's Ctrl-C is the kernel's, not the pool's
            )
        self.idle = idle
        self.answers: queue.Queue[ZygoteChild | str | None] = queue.Queue()
        self.children: dict[int, ZygoteChild] = {}
        self.orphan: Callable[[int], Pollable] | None = None  # the factory of the spawn in flight
        self.gone = False
        threading.Thread(target=self._read, name="starburst-zygote-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            word, _, rest = raw.decode("utf-8", "replace").strip().partition(" ")
            if word == "started" and self.orphan is not None:
                child = ZygoteChild(int(rest), self.orphan)
                self.children[child.pid] = child
                self.answers.put(child)
            elif word == "exit":
                pid, code = rest.split()
                ended = self.children.pop(int(pid), None)
                if ended is not None:
                    ended._exited(int(code))
            elif word == "error":
                self.answers.put(rest)
        self.gone = True  # EOF: the zygote ended (idle, killed): nobody reports its children's ends any more
        for child in list(self.children.values()):
            child._orphaned()
        self.answers.put(None)

    def alive(self) -> bool:
        return not self.gone and self.proc.poll() is None

    def close(self) -> None:
        """Let it go: it exits at EOF; workers it forked go on."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass


class WarmPool:
    """This process's fork server, started on first use (or by prestart) and again after it ended."""

    def __init__(self, idle: float, home: Path):
        self.idle, self.home = idle, home
        self._lock = threading.Lock()
        self._zygote: _Zygote | None = None

    def _running(self) -> _Zygote:
        """(Under the lock.) The live zygote, a new one if there is none."""
        if self._zygote is None or not self._zygote.alive():
            log = self.home / "logs" / "zygote.log"  # one file for every process's server (appended; rarely written)
            self._zygote = _Zygote(self.idle, log)
        return self._zygote

    def prestart(self) -> None:
        """Start the zygote in the background, so the first job's workers are already warm."""

        def start() -> None:
            try:
                with self._lock:
                    self._running()
            except OSError:
                pass  # the first spawn will start it and say why if it cannot

        threading.Thread(target=start, name="starburst-zygote-prestart", daemon=True).start()

    def spawn(
        self, argv: list[str], env: dict[str, str], cwd: str, log: Path, orphan: Callable[[int], Pollable]
    ) -> ZygoteChild:
        """Fork a worker running `runner.main(argv)` with this env, cwd and log; a zygote that died (or went
        idle as we asked) is replaced once."""
        path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]  # as a new interpreter's sys.path
        command = json.dumps({"argv": argv, "env": env, "cwd": cwd, "path": path, "log": str(log)}).encode()
        with self._lock:
            for _attempt in (1, 2):
                zygote = self._running()
                zygote.orphan = orphan
                try:
                    assert zygote.proc.stdin is not None
                    zygote.proc.stdin.write(command + b"\n")
                    zygote.proc.stdin.flush()
                    answer = zygote.answers.get(timeout=ANSWER_SECONDS)
                except (OSError, queue.Empty):
                    answer = None
                if isinstance(answer, ZygoteChild):
                    return answer
                if isinstance(answer, str):
                    raise OSError(f"the local worker pool could not start a worker: {answer}")
                zygote.close()
                zygote.gone = True  # (no answer: start another)
            raise OSError(
                f"the local worker pool (python -m {ZYGOTE_MODULE}) did not start a worker twice (its errors: "
                f"{self.home / 'logs' / 'zygote.log'})"
            )

    def close(self) -> None:
        with self._lock:
            if self._zygote is not None:
                self._zygote.close()
                self._zygote = None


_POOLS: dict[int, WarmPool] = {}  # os.getpid() -> this process's pool (a forked copy of us starts its own)
_POOLS_LOCK = threading.Lock()


def pool(idle: float, home: Path) -> WarmPool:
    """This process's pool; a changed idle time lets the old zygote go and starts the next with the new one."""
    with _POOLS_LOCK:
        current = _POOLS.get(os.getpid())
        if current is None or current.idle != idle:
            if current is not None:
                current.close()
            current = _POOLS[os.getpid()] = WarmPool(idle, home)
        return current


def prestart(idle: float, home: Path) -> None:
    if idle > 0:
        pool(idle, home).prestart()

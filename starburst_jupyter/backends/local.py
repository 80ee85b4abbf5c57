"""The embedded backend: workers are subprocesses of this machine running the kernel's interpreter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from starburst_jupyter.backends.base import OneByOneBackend, WorkerRef, WorkerStart
from starburst_jupyter.core.config import Config, starburst_home
from starburst_jupyter.core.spec import JobSpec
from starburst_jupyter.protocol import exits
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.stores.objects import LocalFolderStore


class LocalBackend(OneByOneBackend):
    name = "local"

    def __init__(self, config: Config | None = None, home: Path | None = None):
        self.home = Path(home) if home else starburst_home()
        self._concurrency = (config.local_concurrency if config else None) or os.cpu_count() or 1
        self.store = LocalFolderStore(self.home)

    def concurrency(self, spec: JobSpec) -> int:
        return self._concurrency

    def job_files(self, job_id: str) -> JobFiles:
        return JobFiles(self.store, job_id)

    def _env(self) -> dict[str, str]:
        """Workers see the kernel's sys.path, so modules importable in the notebook import there too."""
        env = dict(os.environ)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start_worker(self, files: JobFiles, spec: JobSpec, start: WorkerStart) -> WorkerRef:
        index = start.index
        log_path = self.store.path(files.log_key(index))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "starburst_jupyter.worker",
            "--store",
            self.store.url,
            "--job",
            files.job_id,
            "--prefix",
            files.prefix,
            "--worker",
            str(index),
            "--budget",
            str(start.budget),
        ]
        with open(log_path, "ab") as log:
            # A new session: a terminal's Ctrl-C reaches the kernel, which cancels the job in order.
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=os.getcwd(),
                env=self._env(),
                start_new_session=True,
            )
        return WorkerRef(index, start.wave, time.time(), handle=proc, info={"pid": proc.pid})

    def poll(self, ref: WorkerRef) -> int | None:
        code: int | None = ref.handle.poll()
        if code is not None and not ref.reason:
            ref.reason = exits.describe(code)
        return code

    def stop(self, refs: list[WorkerRef], grace: float = 2.0) -> None:
        alive = [r for r in refs if r.handle.poll() is None]
        for ref in alive:
            _signal_group(ref.handle.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for ref in alive:
            try:
                ref.handle.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(ref.handle.pid, signal.SIGKILL)
                ref.handle.wait()

    def stop_job(self, job_id: str, refs: list[WorkerRef], reason: str, keep: frozenset[str] = frozenset()) -> int:
        """End the job's running workers, then whatever their tasks started: each worker leads its own process
        group, which outlives the worker while a child of a task is in it (a PID is not reused while its group
        exists, so this reaches only those leftovers)."""
        alive = [r for r in refs if r.exit_code is None]
        if alive:
            self.stop(alive)
        for ref in refs:
            if isinstance(ref.handle, subprocess.Popen):
                _signal_group(ref.handle.pid, signal.SIGKILL)
        return len(alive)

    def stop_recorded(self, record: dict[str, Any]) -> int:
        """Kill the pids a record names, but only if they are still this job's workers."""
        stopped = 0
        for info in record.get("workers", {}).values():
            pid = info.get("pid")
            if pid and info.get("exit_code") is None and _is_worker_of(pid, record["id"]):
                _signal_group(pid, signal.SIGKILL)
                stopped += 1
        return stopped

    def read_log(self, files: JobFiles, worker: int) -> str:
        try:
            return self.store.path(files.log_key(worker)).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, files: JobFiles, ref: WorkerRef, offset: int) -> tuple[str, int]:
        try:
            with open(self.store.path(files.log_key(ref.index)), "rb") as log:
                log.seek(offset)
                data = log.read()
        except FileNotFoundError:
            return "", offset
        cut = data.rfind(b"\n") + 1  # only whole lines
        return data[:cut].decode("utf-8", "replace"), offset + cut


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _is_worker_of(pid: int, job_id: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"starburst_jupyter.worker" in cmdline and job_id.encode() in cmdline

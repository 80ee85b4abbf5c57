"""The embedded backend: workers are subprocesses of this machine running the kernel's interpreter."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from starburst_jupyter.backends import logfiles, zygote
from starburst_jupyter.backends.base import OneByOneBackend, WorkerRef, WorkerStart, worker_argv
from starburst_jupyter.core.config import Config, starburst_home
from starburst_jupyter.core.spec import JobSpec
from starburst_jupyter.protocol import exits
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.stores.objects import LocalFolderStore, make_private_dirs, open_private

logger = logging.getLogger(__name__)

#: The most one poll of the live log reads per worker (a burst of output comes over several polls).
LOG_POLL_BYTES = 1024 * 1024


class LocalBackend(OneByOneBackend):
    name = "local"

    def __init__(self, config: Config | None = None, home: Path | None = None):
        self.home = Path(home) if home else starburst_home()
        self._concurrency = (config.local_concurrency if config else None) or os.cpu_count() or 1
        self.warm_seconds = (config or Config()).local_warm_seconds  # 0: a new process per worker
        self.store = LocalFolderStore(self.home)

    def concurrency(self, spec: JobSpec) -> int:
        # the first call of a job (before its program and items are written): the fork server starts meanwhile
        zygote.prestart(self.warm_seconds, self.home)
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
        make_private_dirs(log_path.parent)
        argv = worker_argv(sys.executable, self.store.url, files, start)
        if self.warm_seconds > 0:
            try:
                child = zygote.pool(self.warm_seconds, self.home).spawn(
                    argv[3:],
                    self._env(),
                    os.getcwd(),
                    log_path,
                    lambda pid: AdoptedWorker(pid, files.job_id, index, log_path),
                )
            except OSError as exc:  # a new process instead, as with local_warm_seconds=0: slower, never lost
                logger.warning("job %s: worker %d starts as a new process: %s", files.job_id, index, exc)
                child = None
            if child is not None:
                info = {"pid": child.pid, "job": files.job_id, "prefix": files.prefix}
                return WorkerRef(index, start.wave, time.time(), handle=child, info=info)
        with open(open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as log:
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
        # job and prefix: what another kernel needs to adopt this worker (its log, its argv) from the record
        info = {"pid": proc.pid, "job": files.job_id, "prefix": files.prefix}
        return WorkerRef(index, start.wave, time.time(), handle=proc, info=info)

    def poll(self, ref: WorkerRef) -> int | None:
        code: int | None = ref.handle.poll()
        if code is not None and not ref.reason:
            unknown = code == EXIT_UNKNOWN
            if unknown and isinstance(ref.handle, AdoptedWorker):
                ref.reason = ENDED_UNKNOWN
            elif unknown and isinstance(ref.handle, zygote.ZygoteChild) and ref.handle.orphaned:
                ref.reason = ENDED_POOL_GONE
            else:
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
        exists). A group whose members are all gone frees its number, which a later process (another job's
        worker) may lead: a group is ended only if no member of it is some other job's worker."""
        alive = [r for r in refs if r.exit_code is None]
        if alive:
            self.stop(alive)
        for ref in refs:
            if not isinstance(ref.handle, (subprocess.Popen, AdoptedWorker, zygote.ZygoteChild)):
                continue
            logs = self._log_path(job_id, ref.index, ref.info.get("prefix")).parent
            if _group_is_ours(ref.handle.pid, job_id, logs):
                _signal_group(ref.handle.pid, signal.SIGKILL)
        return len(alive)

    def stop_recorded(self, record: dict[str, Any]) -> int:
        """Kill the pids a record names, but only if they are still this job's workers."""
        stopped = 0
        for index, info in record.get("workers", {}).items():
            pid = info.get("pid")
            if not pid or info.get("exit_code") is not None:
                continue
            prefix = info.get("prefix") if info.get("job") == record["id"] else None
            log_path = self._log_path(record["id"], int(index), prefix) if str(index).isdigit() else None
            if _is_worker_of(pid, record["id"], log_path):
                _signal_group(pid, signal.SIGKILL)
                stopped += 1
        return stopped

    def adopt(self, index: int, info: dict[str, Any]) -> WorkerRef:
        """A worker another kernel started, from the job's record (the `Attaches` capability): after that
        kernel was SIGKILLed its workers run on, and a kernel that attaches polls and stops them through an
        `AdoptedWorker` handle (not our child: /proc and the worker's exact argv say whether it runs, its log
        says how it ended)."""
        pid, job_id = info.get("pid"), info.get("job")
        wave, started = int(info.get("wave") or 1), float(info.get("started") or time.time())
        recorded_code, ended = info.get("exit_code"), info.get("ended")
        keep = {k: v for k, v in info.items() if k not in ("wave", "started", "ended", "exit_code", "reason")}
        if recorded_code is not None or ended or not pid or not isinstance(job_id, str):
            # ended as recorded (or a record from before workers named their job: nothing to follow)
            code = recorded_code if recorded_code is not None else EXIT_UNKNOWN
            reason = info.get("reason") or (exits.describe(code) if recorded_code is not None else ENDED_UNKNOWN)
            return WorkerRef(index, wave, started, None, keep, code, ended or time.time(), reason)
        log_path = self._log_path(job_id, index, info.get("prefix"))
        return WorkerRef(index, wave, started, AdoptedWorker(pid, job_id, index, log_path), keep)

    def _log_path(self, job_id: str, index: int, prefix: str | None) -> Path:
        return self.store.path(JobFiles(self.store, job_id, prefix).log_key(index))

    def read_log(self, files: JobFiles, worker: int) -> str:
        return logfiles.read_whole(self.store.path(files.log_key(worker)))

    def read_log_bytes(self, files: JobFiles, worker: int, offset: int, limit: int) -> tuple[bytes, int, int]:
        """(TailsLogsCheaply) a seek in the worker's log file."""
        return logfiles.read_range(self.store.path(files.log_key(worker)), offset, limit)

    def read_log_tail(self, files: JobFiles, worker: int, lines: int) -> str:
        """(TailsLogsCheaply) the last lines, read back from the end of the file."""
        return logfiles.tail_lines(self.store.path(files.log_key(worker)), lines)

    def log_tail(self, files: JobFiles, ref: WorkerRef, offset: int) -> tuple[str, int]:
        data, _, _ = logfiles.read_range(self.store.path(files.log_key(ref.index)), offset, LOG_POLL_BYTES)
        cut = data.rfind(b"\n") + 1  # only whole lines (a line longer than a poll's read comes in pieces)
        if not cut and len(data) == LOG_POLL_BYTES:
            cut = len(data)
        return data[:cut].decode("utf-8", "replace"), offset + cut


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_is_ours(pgid: int, job_id: str, logs: Path | None = None) -> bool:
    """Every live member of process group `pgid` is this user's, and none is a worker of another job (a worker
    the zygote forked is this job's only if its stdout is a log in this job's `logs` folder)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False  # nobody in it (a worker that ended cleanly): no need to read all of /proc
    except PermissionError:
        pass
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:  # field 5, after the command name in parentheses
                members.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    for pid in members:
        try:
            if os.stat(f"/proc/{pid}").st_uid != os.getuid():
                return False
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"starburst_jupyter.worker" in argv and not _is_worker_of(pid, job_id):
            return False
        if _is_forked(argv) and (logs is None or os.path.dirname(_stdout_of(pid)) != os.path.realpath(logs)):
            return False
    return bool(members)


def _is_worker_of(pid: int, job_id: str, log_path: Path | None = None) -> bool:
    """True only for a process of this user whose argv is a starburst worker's (`... -m starburst_jupyter.worker
    ... --job <job_id> ...`) with exactly this job id after `--job`: a record may be stale or wrong, and a pid
    it names may since belong to anything (a job id such as `0` appears in many argvs). A worker the zygote
    forked keeps the zygote's argv: it is this job's worker only if its stdout (fd 1) is exactly `log_path`,
    the worker's log in this job's folder (the zygote itself writes to a pipe)."""
    try:
        if os.stat(f"/proc/{pid}").st_uid != os.getuid():
            return False
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if _is_forked(argv):
        return log_path is not None and _stdout_of(pid) == os.path.realpath(log_path)
    try:
        module = argv.index(b"-m")
        job = argv.index(b"--job", module)
    except ValueError:
        return False
    return argv[module + 1 : module + 2] == [b"starburst_jupyter.worker"] and argv[job + 1 : job + 2] == [
        job_id.encode()
    ]


def _is_forked(argv: list[bytes]) -> bool:
    """The command line of the zygote, which the workers it forks keep."""
    try:
        return argv[argv.index(b"-m") + 1] == zygote.ZYGOTE_MODULE.encode()
    except (ValueError, IndexError):
        return False


def _stdout_of(pid: int) -> str:
    """What the process's fd 1 is ('' when unreadable: gone, a zombie)."""
    try:
        return os.readlink(f"/proc/{pid}/fd/1")
    except OSError:
        return ""


# ----- workers another kernel started (attach) ----------------------------------------------------------
#: The exit code recorded for an adopted worker that ended without saying how in its log (killed, or user code
#: that ended the process): we are not its parent, so the kernel cannot read its real code. Non-zero, so the
#: driver treats it as a worker that ended early (full listing, then its unreported items are retried).
EXIT_UNKNOWN = 255
ENDED_UNKNOWN = "ended while no kernel followed the job (exit code unknown: not a child of this kernel)"
ENDED_POOL_GONE = (
    "ended after the local worker pool's fork server had gone (exit code unknown: its log names no clean end)"
)

# The worker's last log line names its own clean ends (worker/runner.py `log`): those give its real code.
_LAST_WORDS = (
    ("no more work after", exits.EXIT_OK),
    ("job cancelled, exiting", exits.EXIT_CANCELLED),
    ("job deadline passed, exiting", exits.EXIT_DEADLINE),
    ("could not load the job's program", exits.EXIT_NO_PROGRAM),
)


class AdoptedWorker:
    """A Popen-like handle (pid, poll, wait, returncode) for a worker process that is not our child."""

    def __init__(self, pid: int, job_id: str, index: int, log_path: Path):
        self.pid, self.job_id, self.index, self.log_path = pid, job_id, index, log_path
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not _is_worker_of(
            self.pid, self.job_id, self.log_path
        ):  # gone, a zombie, or a new pid
            self.returncode = self._code_from_log()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.index} (pid {self.pid})", timeout or 0.0)
            time.sleep(0.02)
        return code

    def _code_from_log(self) -> int:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
                tail = log.read().decode("utf-8", "replace")
        except OSError:
            return EXIT_UNKNOWN
        own = [line for line in tail.splitlines() if f"worker {self.index}: " in line]
        last = own[-1] if own else ""
        return next((code for words, code in _LAST_WORDS if words in last), EXIT_UNKNOWN)

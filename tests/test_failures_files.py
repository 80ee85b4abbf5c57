"""Issue 12, items 11-13 (and the log route's symlinks): the job's files are the user's alone, a cancel by
record stops only the job's own workers, and logs are bounded where they are written and where they are read."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import latest_record

from starburst_jupyter import burst_map
from starburst_jupyter.backends.local import LocalBackend
from starburst_jupyter.core import config as config_module

SECRET = "sk-live-not-for-other-users"


def _modes(root: Path) -> dict[str, int]:
    found = {str(root): stat.S_IMODE(root.stat().st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            found[str(path)] = stat.S_IMODE(path.lstat().st_mode)
    return found


def _uses_secret(x):
    print(f"item {x}", flush=True)
    return (x, len(SECRET))


# ----- 11: a job's files are private to the user, whatever the umask ------------------------------------------
def test_a_finished_jobs_files_are_private_with_umask_022(starburst_home, umask_022):
    assert burst_map(_uses_secret, range(4), workers=2) == [(x, len(SECRET)) for x in range(4)]
    record = latest_record()
    job_dir = starburst_home / "jobs" / record["id"]
    modes = _modes(job_dir)
    assert any(p.endswith(".log") for p in modes) and any(p.endswith("record.json") for p in modes)
    wrong = {p: oct(m) for p, m in modes.items() if m != (0o700 if Path(p).is_dir() else 0o600)}
    assert not wrong, f"readable by others: {wrong}"
    assert stat.S_IMODE((starburst_home / "jobs").stat().st_mode) == 0o700


def test_the_config_file_is_private_with_umask_022(starburst_home, umask_022):
    path = config_module.save_values({"workers": "3"}, starburst_home / "config.toml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ----- 12: cancel by record kills only this job's own workers ----------------------------------------------------
FAKE_WORKER = "import time; time.sleep(60)"


def _fake_worker(tmp_path: Path, job_id: str) -> subprocess.Popen:
    """A process whose argv is a starburst worker's of `job_id` (worker 0, budget 0)."""
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    argv = [sys.executable, str(script), "-m", "starburst_jupyter.worker", "--store", "file:///x", "--job", job_id]
    return subprocess.Popen(
        [*argv, "--prefix", f"jobs/{job_id}/", "--worker", "0", "--budget", "0"], start_new_session=True
    )


@pytest.mark.parametrize("named", ["0", "bj-other", "other", "jobs"])
def test_a_record_naming_another_jobs_pid_stops_nothing(tmp_path, starburst_home, named):
    """A record named `0` (or any id that is only part of another worker's argv) must not kill that worker."""
    victim = _fake_worker(tmp_path, "bj-other-job")
    try:
        time.sleep(0.3)
        record = {"id": named, "workers": {"0": {"pid": victim.pid, "exit_code": None}}}
        assert LocalBackend(home=starburst_home).stop_recorded(record) == 0
        time.sleep(0.2)
        assert victim.poll() is None, "a worker of another job was killed"
    finally:
        victim.kill()
        victim.wait()


def test_a_record_naming_its_own_worker_still_stops_it(tmp_path, starburst_home):
    worker = _fake_worker(tmp_path, "bj-other-job")
    try:
        time.sleep(0.3)
        record = {"id": "bj-other-job", "workers": {"0": {"pid": worker.pid, "exit_code": None}}}
        assert LocalBackend(home=starburst_home).stop_recorded(record) == 1
        assert worker.wait(timeout=5) is not None
    finally:
        worker.kill()
        worker.wait()


def test_a_process_that_is_not_a_worker_is_never_stopped(starburst_home):
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "starburst_jupyter.worker", "--job", "bj-x"],
        start_new_session=True,
    )
    try:
        time.sleep(0.3)
        record = {"id": "bj-x", "workers": {"0": {"pid": other.pid, "exit_code": None}}}
        assert LocalBackend(home=starburst_home).stop_recorded(record) == 0
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


# ----- 13: logs are bounded where they are written and where they are read --------------------------------------
BIG = 5_000_000


def _loud(x):
    print("FIRST-LINE")
    print("x" * BIG)
    print("LAST-LINE", flush=True)
    return x


def test_a_huge_print_is_cut_in_the_cell_output_and_in_the_log(starburst_home):
    from starburst_jupyter.core.config import Config
    from starburst_jupyter.core.launcher import Launcher
    from starburst_jupyter.core.spec import build_spec
    from starburst_jupyter.protocol.programs import CallProgram
    from starburst_jupyter.worker.runner import ITEM_KEEP, ITEM_LOG_HEAD

    config = Config()
    handle = Launcher(config).submit(build_spec(config, mode="map", workers=1), CallProgram(_loud), [7])
    result = handle.result()
    assert result.values == [7]
    stdout, _ = result.outputs[0]
    assert len(stdout) < 2 * ITEM_KEEP + 1000, "the whole print came back to the cell"
    assert stdout.startswith("FIRST-LINE") and stdout.rstrip().endswith("LAST-LINE")
    assert f"MB cut; its first 1.0 MB are in the worker log: %burst_logs {handle.id} --worker 0" in stdout
    log = starburst_home / "jobs" / handle.id / "logs"
    [path] = log.iterdir()
    assert path.stat().st_size < ITEM_LOG_HEAD + 10_000
    assert "of item 0's stdout not logged" in path.read_text()


def _sparse_log(path: Path, size: int, tail: bytes) -> None:
    """A log of `size` bytes without writing them (a sparse file), ending in `tail`."""
    with open(path, "wb") as handle:
        handle.truncate(size - len(tail))
        handle.seek(size - len(tail))
        handle.write(tail)


def test_log_reads_cost_what_they_return_on_a_huge_log(tmp_path, starburst_home):
    """A 2 GB log: a tail read and an offset read touch only their few bytes (a whole read would take seconds)."""
    import resource

    from starburst_jupyter.protocol.jobfiles import JobFiles
    from starburst_jupyter.server import views

    backend = LocalBackend(home=starburst_home)
    files = JobFiles(backend.store, "bj-huge")
    path = backend.store.path(files.log_key(0))
    path.parent.mkdir(parents=True)
    tail = b"".join(b"line %d\n" % i for i in range(100))
    _sparse_log(path, 2 * 1024**3, tail)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    assert backend.read_log_tail(files, 0, 3) == "line 97\nline 98\nline 99\n"
    data, start, size = backend.read_log_bytes(files, 0, -len(tail) - 10, 512 * 1024)
    chunk = views.log_chunk(data, start, size, ended=False, tail=2)
    assert chunk["lines"] == ["line 98", "line 99"] and chunk["next_cursor"] == size
    data, start, size = backend.read_log_bytes(files, 0, 1000, 512 * 1024)
    assert len(data) == 512 * 1024 and start == 1000
    assert time.perf_counter() - t0 < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KB: nothing near the log's size


def test_burst_logs_shows_the_end_of_a_huge_log_and_says_what_was_cut(starburst_home):
    from starburst_jupyter.core.launcher import LOG_SHOW_BYTES, Launcher

    assert burst_map(_uses_secret, range(2), workers=1) == [(x, len(SECRET)) for x in range(2)]
    record = latest_record()
    path = starburst_home / "jobs" / record["id"] / "logs"
    [log] = path.iterdir()
    _sparse_log(log, 600 * 1024**2, b"\nthe very end\n")
    text = Launcher().job_logs(record["id"], 0)[0]
    assert len(text) <= LOG_SHOW_BYTES + 200
    assert text.startswith("[... 629.1 MB cut") and "MB cut" in text and text.endswith("the very end\n")

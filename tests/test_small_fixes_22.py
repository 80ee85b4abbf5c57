"""Issue 22 item 8: a detached driver's log is private; max_result_bytes counts an int's real size;
`--max-result-bytes 1KB` is a size of results (not a --memory); `starburst prune` has freed the space it reports
when it exits."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.utils.capture import capture_output

import starburst_jupyter as sj
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.record import JobRecord, JobState
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.errors import BurstValidationError, ResultTooLarge
from starburst_jupyter.stores.objects import append_private
from starburst_jupyter.stores.records import JobStore

REPO = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ----- driver.log ------------------------------------------------------------------------------------------------
def test_a_log_opened_for_appending_is_private_whatever_the_umask(tmp_path, umask_022):
    path = tmp_path / "job" / "driver.log"
    with append_private(path) as log:
        log.write(b"one\n")
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    path.chmod(0o644)  # as an older version left it
    with append_private(path) as log:
        log.write(b"two\n")
    assert _mode(path) == 0o600 and path.read_bytes() == b"one\ntwo\n"


def test_a_detached_jobs_driver_log_is_private_with_umask_022(starburst_home, umask_022):
    job = sj.burst_map(abs, range(3), wait=False, workers=1)
    assert job.wait(timeout=90).values == [0, 1, 2]
    log = starburst_home / "jobs" / job.id / "driver.log"
    assert log.exists() and _mode(log) == 0o600, oct(_mode(log))


# ----- max_result_bytes counts an int's size --------------------------------------------------------------------
def _big(i):
    return 10 ** (3000 * i)  # 1,246 bytes for i=1 (as a pickle): 16 as serialize counted every int


def _in_tuple(i):
    return ("t", 10**3000) if i else ("t", 1)


def test_an_int_above_max_result_bytes_fails_as_result_too_large(starburst_home):
    out = sj.burst_map(_big, range(3), workers=1, max_result_bytes=1024, on_error="keep")
    assert out[0] == 1
    for value in out[1:]:
        assert isinstance(value, ResultTooLarge) and "above max_result_bytes (1,024 bytes)" in str(value), value
    pairs = sj.burst_map(_in_tuple, range(2), workers=1, max_result_bytes=1024, on_error="keep")
    assert pairs[0] == ("t", 1) and isinstance(pairs[1], ResultTooLarge), pairs
    assert sj.burst_map(_big, range(2), workers=1) == [1, 10**3000]  # (under the default limit: the value itself)


# ----- --max-result-bytes 1KB --------------------------------------------------------------------------------------
def test_max_result_bytes_takes_a_size_in_kb_and_speaks_of_result_sizes(ip):
    assert build_spec(Config(), mode="map", max_result_bytes="1KB").max_result_bytes == 1024
    assert Config().with_values({"max_result_bytes": "512KB"}).max_result_bytes == 512 * 1024
    with capture_output():
        result = ip.run_cell("%%burst --map i in range(2) --max-result-bytes 1KB --out squares\ni * i")
    assert result.success, result.error_in_exec
    assert ip.user_ns["squares"] == [0, 1]
    for value in ("1.5B", "1KiBs", "0"):
        with pytest.raises(BurstValidationError) as refused:
            build_spec(Config(), mode="map", max_result_bytes=value)
        message = str(refused.value)
        assert f"--max-result-bytes {value!r}" in message and "result" in message, message
        assert "--memory" not in message and "MiB" not in message, message


# ----- prune frees the space before it says so --------------------------------------------------------------------
def test_prune_has_freed_the_space_it_reports_when_it_exits(starburst_home):
    job_id = "bj-20260101-000000-pruned"
    JobStore().write(
        JobRecord(id=job_id, backend="local", state=JobState.DONE, created=1000.0, finished=1000.0, total=1)
    )
    results = JobStore().job_dir(job_id) / "results"
    results.mkdir()
    for n in range(3000):  # (a background thread takes longer to unlink these than the command takes to exit)
        (results / f"{n:06d}").write_bytes(b"x" * 10_000)
    trash = starburst_home / ".trash" / "left-by-an-earlier-process"
    trash.mkdir(parents=True)
    (trash / "result").write_bytes(b"y" * 1_000_000)
    env = {**os.environ, "PYTHONPATH": str(REPO), "STARBURST_HOME": str(starburst_home)}
    done = subprocess.run(
        [sys.executable, "-m", "starburst_jupyter.cli", "prune", "--older-than", "0", "--yes"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    left = [p for p in starburst_home.rglob("*") if p.is_file()]
    assert not left, f"{len(left)} files still take space after prune said they were freed, e.g. {left[:3]}"
    freed = re.search(rf"deleted 1 job\(s\): {job_id}; ([0-9.]+) MB freed on this machine", done.stdout)
    assert freed and float(freed.group(1)) >= 29.5, done.stdout  # the job's 28.6 MB and the old trash's 1 MB

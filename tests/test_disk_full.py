"""Issue 12 item 9: no room to write (disk full, quota, a file-size limit) ends a job cleanly: the user reads
"no room" (not "a bug"), what was collected is kept, the record does not stay "running", nothing runs on.
A real small filesystem (tmpfs) and a real RLIMIT_FSIZE, in a child process acting as the kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import pid_alive

pytestmark = pytest.mark.slow

KERNEL = textwrap.dedent(
    """
    import json, os, resource, sys, time
    limit = int(sys.argv[1])
    if limit:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from starburst_jupyter import burst_map
    from starburst_jupyter.core.config import Config

    def item(i):
        time.sleep(float(os.environ.get("ITEM_SECONDS", "0")))
        return bytes(int(os.environ["SMALL"]) if i < int(os.environ["SMALL_ITEMS"]) else int(os.environ["BIG"]))

    out = burst_map(item, range(int(os.environ["ITEMS"])), workers=2, on_error="keep", timeout=120,
                    config=Config(retries=1), wait=os.environ.get("DETACH") != "1")
    if os.environ.get("DETACH") == "1":  # a detached job: its driver is another process; this one follows it
        out = out.wait(timeout=120).values
    print(json.dumps([f"bytes:{len(v)}" if isinstance(v, bytes) else f"{type(v).__name__}: {v}" for v in out]))
    """
)


def run_kernel(home: Path, limit: int, **env: object) -> subprocess.Popen[str]:
    environ = {**os.environ, "STARBURST_HOME": str(home), **{k: str(v) for k, v in env.items()}}
    return subprocess.Popen([sys.executable, "-c", KERNEL, str(limit)], env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def only_record(home: Path) -> dict:
    [path] = list((home / "jobs").glob("*/record.json"))
    return json.loads(path.read_text())


def test_a_result_too_big_for_the_file_size_limit_fails_that_item_saying_so(tmp_path):
    proc = run_kernel(tmp_path / "home", 200_000, ITEMS=6, SMALL_ITEMS=3, SMALL=50_000, BIG=400_000)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    values = json.loads(out.strip().splitlines()[-1])
    assert values[:3] == ["bytes:50000"] * 3  # what fits comes back
    for text in values[3:]:
        assert text.startswith("StorageFull: Item") and "could not be stored" in text and "File too large" in text
        assert "Free space" in text
    record = only_record(tmp_path / "home")
    assert record["state"] == "failed" and record["outcomes"] == "DDDFFF"
    assert "bug" not in out + err and not any(pid_alive(w["pid"]) for w in record["workers"].values())


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("needs root to mount a 4 MB tmpfs (CI runs as root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as handle:
        try:
            while True:
                handle.write(bytes(64 * 1024))
                handle.flush()
        except OSError:
            pass


@pytest.mark.parametrize("detach", ["0", "1"], ids=["in-kernel", "detached"])
def test_a_disk_that_fills_mid_job_ends_it_saying_so_and_keeps_what_finished(small_disk, detach):
    """Detached too (issue 22): its driver deleted every payload to make room, results included, although the
    record said the finished items were kept; it keeps the results now, and drops tasks and program instead."""
    home = small_disk / "home"
    proc = run_kernel(home, 0, ITEMS=16, SMALL_ITEMS=16, SMALL=20_000, BIG=0, ITEM_SECONDS=0.4, DETACH=detach)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for some items to be done, then fill the disk
        try:
            if only_record(home)["done"] >= 3:
                break
        except (ValueError, FileNotFoundError, KeyError):
            pass
        time.sleep(0.1)
    fill(small_disk)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    values = json.loads(out.strip().splitlines()[-1])
    done = [v for v in values if v == "bytes:20000"]
    assert len(done) >= 3  # collected before the disk filled: kept
    failed = [v for v in values if v != "bytes:20000"]
    assert failed and all("no room" in v or "could not be stored" in v or "No space left" in v for v in failed)
    assert "a bug" not in out + err and "Traceback" not in err
    record = only_record(home)  # written while the disk was still full: the job's collected payloads made room
    assert record["state"] == "failed" and "no room left to write its files" in record["message"]
    assert not any(pid_alive(w["pid"]) for w in record["workers"].values() if w.get("pid"))

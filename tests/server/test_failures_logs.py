"""Issue 12 items 13 and 14 on the REST log route: a poll reads what it returns, and no symlink is followed."""

from __future__ import annotations

import os

import pytest

from starburst_jupyter.stores.records import JobStore

JOBS = "/starburst/api/jobs"


@pytest.fixture
def server_env(server, monkeypatch):
    monkeypatch.setenv("STARBURST_HOME", str(server.home))
    return server


def _job(server_env) -> tuple[str, str]:
    from starburst_jupyter import burst_map

    def noisy(x):
        print(f"line for item {x}", flush=True)
        return x

    before = {r["id"] for r in JobStore(server_env.home).list()}
    assert burst_map(noisy, range(3), workers=1) == list(range(3))
    [job_id] = {r["id"] for r in JobStore(server_env.home).list()} - before
    return job_id, f"{JOBS}/{job_id}/workers/0/log"


def _log_file(server_env, job_id: str):
    [log] = (server_env.home / "jobs" / job_id / "logs").iterdir()
    return log


def test_a_symlink_planted_as_the_log_is_not_read(server_env, tmp_path):
    job_id, path = _job(server_env)
    secret = tmp_path / "private.txt"
    secret.write_text("NOT-FOR-THE-SIDEBAR\n")
    log = _log_file(server_env, job_id)
    log.unlink()
    log.symlink_to(secret)
    code, body, _ = server_env.api("GET", path)
    assert code == 403 and "symbolic link" in body["message"] and "NOT-FOR-THE-SIDEBAR" not in str(body)
    code, body, _ = server_env.api("GET", f"{path}?tail=5")
    assert code == 403 and "NOT-FOR-THE-SIDEBAR" not in str(body)


def test_a_symlinked_logs_folder_is_not_read(server_env, tmp_path):
    job_id, path = _job(server_env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log = _log_file(server_env, job_id)
    (elsewhere / log.name).write_text("NOT-FOR-THE-SIDEBAR\n")
    folder = log.parent
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()
    folder.symlink_to(elsewhere)
    code, body, _ = server_env.api("GET", path)
    assert code == 403 and "NOT-FOR-THE-SIDEBAR" not in str(body)


def test_a_poll_of_a_huge_log_returns_a_bounded_piece_quickly(server_env):
    """A 2 GB log (sparse): the tail and each cursor read come back fast, whole lines, in pieces."""
    import time

    job_id, path = _job(server_env)
    log = _log_file(server_env, job_id)
    size = 2 * 1024**3
    with open(log, "r+b") as handle:
        handle.truncate(size - 20)
        handle.seek(size - 20)
        handle.write(b"\nlast line of many\n")
    size = os.path.getsize(log)
    t0 = time.perf_counter()
    code, body, _ = server_env.api("GET", f"{path}?tail=1")
    assert code == 200 and body["lines"] == ["last line of many"] and body["next_cursor"] == size
    code, body, _ = server_env.api("GET", f"{path}?cursor=0")
    assert code == 200 and body["more"] and body["next_cursor"] <= 512 * 1024 and body["size"] == size
    assert time.perf_counter() - t0 < 2.0

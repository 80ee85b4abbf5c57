"""The job REST API through a real `jupyter server` (tests/server/conftest.py): every endpoint, the
server's authentication and XSRF checks, bad input as 4xx JSON, and cancel of a job whose kernel died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import pid_alive, wait_for

from starburst_jupyter.stores.records import JobStore

pytestmark = pytest.mark.timeout(240)

JOBS = "/starburst/api/jobs"


def fake_record(job_id: str, state: str, created: float, **extra) -> dict:
    record = {
        "id": job_id,
        "name": f"name-{job_id[-4:]}",
        "backend": "local",
        "state": state,
        "message": "",
        "created": created,
        "started": created,
        "finished": None if state == "running" else created + 5,
        "spec": {
            "mode": "map",
            "backend": "local",
            "cpu_units": 1024,
            "memory_mib": 2048,
            "name": "",
            "extra": {"aws_secret_access_key": "SECRET-IN-EXTRA"},
        },
        "total": 10,
        "done": 4,
        "failed": 1,
        "outcomes": "DDDDFRRPPP",
        "failures": [{"index": 4, "error": "ValueError: bad item"}],
        "waves": {"count": 2, "started": 1, "finished": 0, "concurrency": 2, "workers": 4},
        "workers": {
            "0": {
                "pid": 999999,
                "wave": 1,
                "started": created,
                "ended": None,
                "exit_code": None,
                "reason": None,
                "token": "SECRET-IN-WORKER",
            }
        },
        "cost": {"accrued": 0.0123, "projected": 0.05, "cap": 1.0, "label": "estimate", "prices_as_of": "x"},
        "store": {"url": "s3://SECRET-BUCKET", "prefix": "jobs/x/"},
        "owner": {"pid": 1, "host": "elsewhere"},
    }
    record.update(extra)
    return record


def assert_json_error(reply, status: int, *words: str) -> None:
    code, body, ctype = reply
    assert code == status, reply
    assert "application/json" in ctype and isinstance(body, dict), reply  # never an HTML traceback page
    assert "Traceback" not in str(body)
    for word in words:
        assert word in body["message"], body


# ----- authentication and XSRF ------------------------------------------------------------------
def test_every_route_requires_authentication(server):
    JobStore(server.home).write(fake_record("bj-auth-000001", "running", time.time()))
    for method, path in [
        ("GET", JOBS),
        ("GET", f"{JOBS}/bj-auth-000001"),
        ("GET", f"{JOBS}/bj-auth-000001/workers/0/log"),
        ("POST", f"{JOBS}/bj-auth-000001/cancel"),
    ]:
        for token in (None, "wrong-token"):
            code, body, ctype = server.api(method, path, b"" if method == "POST" else None, token=token)
            assert code == 403 and "application/json" in ctype, (method, path, token, code, body)
    assert JobStore(server.home).read("bj-auth-000001")["state"] == "running"  # nothing was cancelled
    assert server.api("GET", JOBS)[0] == 200


def test_post_with_a_login_cookie_needs_the_xsrf_token(server):
    JobStore(server.home).write(fake_record("bj-xsrf-000001", "done", time.time()))
    # Log in as a browser does: the token once in the URL gives a login cookie and an _xsrf cookie.
    assert server.api("GET", f"{JOBS}?token={server.token}", token=None, cookies=True)[0] == 200
    assert server.api("GET", "/login", token=None, cookies=True)[0] in (200, 302)  # pages set _xsrf
    names = {c.name for c in server.cookies}
    assert "_xsrf" in names and any(n.startswith("username-") for n in names), names
    assert server.api("GET", JOBS, token=None, cookies=True)[0] == 200  # the cookie alone authenticates
    code, body, _ = server.api("POST", f"{JOBS}/bj-xsrf-000001/cancel", b"", token=None, cookies=True)
    assert code == 403 and "_xsrf" in body["message"], body
    xsrf = next(c.value for c in server.cookies if c.name == "_xsrf")
    code, body, _ = server.api(
        "POST", f"{JOBS}/bj-xsrf-000001/cancel", b"", token=None, cookies=True, headers={"X-XSRFToken": xsrf}
    )
    assert code == 200 and body["already_finished"], body


# ----- list, detail ------------------------------------------------------------------------------
def test_list_running_first_with_state_filter_and_limit(server):
    store, now = JobStore(server.home), time.time()
    for job_id, state, age in [
        ("bj-list-done01", "done", 50),
        ("bj-list-run001", "running", 40),
        ("bj-list-fail01", "failed", 10),
        ("bj-list-canc01", "cancelled", 5),
    ]:
        store.write(fake_record(job_id, state, now + 1000 - age))  # in the future: newest of this module
    code, body, _ = server.api("GET", JOBS)
    assert code == 200
    ids = [j["id"] for j in body["jobs"]]
    assert ids[0] == "bj-list-run001" or body["jobs"][0]["state"] == "running"
    ours = [i for i in ids if i.startswith("bj-list-")]
    assert ours == ["bj-list-run001", "bj-list-canc01", "bj-list-fail01", "bj-list-done01"]
    running = next(j for j in body["jobs"] if j["id"] == "bj-list-run001")
    assert running["active"] and running["progress"] == pytest.approx(0.5)
    assert running["cost"]["accrued"] == pytest.approx(0.0123) and running["cost"]["projected"] == pytest.approx(0.05)
    assert running["elapsed"] is not None and running["workers"] == {"count": 1, "running": 1}
    assert body["version"]

    code, body, _ = server.api("GET", f"{JOBS}?state=failed,cancelled")
    assert code == 200 and {j["state"] for j in body["jobs"]} == {"failed", "cancelled"}
    code, body, _ = server.api("GET", f"{JOBS}?state=active")
    assert code == 200 and {j["state"] for j in body["jobs"]} == {"running"}
    code, body, _ = server.api("GET", f"{JOBS}?state=finished&limit=1")
    assert code == 200 and [j["id"] for j in body["jobs"]] == ["bj-list-canc01"] and body["omitted"] >= 2

    assert_json_error(server.api("GET", f"{JOBS}?state=sleeping"), 400, "sleeping")
    assert_json_error(server.api("GET", f"{JOBS}?limit=many"), 400, "limit")
    assert_json_error(server.api("GET", f"{JOBS}?limit=-1"), 400, "limit")


def test_version_changes_only_when_a_record_changes(server):
    store = JobStore(server.home)
    store.write(fake_record("bj-vers-000001", "running", time.time()))
    first = server.api("GET", JOBS)[1]["version"]
    assert server.api("GET", JOBS)[1]["version"] == first
    store.write(fake_record("bj-vers-000001", "running", time.time(), done=5))
    assert server.api("GET", JOBS)[1]["version"] != first


def test_job_detail_whitelists_the_spec_and_never_leaks_secrets(server):
    JobStore(server.home).write(fake_record("bj-detail-0001", "running", time.time()))
    code, body, _ = server.api("GET", f"{JOBS}/bj-detail-0001")
    assert code == 200
    job = body["job"]
    assert job["spec"] == {"mode": "map", "backend": "local", "cpu_units": 1024, "memory_mib": 2048, "name": ""}
    assert job["waves"] == {"count": 2, "started": 1, "finished": 0, "concurrency": 2, "workers": 4}
    assert job["outcomes"] == "DDDDFRRPPP"
    assert job["outcome_counts"] == {"done": 4, "failed": 1, "cancelled": 0, "running": 2, "pending": 3}
    assert job["failures"] == [{"index": 4, "error": "ValueError: bad item"}]
    assert job["workers"]["list"][0]["index"] == 0 and job["workers"]["list"][0]["state"] == "running"
    assert job["cost"]["cap"] == 1.0
    text = str(body)
    for secret in ("SECRET-IN-EXTRA", "SECRET-IN-WORKER", "SECRET-BUCKET", "elsewhere"):
        assert secret not in text


def test_bad_ids_and_unknown_routes_are_json_4xx(server):
    assert_json_error(server.api("GET", f"{JOBS}/bj-no-such-job"), 404, "bj-no-such-job")
    assert_json_error(server.api("POST", f"{JOBS}/bj-no-such-job/cancel", b""), 404, "bj-no-such-job")
    assert_json_error(server.api("GET", f"{JOBS}/bj-no-such-job/workers/0/log"), 404)
    for bad in ("..%2F..%2Fetc", "bad%20id!", ".hidden", "x" * 200):
        assert_json_error(server.api("GET", f"{JOBS}/{bad}"), 400, "not a job id")
    assert_json_error(server.api("GET", "/starburst/api/nothing/here"), 404, "no such route")
    assert_json_error(server.api("GET", f"{JOBS}/bj-any/cancel"), 405)  # cancel is a POST


# ----- a real job: logs, cancel -----------------------------------------------------------------
@pytest.fixture
def server_env(server, monkeypatch):
    """This test's jobs go to the server's store."""
    monkeypatch.setenv("STARBURST_HOME", str(server.home))
    return server


def test_worker_log_lines_since_a_cursor(server_env):
    from starburst_jupyter import burst_map

    def noisy(x):
        print(f"line for item {x}", flush=True)
        return x

    before = {r["id"] for r in JobStore(server_env.home).list()}
    assert burst_map(noisy, range(6), workers=1) == list(range(6))
    [job_id] = {r["id"] for r in JobStore(server_env.home).list()} - before
    path = f"{JOBS}/{job_id}/workers/0/log"
    code, body, _ = server_env.api("GET", path)
    assert code == 200 and body["job"] == job_id and body["worker"] == 0 and body["cursor"] == 0
    lines = [line for line in body["lines"] if line.startswith("line for item")]
    assert lines == [f"line for item {x}" for x in range(6)]
    assert not body["worker_running"]
    end = body["next_cursor"]
    code, body, _ = server_env.api("GET", f"{path}?cursor={end}")
    assert code == 200 and body["lines"] == [] and body["next_cursor"] == end  # nothing new since
    code, body, _ = server_env.api("GET", f"{path}?tail=2")
    assert code == 200 and len(body["lines"]) == 2 and body["next_cursor"] == end
    code, middle, _ = server_env.api("GET", f"{path}?cursor={body['cursor']}")
    assert middle["lines"] == body["lines"]
    every = server_env.api("GET", path)[1]["lines"]
    code, body, _ = server_env.api("GET", f"{path}?tail={len(every) + 1}")  # more than there are: all
    assert code == 200 and body["cursor"] == 0 and body["lines"] == every

    assert_json_error(server_env.api("GET", f"{path}?cursor={end + 1000}"), 400, "past the end")
    assert_json_error(server_env.api("GET", f"{path}?cursor=abc"), 400, "cursor")
    assert_json_error(server_env.api("GET", f"{JOBS}/{job_id}/workers/7/log"), 404, "no worker")
    assert_json_error(server_env.api("GET", f"{JOBS}/{job_id}/workers/x/log"), 404, "no worker")


LAUNCHER = """
import time
from starburst_jupyter import burst_map
def slow(x):
    print('working on', x, flush=True)
    time.sleep(1.0)
    return x
burst_map(slow, range(40), workers=2)
"""


def test_cancel_a_job_whose_kernel_is_gone_then_again(server_env, tmp_path):
    store = JobStore(server_env.home)
    before = {r["id"] for r in store.list()}
    kernel = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER],
        env=os.environ.copy(),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    record = None
    try:

        def running_job():
            new = [r for r in store.list() if r["id"] not in before]
            if new and new[0]["state"] == "running" and len(new[0]["workers"]) == 2 and new[0]["done"] >= 1:
                return new[0]
            return None

        record = wait_for(running_job, timeout=60, interval=0.2)
        pids = [w["pid"] for w in record["workers"].values()]
        assert all(pid_alive(p) for p in pids)
        kernel.send_signal(signal.SIGKILL)  # the launching kernel dies; its workers go on
        kernel.wait(10)
        assert all(pid_alive(p) for p in pids)

        code, body, _ = server_env.api("POST", f"{JOBS}/{record['id']}/cancel", {"reason": "stopped in a test"})
        assert code == 200, body
        assert body["cancelled"] and body["was"] == "running" and not body["already_finished"]
        assert body["job"]["state"] == "cancelled" and "stopped in a test" in body["job"]["message"]
        assert body["job"]["failed"] == 0 and body["job"]["done"] < 40
        assert body["job"]["workers"]["running"] == 0  # no worker is shown running after the cancel
        assert all(w["state"] != "running" for w in body["job"]["workers"]["list"])
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=15)
        assert store.read(record["id"])["state"] == "cancelled"

        code, again, _ = server_env.api("POST", f"{JOBS}/{record['id']}/cancel", b"")  # idempotent
        assert code == 200 and again["cancelled"] and again["already_finished"] and again["was"] == "cancelled"
        code, listed, _ = server_env.api("GET", f"{JOBS}?state=cancelled")
        assert record["id"] in [j["id"] for j in listed["jobs"]]
    finally:
        if kernel.poll() is None:
            kernel.kill()
            kernel.wait(10)
        if record is not None:  # whatever the test left running of this job
            from starburst_jupyter.backends.local import LocalBackend

            LocalBackend(home=server_env.home).stop_recorded(store.read(record["id"]))


def test_cancel_of_a_finished_job_changes_nothing_and_bad_bodies_are_400(server):
    JobStore(server.home).write(fake_record("bj-finished-01", "done", time.time()))
    code, body, _ = server.api("POST", f"{JOBS}/bj-finished-01/cancel", b"")
    assert code == 200 and body["already_finished"] and not body["cancelled"] and body["job"]["state"] == "done"
    assert JobStore(server.home).read("bj-finished-01")["state"] == "done"
    assert_json_error(server.api("POST", f"{JOBS}/bj-finished-01/cancel", b"{not json"), 400, "JSON")
    assert_json_error(server.api("POST", f"{JOBS}/bj-finished-01/cancel", b'{"reason": 5}'), 400, "reason")
    assert_json_error(server.api("POST", f"{JOBS}/bj-finished-01/cancel", b"[1, 2]"), 400, "object")


# ----- installation -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind, expected", [("server", "starburst_jupyter.server"), ("lab", "starburst-jupyter")])
def test_pip_install_enabled_both_extensions(kind, expected, tmp_path):
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path), "NO_COLOR": "1"}
    cmd = ["server", "extension", "list"] if kind == "server" else ["labextension", "list"]
    out = subprocess.run([sys.executable, "-m", "jupyter", *cmd], env=env, capture_output=True, text=True, timeout=120)
    text = (out.stdout + out.stderr).replace("\x1b[32m", "").replace("\x1b[0m", "")
    line = next((ln for ln in text.splitlines() if expected in ln and "enabled" in ln), None)
    assert line is not None, text
    if kind == "lab":
        assert "OK" in line, line

"""A job whose kernel is gone (issue 12, items 6 and 7): seen as such by every face, attachable or ended.

* A kernel that exits (restart, shutdown) cancels its jobs and records why: no phantom `running` record.
* A kernel that is SIGKILLed leaves its local workers running: every face says "kernel gone: attach or
  cancel", and `%burst_attach` collects what they produced and finishes the job (retries, later waves).
* A damaged record shows as damaged in `starburst status` and `%burst_status` while the others still list.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import pid_alive, wait_for, worker_pids

from starburst_jupyter import cli
from starburst_jupyter.core import driver as driver_module
from starburst_jupyter.core.config import load_config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.record import JobRecord, JobState, Owner, WorkerRecord
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.protocol.programs import CallProgram
from starburst_jupyter.server import views
from starburst_jupyter.stores.records import JobStore

pytestmark = pytest.mark.timeout(300)
GONE = "running (kernel gone: attach or cancel)"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _record(job_id: str, pid: int | None, updated: float, state: JobState = JobState.RUNNING) -> JobRecord:
    return JobRecord(
        id=job_id,
        backend="local",
        state=state,
        created=updated - 5,
        started=updated - 5,
        updated=updated,
        total=4,
        done=1,
        outcomes="DRRP",
        workers={0: WorkerRecord(wave=1, pid=None, started=updated - 5)},
        owner=Owner(pid, socket.gethostname()),
    )


@pytest.fixture
def three_jobs() -> dict[str, str]:
    """A job whose kernel was killed, one whose record nobody rewrote for two minutes, and a followed one."""
    now = time.time()
    store = JobStore()
    store.write(_record("killed", _dead_pid(), now))
    store.write(_record("silent", os.getpid(), now - 120))
    store.write(_record("followed", os.getpid(), now))
    return {"killed": GONE, "silent": GONE, "followed": "running"}


def _state_column(text: str, job_id: str) -> str:
    line = next(line for line in text.splitlines() if line.startswith(job_id + " "))
    return line.split("  local  ", 1)[1].strip()


def test_every_face_shows_a_job_whose_kernel_is_gone(three_jobs, capsys, ip):
    cli.main(["status"])  # `starburst status`
    table = capsys.readouterr().out
    for job_id, shown in three_jobs.items():
        assert _state_column(table, job_id).startswith(shown + "  "), table
    assert "followed" in table and "kernel gone" not in _state_column(table, "followed")

    cli.main(["status", "killed"])
    detail = capsys.readouterr().out
    assert "`starburst collect killed`" in detail and "`starburst cancel killed`" in detail, detail  # (CLI words)

    ip.run_line_magic("burst_status", "")  # (the text table outside a kernel)
    assert _state_column(capsys.readouterr().out, "silent").startswith(GONE)

    from starburst_jupyter.display.status_widget import StatusWidget

    widget = StatusWidget(autostart=False)
    try:
        widget.refresh()
        assert GONE in widget.rows["killed"].state.value and "%burst_attach killed" in widget.rows["killed"].state.value
        assert "kernel gone" not in widget.rows["followed"].state.value
        assert not widget.rows["killed"].cancel.disabled  # it can be cancelled from here
    finally:
        widget.close()

    rows = {r["id"]: views.summary(r) for r in JobStore().list()}  # what the REST list serves the sidebar
    assert rows["killed"]["owner_gone"] and rows["silent"]["owner_gone"] and not rows["followed"]["owner_gone"]
    assert rows["killed"]["state"] == "running" and rows["killed"]["state_label"] == GONE
    assert "%burst_attach killed" in rows["killed"]["message"]
    json.dumps(rows, allow_nan=False)


# ----- a kernel SIGKILLed mid-job: its local workers run on; attach collects and finishes -------------
KERNEL_THAT_DIES = """
import os, signal, sys, time
from starburst_jupyter.core.config import load_config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.protocol.programs import CallProgram
from starburst_jupyter.stores.records import JobStore

def slow_tenfold(x):
    time.sleep(0.4)
    return x * 10

config = load_config().with_values({"local_concurrency": 2})
spec = build_spec(config, mode="map", workers=4, backend="local", timeout=120, retries=2)
handle = Launcher(config).submit(spec, CallProgram(slow_tenfold), list(range(16)))
print(handle.id, flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline and JobStore().read(handle.id).get("done", 0) < 2:
    time.sleep(0.05)
record = JobStore().read(handle.id)
os.killpg(record["workers"]["0"]["pid"], signal.SIGKILL)  # a worker dies too: its claimed items need a retry
os.kill(os.getpid(), signal.SIGKILL)  # the kernel dies mid-job; worker 1 runs on
"""


def _job_whose_kernel_was_killed(tmp_path: Path) -> str:
    script = tmp_path / "kernel.py"
    script.write_text(KERNEL_THAT_DIES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    kernel = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert kernel.returncode == -signal.SIGKILL, kernel.stderr[-3000:]
    return kernel.stdout.split()[0]


def test_attach_collects_the_results_of_a_killed_kernels_local_job(tmp_path, ip, capsys):
    job_id = _job_whose_kernel_was_killed(tmp_path)
    record = JobStore().read_record(job_id)
    assert record.state is JobState.RUNNING and record.owner_gone(), record  # as the dead kernel left it
    assert record.state_label() == GONE
    assert Launcher().capabilities("local").attach is not None

    ip.run_line_magic("burst_attach", job_id)
    out = capsys.readouterr().out
    assert f"attached to burst job {job_id}" in out, out
    assert ip.user_ns["burst_results"] == [x * 10 for x in range(16)], out

    record = JobStore().read_record(job_id)
    assert record.state is JobState.DONE and record.done == 16 and record.outcomes == "D" * 16, record
    assert len(record.workers) >= 3, record.workers  # the second wave was started by the attaching kernel
    assert "exit code unknown" in (record.workers[0].reason or ""), record.workers[0]  # killed, not our child
    assert not record.owner_gone()
    wait_for(lambda: not any(pid_alive(p) for p in worker_pids(record.to_json())), timeout=10)


# ----- a kernel that exits (restart): its jobs end cancelled, recorded so, nothing left running ----------
# `stuck`: the driver is busy in a step when the kernel exits (here an exit hook that runs first takes its lock),
# so the hook cannot wait for it to cancel itself. Before the fix this one left the record `running` every time
# (and the other one whenever the driver lost the race against interpreter shutdown).
@pytest.mark.parametrize("stuck", [False, True], ids=["driver-ends-itself", "driver-stuck"])
def test_a_kernel_restart_records_its_jobs_cancelled_and_ends_their_workers(starburst_home: Path, stuck: bool):
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "STARBURST_HOME": str(starburst_home)}
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    try:
        code = (
            "import time\n"
            "from starburst_jupyter.core.config import load_config\n"
            "from starburst_jupyter.core.launcher import Launcher\n"
            "from starburst_jupyter.core.spec import build_spec\n"
            "from starburst_jupyter.protocol.programs import CallProgram\n"
            "def slow(x):\n"
            "    time.sleep(0.5)\n"
            "    return x\n"
            "config = load_config().with_values({'local_concurrency': 2})\n"
            "spec = build_spec(config, mode='map', workers=2, backend='local', timeout=120)\n"
            "handle = Launcher(config).submit(spec, CallProgram(slow), list(range(40)))\n"
            "print(handle.id)\n"
        )
        if stuck:
            code += "import atexit\natexit.register(handle._monitor.lock.acquire)\n"  # runs before the driver's hook
        reply = client.execute_interactive(code, timeout=60, output_hook=lambda msg: None)
        assert reply["content"]["status"] == "ok", reply["content"]
        job_id = wait_for(lambda: [r["id"] for r in JobStore().list() if r["done"] >= 2], timeout=60)[0]
        pids = worker_pids(JobStore().read(job_id))
        assert pids and any(pid_alive(p) for p in pids)

        manager.restart_kernel(now=False)  # what the notebook's Restart does: the kernel exits in order

        record = JobStore().read_record(job_id)
        assert record.state is JobState.CANCELLED, (record.state, record.message)
        assert "the kernel that launched the job exited" in record.message, record.message
        assert "R" not in record.outcomes and "P" not in record.outcomes, record.outcomes
        assert record.cancelled == record.total - record.done and record.done >= 2, record
        assert not record.owner_gone() and "kernel gone" not in record.state_label()
        assert all(w.exit_code is not None for w in record.workers.values()), record.workers
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=10)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_a_driver_that_cannot_end_in_time_is_ended_and_recorded_from_the_exit_hook():
    """The exit hook's fallback: a driver stuck in a step (here: its lock held) is frozen and ended from outside."""
    config = load_config().with_values({"local_concurrency": 2})
    spec = build_spec(config, mode="map", workers=2, backend="local", timeout=120)
    handle = Launcher(config).submit(spec, CallProgram(time.sleep), [0.5] * 40)
    wait_for(lambda: JobStore().read(handle.id)["done"] >= 1, timeout=60)
    monitor = handle._monitor
    pids = worker_pids(JobStore().read(handle.id))
    with monitor.lock:  # the driver cannot move: the hook must not wait for it forever
        started = time.monotonic()
        driver_module._stop_live_jobs(wait=0.5)
        took = time.monotonic() - started
        record = JobStore().read_record(handle.id)
        assert record.state is JobState.CANCELLED, (record.state, record.message)
        assert record.message.startswith("the kernel that launched the job exited"), record.message
        assert "R" not in record.outcomes and "P" not in record.outcomes
        assert took < 5, took
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=10)
    monitor.lock.release()  # the hook keeps the driver frozen (its process would be ending): let it go now
    handle.wait(timeout=30)
    assert JobStore().read_record(handle.id).state is JobState.CANCELLED


# ----- item 7: one damaged record among good ones -------------------------------------------------------
def test_a_damaged_record_shows_as_damaged_and_the_others_still_list(ip, capsys, starburst_home: Path):
    store = JobStore()
    now = time.time()
    for job_id in ("good1", "good2"):
        store.write(_record(job_id, None, now, JobState.DONE))
    bad = {
        "nullcreated": json.dumps({**_record("nullcreated", None, now).to_json(), "created": None}).encode(),
        "nostate": json.dumps(
            {k: v for k, v in _record("nostate", None, now).to_json().items() if k != "state"}
        ).encode(),
        "notutf8": b'{"id": "notutf8", "state": "running", "name": "\xff\xfe"}',
        "anarray": b"[1, 2, 3]",
    }
    for job_id, data in bad.items():
        (store.jobs_dir / job_id).mkdir(parents=True)
        (store.jobs_dir / job_id / "record.json").write_bytes(data)

    env = {**os.environ, "STARBURST_HOME": str(starburst_home)}
    done = subprocess.run(
        [sys.executable, "-m", "starburst_jupyter.cli", "status"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    ip.run_line_magic("burst_status", "")
    magic = capsys.readouterr().out
    for text in (done.stdout, magic):
        for job_id in ("good1", "good2"):
            assert _state_column(text, job_id).startswith("done "), text
        for job_id in bad:
            line = next((line for line in text.splitlines() if line.startswith(job_id + " ")), "")
            assert "(damaged record)" in line, (job_id, text)
    detail = subprocess.run(
        [sys.executable, "-m", "starburst_jupyter.cli", "status", "notutf8"], capture_output=True, text=True, env=env
    )
    assert detail.returncode == 0 and "damaged record: record.json is not UTF-8" in detail.stdout, detail

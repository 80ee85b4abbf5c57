"""Detached jobs in a real ipykernel (jupyter_client), on the local backend: a `%%burst --no-wait` cell returns at
once and the kernel keeps answering while the job runs; a kernel SIGKILLed right after launching does not stop
the job, and a new kernel (same STARBURST_HOME) collects what finished so far, then every value."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from helpers import pid_alive, wait_for
from jupyter_client.manager import start_new_kernel

from starburst_jupyter.core import events as ev
from starburst_jupyter.display.progress import JobView, Throttled

pytestmark = [pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
# items of --no-wait cells: each sleeps, then returns x + 100 (so a value is never its index by accident)
SLOW_CELL = "%%burst --map x in range({n}) --workers 2 --no-wait {extra}\nimport time\ntime.sleep({seconds})\nx + 100"


def new_kernel(home: Path):
    env = {
        **os.environ,
        "STARBURST_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    client.execute_interactive("%load_ext starburst_jupyter", timeout=60)
    return manager, client


@pytest.fixture
def kernels(starburst_home: Path):
    """kernels() starts a real ipykernel with the extension loaded; all are shut down after the test."""
    started: list = []

    def start():
        started.append(new_kernel(starburst_home))
        return started[-1]

    try:
        yield start
    finally:
        for manager, client in started:
            client.stop_channels()
            manager.shutdown_kernel(now=True)


def run(client, code: str, timeout: float = 60) -> tuple[dict, str, float]:
    """Execute `code`: (the execute_reply, the text it printed or returned, the seconds until the reply)."""
    parts: list[str] = []

    def keep(msg: dict) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            parts.append(content["text"])
        elif msg["msg_type"] in ("execute_result", "display_data"):
            parts.append(content["data"].get("text/plain", ""))
        elif msg["msg_type"] == "error":
            parts.append("\n".join(content["traceback"]))

    started = time.monotonic()
    reply = client.execute_interactive(code, timeout=timeout, output_hook=keep)
    return reply, "".join(parts), time.monotonic() - started


def value_of(client, expression: str, timeout: float = 60):
    reply, text, _ = run(client, f"import json as _json\nprint(_json.dumps({expression}))", timeout)
    assert reply["content"]["status"] == "ok", text
    return json.loads(text.strip().splitlines()[-1])


def record_of(home: Path, job_id: str) -> dict:
    return json.loads((home / "jobs" / job_id / "record.json").read_text())


def launch(client, n: int, seconds: float, extra: str = "") -> tuple[str, float]:
    """Run a --no-wait cell: (the job id it printed, how long the cell took to reply)."""
    reply, text, took = run(client, SLOW_CELL.format(n=n, seconds=seconds, extra=extra))
    assert reply["content"]["status"] == "ok", text
    found = re.search(r"burst job (bj-[\w-]+)", text)
    assert found, text
    assert "detached" in text, text
    return found.group(1), took


def sigkill(manager) -> None:
    """SIGKILL the kernel and its process group (what jupyter_client's kill does); the driver is in a session
    of its own."""
    pgid = manager.provisioner.pgid or manager.provisioner.process.pid
    os.killpg(pgid, signal.SIGKILL)
    wait_for(lambda: not manager.is_alive(), timeout=10)


@pytest.mark.slow
def test_no_wait_cell_returns_at_once_and_the_kernel_answers_while_the_job_runs(kernels, starburst_home):
    _, client = kernels()
    job_id, took = launch(client, 8, 0.5, "--handle job")
    assert took < 5, f"the --no-wait cell took {took:.1f} s to return"
    assert record_of(starburst_home, job_id)["state"] not in ("done", "failed", "cancelled")

    replies: list[tuple[float, int]] = []  # (seconds to reply, items done then) of cells run while the job runs
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        reply, text, took = run(client, "(1 + 1, job.status().done)")
        assert reply["content"]["status"] == "ok", text
        assert text.startswith("(2, "), text
        done = int(text.strip()[4:-1])
        replies.append((took, done))
        if done >= 8:
            break
        time.sleep(0.2)
    running = [r for r in replies if r[1] < 8]
    assert len(running) >= 3, f"too few cells ran while the job ran: {replies}"
    assert any(0 < done < 8 for _, done in running), f"no cell ran while items were finishing: {replies}"
    assert max(took for took, _ in running) < 2, f"a cell waited for the job: {replies}"

    wait_for(lambda: value_of(client, "'burst_results' in globals()"), timeout=60, interval=0.3)
    assert value_of(client, "burst_results") == [x + 100 for x in range(8)]
    assert value_of(client, "job.status().state.value") == "done"


@pytest.mark.slow
def test_a_job_outlives_its_sigkilled_kernel_and_a_new_kernel_attaches(kernels, starburst_home):
    manager, client = kernels()
    job_id, _ = launch(client, 10, 0.5)
    sigkill(manager)
    record = record_of(starburst_home, job_id)
    assert record["state"] not in ("done", "failed", "cancelled"), "the job must still run when its kernel dies"
    assert record["owner"]["detached"]

    _, second = kernels()
    reply, text, _ = run(second, f"%burst_attach {job_id} --out r", timeout=120)
    assert reply["content"]["status"] == "ok", text
    assert value_of(second, "r") == [x + 100 for x in range(10)]
    final = record_of(starburst_home, job_id)
    assert final["state"] == "done" and final["done"] == 10, final["message"]
    assert not any(pid_alive(w["pid"]) for w in final["workers"].values() if w.get("pid"))


@pytest.mark.slow
def test_a_new_kernel_collects_partial_results_mid_job(kernels, starburst_home):
    manager, client = kernels()
    job_id, _ = launch(client, 24, 1.0)
    sigkill(manager)

    _, second = kernels()
    run(second, f"import starburst_jupyter as sj\njob = sj.attach({job_id!r})")

    def partial():
        reply, text, _ = run(second, "print(repr(job.results(partial=True)))")
        assert reply["content"]["status"] == "ok", text
        values = text.strip().splitlines()[-1].strip("[]").split(", ")
        return values if any(v != "PENDING" for v in values) else None

    values = wait_for(partial, timeout=60, interval=0.3)
    assert len(values) == 24
    assert "PENDING" in values, f"the job ended before a partial collect: {values}"
    finished = [i for i, v in enumerate(values) if v != "PENDING"]
    assert all(values[i] == str(i + 100) for i in finished), values
    assert value_of(second, "job.status().state.value") == "running"

    assert value_of(second, "job.wait(timeout=120).values") == [x + 100 for x in range(24)]


def test_the_widget_shows_where_a_detached_jobs_results_landed():
    """The follower says where the results went right after the job's end: a throttled widget must still show it
    (it once kept the end's render and dropped this one, so the settled widget never said where to look)."""
    shown: list[str] = []
    throttled = Throttled(JobView("bj-x", total=2), lambda view: shown.append(view.message), interval=60)
    throttled(ev.JobFinished("bj-x", state="done", done=2, failed=0, total=2, duration=1.0, cost=0.0))
    throttled(ev.JobStateChanged("bj-x", state="done", message="2 of 2 results in res"))
    assert shown[-1] == "2 of 2 results in res"

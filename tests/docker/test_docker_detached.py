"""Detached jobs on the docker backend: the process that launched the job (a stand-in kernel) is SIGKILLed right
after `burst_map(..., backend="docker", wait=False)` returned; the job's driver, a process of its own, runs it to the
end in real containers, and this process attaches and gets every value, or cancels it and no container is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import pid_alive, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]

LAUNCH = textwrap.dedent(
    """
    import sys, time
    import starburst_jupyter as sj
    from starburst_jupyter.core.config import Config

    IMAGE, ITEMS, SECONDS = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

    def slow(x, seconds=SECONDS):
        import time
        time.sleep(seconds)
        return x + 100

    config = Config().with_values({"image": IMAGE})
    job = sj.burst_map(slow, range(ITEMS), wait=False, workers=2, backend="docker", config=config)
    print(job.id, flush=True)
    time.sleep(600)
    """
)


def labelled(client, job_id: str) -> list:
    return client.containers.list(all=True, filters={"label": f"starburst.job={job_id}"})


def launch_and_kill(tmp_path: Path, image: str, items: int, seconds: float) -> str:
    """A separate process launches a detached docker job and is SIGKILLed as soon as it printed the job's id."""
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, str(script), image, str(items), str(seconds)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        job_id = proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert job_id.startswith("bj-"), job_id
    return job_id


def record_of(home: Path, job_id: str) -> dict:
    return json.loads((home / "jobs" / job_id / "record.json").read_text())


def test_a_detached_docker_job_finishes_after_its_launcher_is_sigkilled(
    starburst_home, tmp_path, docker_client, worker_image
):
    import starburst_jupyter as sj

    job_id = launch_and_kill(tmp_path, worker_image["ref"], items=8, seconds=1.0)
    assert record_of(starburst_home, job_id)["state"] not in ("done", "failed", "cancelled")
    job = sj.attach(job_id)
    result = job.wait(timeout=300)
    assert result.state == "done", result.failure_report()
    assert result.values == [x + 100 for x in range(8)]
    record = record_of(starburst_home, job_id)
    assert record["backend"] == "docker" and record["owner"]["detached"]
    assert {w["container"] for w in record["workers"].values()}, "the job ran in containers"
    wait_for(lambda: labelled(docker_client, job_id) == [], timeout=60, interval=0.5)
    wait_for(lambda: not pid_alive(record["owner"]["pid"]), timeout=30)  # the driver ended with its job


def test_cancel_from_another_process_leaves_no_container_of_a_detached_docker_job(
    starburst_home, tmp_path, docker_client, worker_image
):
    import starburst_jupyter as sj

    job_id = launch_and_kill(tmp_path, worker_image["ref"], items=6, seconds=60.0)
    job = sj.attach(job_id)

    def running() -> list:
        return [c for c in labelled(docker_client, job_id) if c.status == "running"]

    wait_for(lambda: len(running()) == 2, timeout=180, interval=0.5)
    wait_for(lambda: job.status().state.value == "running", timeout=60, interval=0.2)
    driver = job.status().owner.pid
    started = time.monotonic()
    job.cancel("cancelled from another process")
    result = job.wait(timeout=120)
    assert result.state == "cancelled" and "cancelled from another process" in result.message, result.message
    assert time.monotonic() - started < 60  # far less than the 60 s items
    with pytest.raises(sj.BurstCancelled):
        job.result()
    assert record_of(starburst_home, job_id)["state"] == "cancelled"
    wait_for(lambda: running() == [], timeout=60, interval=0.5)
    wait_for(lambda: labelled(docker_client, job_id) == [], timeout=60, interval=0.5)  # stopped and removed
    wait_for(lambda: not pid_alive(driver), timeout=30)

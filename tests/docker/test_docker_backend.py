"""The docker backend: %%burst jobs whose workers are real containers of the worker image."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from dockerkit import make_mylib
from IPython.utils.capture import capture_output

from starburst_jupyter.core import events as ev
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.errors import BurstCancelled
from starburst_jupyter.protocol.programs import CallProgram

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def run(ip, source: str):
    with capture_output() as captured:
        result = ip.run_cell(source)
    return result, captured.stdout + captured.stderr


def labelled(client, job_id: str) -> list:
    return client.containers.list(all=True, filters={"label": f"starburst.job={job_id}"})


def records(home: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((home / "jobs").glob("*/record.json"))]


def note(key: str, value) -> None:
    """Measurements for docs/environment.md (artifacts/docker-measurements.json)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "docker-measurements.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


def test_burst_map_runs_end_to_end_in_real_containers(ip, starburst_home, docker_client, worker_image):
    ref = worker_image["ref"]
    result, text = run(ip, f"%burst_config image={ref}")
    assert result.success, text
    cell = (
        "%%burst --backend docker --map x in range(24) --workers 2 --out tripled\n"
        "import mylib, os\n"
        "(mylib.triple(x), open('/proc/self/cgroup').read(), os.getcwd(), os.getpid())"
    )
    result, text = run(ip, cell)
    assert result.success, text
    assert "24/24 items ok" in text
    tripled = ip.user_ns["tripled"]
    assert [value for value, *_ in tripled] == [3 * x for x in range(24)]  # mylib exists only in the image
    [record] = records(starburst_home)
    assert record["backend"] == "docker" and record["state"] == "done"
    containers = {info["container"] for info in record["workers"].values()}
    ran_in = {c for _, cgroup, _, _ in tripled for c in containers if c in cgroup}
    assert ran_in and ran_in <= containers  # in those containers' cgroups...
    assert {pid for *_, pid in tripled} == {1}  # ...as their first process (a PID namespace of their own)
    assert {cwd for _, _, cwd, _ in tripled} == {"/home/starburst"}  # the image's workdir, not this process's
    assert all(info["image"] == ref for info in record["workers"].values())
    assert labelled(docker_client, record["id"]) == []  # ended containers were read and removed
    result, text = run(ip, f"%burst_logs {record['id']} --worker 0")
    assert result.success and f"worker 0 of job {record['id']} started" in text  # the container's own log


def test_cancel_stops_and_removes_every_container(starburst_home, docker_client, worker_image):
    config = Config().with_values({"image": worker_image["ref"]})
    seen: list[ev.Event] = []
    handle = Launcher(config).submit(
        build_spec(config, mode="map", workers=2, backend="docker"),
        CallProgram(time.sleep),
        [60] * 4,
        subscribers=[seen.append],
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(isinstance(e, ev.TaskStarted) for e in seen) < 2:
        time.sleep(0.2)
    running = [c for c in labelled(docker_client, handle.id) if c.status == "running"]
    assert len(running) == 2, seen[-5:]
    assert all(c.attrs["HostConfig"]["NetworkMode"] == "host" for c in running)
    started = time.monotonic()
    handle.cancel("cancelled from a test")
    assert handle.wait(timeout=60).state == "cancelled"
    with pytest.raises(BurstCancelled):
        handle.result()
    assert time.monotonic() - started < 30
    assert labelled(docker_client, handle.id) == []
    record = json.loads((starburst_home / "jobs" / handle.id / "record.json").read_text())
    assert record["state"] == "cancelled"


def test_a_job_whose_image_is_missing_says_how_to_build_it(ip, starburst_home, docker_client, base_image, tmp_path):
    make_mylib(tmp_path, marker="never-built")
    (tmp_path / "requirements.txt").write_text("-e ./mylib\n")
    result, text = run(ip, f"%burst_config base_image={base_image} requirements={tmp_path / 'requirements.txt'}")
    assert result.success, text
    result, text = run(ip, "%%burst --backend docker --map x in range(3)\nx")
    assert not result.success
    assert "No worker image for this environment" in text and "%burst_rebuild" in text and "auto_build" in text
    assert not (starburst_home / "jobs").exists() or records(starburst_home) == []


def test_container_start_to_first_task(starburst_home, docker_client, worker_image):
    config = Config().with_values({"image": worker_image["ref"]})
    seen: list[ev.Event] = []
    handle = Launcher(config).submit(
        build_spec(config, mode="map", workers=2, backend="docker"),
        CallProgram(abs),
        list(range(-20, 0)),
        subscribers=[seen.append],
    )
    assert handle.wait(timeout=120).values == list(range(20, 0, -1))
    starts = {e.worker: e.at for e in seen if isinstance(e, ev.WorkerStarted)}
    first = {}
    for e in seen:
        if isinstance(e, (ev.TaskStarted, ev.TaskFinished)) and e.worker not in first:
            first[e.worker] = e.at
    delays = [first[w] - starts[w] for w in first if w in starts]
    assert delays
    note("container_start_to_first_task_seconds", round(min(delays), 2))
    note("image_size_mb", round(docker_client.images.get(worker_image["ref"]).attrs["Size"] / 1024**2, 1))
    if worker_image["facts"].get("built"):
        note("build_seconds_cold", round(worker_image["facts"]["seconds"], 1))
    assert labelled(docker_client, handle.id) == []

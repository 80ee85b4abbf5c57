"""The worker image, built for real on a local Docker engine from a local base image."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from dockerkit import python_in_image

from starburst_jupyter import envimage
from starburst_jupyter.core.events import ImageBuildProgress
from starburst_jupyter.envimage.template import USER_ID

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a first run debootstraps the base (~2 min)
REPO = Path(__file__).resolve().parents[2]


def test_the_image_builds_with_progress_events(docker_client, worker_config, worker_image):
    env = worker_image["env"]
    if worker_image["facts"]["built"]:  # this session built it: those are the events to check
        events, ref = worker_image["events"], worker_image["ref"]
    else:  # it was there from an earlier run: build it again
        events = []
        ref = envimage.ensure_local_image(
            worker_config, on_progress=events.append, client=docker_client, force=True, env=env
        )
    assert ref == worker_image["ref"] == f"starburst-test-worker:{env.tag}"
    assert all(isinstance(e, ImageBuildProgress) and e.image == ref for e in events)
    phases = [e.phase for e in events]
    assert phases[0] == "check" and phases[-1] == "done"
    assert "context" in phases  # the wheels gathered on the host, line by line
    steps = [(e.current, e.total) for e in events if e.phase == "build" and e.current]
    assert len(steps) >= 5 and steps[-1][0] == steps[-1][1] and steps == sorted(steps)  # Step n/m, in order
    assert any("Successfully built" in e.message for e in events)
    assert events[-1].message.startswith(f"built {ref} in ")


def test_a_second_ensure_reuses_the_image_without_building(docker_client, worker_config, worker_image):
    events: list[ImageBuildProgress] = []
    before = docker_client.images.get(worker_image["ref"]).id
    assert (
        envimage.ensure_local_image(
            worker_config, on_progress=events.append, client=docker_client, env=worker_image["env"]
        )
        == worker_image["ref"]
    )
    assert [e.phase for e in events] == ["reuse"]
    assert envimage.last_result["built"] is False
    assert docker_client.images.get(worker_image["ref"]).id == before


def test_the_image_holds_the_editable_worker_and_the_local_project(docker_client, worker_image):
    ref = worker_image["ref"]
    here = hashlib.sha256((REPO / "starburst_jupyter" / "worker" / "runner.py").read_bytes()).hexdigest()
    there = python_in_image(
        docker_client,
        ref,
        (
            "import hashlib, importlib.resources as r, mylib, cloudpickle, starburst_jupyter.worker.runner as w;"
            "print(hashlib.sha256(open(w.__file__, 'rb').read()).hexdigest(), mylib.MARKER, mylib.triple(5),"
            " cloudpickle.__version__)"
        ),
    )
    worker_hash, marker, tripled, cloudpickle_version = there.split()
    assert worker_hash == here  # this checkout's worker.py (installed editable here) is what the image runs
    assert (marker, tripled) == ("v1", "15")
    import cloudpickle

    assert cloudpickle_version == cloudpickle.__version__


def test_the_image_is_small_pinned_non_root_and_records_its_environment(docker_client, worker_config, worker_image):
    image = docker_client.images.get(worker_image["ref"])
    config = image.attrs["Config"]
    assert config["User"] == f"{USER_ID}:{USER_ID}"
    assert config["Cmd"] == ["python", "-m", "starburst_jupyter.worker"]
    assert python_in_image(docker_client, image.id, "import os; print(os.getuid())") == str(USER_ID)
    recorded = json.loads(image.labels[envimage.LABEL_ENV])
    assert recorded["python"] == "3.11" and recorded["base_image"] == worker_config.base_image
    assert set(recorded["packages"]) == {"cloudpickle", "mylib", "starburst-jupyter"}  # nothing else came in
    assert image.labels[envimage.LABEL_HASH] == worker_image["env"].hash
    assert envimage.check_skew(recorded) == []
    assert image.attrs["Size"] < 400 * 1024**2

"""Environment capture and its hash (no Docker engine needed): what decides the worker image's tag."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import pytest
from dockerkit import make_mylib

from starburst_jupyter import envimage
from starburst_jupyter.core.config import Config
from starburst_jupyter.display.progress import ImageProgressLines
from starburst_jupyter.envimage import BurstImageError, capture_kernel, capture_requirements, check_skew
from starburst_jupyter.envimage.build import check_disk

REPO = Path(__file__).resolve().parents[2]
BASE = "python:3.11.7-slim-bookworm"


def test_the_kernel_environment_hashes_the_same_every_time():
    first, second = capture_kernel(base_image=BASE), capture_kernel(base_image=BASE)
    assert first.hash == second.hash and first.tag == second.tag
    assert len(first.tag) == 32 and all(c in "0123456789abcdef" for c in first.tag)
    pins = dict(p.split("==") for p in first.pins if "==" in p)
    assert pins["cloudpickle"] == md.version("cloudpickle")  # installed distributions are pinned exactly
    assert pins["docker"] == md.version("docker")
    assert first.python == "3.11"


def test_the_editable_worker_is_captured_as_a_local_project_not_dropped():
    env = capture_kernel(base_image=BASE)
    [project] = [p for p in env.local if p.name == "starburst-jupyter"]
    assert project.editable and Path(project.path) == REPO  # installed with pip install -e in this venv
    assert not any(p.startswith("starburst-jupyter") for p in env.pins)
    assert env.skipped == ("pip (the image's virtualenv has its own)",)  # what is left out is said


def test_a_changed_pin_changes_the_tag(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("six==1.16.0\n")
    first = capture_requirements(req, base_image=BASE)
    req.write_text("# same packages, other comments\nsix==1.16.0   # pinned\n\n")
    assert capture_requirements(req, base_image=BASE).tag == first.tag
    req.write_text("six==1.17.0\n")
    assert capture_requirements(req, base_image=BASE).tag != first.tag
    # the worker and the kernel's cloudpickle are always added to a requirements file's image
    assert f"cloudpickle=={md.version('cloudpickle')}" in first.pins
    assert any(p.name == "starburst-jupyter" for p in first.local)


def test_base_image_python_and_architecture_are_part_of_the_tag(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("six==1.16.0\n")
    tags = {
        capture_requirements(req, base_image=BASE).tag,
        capture_requirements(req, base_image="python:3.11.9-slim-bookworm").tag,
        capture_requirements(req, base_image=BASE, arch="arm64").tag,
    }
    assert len(tags) == 3
    assert capture_requirements(req, arch="arm64").platform == "linux/arm64"
    assert capture_requirements(req).platform == "linux/amd64"


def test_a_local_project_is_hashed_by_content(tmp_path):
    make_mylib(tmp_path, marker="v1")
    req = tmp_path / "requirements.txt"
    req.write_text("-e ./mylib\n")
    first = capture_requirements(req, base_image=BASE)
    (tmp_path / "mylib" / "mylib" / "__pycache__").mkdir()
    (tmp_path / "mylib" / "mylib" / "__pycache__" / "x.pyc").write_bytes(b"noise")
    assert capture_requirements(req, base_image=BASE).tag == first.tag  # caches are not content
    make_mylib(tmp_path, marker="v2")
    second = capture_requirements(req, base_image=BASE)
    assert second.tag != first.tag
    [mylib] = [p for p in second.local if p.name == "mylib"]
    assert mylib.editable and mylib.path == str((tmp_path / "mylib").resolve())


def test_a_missing_local_project_is_an_error_not_a_silent_drop(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("-e ./not-there\n")
    with pytest.raises(BurstImageError, match="not-there"):
        capture_requirements(req, base_image=BASE)


@pytest.mark.parametrize("ref", ["python:latest", "python", "registry.example/team/python"])
def test_an_unpinned_base_image_is_refused(ref):
    with pytest.raises(BurstImageError, match="not pinned"):
        envimage.capture(Config().with_values({"base_image": ref}))


def test_a_digest_pinned_base_image_is_accepted():
    env = envimage.capture(Config().with_values({"base_image": "python@sha256:" + "a" * 64}))
    assert env.base_image.endswith("a" * 64)


def test_skew_names_each_difference_that_matters():
    kernel = {"cloudpickle": "3.1.1", "starburst-jupyter": "0.1.0", "numpy": "2.1.0", "pandas": "2.2.0"}
    image = {
        "python": "3.11",
        "packages": {"cloudpickle": "3.0.0", "starburst_jupyter": "0.1.0", "numpy": "1.26.4", "pandas": "2.2.0"},
    }
    assert check_skew(image, kernel, python="3.11") == ["cloudpickle 3.1.1 in the kernel, 3.0.0 in the image"]
    problems = check_skew(image, kernel, python="3.12", matters=["numpy", "pandas"])
    assert problems == [
        "Python 3.12 in the kernel, Python 3.11 in the image",
        "cloudpickle 3.1.1 in the kernel, 3.0.0 in the image",
        "numpy 2.1.0 in the kernel, 1.26.4 in the image",
    ]
    image["packages"].pop("numpy")
    assert "numpy 2.1.0 in the kernel, not installed in the image" in check_skew(image, kernel, matters=["numpy"])


def test_skew_refusal_names_the_difference_and_the_fix():
    image = {
        "python": "3.10",
        "packages": {"cloudpickle": md.version("cloudpickle"), "starburst-jupyter": md.version("starburst-jupyter")},
    }
    with pytest.raises(envimage.BurstSkewError) as info:
        envimage.ensure_no_skew(image, "starburst-worker:abc")
    message = str(info.value)
    assert "Python 3.11 in the kernel, Python 3.10 in the image" in message and "%burst_rebuild" in message


def test_disk_check_says_what_is_needed(tmp_path):
    check_disk([tmp_path], 1024, "a test")  # plenty
    with pytest.raises(BurstImageError, match=r"needs about 1048576\.0 GB free"):
        check_disk([tmp_path], 1024**5, "building the worker image")


def test_text_progress_shows_steps_and_pushes_but_not_pip_chatter():
    from starburst_jupyter.core.events import ImageBuildProgress as P

    lines: list[str] = []
    show = ImageProgressLines(lines.append)
    for event in [
        P("", phase="check", message="checking free disk space"),
        P("", phase="context", message="gathering packages: pip wheel ..."),
        P("", phase="context", message="Collecting cloudpickle"),
        P("", phase="build", message="Step 1/9 : FROM base:1", current=1, total=9),
        P("", phase="build", message=" ---> 1234abcd"),
        P("", phase="push", message="Pushing", current=50 * 2**20, total=100 * 2**20),
        P("", phase="push", message="Pushing", current=60 * 2**20, total=100 * 2**20),
        P("", phase="done", message="pushed x in 3 s"),
    ]:
        show(event)
    assert lines == [
        "[image] checking free disk space",
        "[image] gathering packages: pip wheel ...",
        "[image] Step 1/9 : FROM base:1",
        "[image] pushing 50/100 MB",
        "[image] pushed x in 3 s",
    ]

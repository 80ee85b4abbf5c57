"""The launcher contract: one set of behaviours, run on every backend (local processes, docker containers,
Fargate tasks on moto with tests/fargate_agent.py), each asserting what a user sees: values, error
messages, the job's record, and nothing of the job left running.

The `backend` fixture yields a `Rig`: a ready config for one backend plus a way to ask what of a job
still runs there. Docker uses the session's engine and worker image (tests/backends_fixture.py),
Fargate the account and agent of tests/test_fargate.py. Every job is given a short --timeout and every
wait a deadline, so a regression fails in a minute instead of hanging.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import differential as dt
import pytest
from helpers import pid_alive, wait_for
from hypothesis import given, settings
from test_fargate import account, ecs_tasks, fargate  # noqa: F401 (fixtures, shared with the Fargate tests)

from starburst_jupyter import BurstError, WorkerLost, attach, burst_map
from starburst_jupyter.core.config import load_config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.protocol.programs import CallProgram
from starburst_jupyter.stores.records import JobStore

# Docker workers run the worker image and Fargate tasks run without this module: functions travel by value,
# as a notebook's do.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SLOW = [pytest.mark.slow]
LOCAL = pytest.param("local", id="local")
DOCKER = pytest.param("docker", id="docker", marks=[*SLOW, pytest.mark.docker])
FARGATE = pytest.param("fargate", id="fargate", marks=SLOW)
JOB_TIMEOUT = 60  # every job's --timeout: a hang ends as a cancelled job in a minute, not in 6 h
WAIT = 150  # how long a test waits for a job to end (container and task starts included)
pytestmark = pytest.mark.timeout(600)  # the first docker test may build the worker image


@dataclass
class Rig:
    """One backend, ready: its config and what of a job still runs there."""

    name: str
    overrides: dict[str, Any]
    still_running: Callable[[str], list[str]]
    can_attach: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self):
        return load_config().with_values(self.overrides)

    def spec(self, workers: int = 2, **options):
        options.setdefault("timeout", JOB_TIMEOUT)
        options.setdefault("retries", 1)
        return build_spec(self.config, mode="map", workers=workers, backend=self.name, **options)

    def submit(self, fn, items, workers: int = 2, **options):
        config = self.config
        return Launcher(config).submit(self.spec(workers, **options), CallProgram(fn), list(items))

    def map(self, fn, items, **options):
        options.setdefault("timeout", JOB_TIMEOUT)
        options.setdefault("workers", 2)
        return burst_map(fn, items, backend=self.name, config=self.config, **options)

    def assert_nothing_running(self, job_id: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        left = self.still_running(job_id)
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = self.still_running(job_id)
        assert not left, f"still running {timeout:.0f} s after job {job_id} ended: {left}"


def _local_running(job_id: str) -> list[str]:
    record = JobStore().read(job_id)
    return [
        f"worker {i} (pid {w['pid']})" for i, w in record["workers"].items() if w.get("pid") and pid_alive(w["pid"])
    ]


@pytest.fixture(params=[LOCAL, DOCKER, FARGATE])
def backend(request, starburst_home):
    name = request.param
    if name == "local":
        yield Rig("local", {"local_concurrency": 2}, _local_running, can_attach=True)  # adopts recorded pids
    elif name == "docker":
        image = request.getfixturevalue("worker_image")
        client = request.getfixturevalue("docker_client")
        _assert_image_has_this_checkout(image["env"])

        def containers(job_id: str) -> list[str]:
            found = client.containers.list(all=True, filters={"label": f"starburst.job={job_id}"})
            return [f"container {c.name} ({c.status})" for c in found]

        yield Rig("docker", {"image": image["ref"]}, containers, extra={"client": client})
        for record in JobStore().list():  # a failed test's leftovers (its own containers only)
            for container in client.containers.list(all=True, filters={"label": f"starburst.job={record['id']}"}):
                container.remove(force=True)
    else:
        agent = request.getfixturevalue("fargate")
        moto = request.getfixturevalue("moto_server")

        def tasks(job_id: str) -> list[str]:
            arns = {w.get("task_arn") for w in JobStore().read(job_id)["workers"].values()}
            running = [
                f"ECS task {arn} (RUNNING)" for arn in ecs_tasks(moto, startedBy=job_id, desiredStatus="RUNNING")
            ]
            return running + [f"agent process of worker {i}" for i, arn in agent.running().items() if arn in arns]

        yield Rig("fargate", {}, tasks, can_attach=True, extra={"agent": agent})
    for driver in _live_drivers():  # a failed test's job must not run on into the next test
        driver.request_cancel("test ended")
        driver.handle.wait(timeout=60)


def _assert_image_has_this_checkout(env) -> None:
    """The worker image gets starburst-jupyter from the folder its installed distribution names: a venv
    with another checkout installed (and this one on PYTHONPATH) would test that checkout's workers."""
    import starburst_jupyter

    here = Path(starburst_jupyter.__file__).resolve().parents[1]
    sources = {Path(p.path) for p in env.local if p.name.lower().replace("_", "-") == "starburst-jupyter"}
    if sources and here not in sources:
        pytest.fail(
            f"The worker image would carry starburst-jupyter from {sorted(map(str, sources))}, not from {here} "
            f"under test: install this checkout (pip install -e .) in the test environment."
        )


def _live_drivers() -> list:
    from starburst_jupyter.core.driver import live_drivers

    return list(live_drivers())


def _outcomes(values: list) -> dict[int, str]:
    """{item: what came back}, for assertion messages."""
    return {
        i: (f"{type(v).__name__}: {str(v)[:160]}" if isinstance(v, BaseException) else repr(v)[:60])
        for i, v in enumerate(values)
    }


# ----- programs (module level: pickled by value) ------------------------------------------------
def tenfold(x):
    time.sleep(0.05)
    return x * 10


def slow_tenfold(x):
    time.sleep(1.0)
    return x * 10


def _worker_index() -> int:
    """This worker's index: local and docker workers have it in argv, Fargate tasks in their environment."""
    if "--worker" in sys.argv:
        return int(sys.argv[sys.argv.index("--worker") + 1])
    return int(os.environ["STARBURST_WORKER"])


def _die_hard() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would...
    time.sleep(2)
    os._exit(137)  # ...but PID 1 of a container ignores a SIGKILL sent from inside its own namespace


def dies_on_worker_zero_and_poisons_item_13(x):
    """Worker 0 dies (SIGKILL) on the first even item it runs: that item must be retried elsewhere and succeed.
    Item 13 ends every worker it runs on: it must come back as WorkerLost, naming item 13."""
    time.sleep(0.1)
    if x == 13:
        os._exit(7)
    if x % 2 == 0 and _worker_index() == 0:
        _die_hard()
    return x * 10


EXIT_CODES = {2: 3, 3: 4, 4: 5, 5: 0}  # item -> the code its process exits with (issue 12 item 1)


def exits_with_a_code_that_means_something_to_starburst(x):
    time.sleep(0.1)
    if x in EXIT_CODES:
        os._exit(EXIT_CODES[x])
    return x * 10


def _explode():
    raise ImportError("no module named 'only_in_the_kernel'")


class LoadsOnlyHere:
    """Unpickling it fails, as a value from a package the worker lacks would."""

    def __reduce__(self):
        return (_explode, ())


def returns_something_unpicklable(x):
    if x == 1:
        return threading.Lock()
    if x == 2:
        return (n for n in range(3))
    return x * 10


def starts_a_sleeper(tag):
    """Starts a process in the worker's own process group and leaves it running (issue 12 item 10)."""
    child = subprocess.Popen(["sleep", tag], start_new_session=False)
    return child.pid


# ----- a. ordered results ----------------------------------------------------------------------
def test_results_come_back_in_item_order(backend):
    handle = backend.submit(tenfold, range(20))
    result = handle.wait(timeout=WAIT)
    assert (result.state, result.failures) == ("done", []), result.message
    assert result.values == [x * 10 for x in range(20)]
    record = JobStore().read(handle.id)
    assert (record["state"], record["done"], record["failed"], record["total"]) == ("done", 20, 0, 20)
    backend.assert_nothing_running(handle.id)


# ----- b. worker death: retried, then reported ------------------------------------------------
def test_a_dead_workers_items_are_retried_and_an_item_that_kills_every_worker_is_worker_lost(backend):
    handle = backend.submit(dies_on_worker_zero_and_poisons_item_13, range(20), retries=1)
    result = handle.wait(timeout=WAIT)
    outcomes = _outcomes(result.values)
    assert [i for i, _ in result.failures] == [13], outcomes
    lost = result.values[13]
    assert isinstance(lost, WorkerLost), outcomes
    assert "Item 13" in str(lost) and "tried 2 times" in str(lost), str(lost)
    assert [v for i, v in enumerate(result.values) if i != 13] == [x * 10 for x in range(20) if x != 13], outcomes
    assert result.state == "failed", result.message
    record = JobStore().read(handle.id)
    assert record["state"] == "failed" and record["done"] == 19 and record["failed"] == 1
    assert record["workers"]["0"]["exit_code"] not in (None, 0), record["workers"]["0"]  # worker 0 did die
    assert len(record["workers"]) >= 3  # worker 0 and item 13's two hosts ended: replacements were started
    backend.assert_nothing_running(handle.id)


# ----- c. cancel ends everything ---------------------------------------------------------------
def test_cancel_mid_run_keeps_finished_results_and_ends_every_worker(backend):
    handle = backend.submit(slow_tenfold, range(20), timeout=120)
    wait_for(lambda: JobStore().read(handle.id).get("done", 0) >= 2, timeout=WAIT, interval=0.2)
    handle.cancel("cancelled from the contract suite")
    result = handle.wait(timeout=60)
    assert result.state == "cancelled", result.message
    assert "cancelled from the contract suite" in result.message
    finished = {i: v for i, v in enumerate(result.values) if not isinstance(v, BaseException) and v is not None}
    assert len(finished) >= 2 and all(v == i * 10 for i, v in finished.items()), _outcomes(result.values)
    assert len(finished) < 20
    record = JobStore().read(handle.id)
    assert record["state"] == "cancelled" and record["done"] == len(finished)
    backend.assert_nothing_running(handle.id)


# ----- d. cancel with the launching kernel gone; f. attach where the backend can ------------------
KERNEL_THAT_DIES = """
import json, os, signal, sys, time
from starburst_jupyter.core.config import load_config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.protocol.programs import CallProgram
from starburst_jupyter.stores.records import JobStore

def slow_tenfold(x):
    time.sleep(1.0)
    return x * 10

name, overrides, count = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
config = load_config().with_values(overrides)
spec = build_spec(config, mode="map", workers=2, backend=name, timeout=300)
handle = Launcher(config).submit(spec, CallProgram(slow_tenfold), list(range(count)))
print(handle.id, flush=True)
deadline = time.monotonic() + 120
while time.monotonic() < deadline and JobStore().read(handle.id).get("done", 0) < 1:
    time.sleep(0.1)
os.kill(os.getpid(), signal.SIGKILL)  # the kernel dies mid-job; its workers run on
"""


def _job_whose_kernel_died(rig: Rig, tmp_path: Path, items: int) -> str:
    script = tmp_path / "kernel.py"
    script.write_text(KERNEL_THAT_DIES)
    kernel = subprocess.run(
        [sys.executable, str(script), rig.name, json.dumps(rig.overrides), str(items)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert kernel.returncode == -signal.SIGKILL, kernel.stderr[-3000:]
    job_id = kernel.stdout.split()[0]
    record = JobStore().read(job_id)
    assert record["state"] == "running", record  # as the dead kernel left it
    assert rig.still_running(job_id), "the workers should outlive their kernel"
    return job_id


def test_cancel_when_the_launching_kernel_is_gone(backend, tmp_path):
    job_id = _job_whose_kernel_died(backend, tmp_path, items=40)
    record = Launcher().cancel_job(job_id, "cancelled from another process")
    assert record["state"] == "cancelled", record
    assert "cancelled from another process" in record["message"] and "launching kernel gone" in record["message"]
    assert all(w.get("exit_code") is not None for w in record["workers"].values()), record["workers"]
    backend.assert_nothing_running(job_id)
    assert JobStore().read(job_id)["state"] == "cancelled"
    assert Launcher().cancel_job(job_id)["state"] == "cancelled"  # idempotent


def test_attach_where_the_backend_can_else_a_clear_refusal(backend, tmp_path):
    job_id = _job_whose_kernel_died(backend, tmp_path, items=8)
    if backend.can_attach:
        result = Launcher().attach(job_id).wait(timeout=WAIT)
        assert result.state == "done" and result.values == [x * 10 for x in range(8)], result.message
        assert JobStore().read(job_id)["state"] == "done"
    else:
        with pytest.raises(BurstError) as refused:
            Launcher().attach(job_id)
        message = str(refused.value)
        assert f"Job {job_id} ran on the {backend.name} backend" in message, message
        assert "cannot be taken over by another kernel" in message and f"%burst_cancel {job_id}" in message, message
        assert Launcher().cancel_job(job_id)["state"] == "cancelled"
    backend.assert_nothing_running(job_id)


# ----- e. start-up failure ---------------------------------------------------------------------
def test_workers_that_cannot_load_the_program_fail_the_job_with_a_clear_message(backend):
    thing = LoadsOnlyHere()
    started = time.monotonic()
    handle = backend.submit(lambda x: (thing, x), range(3))
    result = handle.wait(timeout=WAIT)
    assert result.state == "failed", (result.state, result.message)
    assert "ended before taking any work" in result.message and "only_in_the_kernel" in result.message, result.message
    assert time.monotonic() - started < JOB_TIMEOUT  # reported, not left to the job's timeout
    record = JobStore().read(handle.id)
    assert record["state"] == "failed" and len(record["workers"]) <= 4, record["workers"]  # not relaunched forever
    backend.assert_nothing_running(handle.id)


# ----- g. issue 12 item 1: exit codes carry no job meaning ----------------------------------------
@pytest.mark.timeout(300)
def test_an_item_exiting_with_any_code_is_retried_then_worker_lost_not_a_hang_nor_a_success(backend):
    """os._exit(3) looked like 'cancelled', 4 like 'deadline', 5 like 'no program' and 0 like 'finished'."""
    started = time.monotonic()
    handle = backend.submit(exits_with_a_code_that_means_something_to_starburst, range(10), retries=1)
    result = handle.wait(timeout=WAIT)
    outcomes = _outcomes(result.values)
    assert result.state == "failed", f"{result.state}: {result.message}; {outcomes}"
    assert time.monotonic() - started < JOB_TIMEOUT, "the job ran into its --timeout"
    for item, code in EXIT_CODES.items():
        value = result.values[item]
        assert isinstance(value, WorkerLost), f"item {item} (os._exit({code})): {outcomes[item]}"
        assert f"Item {item}" in str(value), str(value)
    assert [i for i, _ in result.failures] == sorted(EXIT_CODES), outcomes
    ok = [i for i in range(10) if i not in EXIT_CODES]
    assert [result.values[i] for i in ok] == [i * 10 for i in ok], outcomes
    backend.assert_nothing_running(handle.id)


# ----- h. issue 12 item 2: an unpicklable return value is a failed item ----------------------------
def test_an_unpicklable_return_value_is_a_failed_item(backend):
    handle = backend.submit(returns_something_unpicklable, range(4))
    result = handle.wait(timeout=WAIT)
    outcomes = _outcomes(result.values)
    assert result.state == "failed", f"{result.state}: {outcomes}"
    assert [i for i, _ in result.failures] == [1, 2], outcomes
    assert "cannot be pickled" in str(result.values[1]) and "lock" in str(result.values[1]), outcomes[1]
    assert "generator" in str(result.values[2]), outcomes[2]
    assert (result.values[0], result.values[3]) == (0, 30)
    record = JobStore().read(handle.id)
    assert (record["state"], record["done"], record["failed"]) == ("failed", 2, 2)
    with pytest.raises(BurstError) as raised:  # --on-error raise (the default) raises, naming the items
        backend.map(returns_something_unpicklable, range(4))
    assert "2 of 4 items failed" in str(raised.value) and "item 1" in str(raised.value), str(raised.value)
    assert "item 2" in str(raised.value)
    backend.assert_nothing_running(handle.id)


# ----- i. issue 12 item 10: a task's processes end with the job ------------------------------------
def _processes_with_argument(arg: str) -> list[int]:
    """PIDs on this machine (containers' processes included) whose command line has `arg` as an argument."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if arg.encode() in argv and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("backend", [LOCAL, DOCKER], indirect=True)
def test_processes_a_task_started_do_not_outlive_a_finished_job(backend):
    tag = f"300.{random.randrange(10**6, 10**7)}"  # `sleep 300.NNNNNNN`: findable in /proc, ours alone
    try:
        handle = backend.submit(starts_a_sleeper, [tag, tag])
        result = handle.wait(timeout=WAIT)
        assert result.state == "done", result.message
        backend.assert_nothing_running(handle.id)
        deadline = time.monotonic() + 10
        while _processes_with_argument(tag) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _processes_with_argument(tag)
        assert not left, f"`sleep {tag}` started by the job's tasks still runs after it finished: pids {left}"
    finally:
        for pid in _processes_with_argument(tag):  # this test's own sleepers, by PID
            os.kill(pid, signal.SIGKILL)


# ----- j. issue 22: every value is exactly what a plain map gives ----------------------------------
@settings(dt.SHARED_FIXTURES, max_examples=5)
@given(batch=dt.items, plain=dt.items_without_numpy)
def test_values_equal_a_plain_maps_over_generated_items(backend, batch, plain):
    """tests/differential.py's generated items (shared references, nan and -0.0, arrays, classes pickled by
    value, failures, unpicklable values, 3 MB buffers) through this backend's workers and back. The docker
    tests' worker image is a small environment without numpy: its items hold no numpy values."""
    if backend.name == "docker":
        dt.assert_same(backend.map(dt.act_plain, plain, on_error="keep"), dt.plain_map(plain, dt.act_plain))
    else:
        dt.assert_same(backend.map(dt.act, batch, on_error="keep"), dt.plain_map(batch))


@settings(dt.SHARED_FIXTURES, max_examples=3)
@given(batch=dt.items)
def test_a_detached_jobs_values_equal_a_plain_maps(backend, batch):
    if not backend.can_attach:
        pytest.skip(f"{backend.name} jobs are not detached (see test_attach_where_the_backend_can...)")
    job = backend.map(dt.act, batch, on_error="keep", wait=False)
    want = dt.plain_map(batch)
    dt.assert_same(job.wait(timeout=WAIT).values, want)
    dt.assert_same(attach(job.id, config=backend.config).results(partial=True), want)

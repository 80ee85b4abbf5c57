"""Issue 14 item 4 on the local backend: a worker sent SIGTERM (what ECS StopTask and a Spot interruption
send first) flushes what it finished, hands back what it claimed and did not start, and exits at once;
nothing it finished is computed again and the job completes. Each item's runs are counted in a side file."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import cloudpickle
import pytest
from helpers import latest_record, pid_alive, wait_for
from test_fargate import account, fargate  # noqa: F401 (fixtures of the moto harness)

from starburst_jupyter.core import events as ev
from starburst_jupyter.core.config import Config, load_config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.protocol.programs import CallProgram

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers do not have the tests' modules


def counted(x, log: str, seconds: float, slow_once: int | None = None, in_c: bool = False):
    """Runs item x, noting '<pid> <x>' in `log` first; item `slow_once` takes a minute the first time (in a
    sleep, where Python's signal handler runs at once, or `in_c`: one long C call, where it cannot)."""
    import os as o
    import time as t

    with open(log, "a") as out:
        out.write(f"{o.getpid()} {x}\n")
    if x == slow_once and sum(line.split()[1] == str(x) for line in open(log)) == 1:
        if in_c:  # minutes inside one C call that releases the GIL (as numpy's do) and ignores signals
            import hashlib

            hashlib.pbkdf2_hmac("sha256", b"x", b"salt", 10**9)
        t.sleep(60)
    t.sleep(seconds)
    return x * x


def runs(log: Path) -> list[tuple[int, int]]:
    text = log.read_text() if log.exists() else ""
    return [(int(p), int(x)) for p, x in (line.split() for line in text.splitlines())]


def _submit(
    log: Path, items: int, seconds: float, slow_once: int | None = None, config: Config | None = None, in_c=False
):
    config = config or Config(local_concurrency=2)
    spec = build_spec(config, mode="map", workers=2, retries=0)
    program = CallProgram(lambda x: counted(x, str(log), seconds, slow_once, in_c))
    handle = Launcher(config).submit(spec, program, list(range(items)), start=False)
    retried: list[ev.TaskRetried] = []
    handle.events.subscribe(retried.append, ev.TaskRetried)
    handle.start()
    return handle, retried


def test_sigterm_between_items_recomputes_nothing_and_the_job_completes(tmp_path):
    log = tmp_path / "runs.txt"
    handle, retried = _submit(log, 24, 0.3)  # first blocks hold 6 items each
    pid = wait_for(lambda: next((p for p, n in Counter(p for p, _ in runs(log)).items() if n >= 3), None), timeout=30)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), timeout=5)  # well inside any stop timeout
    result = handle.wait(timeout=60)
    assert result.state == "done" and result.values == [x * x for x in range(24)]
    counts = Counter(x for _, x in runs(log))
    assert counts == Counter(range(24)), f"items run more than once: {[x for x, n in counts.items() if n > 1]}"
    assert retried == []  # what it handed back never ran: no attempt counted, no retry shown
    record = latest_record()
    assert record["state"] == "done"
    terminated = [w for w in record["workers"].values() if w.get("pid") == pid]
    assert terminated and "SIGTERM" in terminated[0]["reason"], record["workers"]


@pytest.mark.parametrize("in_c", [False, True], ids=["sleep", "c-call"])
def test_sigterm_during_a_long_item_leaves_it_within_the_grace_and_hands_back_the_rest(tmp_path, in_c):
    log = tmp_path / "runs.txt"
    handle, retried = _submit(log, 24, 0.1, slow_once=0, in_c=in_c)  # item 0 (first of block 0) is long once
    pid = wait_for(lambda: next((p for p, x in runs(log) if x == 0), None), timeout=30)
    time.sleep(0.3)
    sent = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), timeout=10)
    assert time.monotonic() - sent < 5  # the item is abandoned after a short grace, long before a SIGKILL
    result = handle.wait(timeout=60)
    assert result.state == "done" and result.values == [x * x for x in range(24)]
    counts = Counter(x for _, x in runs(log))
    assert counts[0] == 2 and all(counts[x] == 1 for x in range(1, 24)), counts  # only the abandoned item reran
    assert [e.index for e in retried] == [0]  # and only it counted an attempt


@pytest.mark.slow
def test_a_spot_interruption_notice_on_fargate_loses_no_finished_work(fargate, tmp_path):  # noqa: F811
    """SIGTERM to a running task's worker (the notice of a Spot interruption; SIGKILL would follow after the
    stop timeout): it leaves on its own, its finished items are kept and the job completes."""
    log = tmp_path / "runs.txt"
    handle, retried = _submit(log, 12, 1.0, config=load_config())  # first blocks hold 3 items each
    pid = wait_for(lambda: next((p for p, n in Counter(p for p, _ in runs(log)).items() if n >= 2), None), timeout=60)
    worker = next(fargate.worker_of(arn) for arn, proc in list(fargate.procs.items()) if proc.pid == pid)
    arn = fargate.interrupt(worker)
    result = handle.wait(timeout=120)
    assert result.state == "done" and result.values == [x * x for x in range(12)]
    counts = Counter(x for _, x in runs(log))
    assert counts == Counter(range(12)), f"items run more than once: {[x for x, n in counts.items() if n > 1]}"
    assert retried == []
    assert arn not in fargate.sigkilled  # it left within the stop timeout, not killed at its end
    ended = latest_record()["workers"][str(worker)]
    assert ended["exit_code"] == 143 and "Spot interruption" in ended["reason"], ended

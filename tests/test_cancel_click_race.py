"""A Cancel click is never lost, whenever it lands in the job's loop (issue 12: "the intermittent lost click").

The click's handler calls JobHandle.cancel -> JobDriver.request_cancel from the kernel's main thread while the
driver's thread polls the job's cancel file. request_cancel used to write `cancel_reason` itself, and the loop
did `if cancel_reason is None: cancel_reason = files.cancel_reason()`: a click that landed while that read was
in progress was overwritten with None, the button showed "Cancelling..." and the job ran to its end. On the
local backend the loop polls every 2-50 ms, so a loaded machine hit it about once in five CI runs.
"""

from __future__ import annotations

import threading
import time

import pytest
from helpers import latest_record, pid_alive, wait_for, worker_pids

from starburst_jupyter.core.config import Config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.protocol.programs import CallProgram


def sleepy(seconds):
    time.sleep(seconds)
    return seconds


def test_a_cancel_that_lands_while_the_loop_reads_the_cancel_file_is_acted_on(monkeypatch):
    reading, clicked, armed = threading.Event(), threading.Event(), threading.Event()
    original = JobFiles.cancel_reason

    def cancel_reason(self):
        value = original(self)  # nothing written yet: None
        if armed.is_set() and not reading.is_set():
            reading.set()  # the driver's thread is inside the read ...
            clicked.wait(10)  # ... when the click lands
        return value

    monkeypatch.setattr(JobFiles, "cancel_reason", cancel_reason)
    config = Config(local_concurrency=2)
    handle = Launcher(config).submit(build_spec(config, mode="map", workers=2), CallProgram(sleepy), [30.0] * 4)
    wait_for(lambda: handle._driver.state == "running", timeout=30)
    armed.set()
    assert reading.wait(10), "the driver's loop did not read the cancel file"
    handle.cancel()  # what the widget's Cancel button does
    clicked.set()
    started = time.monotonic()
    try:
        result = handle.wait(timeout=15)
    except TimeoutError:
        handle._driver.files.request_cancel("test cleanup")  # the lost click: end the job some other way
        handle.wait(30)
        pytest.fail("the Cancel request was lost: the job went on running after it")
    assert result.state == "cancelled" and result.message == "cancelled by user"
    assert time.monotonic() - started < 10
    record = latest_record()
    assert record["state"] == "cancelled"
    wait_for(lambda: not any(pid_alive(p) for p in worker_pids(record)), timeout=15)

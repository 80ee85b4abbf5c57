"""The local backend ends a finished worker's process group only while it is that job's (issue 12 item 10):
a group number whose members are gone may be reused by another job's worker."""

from __future__ import annotations

import subprocess
import sys

from starburst_jupyter.backends.local import _group_is_ours


def start(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv], start_new_session=True)


def test_a_group_led_by_another_jobs_worker_is_not_ours():
    other = start("-m", "starburst_jupyter.worker", "--job", "bj-other")
    leftover = start()  # what a task of ours left behind: no worker argv
    try:
        assert not _group_is_ours(other.pid, "bj-mine")
        assert _group_is_ours(other.pid, "bj-other")
        assert _group_is_ours(leftover.pid, "bj-mine")
    finally:
        for proc in (other, leftover):
            proc.kill()
            proc.wait()
    assert not _group_is_ours(leftover.pid, "bj-mine")  # nobody left in it: nothing to end

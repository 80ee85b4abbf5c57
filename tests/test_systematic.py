"""Systematic errors are found before launch, or after the first few items, not item by item (issue 16 item 6), and
a failure report groups items that failed the same way (item 7)."""

from __future__ import annotations

import pytest

from starburst_jupyter.core.decisions import SYSTEMATIC_FAILURES, systematic_failure
from starburst_jupyter.core.job import JobResult
from starburst_jupyter.errors import BurstCaptureError, BurstError, RemoteTraceback
from tests.test_magics import job_records, ok, refused, run

NAME_ERROR = "NameError: name 'f' is not defined"


# ----- the rule (pure) ------------------------------------------------------------------------------
def test_the_first_items_all_failing_the_same_way_stop_the_job():
    why = systematic_failure([NAME_ERROR] * SYSTEMATIC_FAILURES, 0, 100, keep_going=False)
    assert why and NAME_ERROR in why and "--on-error keep" in why


@pytest.mark.parametrize(
    "errors, succeeded, total, keep_going",
    [
        ([NAME_ERROR] * SYSTEMATIC_FAILURES, 0, 100, True),  # the user asked to keep going
        ([NAME_ERROR] * SYSTEMATIC_FAILURES, 1, 100, False),  # an item succeeded: the job works
        ([NAME_ERROR] * (SYSTEMATIC_FAILURES - 1), 0, 100, False),  # too few to tell
        ([NAME_ERROR] * 4 + ["KeyError: 3"], 0, 100, False),  # different errors: item-specific
        ([NAME_ERROR] * SYSTEMATIC_FAILURES, 0, SYSTEMATIC_FAILURES, False),  # nothing left to spare
    ],
)
def test_no_early_stop(errors, succeeded, total, keep_going):
    assert systematic_failure(errors, succeeded, total, keep_going) is None


# ----- before launch --------------------------------------------------------------------------------
def test_a_name_defined_nowhere_is_refused_before_launch(ip, starburst_home):
    ip.user_ns["items"] = list(range(300))
    refused(
        ip,
        starburst_home,
        "%%burst --map x in items\nprocess(x)\n",
        BurstCaptureError,
        "'process', defined nowhere",
        "nothing was launched",
    )
    assert job_records(starburst_home) == []


def test_names_from_the_notebook_the_cell_itself_builtins_and_star_imports_are_fine(ip, starburst_home):
    ip.user_ns["items"] = [1, 2]
    ip.user_ns["offset"] = 10
    cell = "%%burst --map x in items --out a\ndef g(v):\n    return helper(v)\n"
    cell += "def helper(v):\n    return v + offset\ng(x)\n"  # helper: defined by the cell, after g reads it
    ok(ip, cell)
    assert ip.user_ns["a"] == [11, 12]
    ok(ip, "%%burst --map x in items --out b\nfrom math import *\nfloor(x + pi)\n")  # cannot tell: not refused
    assert ip.user_ns["b"] == [4, 5]


# ----- after the first items ----------------------------------------------------------------------
def test_the_first_items_failing_alike_stop_the_job_early(ip, starburst_home):
    ip.user_ns["items"] = list(range(60))
    outcome = run(ip, "%%burst --map x in items --workers 2\nimport time\ntime.sleep(0.05)\nimport no_such_module_x\n")
    assert isinstance(outcome.error, BurstError)
    message = str(outcome.error)
    assert "the first 5 items to finish all failed with the same error" in message
    assert "ModuleNotFoundError: No module named 'no_such_module_x'" in message
    assert message.count("Traceback (most recent call last)") == 1, "identical failures are one group"
    [record] = job_records(starburst_home)
    assert record["state"] == "failed"
    assert record["done"] == 0 and record["failed"] == 60
    ran = sum(1 for v in ip.user_ns["burst_results"] if "Not run" not in str(v))
    assert ran < 30, f"{ran} of 60 items ran: the job did not stop early"


def test_on_error_keep_runs_every_item_whatever_fails(ip, starburst_home):
    ip.user_ns["items"] = list(range(12))
    ok(ip, "%%burst --map x in items --workers 2 --on-error keep\nimport no_such_module_x\n")
    results = ip.user_ns["burst_results"]
    assert all(isinstance(v, ModuleNotFoundError) for v in results), results


# ----- the report ------------------------------------------------------------------------------------
def _failed(index: int, line: str) -> BaseException:
    exc = NameError(line)
    exc.__cause__ = RemoteTraceback(f"Traceback (most recent call last):\n  Cell In[3], line 1\nNameError: {line}\n")
    return exc


def test_the_report_groups_items_that_failed_the_same_way_and_names_them_as_ranges():
    failures = [(i, _failed(i, "name 'f' is not defined")) for i in (0, 1, 2, 3, 7, 9)]
    failures.append((5, _failed(5, "name 'g' is not defined")))
    result = JobResult("bj-x", "failed", [None] * 10, failures, {}, 1.0, 0.0)
    report = result.failure_report()
    assert "7 of 10 items failed" in report
    assert "--- 6 items: 0-3, 7, 9 ---" in report
    assert "--- item 5 ---" in report
    assert report.count("Traceback") == 2


def test_fewer_workers_at_a_time_than_asked_for_is_said_before_launch(ip, starburst_home):
    (starburst_home / "config.toml").write_text("local_concurrency = 2\n")
    ip.user_ns["items"] = list(range(8))
    outcome = ok(ip, "%%burst --map x in items --workers 4 --out w\nx\n")
    assert "note: --workers 4: this machine runs 2 at a time" in outcome.out
    assert "shown as 2 waves" in outcome.out
    assert ip.user_ns["w"] == list(range(8))
    outcome = ok(ip, "%%burst --map x in items --workers 2 --out w\nx\n")
    assert "note:" not in outcome.out


def test_a_batch_of_successes_counts_as_success_for_the_early_stop(starburst_home):
    """Successes of a flushed batch of more than 16 items come as one TasksFinished (a big first batch: an
    attached job's, a worker's first flush of quick items): failures after them are not systematic."""
    from starburst_jupyter.core import events as ev
    from starburst_jupyter.core.config import Config
    from starburst_jupyter.core.launcher import Launcher
    from starburst_jupyter.core.spec import build_spec
    from starburst_jupyter.protocol.programs import CallProgram

    config = Config(local_concurrency=1)
    handle = Launcher(config).submit(build_spec(config, mode="map"), CallProgram(abs), list(range(100)), start=False)
    driver, job = handle._driver, handle.id
    handle.events.publish(ev.TasksFinished(job, worker=0, indices=tuple(range(20)), duration=0.1))
    for index in range(20, 20 + SYSTEMATIC_FAILURES):
        handle.events.publish(ev.TaskFailed(job, index=index, worker=0, error=NAME_ERROR, traceback=""))
    driver._check_systematic()
    assert driver.cancel_reason is None

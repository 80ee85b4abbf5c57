"""The sidebar's rows carry the job's pace: items per second and, while it runs, the time left."""

from __future__ import annotations

import time

import pytest

from starburst_jupyter.server import views


def _record(state: str, done: int, failed: int, started_ago: float, now: float) -> dict:
    return {
        "id": "bj-pace-000001",
        "backend": "local",
        "state": state,
        "created": now - started_ago,
        "started": now - started_ago,
        "updated": now,
        "finished": now if state == "done" else None,
        "total": 10,
        "done": done,
        "failed": failed,
        "outcomes": "D" * done + "F" * failed + "P" * (10 - done - failed),
    }


def test_a_running_job_shows_its_rate_and_time_left():
    now = time.time()
    row = views.summary(_record("running", 4, 1, 10.0, now), now)
    assert row["rate"] == pytest.approx(0.5)  # 5 finished in 10 s
    assert row["left"] == pytest.approx(10.0)  # 5 to go at 0.5/s


def test_an_ended_job_has_a_rate_and_no_time_left():
    now = time.time()
    row = views.summary(_record("done", 10, 0, 20.0, now), now)
    assert row["rate"] == pytest.approx(0.5) and row["left"] is None


def test_nothing_finished_yet_means_no_rate_and_no_guess():
    now = time.time()
    row = views.summary(_record("running", 0, 0, 3.0, now), now)
    assert row["rate"] is None and row["left"] is None

"""The job record (core/record.py): one writer (strict JSON), one tolerant reader, and what faces ask of it."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from starburst_jupyter.core.record import (
    Cost,
    Failure,
    JobRecord,
    JobState,
    Outcome,
    Owner,
    RecordError,
    Waves,
    WorkerRecord,
    as_record,
    cost_is_estimate,
)
from starburst_jupyter.display.status import format_job, format_jobs
from starburst_jupyter.server import views
from starburst_jupyter.stores.records import JobIndex, JobStore


def _full(job_id: str = "bj-rec-0001", **changes) -> JobRecord:
    record = JobRecord(
        id=job_id,
        backend="local",
        state=JobState.RUNNING,
        created=1000.0,
        name="squares",
        message="running",
        started=1001.0,
        updated=1002.0,
        spec={"mode": "map", "backend": "local", "timeout": 60.0, "max_cost": None},
        total=5,
        done=2,
        failed=1,
        outcomes="DDFRP",
        failures=[Failure(2, "ValueError: bad")],
        busy_seconds=3.5,
        waves=Waves(count=2, started=1, finished=0, concurrency=2, workers=3),
        workers={0: WorkerRecord(wave=1, pid=4242, started=1001.5, info={"cmdline": "x"}), 1: WorkerRecord(wave=1)},
        cost=Cost(accrued=0.01, projected=0.02, cap=1.0, label="estimate"),
        store={"url": "file:///tmp/x", "prefix": "jobs/x/"},
        owner=Owner(123, "host"),
    )
    return dataclasses.replace(record, **changes)


def test_a_record_round_trips_through_strict_json():
    record = _full(api_calls={"ecs.RunTask": 2}, polls=7, extra={"future_field": [1, 2]})
    text = record.dumps()
    back = JobRecord.from_json(text.encode())
    assert back == record and back.damaged is None
    assert json.loads(text)["workers"]["0"] == {
        "cmdline": "x",
        "wave": 1,
        "pid": 4242,
        "started": 1001.5,
        "ended": None,
        "exit_code": None,
        "reason": None,
    }
    assert as_record(record.to_json()) == record and as_record(record) is record
    assert back.outcome_counts()[Outcome.RUNNING] == 1 and back.is_active and not back.is_terminal


def test_missing_optional_fields_take_defaults_without_damage():
    record = JobRecord.from_json({"id": "bj-min", "state": "done", "created": 5, "backend": "local"})
    assert record.damaged is None and record.is_terminal
    assert record.total == 0 and record.workers == {} and record.cost.accrued == 0.0 and record.waves.count == 1


def test_older_records_counted_cancelled_items_among_the_failed():
    record = JobRecord.from_json(
        {"id": "bj-old", "state": "cancelled", "created": 1, "backend": "local", "failed": 3, "outcomes": "DFCC"}
    )
    assert (record.failed, record.cancelled, record.damaged) == (1, 2, None)


@pytest.mark.parametrize(
    "content, why",
    [
        (json.dumps({"id": "bj-bad", "state": "done", "created": None, "backend": "local"}), "created is null"),
        (json.dumps({"id": "bj-bad", "state": "done", "created": "yesterday", "backend": "local"}), "created is"),
        (json.dumps({"id": "bj-bad", "created": 3.0, "backend": "local"}), "state is missing"),
        (b'{"id": "bj-bad", "name": "\xff\xfe"}', "not UTF-8"),
        (json.dumps([1, 2, 3]), "a list"),
        ("{half a rec", "not JSON"),
        ('{"id": "bj-bad", "state": "running", "created": 1, "backend": "local", "cost": {"cap": NaN}}', "cost.cap"),
        (json.dumps({"id": "bj-bad", "state": "sleeping", "created": 1, "backend": "local"}), "not a state"),
        (json.dumps({"id": "bj-bad", "state": "done", "created": 1, "backend": "local", "workers": [1]}), "workers"),
    ],
)
def test_a_damaged_record_lists_as_damaged_and_the_others_still_list(starburst_home, content, why):
    store = JobStore(starburst_home)
    store.write(_full("bj-good-0001"))
    store.write(_full("bj-good-0002", created=2000.0, state=JobState.DONE))
    folder = store.jobs_dir / "bj-bad"
    folder.mkdir()
    (folder / "record.json").write_bytes(content if isinstance(content, bytes) else content.encode())

    bad = JobRecord.from_json((folder / "record.json").read_bytes(), "bj-bad")
    assert bad.damaged and why in bad.damaged and bad.id == "bj-bad"
    if "state" in why or "JSON" in why or "UTF-8" in why or "list" in why:
        assert bad.state is JobState.FAILED and bad.is_terminal  # never a phantom running job

    listed = {r.id: r for r in store.list_records()}
    assert set(listed) == {"bj-good-0001", "bj-good-0002", "bj-bad"} and listed["bj-bad"].damaged
    assert listed["bj-good-0001"].damaged is None
    assert {r["id"] for r in store.list()} == set(listed)
    index = JobIndex(store)
    assert {r["id"]: bool(r.get("damaged")) for r in index.records()} == {
        "bj-good-0001": False,
        "bj-good-0002": False,
        "bj-bad": True,
    }
    assert index.get_record("bj-bad").damaged == listed["bj-bad"].damaged
    assert store.read("bj-bad")["damaged"]
    json.dumps(index.records(), allow_nan=False)  # what the REST list sends: valid JSON

    rows = [views.summary(r) for r in views.order(index.records())]
    assert {r["id"] for r in rows} == set(listed)
    bad_row = next(r for r in rows if r["id"] == "bj-bad")
    assert why in bad_row["damaged"] and "damaged record" in bad_row["message"]
    json.dumps(views.detail(index.get("bj-bad")), allow_nan=False)
    assert "damaged" in format_jobs(store.list()) and "damaged record" in format_job(store.find("bj-bad"))


def test_nan_and_infinity_are_refused_with_the_field_named(starburst_home):
    store = JobStore(starburst_home)
    with pytest.raises(RecordError, match=r"cost\.cap is nan.*strict JSON"):
        store.write(_full(cost=Cost(cap=float("nan"))))
    with pytest.raises(RecordError, match=r"spec\.timeout is inf"):
        store.write(_full(spec={"timeout": float("inf")}))
    with pytest.raises(RecordError, match=r"busy_seconds"):
        store.write({**_full().to_json(), "busy_seconds": float("-inf")})
    assert not store.jobs_dir.exists() or not any(store.jobs_dir.iterdir())  # nothing half-written


@pytest.mark.parametrize("backend, estimate", [("local", True), ("docker", True), ("fargate", False)])
def test_whether_a_cost_is_an_estimate_is_decided_once_and_every_face_agrees(backend, estimate):
    record = _full(backend=backend)
    assert cost_is_estimate(backend) is estimate and record.cost_is_estimate is estimate
    assert record.to_json()["cost"]["estimate"] is estimate
    assert views.summary(record)["cost"]["estimate"] is estimate  # the sidebar
    assert views.summary(record.to_json())["cost"]["estimate"] is estimate
    assert format_jobs([record]).splitlines()[2].rstrip().endswith("*") is estimate  # %burst_status, CLI
    assert ("cost (estimate)" in format_job(record)) is estimate


def test_cancel_without_owner_marks_running_and_pending_items_cancelled():
    record = _full(
        outcomes="DFRPPC",
        total=6,
        cancelled=1,
        workers={0: WorkerRecord(pid=1, exit_code=0, reason="finished"), 1: WorkerRecord(pid=2)},
    )
    after = record.cancelled_without_owner("cancelled from a test", stopped=1, now=5000.0)
    assert after.state is JobState.CANCELLED and after.finished == 5000.0 and after.is_terminal
    assert after.outcomes == "DFCCCC" and after.cancelled == 4 and after.done == 2 and after.failed == 1
    assert after.workers[0].exit_code == 0 and after.workers[0].reason == "finished"
    assert after.workers[1].exit_code == -1 and after.workers[1].ended == 5000.0
    assert "launching kernel gone" in after.workers[1].reason and "1 workers stopped" in after.message
    assert record.outcomes == "DFRPPC"  # a new record; the old one is unchanged
    done = _full(state=JobState.DONE)
    assert done.cancelled_without_owner("x", 0, 1.0) is done


def test_launcher_cancel_of_a_job_whose_kernel_is_gone_rewrites_its_record(starburst_home):
    from starburst_jupyter.core.launcher import Launcher

    store = JobStore(starburst_home)
    store.write(
        _full(
            "bj-orphan-0001",
            outcomes="DRP",
            total=3,
            done=1,
            failed=0,
            owner=Owner(2**22 + 7, "gone-host"),
            updated=time.time() - 3600,
            workers={0: WorkerRecord(pid=2**22 + 9)},
        )
    )
    after = Launcher(home=starburst_home).cancel_job("bj-orphan", "stopped in a test")
    assert after["state"] == "cancelled" and after["outcomes"] == "DCC" and after["cancelled"] == 2
    stored = store.read_record("bj-orphan-0001")
    assert stored.state is JobState.CANCELLED and stored.workers[0].exit_code == -1 and stored.damaged is None


def test_owner_alive():
    now = time.time()
    assert _full(owner=Owner(1, "some-other-host"), updated=now).owner_alive(now)
    assert not _full(owner=Owner(1, "some-other-host"), updated=now - 120).owner_alive(now)
    import os
    import socket

    here = socket.gethostname()
    assert _full(owner=Owner(os.getpid(), here), updated=now).owner_alive(now)
    assert not _full(owner=Owner(2**22 + 11, here), updated=now).owner_alive(now)
    assert not _full(owner=Owner(None, here), updated=now).owner_alive(now)


def test_views_worker_rows_keys_are_worker_numbers():
    rows = views.worker_rows(_full())
    assert set(rows) == {"0", "1"} and rows["0"]["pid"] == 4242 and rows["0"]["cmdline"] == "x"

"""JobIndex: the server's cached view of the job store re-reads only the records that changed."""

from __future__ import annotations

import time

from starburst_jupyter.stores.records import JobIndex, JobStore


def _record(job_id: str, created: float, state: str = "done", done: int = 1) -> dict:
    return {"id": job_id, "state": state, "created": created, "backend": "local", "done": done}


def test_hundreds_of_jobs_are_parsed_once_then_only_what_changed(starburst_home):
    store = JobStore(starburst_home)
    t0 = time.time()
    for n in range(300):
        store.write(_record(f"bj-many-{n:04d}", t0 + n))
    index = JobIndex(store)
    records = index.records()
    assert len(records) == 300 and index.reads == 300
    assert [r["id"] for r in records[:2]] == ["bj-many-0299", "bj-many-0298"]  # newest first
    version = index.version()

    assert len(index.records()) == 300 and index.reads == 300  # nothing changed: nothing parsed
    assert index.version() == version

    store.write(_record("bj-many-0007", t0 + 7, state="running", done=2))
    records = index.records()
    assert index.reads == 301 and index.version() != version
    assert next(r for r in records if r["id"] == "bj-many-0007")["done"] == 2
    assert index.get("bj-many-0007")["state"] == "running" and index.reads == 301


def test_vanished_and_broken_records(starburst_home):
    store = JobStore(starburst_home)
    store.write(_record("bj-a", 1.0))
    store.write(_record("bj-b", 2.0))
    index = JobIndex(store)
    assert {r["id"] for r in index.records()} == {"bj-a", "bj-b"}
    (store.job_dir("bj-b") / "record.json").unlink()
    (store.job_dir("bj-c")).mkdir()
    (store.job_dir("bj-c") / "record.json").write_text("{half a rec")
    records = index.records()  # a broken record lists as damaged (issue 12 item 7), a vanished one not at all
    assert [(r["id"], bool(r.get("damaged"))) for r in records] == [("bj-a", False), ("bj-c", True)]
    assert "not JSON" in records[1]["damaged"] and records[1]["state"] == "failed"
    try:
        index.get("bj-b")
    except KeyError as exc:
        assert "bj-b" in str(exc)
    else:
        raise AssertionError("a vanished job was still found")

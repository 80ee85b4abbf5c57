"""The REST list and detail survive damaged records (issue 12 item 7): each shows as damaged, the rest list."""

from __future__ import annotations

import json
import time

import pytest

from starburst_jupyter.stores.records import JobStore

pytestmark = pytest.mark.timeout(240)

JOBS = "/starburst/api/jobs"
DONE = {"state": "done", "backend": "local"}
DAMAGED = {
    "bj-dmg-created-null": json.dumps({"id": "bj-dmg-created-null", **DONE, "created": None}).encode(),
    "bj-dmg-created-text": json.dumps({"id": "bj-dmg-created-text", **DONE, "created": "x"}).encode(),
    "bj-dmg-no-state": json.dumps({"id": "bj-dmg-no-state", "backend": "local", "created": 5.0}).encode(),
    "bj-dmg-not-utf8": b'{"id": "bj-dmg-not-utf8", "name": "\xff"}',
    "bj-dmg-array": b"[1, 2]",
    "bj-dmg-nan": b'{"id": "bj-dmg-nan", "state": "running", "backend": "local", "created": 1, '
    b'"cost": {"accrued": NaN}}',
}


def test_damaged_records_list_as_damaged_and_the_others_still_list(server):
    store = JobStore(server.home)
    store.write({"id": "bj-dmg-good-01", "state": "done", "backend": "docker", "created": time.time(), "total": 2})
    for job_id, content in DAMAGED.items():
        (store.jobs_dir / job_id).mkdir(parents=True)
        (store.jobs_dir / job_id / "record.json").write_bytes(content)

    code, body, _ = server.api("GET", f"{JOBS}?limit=100")
    assert code == 200, (body, server.log_tail())
    rows = {job["id"]: job for job in body["jobs"]}
    assert set(DAMAGED) | {"bj-dmg-good-01"} <= set(rows)
    assert rows["bj-dmg-good-01"]["damaged"] is None and rows["bj-dmg-good-01"]["cost"]["estimate"] is True
    for job_id in DAMAGED:
        assert rows[job_id]["damaged"] and "damaged record" in rows[job_id]["message"], rows[job_id]
        code, detail, _ = server.api("GET", f"{JOBS}/{job_id}")
        assert code == 200 and detail["job"]["damaged"], detail
    assert rows["bj-dmg-no-state"]["state"] == "failed" and not rows["bj-dmg-no-state"]["active"]
    assert rows["bj-dmg-nan"]["state"] == "running" and rows["bj-dmg-nan"]["cost"]["accrued"] == 0.0

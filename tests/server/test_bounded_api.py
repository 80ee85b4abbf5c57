"""Issue 22 item 6 through a real server: a record whose outcome_runs count 20 digits (or four billion), whose
times are extreme, or whose rate is infinite lists as damaged or with nulls, beside the good jobs; every body
the API sends is strict JSON (no `Infinity`, which the sidebar's JSON.parse refuses)."""

from __future__ import annotations

import json
import math
import time

import pytest

from starburst_jupyter.core.record import JobRecord
from starburst_jupyter.stores.records import JobStore

pytestmark = pytest.mark.timeout(240)

JOBS = "/starburst/api/jobs"
NOW = time.time()
GOOD = {"state": "done", "backend": "local", "created": NOW - 60, "total": 4, "done": 4, "outcomes": "DDDD"}
PLANTED = {
    "bj-bnd-runs20": {**GOOD, "outcomes": "", "outcome_runs": "99999999999999999999D"},
    "bj-bnd-runs4g": {**GOOD, "outcomes": "", "outcome_runs": "4000000000D", "total": 4_000_000_000},
    "bj-bnd-times": {**GOOD, "created": -1.7e308, "started": -1.7e308, "finished": 1.7e308},
    "bj-bnd-rate": {**GOOD, "created": 0.0, "started": 0.0, "finished": 5e-324},  # 4 items in 5e-324 s
}


def _finite_only(value, path="body"):
    """Every number in a parsed body is finite (json.loads takes Infinity; the browser's JSON.parse does not)."""
    if isinstance(value, float):
        assert math.isfinite(value), f"{path} is {value}"
    elif isinstance(value, dict):
        for key, item in value.items():
            _finite_only(item, f"{path}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _finite_only(item, f"{path}[{n}]")


def test_damaged_and_extreme_records_list_beside_the_good_ones_in_strict_json(server):
    store = JobStore(server.home)
    store.write(JobRecord.from_json({"id": "bj-bnd-good", **GOOD}))
    for job_id, data in PLANTED.items():
        (store.jobs_dir / job_id).mkdir(parents=True)
        (store.jobs_dir / job_id / "record.json").write_text(json.dumps({"id": job_id, **data}))

    code, body, _ = server.api("GET", f"{JOBS}?limit=100")
    assert code == 200, (body, server.log_tail())
    _finite_only(body)
    rows = {job["id"]: job for job in body["jobs"]}
    assert set(PLANTED) | {"bj-bnd-good"} <= set(rows)
    assert rows["bj-bnd-good"]["damaged"] is None and rows["bj-bnd-good"]["done"] == 4
    for job_id in ("bj-bnd-runs20", "bj-bnd-runs4g", "bj-bnd-times"):
        assert rows[job_id]["damaged"] and "damaged record" in rows[job_id]["message"], rows[job_id]
    assert rows["bj-bnd-rate"]["rate"] is None, rows["bj-bnd-rate"]
    for job_id in PLANTED:
        code, detail, _ = server.api("GET", f"{JOBS}/{job_id}")
        assert code == 200, (detail, server.log_tail())
        _finite_only(detail)

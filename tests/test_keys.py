"""The object-store key layout (protocol.keys), spec.json (protocol.workerspec) and exit meanings
(protocol.exits): fast, no store, no process."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from starburst_jupyter.protocol import exits, keys
from starburst_jupyter.protocol.workerspec import PlanShare, Timing, WorkerSpec

PACKAGE = Path(__file__).resolve().parent.parent / "starburst_jupyter"


# ----- keys ----------------------------------------------------------------------------------------
def test_a_job_lives_under_jobs_and_its_objects_under_its_prefix():
    prefix = keys.job_prefix("j1")
    assert prefix == "jobs/j1/" and prefix.startswith(keys.JOBS)
    made = [
        keys.spec_key(prefix),
        keys.program_key(prefix),
        keys.task_key(prefix, 3),
        keys.claim_key(prefix, 3),
        keys.result_key(prefix, 3, 0, 1_700_000_000_000),
        keys.heartbeat_key(prefix, 2),
        keys.log_key(prefix, 2),
        keys.cancel_key(prefix),
        keys.closed_key(prefix),
    ]
    assert all(k.startswith(prefix) for k in made) and len(set(made)) == len(made)
    # the layout workers and older launchers already use (a store written before must still be read)
    assert keys.task_key(prefix, 3) == "jobs/j1/tasks/000003.pkl"
    assert keys.claim_key(prefix, 3) == "jobs/j1/claims/000003"
    assert keys.result_key(prefix, 3, 1, 5) == "jobs/j1/results/0000000000005-000003-0001.pkl"
    assert keys.log_key(prefix, 2) == "jobs/j1/logs/worker-0002.log"
    assert keys.heartbeat_key(prefix, 2) == "jobs/j1/heartbeat/worker-0002"


@pytest.mark.parametrize("block", [0, 7, 123456])
def test_block_keys_round_trip_and_list_in_block_order(block):
    prefix = keys.job_prefix("j")
    assert keys.task_block(keys.task_key(prefix, block)) == block
    assert keys.claim_block(keys.claim_key(prefix, block)) == block
    assert keys.task_key(prefix, block).startswith(keys.tasks_prefix(prefix))
    assert keys.claim_key(prefix, block).startswith(keys.claims_prefix(prefix))
    blocks = [0, 1, 9, 10, 99, 100, block]
    assert sorted(keys.task_key(prefix, b) for b in blocks) == [keys.task_key(prefix, b) for b in sorted(blocks)]


def test_result_keys_carry_their_time_and_sort_by_it():
    prefix = keys.job_prefix("j")
    stamps = [1_700_000_000_999, 1_700_000_001_000, 999, 1_700_000_000_000]
    made = {keys.result_key(prefix, block, 0, ms): ms for block, ms in zip((5, 0, 3, 12), stamps)}
    assert [made[k] for k in sorted(made)] == sorted(stamps)
    for key, ms in made.items():
        assert keys.result_time(key) == ms / 1000
    assert keys.result_block(keys.result_key(prefix, 42, 7, 1)) == (42, 7)


def test_results_after_starts_a_listing_at_a_time_whatever_the_block():
    prefix = keys.job_prefix("j")
    old = keys.result_key(prefix, 999999, 9999, 1_000)
    same_ms = keys.result_key(prefix, 0, 0, 2_000)
    new = keys.result_key(prefix, 0, 0, 2_001)
    start = keys.results_after(prefix, 2.0)
    assert old <= start < same_ms < new  # a StartAfter listing from `start` holds same_ms and new, not old


def test_payload_folders_leave_spec_program_and_logs_alone():
    prefix = keys.job_prefix("j")
    dropped = keys.payload_prefixes(prefix)
    assert keys.task_key(prefix, 0).startswith(dropped) and keys.result_key(prefix, 0, 0, 1).startswith(dropped)
    for kept in (keys.spec_key(prefix), keys.log_key(prefix, 0), keys.cancel_key(prefix)):
        assert not kept.startswith(dropped)


def test_object_kind_groups_a_jobs_many_objects_by_folder():
    prefix = "team/" + keys.job_prefix("j")  # an S3 store's own prefix comes first
    assert keys.object_kind(keys.result_key(prefix, 1, 0, 5)) == "results"
    assert keys.object_kind(keys.claim_key(prefix, 1)) == "claims"
    assert keys.object_kind(keys.task_key(prefix, 1)) == "tasks"
    assert keys.object_kind(keys.cancel_key(prefix)) == "cancel"


def test_warm_pool_keys():
    pool = keys.warm_pool("abc123", spot=True)
    assert pool == "warm/abc123-spot/" and keys.warm_pool("abc123", spot=False) == "warm/abc123/"
    entry = keys.warm_entry(pool, "job-1", 3)
    assign = keys.warm_assignment(entry)
    assert entry.startswith(pool) and assign.startswith(pool) and entry != assign
    assert keys.is_warm_entry(entry) and not keys.is_warm_entry(assign)
    assert keys.warm_names("job-1", 3) == {keys.leaf(entry), keys.leaf(assign)}
    assert keys.warm_names("job-1", 3).isdisjoint(keys.warm_names("job-1", 4))
    assert set(keys.TOP_PREFIXES) == {keys.JOBS, keys.WARM} and pool.startswith(keys.WARM)


# Fragments of the layout that only protocol/keys.py may spell. A string (or f-string part) holding one
# of them elsewhere in the package is a key built by hand: build it with protocol.keys instead. (Prose such
# as "the job's spec.json" in a message is fine: a key's part starts the string or follows a slash.)
_KEY_LITERAL = re.compile(
    r"(?:^|[^\w])(?:jobs|warm|tasks|claims|results|heartbeat|logs)/|\.pkl\b|\.assign\b|(?:^|/)spec\.json"
)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_no_module_but_protocol_keys_builds_a_key():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "protocol" / "keys.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if _KEY_LITERAL.search(node.value):
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}")
    assert not offenders, "object-store keys built outside protocol/keys.py:\n" + "\n".join(offenders)


# ----- spec.json -----------------------------------------------------------------------------------
def _spec(**changes) -> WorkerSpec:
    fields = dict(job_id="j1", deadline=1_700_000_060.5, max_result_bytes=1 << 20)
    return WorkerSpec(**{**fields, **changes})


def test_worker_spec_round_trips_through_json():
    spec = _spec(
        timing=Timing(2.0, 1.0, 10.0),
        plan=PlanShare(4, 25),
        open=True,
        idle_seconds=30.0,
        warm_pool="warm/x/",
        keep_warm_seconds=300.0,
        job={"mode": "map", "backend": "fargate", "cpu_units": 1024, "extra": {}},
    )
    assert WorkerSpec.decode(spec.encode()) == spec
    assert WorkerSpec.from_json(spec.to_json()) == spec


def test_worker_spec_json_keeps_the_flat_names_written_before():
    data = _spec(timing=Timing(2.0, 1.0, 10.0), plan=PlanShare(4, 25), job={"mode": "map"}).to_json()
    assert data["flush_seconds"] == 2.0 and data["control_poll_seconds"] == 1.0 and data["heartbeat_seconds"] == 10.0
    assert data["plan"] == {"workers": 4, "budget": 25} and data["mode"] == "map" and data["job_id"] == "j1"
    assert {"deadline", "max_result_bytes", "open", "idle_seconds", "warm_pool", "keep_warm_seconds"} <= set(data)


def test_worker_spec_tolerates_unknown_keys_and_refuses_missing_required_ones():
    spec = WorkerSpec.from_json({"job_id": "j", "deadline": 5, "max_result_bytes": 10, "from_the_future": [1]})
    assert spec.job == {"from_the_future": [1]} and spec.timing == Timing() and spec.plan == PlanShare()
    with pytest.raises(ValueError, match="deadline, max_result_bytes"):
        WorkerSpec.from_json({"job_id": "j"})


def test_a_job_option_named_like_a_worker_field_does_not_shadow_it():
    spec = _spec(max_result_bytes=5, job={"max_result_bytes": 99, "mode": "map"})
    assert spec.job == {"mode": "map"} and spec.to_json()["max_result_bytes"] == 5


def test_budgets_come_from_the_plan():
    plan = PlanShare(workers=3, budget=10)
    assert [plan.budget_for(i) for i in range(5)] == [10, 10, 0, 0, 0]  # the last planned and extras: no limit
    assert PlanShare().budget_for(0) == 0


# ----- exit codes ----------------------------------------------------------------------------------
def test_the_workers_own_codes_stay_out_of_the_range_user_code_uses():
    own = (exits.EXIT_CANCELLED, exits.EXIT_DEADLINE, exits.EXIT_NO_PROGRAM)
    assert exits.EXIT_OK == 0 and all(90 < code < 100 for code in own) and len(set(own)) == len(own)


def test_describe_names_only_the_workers_own_codes():
    assert exits.describe(None) == "still running"
    assert exits.describe(0) == "finished"
    assert exits.describe(exits.EXIT_CANCELLED) == "stopped: job cancelled"
    assert exits.describe(exits.EXIT_DEADLINE) == "stopped: job deadline passed"
    assert "program" in exits.describe(exits.EXIT_NO_PROGRAM)
    assert exits.describe(-9) == "killed by SIGKILL"
    for code in (1, 3, 4, 5, 7, 255):  # what user code (or the old worker) may exit with: no claimed meaning
        assert exits.describe(code) == f"exited with code {code}"
    assert exits.describe(137).startswith("exited with code 137 (128 + SIGKILL")

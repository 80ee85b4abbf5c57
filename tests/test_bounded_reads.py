"""Issue 22 item 6: every field read from a job record, a detached driver's journal or driver.json is bounded and
validated. A damaged one shows as damaged, or is refused in one line naming the job and the file; never a
traceback, never gigabytes of memory, and the other jobs (and a finished job's values) are not lost."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

import starburst_jupyter as sj
from starburst_jupyter import commands
from starburst_jupyter.core import events as ev
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.journal import replay
from starburst_jupyter.core.options import check_minutes, check_wait_seconds
from starburst_jupyter.core.record import MAX_ITEMS, JobRecord, JobState, Owner
from starburst_jupyter.core.spec import build_spec, spec_from_record
from starburst_jupyter.errors import BurstError, BurstValidationError, DamagedJobFile
from starburst_jupyter.protocol import keys
from starburst_jupyter.protocol.jobfiles import MAX_DRIVER_CONFIG_BYTES, JobFiles
from starburst_jupyter.server import views
from starburst_jupyter.stores.objects import LocalFolderStore, ObjectTooLarge
from starburst_jupyter.stores.records import JobStore
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[1]
NOW = time.time()
SPEC = build_spec(Config(), mode="map").to_json()


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "STARBURST_HOME": str(home)}


def starburst(home: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`starburst ARGS` as a terminal runs it."""
    code = "import sys; from starburst_jupyter.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env(home), timeout=timeout
    )


def _good(job_id: str, **changes) -> dict:
    record = JobRecord(
        id=job_id,
        backend="local",
        state=JobState.DONE,
        created=NOW - 60,
        started=NOW - 59,
        finished=NOW - 50,
        updated=NOW - 50,
        spec=SPEC,
        total=4,
        done=4,
        outcomes="DDDD",
    ).to_json()
    return {**record, **changes}


def _plant(home: Path, job_id: str, data: dict | bytes) -> None:
    """A record.json as a damaged disk, an older version or a stranger with write access left it."""
    folder = JobStore(home).job_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "record.json").write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# ----- records ---------------------------------------------------------------------------------------------
BAD_RECORDS = {
    # what was planted -> a word the damage names
    "bj-20261201-000000-runs20": ({"outcomes": "", "outcome_runs": "99999999999999999999D"}, "outcome_runs"),
    "bj-20261201-000000-runs4g": ({"outcomes": "", "outcome_runs": "4000000000D", "total": 4_000_000_000}, "total"),
    "bj-20261201-000000-runsbad": ({"outcomes": "", "outcome_runs": "4000000000D"}, "outcome_runs"),
    "bj-20261201-000000-total": ({"outcomes": "", "total": 1e11}, "total"),
    "bj-20261201-000000-times": ({"created": -1.7e308, "finished": 1.7e308}, "created"),
    "bj-20261201-000000-pid": ({"owner": {"pid": 10**40, "host": "h"}}, "owner.pid"),
    "bj-20261201-000000-worker": ({"workers": {"²": {"wave": 1}, "9" * 5000: {}}}, "workers"),
    "bj-20261201-000000-spec": ({"spec": {**SPEC, "timeout": "soon", "workers": "many"}}, "spec.timeout"),
}


@pytest.mark.parametrize("job_id", sorted(BAD_RECORDS))
def test_a_damaged_field_makes_a_damaged_record_without_raising_or_allocating(job_id):
    changes, word = BAD_RECORDS[job_id]
    raw = json.dumps(_good(job_id, **changes)).encode()
    tracemalloc.start()
    try:
        record = JobRecord.from_json(raw, job_id)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert record.damaged and word in record.damaged, record.damaged
    assert peak < 5 << 20, f"reading a {len(raw)}-byte record took {peak:,} bytes"
    assert 0 <= record.total <= MAX_ITEMS and len(record.outcomes) <= MAX_ITEMS
    json.loads(record.dumps(), parse_constant=_refuse)  # what it writes back is strict JSON
    assert views.strict_json(views.detail(record))  # and every face can show it


def _refuse(constant: str) -> float:
    raise AssertionError(f"{constant} in JSON")


def test_a_big_jobs_runs_still_read_exactly():
    record = JobRecord.from_json(_good("bj-big", outcomes="", outcome_runs="999990D10R", total=1_000_000, done=999_990))
    assert record.damaged is None and record.outcomes == "D" * 999_990 + "R" * 10


def test_status_lists_the_good_jobs_and_each_damaged_record_as_damaged(starburst_home):
    JobStore().write(JobRecord.from_json(_good("bj-20261201-000000-good01")))
    for job_id, (changes, _) in BAD_RECORDS.items():
        _plant(starburst_home, job_id, _good(job_id, **changes))
    listed = starburst(starburst_home, "status")
    assert listed.returncode == 0 and not listed.stderr, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if line.startswith("bj-")}
    assert "(damaged record)" not in rows["bj-20261201-000000-good01"]
    for job_id in BAD_RECORDS:
        assert "(damaged record)" in rows[job_id], listed.stdout
    detail = starburst(starburst_home, "status", "bj-20261201-000000-runs20")
    assert detail.returncode == 0 and "outcome_runs is not a list of counts" in detail.stdout, detail


def test_collect_partial_of_a_record_claiming_1e11_items_is_one_line(starburst_home):
    job_id = "bj-20261201-000000-total"
    _plant(starburst_home, job_id, _good(job_id, outcomes="", total=1e11, state="running"))
    done = starburst(starburst_home, "collect", job_id, "--partial")
    line = _one_line(done)
    assert done.returncode == 2 and job_id in line and "damaged record" in line and "total" in line, line


def test_a_record_file_above_the_limit_is_damaged_and_not_read(starburst_home, monkeypatch):
    from starburst_jupyter.stores import records

    monkeypatch.setattr(records, "MAX_RECORD_BYTES", 1000)
    _plant(starburst_home, "bj-huge", _good("bj-huge", message="x" * 2000))
    record = JobStore().read_record("bj-huge")
    assert record.damaged and "above the 1,000" in record.damaged and "record.json" in record.damaged


def test_a_store_object_above_its_readers_limit_is_refused_before_it_is_read(tmp_path):
    store = LocalFolderStore(tmp_path)
    store.put("jobs/j/record.json", [b"x" * 5000])
    with pytest.raises(ObjectTooLarge, match=r"jobs/j/record.json is 5,000 bytes, above the 100"):
        store.get("jobs/j/record.json", limit=100)
    assert len(store.get("jobs/j/record.json", limit=5000)) == 5000


# ----- what the server sends ---------------------------------------------------------------------------------
def test_the_server_never_sends_a_number_json_cannot_hold():
    # within every bound a record takes, yet a rate of 3 items over 5e-324 s is infinite
    record = JobRecord.from_json(_good("bj-rate", started=0.0, finished=5e-324, created=0.0, total=3, done=3))
    assert record.damaged is None
    text = views.strict_json({"jobs": [views.summary(record)], "job": views.detail(record), "x": (math.nan,)})
    body = json.loads(text, parse_constant=_refuse)
    assert body["jobs"][0]["rate"] is None and body["x"] == [None]


# ----- the journal and driver.json ---------------------------------------------------------------------------
def _files(tmp_path: Path, job_id: str = "bj-journal") -> JobFiles:
    return JobFiles(LocalFolderStore(tmp_path / "store"), job_id)


def test_replay_skips_a_damaged_batch_logs_it_once_and_still_sees_the_end(tmp_path, caplog):
    files = _files(tmp_path)
    files.write_events(0, [ev.to_json(ev.JobStateChanged("bj-journal", state="running"))])
    files.store.put(keys.events_key(files.prefix, 1), [b'[{"type": "TaskFinished", "job_id": "bj-jour'])
    files.write_events(
        2,
        [
            {"type": "TasksFinished", "job_id": "bj-journal", "worker": 0, "indices": "abc", "duration": 1.0},
            {
                **ev.to_json(ev.JobFinished("bj-journal", state="done", done=0, failed=0, total=2, duration=1, cost=0)),
                "done": 10**400,
            },
            ev.to_json(ev.JobFinished("bj-journal", state="done", done=2, failed=0, total=2, duration=1, cost=0)),
        ],
    )
    files.store.put(keys.events_key(files.prefix, 3), [b'{"not": "a list"}'])
    files.store.put(keys.events_prefix(files.prefix) + "planted.json", [b"[]"])
    seen: list[ev.Event] = []
    bus = ev.EventBus()
    bus.subscribe(seen.append)
    with caplog.at_level(logging.WARNING):
        last, ended = replay(files, bus, -1)
        assert replay(files, bus, last) == (last, False)  # the next poll: nothing new, nothing logged again
    assert (last, ended) == (3, True)
    assert [type(e).__name__ for e in seen] == ["JobStateChanged", "JobFinished"] and seen[1].done == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "bj-journal" in warnings[0] and "events/0000000001.json" in warnings[0] and "not JSON" in warnings[0]
    assert "events/0000000003.json" in warnings[1] and "not a list of events" in warnings[1]


def test_a_finished_detached_jobs_values_come_back_past_a_damaged_journal_batch(starburst_home):
    job = sj.burst_map(abs, range(-3, 3), wait=False, workers=1)
    assert job.wait(timeout=90).values == [3, 2, 1, 0, 1, 2]
    batches = job.files.store.list(keys.events_prefix(job.files.prefix))
    assert batches
    job.files.store.put(batches[0], [b"\x00 not json"])
    assert sj.attach(job.id).wait(timeout=60).values == [3, 2, 1, 0, 1, 2]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{half", "not JSON"),
        (b"[1, 2]", "holds no `config` object"),
        (b'{"config": {}, "timings": [1]}', "`timings` is not an object"),
        (b" " * (MAX_DRIVER_CONFIG_BYTES + 1), "bytes"),
    ],
)
def test_a_damaged_driver_json_is_a_clear_error_naming_the_job_and_the_file(tmp_path, content, problem):
    files = _files(tmp_path, "bj-driverjson")
    with pytest.raises(FileNotFoundError):
        files.read_driver_config()
    files.store.put(keys.driver_key(files.prefix), [content])
    with pytest.raises(DamagedJobFile) as caught:
        files.read_driver_config()
    message = str(caught.value)
    assert message.startswith("Job bj-driverjson: ") and "/jobs/bj-driverjson/driver.json is damaged" in message
    assert problem in message and "\n" not in message
    files.write_driver_config({"config": {"region": "eu-west-1"}})
    assert files.read_driver_config() == {"config": {"region": "eu-west-1"}}


def test_collect_of_a_job_whose_driver_is_gone_and_driver_json_damaged_is_one_line(starburst_home):
    job_id = "bj-20261201-000000-drvjsn"
    silent = NOW - 3600  # a detached driver silent for an hour: gone
    record = JobRecord.from_json(_good(job_id, state="running", finished=None, updated=silent, outcomes="DDRP"))
    record.owner = Owner(pid=None, host="elsewhere", detached=True)
    JobStore().write(record)
    files = JobFiles(LocalFolderStore(starburst_home), job_id)
    files.write_record(record.dumps().encode())
    files.store.put(keys.driver_key(files.prefix), [b"{not json"])
    done = starburst(starburst_home, "collect", job_id, "--partial")
    line = _one_line(done)
    assert done.returncode == 2 and job_id in line and "driver.json is damaged (not JSON" in line, line


# ----- extend and waits ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("minutes", [math.inf, -math.inf, math.nan, 1e307, 0, -1, "5", True])
def test_check_minutes_refuses_what_would_not_be_a_deadline(minutes):
    with pytest.raises(BurstValidationError, match="bj-x"):
        check_minutes(minutes, "bj-x")


def test_check_wait_seconds_takes_none_and_refuses_what_threading_cannot_wait():
    assert check_wait_seconds(None) is None and check_wait_seconds(0) == 0.0
    for seconds in (1e308, math.inf, math.nan, -1):
        with pytest.raises(BurstValidationError, match=r"--timeout"):
            check_wait_seconds(seconds, "--timeout")


def test_extend_and_collect_timeout_refuse_overflowing_values_in_one_line(starburst_home):
    job_id = "bj-20261201-000000-extend"
    JobStore().write(JobRecord.from_json(_good(job_id, state="running", finished=None, updated=time.time())))
    for args, words in (
        (("extend", job_id, "1e307"), "MINUTES 1e307: give a positive number of minutes, at most 527,040"),
        (("extend", job_id, "inf"), "MINUTES 'inf' is not a number"),
        (("collect", job_id, "--timeout", "1e308"), "--timeout 1e+308: give seconds from 0 to 9,223,372,036"),
    ):
        done = starburst(starburst_home, *args)
        line = _one_line(done)
        assert done.returncode == 2 and words in line, line
    with pytest.raises(BurstValidationError, match="inf"):
        commands.Jobs().extend(job_id, math.inf)


def test_a_detached_jobs_extend_refuses_infinite_minutes(starburst_home):
    job = sj.burst_map(time.sleep, [2.0], wait=False, workers=1)
    try:
        with pytest.raises(BurstValidationError, match="inf"):
            job.extend(math.inf)
        with pytest.raises(BurstValidationError, match="1e"):
            job.extend(1e307)
    finally:
        job.cancel()
        wait_for(lambda: job.status().is_terminal, timeout=30)


# ----- a record without its spec ------------------------------------------------------------------------------
def test_spec_from_record_names_the_job_and_the_record_when_the_spec_is_missing():
    record = JobRecord.from_json({k: v for k, v in _good("bj-nospec").items() if k != "spec"})
    with pytest.raises(
        DamagedJobFile, match=r"Job bj-nospec: its record \(record.json\) is damaged \(it has no spec\)"
    ):
        spec_from_record(record)
    partial = JobRecord.from_json(_good("bj-partspec", spec={"mode": "map", "backend": "local"}))
    with pytest.raises(DamagedJobFile, match=r"its spec lacks workers, cpu_units"):
        spec_from_record(partial)
    assert spec_from_record(JobRecord.from_json(_good("bj-spec"))).mode == "map"


def test_collect_of_a_record_without_spec_is_one_line(starburst_home):
    job_id = "bj-20261201-000000-nospec"
    _plant(starburst_home, job_id, {k: v for k, v in _good(job_id).items() if k != "spec"})
    done = starburst(starburst_home, "collect", job_id)
    line = _one_line(done)
    assert done.returncode == 2 and job_id in line and "no spec" in line, line


def test_a_damaged_record_is_refused_by_attach_in_one_line_naming_the_job(starburst_home):
    job_id = "bj-20261201-000000-runs20"
    _plant(starburst_home, job_id, _good(job_id, outcomes="", outcome_runs="99999999999999999999D"))
    with pytest.raises(BurstError, match=f"Job {job_id} has a damaged record .*outcome_runs"):
        sj.attach(job_id)


# ----- the bucket (moto) --------------------------------------------------------------------------------------
def _bucket_config(bucket: str) -> Config:
    """A set-up whose bucket is moto's: the faces list and collect the bucket's jobs with it."""
    role = "arn:aws:iam::123456789012:role/starburst-task"
    return Config(
        bucket=bucket,
        region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        subnets=("subnet-1",),
        security_groups=("sg-1",),
        execution_role_arn=role,
        task_role_arn=role,
    )


def test_damaged_bucket_records_list_as_damaged_and_do_not_drop_the_bucket_listing(
    starburst_home, s3_bucket, moto_env, monkeypatch
):
    from starburst_jupyter.core.launcher import Launcher
    from starburst_jupyter.protocol import jobfiles

    config = _bucket_config(s3_bucket)
    launcher = Launcher(config, home=starburst_home)
    planted = {
        "bj-20261201-000000-bgood1": _good("bj-20261201-000000-bgood1", backend="fargate"),
        "bj-20261201-000000-bruns2": _good("bj-20261201-000000-bruns2", outcomes="", outcome_runs="9" * 20 + "D"),
        "bj-20261201-000000-bnospc": {k: v for k, v in _good("bj-20261201-000000-bnospc").items() if k != "spec"},
        "bj-20261201-000000-bhuge3": _good("bj-20261201-000000-bhuge3", message="x" * 5000),
    }
    for job_id, data in planted.items():
        launcher.backend("fargate").job_files(job_id).write_record(json.dumps(data).encode())
    monkeypatch.setattr(jobfiles, "MAX_RECORD_BYTES", 4000)
    text = commands.Jobs(starburst_home, config).status_text()
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("bj-")}
    assert set(planted) <= set(rows) and "could not be listed" not in text, text
    assert "(damaged record)" not in rows["bj-20261201-000000-bgood1"]
    assert "(damaged record)" not in rows["bj-20261201-000000-bnospc"]  # listed; `collect` says what it lacks
    for job_id in ("bj-20261201-000000-bruns2", "bj-20261201-000000-bhuge3"):
        assert "(damaged record)" in rows[job_id], text

    # the listing's damaged row says why (the detail: the test below)
    (huge,) = [r for r in launcher.shared_records() if r.id == "bj-20261201-000000-bhuge3"]
    assert re.search(r"/jobs/bj-20261201-000000-bhuge3/record.json is [0-9,]+ bytes, above the 4,000", huge.damaged)


def test_collect_cancel_and_status_of_an_unreadable_record_are_one_line(starburst_home):
    job_id = "bj-20261201-000000-notutf"
    _plant(starburst_home, job_id, b'{"id": "x", "state": "running", "name": "\xff"}')
    for args in (("collect", job_id), ("cancel", job_id)):
        done = starburst(starburst_home, *args)
        line = _one_line(done)
        assert done.returncode == 2 and job_id in line and "damaged record" in line, line


def test_status_collect_and_cancel_of_an_unreadable_bucket_record_say_it_is_damaged(
    starburst_home, s3_bucket, moto_env
):
    from starburst_jupyter.core.launcher import Launcher

    config = _bucket_config(s3_bucket)
    job_id = "bj-20261201-000000-bnotjs"
    Launcher(config, home=starburst_home).backend("fargate").job_files(job_id).write_record(b"{not json")
    jobs = commands.Jobs(starburst_home, config)
    assert "damaged record: record.json is not JSON" in jobs.status_text(job_id)
    with pytest.raises(BurstError, match=f"Job {job_id} has a damaged record"):
        jobs.collect(job_id)
    assert jobs.cancel(job_id)["state"] == "failed"  # (nothing it names can be stopped: said, not a traceback)


def test_both_copies_of_a_record_have_one_size_limit():
    from starburst_jupyter.core import record
    from starburst_jupyter.protocol import jobfiles

    assert record.MAX_RECORD_BYTES == jobfiles.MAX_RECORD_BYTES > record.MAX_ITEMS


def test_a_detached_jobs_wait_refuses_a_timeout_threading_cannot_wait(starburst_home):
    job = sj.burst_map(abs, range(2), wait=False, workers=1)
    try:
        with pytest.raises(BurstValidationError, match=r"wait\(timeout\) 1e\+308 \(job bj-"):
            job.wait(1e308)
    finally:
        assert job.wait(timeout=90).values == [0, 1]

"""The command faces of detached jobs: `starburst status` (this machine's jobs and the bucket's), `collect`
(all, or what finished so far), `extend` and `prune`, run as a user runs them (a `starburst` process with its
own STARBURST_HOME) on jobs another process launched with burst_map(wait=False); and the prune rule."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from starburst_jupyter import PENDING, commands
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.prune import Found, check_days, gather, id_time, merge, prune, verdict
from starburst_jupyter.core.record import JobRecord, JobState
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.stores.objects import LocalFolderStore
from starburst_jupyter.stores.records import JobStore
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[1]
NOW = 1_800_000_000.0
DAY = 86400.0

LAUNCH = textwrap.dedent(
    """
    import sys, time
    from starburst_jupyter import burst_map

    def slow(x, seconds=float(sys.argv[2])):
        import time
        time.sleep(seconds)
        return x * x

    for _ in range(int(sys.argv[4])):
        job = burst_map(slow, range(int(sys.argv[1])), wait=False, workers=1, timeout=float(sys.argv[3]))
        print(job.id, flush=True)
    """
)


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "STARBURST_HOME": str(home)}


def _launch(home: Path, tmp_path: Path, items: int, seconds: float, timeout: float = 600, jobs: int = 1) -> list[str]:
    """Another process launches detached jobs and exits: their ids, each as soon as it is launched."""
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    args = [sys.executable, str(script), str(items), str(seconds), str(timeout), str(jobs)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=_env(home))
    ids = [proc.stdout.readline().strip() for _ in range(jobs)]
    assert proc.wait(60) == 0
    assert all(i.startswith("bj-") for i in ids), ids
    return ids


def starburst(home: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`starburst ARGS` as a terminal runs it (the [project.scripts] entry point is cli:main)."""
    code = "import sys; from starburst_jupyter.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env(home), timeout=timeout
    )


def _record(home: Path, job_id: str) -> JobRecord:
    return JobStore(home).read_record(job_id)


@pytest.fixture
def home(starburst_home):
    """A job store whose jobs are all ended when the test ends (no driver or worker outlives it)."""
    yield starburst_home
    store = JobStore(starburst_home)
    for record in store.list_records():
        if record.is_active:
            starburst(starburst_home, "cancel", record.id)
            wait_for(lambda r=record: _record(starburst_home, r.id).is_terminal, timeout=30)


# ----- on jobs another process launched -------------------------------------------------------------------
def test_status_lists_a_detached_job_and_collect_takes_part_then_all(home, tmp_path):
    (job_id,) = _launch(home, tmp_path, items=8, seconds=0.5)
    listed = starburst(home, "status")
    assert listed.returncode == 0, listed.stderr
    assert job_id in listed.stdout

    wait_for(lambda: _record(home, job_id).done >= 1, timeout=30)
    part = starburst(home, "collect", job_id, "--partial", "--out", str(tmp_path / "part.pkl"))
    assert part.returncode == 0, part.stderr
    assert f"job {job_id}: running;" in part.stdout
    values = pickle.loads((tmp_path / "part.pkl").read_bytes())
    done = [i for i, v in enumerate(values) if v is not PENDING]
    assert done and len(done) < 8, values
    assert all(values[i] == i * i for i in done)
    assert f", {8 - len(done)} pending of 8 items" in part.stdout

    whole = starburst(home, "collect", job_id, "--out", str(tmp_path / "all.pkl"), "--timeout", "60")
    assert whole.returncode == 0, whole.stderr
    assert f"job {job_id}: done; 8 done, 0 failed, 0 cancelled of 8 items" in whole.stdout
    assert f"to {tmp_path / 'all.pkl'}" in whole.stdout
    assert pickle.loads((tmp_path / "all.pkl").read_bytes()) == [i * i for i in range(8)]


def test_extend_lets_a_job_finish_that_its_timeout_would_cancel(home, tmp_path):
    # Two jobs of 8 items of 1 s on one worker each, both with --timeout 4 s: only the extended one finishes.
    extended, left = _launch(home, tmp_path, items=8, seconds=1.0, timeout=4, jobs=2)
    moved = starburst(home, "extend", extended, "1")
    assert moved.returncode == 0, moved.stderr
    assert f"job {extended}: its --timeout now ends it at " in moved.stdout and "(local time), in " in moved.stdout

    cancelled = starburst(home, "collect", left, "--timeout", "60")
    assert cancelled.returncode == 1
    assert f"job {left}: cancelled;" in cancelled.stdout and "--timeout" in cancelled.stdout
    finished = starburst(home, "collect", extended, "--timeout", "60")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"job {extended}: done; 8 done, 0 failed, 0 cancelled of 8 items" in finished.stdout


def test_prune_removes_a_finished_job_everywhere_and_leaves_a_running_one(home, tmp_path):
    (finished,) = _launch(home, tmp_path, items=2, seconds=0.1)
    (running,) = _launch(home, tmp_path, items=40, seconds=1.0)
    wait_for(lambda: _record(home, finished).is_terminal, timeout=30)
    folder = home / "jobs" / finished
    assert (folder / "results").is_dir()  # a detached job keeps its results in its store

    listed = starburst(home, "prune", "--older-than", "0")
    assert listed.returncode == 0, listed.stderr
    assert finished in listed.stdout and running not in listed.stdout
    assert "kept 1 active job(s)" in listed.stdout and "add --yes" in listed.stdout
    assert folder.is_dir()

    done = starburst(home, "prune", "--older-than", "0", "--yes")
    assert done.returncode == 0, done.stderr
    assert f"deleted 1 job(s): {finished}" in done.stdout and "freed on this machine" in done.stdout
    assert not folder.exists()
    assert _record(home, running).is_active
    assert (home / "jobs" / running / "tasks").is_dir()
    assert finished not in starburst(home, "status").stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("collect", "bj-20990101-000000-abcdef"), "No job matches"),
        (("extend", "bj-20990101-000000-abcdef", "5"), "No job matches"),
        (("extend", "bj-20990101-000000-abcdef", "five"), "MINUTES 'five' is not a number"),
        (("prune", "--older-than", "-1"), "--older-than -1: give a number of days"),
        (("prune", "--older-than", "soon"), "--older-than 'soon' is not a number"),
        (("prune",), "the following arguments are required: --older-than"),
        (("collect", "bj-20990101-000000-abcdef", "--timeout", "nan"), "--timeout 'nan' is not a number"),
    ],
)
def test_bad_input_is_one_line_and_a_failing_exit(home, args, says):
    done = starburst(home, *args)
    assert done.returncode in (1, 2)
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr


def test_extend_refuses_a_job_that_ended_or_minutes_not_above_zero(starburst_home):
    home = starburst_home  # (records only: no job runs)
    spec = build_spec(Config(), mode="map").to_json()
    for job_id, state in (
        ("bj-20261129-100000-aaaaaa", JobState.DONE),
        ("bj-20261129-100000-bbbbbb", JobState.RUNNING),
    ):
        record = JobRecord(job_id, backend="local", state=state, created=time.time(), updated=time.time(), spec=spec)
        JobStore(home).write(record)
        JobFiles(LocalFolderStore(home), job_id).write_record(record.dumps().encode())
    ended = starburst(home, "extend", "bj-20261129-100000-aaaaaa", "5")
    assert ended.returncode == 2 and "already ended (done); nothing to extend" in ended.stderr
    for minutes in ("0", "-5"):
        refused = starburst(home, "extend", "bj-20261129-100000-bbbbbb", minutes)
        assert refused.returncode == 2 and "give a positive number of minutes" in refused.stderr, refused.stderr


def test_status_without_a_bucket_makes_no_aws_call(home):
    JobStore(home).write(JobRecord("bj-20261129-100000-bbbbbb", backend="local", state=JobState.DONE, created=NOW))
    code = (
        "import sys; from starburst_jupyter.cli import main; main(['status']); "
        "print('aws modules:', sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(home), timeout=60)
    assert "bj-20261129-100000-bbbbbb" in done.stdout, done.stderr
    assert "aws modules: []" in done.stdout


# ----- the bucket's jobs, with a stand-in launcher --------------------------------------------------------
class _Backend:
    def __init__(self, root: Path):
        self.store = LocalFolderStore(root)

    def job_files(self, job_id: str) -> JobFiles:
        return JobFiles(self.store, job_id)


class _Launcher:
    """This machine's job store plus a 'bucket' (a folder store) whose records shared_records lists."""

    def __init__(self, home: Path, bucket: Path, shared: list[JobRecord] | Exception):
        self.store = JobStore(home)
        self.config = Config(bucket="starburst-jobs-test")
        self.bucket, self.shared = _Backend(bucket), shared
        self.local = _Backend(home)

    def shared_records(self) -> list[JobRecord]:
        if isinstance(self.shared, Exception):
            raise self.shared
        return self.shared

    def backend(self, name: str) -> _Backend:
        return self.bucket if name == "fargate" else self.local


def _jobs(launcher: _Launcher) -> commands.Jobs:
    jobs = commands.Jobs(launcher.store.home)
    jobs._launcher = launcher
    return jobs


def test_status_lists_the_buckets_jobs_the_newer_record_winning(tmp_path):
    launcher = _Launcher(tmp_path / "home", tmp_path / "bucket", [])
    here = JobRecord("bj-20261129-100000-aaaaaa", backend="fargate", state=JobState.RUNNING, created=NOW, updated=NOW)
    launcher.store.write(here)
    newer = JobRecord(here.id, backend="fargate", state=JobState.DONE, created=NOW, updated=NOW + 60, finished=NOW + 60)
    elsewhere = JobRecord("bj-20261129-110000-cccccc", backend="fargate", state=JobState.DONE, created=NOW + 3600)
    launcher.shared = [newer, elsewhere]
    text = _jobs(launcher).status_text()
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("bj-")}
    assert set(rows) == {here.id, elsewhere.id}
    assert " done " in rows[here.id]
    assert merge([here], [newer])[0].state == JobState.DONE
    assert merge([newer], [here])[0].state == JobState.DONE  # an older copy never wins


def test_a_bucket_that_cannot_be_read_is_one_line_and_local_jobs_still_list(tmp_path):
    launcher = _Launcher(tmp_path / "home", tmp_path / "bucket", PermissionError("AccessDenied: ListObjectsV2"))
    launcher.store.write(JobRecord("bj-20261129-100000-aaaaaa", backend="local", state=JobState.DONE, created=NOW))
    text = _jobs(launcher).status_text()
    assert "bj-20261129-100000-aaaaaa" in text
    assert text.splitlines()[-1] == (
        "(the jobs in bucket starburst-jobs-test could not be listed (PermissionError: AccessDenied: "
        "ListObjectsV2); only this machine's jobs are shown)"
    )


def test_prune_deletes_a_bucket_jobs_prefix_and_its_local_record(tmp_path):
    launcher = _Launcher(tmp_path / "home", tmp_path / "bucket", [])
    old = JobRecord("bj-20261001-100000-aaaaaa", backend="fargate", state=JobState.DONE, created=NOW, finished=NOW)
    launcher.store.write(old)
    launcher.shared = [old]
    for store in (launcher.bucket.store, launcher.local.store):
        JobFiles(store, old.id).write_record(old.dumps().encode())
    gathered = gather(launcher)  # type: ignore[arg-type]
    assert [(f.record.id, f.local, f.shared) for f in gathered.jobs] == [(old.id, True, True)]
    pruned = prune(launcher, gathered.jobs)  # type: ignore[arg-type]
    assert pruned.removed == [old.id] and not pruned.errors
    assert not (tmp_path / "bucket" / "jobs" / old.id).exists()
    assert not (tmp_path / "home" / "jobs" / old.id).exists()


# ----- the rule -----------------------------------------------------------------------------------------
def _rec(state: JobState = JobState.DONE, **times: float) -> JobRecord:
    return JobRecord("bj-20261001-100000-aaaaaa", backend="local", state=state, **times)


@pytest.mark.parametrize("state", [JobState.DONE, JobState.FAILED, JobState.CANCELLED])
def test_a_job_that_ended_more_than_days_ago_goes(state):
    assert verdict(_rec(state, created=NOW - 9 * DAY, finished=NOW - 8 * DAY), NOW, 7).prune
    assert not verdict(_rec(state, created=NOW - 9 * DAY, finished=NOW - 6 * DAY), NOW, 7).prune


def test_the_end_time_falls_back_to_the_last_write_then_creation():
    assert not verdict(_rec(created=NOW - 9 * DAY, updated=NOW - DAY), NOW, 7).prune
    assert verdict(_rec(created=NOW - 9 * DAY), NOW, 7).prune
    assert verdict(_rec(), NOW, 7).prune  # no time at all: the id says 2026-10-01


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.RUNNING])
def test_an_active_job_never_goes(state):
    judged = verdict(_rec(state, created=NOW - 90 * DAY, updated=NOW - 90 * DAY), NOW, 0)
    assert not judged.prune and "cancel it first" in judged.why


def test_damaged_records_go_by_their_age_unless_unread_or_maybe_live():
    damaged = JobRecord.from_json({"id": "bj-20261001-100000-aaaaaa", "state": "done", "created": "soon"})
    assert damaged.damaged
    assert verdict(damaged, NOW, 7, written=NOW - 8 * DAY).prune
    assert not verdict(damaged, NOW, 7, written=NOW - 6 * DAY).prune
    unread = JobRecord.unreadable("bj-20261001-100000-aaaaaa", "cannot read: [Errno 13] Permission denied")
    assert not verdict(unread, NOW, 0, written=NOW - 90 * DAY).prune
    live = JobRecord.from_json({"id": "bj-20261001-100000-aaaaaa", "state": "running", "total": "x", "updated": NOW})
    assert live.damaged and not verdict(live, NOW, 0).prune


def test_days_must_be_a_number_not_below_zero():
    for bad in (-1, float("nan"), float("inf"), "3", True):
        with pytest.raises(ValueError, match="give a number of days"):
            check_days(bad)  # type: ignore[arg-type]
    assert check_days(0) == 0.0


def test_a_job_id_says_when_it_was_created():
    assert id_time("bj-20261001-100000-aaaaaa") == 1790848800.0
    assert id_time("someone-elses") is None


def test_a_damaged_local_record_older_than_days_is_listed_for_pruning(tmp_path):
    home = tmp_path / "home"
    folder = home / "jobs" / "bj-20261001-100000-dddddd"
    folder.mkdir(parents=True)
    (folder / "record.json").write_text("{not json")
    os.utime(folder / "record.json", (NOW - 10 * DAY, NOW - 10 * DAY))
    jobs = _jobs(_Launcher(home, tmp_path / "bucket", []))
    jobs._launcher.config = Config()
    go, keep, problem = jobs.prunable(7, now=NOW)
    assert [found.record.id for found, _ in go] == ["bj-20261001-100000-dddddd"] and not keep and not problem
    assert isinstance(go[0][0], Found) and "damaged record, 10.0 days old" in go[0][1].why


# ----- a real bucket (moto) --------------------------------------------------------------------------------
def _set_up(bucket: str) -> Config:
    """A config as `starburst setup` leaves it (only the bucket is used here)."""
    role = "arn:aws:iam::123456789012:role/starburst-task"
    return Config(
        bucket=bucket,
        region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        subnets=("subnet-1",),
        security_groups=("sg-1",),
        execution_role_arn=role,
        task_role_arn=role,
    )


def test_status_and_prune_with_a_bucket_on_moto(starburst_home, s3_bucket, moto_env):
    """A job another machine ran (its record only in the bucket) lists in status and is pruned from the bucket;
    a running one stays; a job of this machine still lists."""
    from starburst_jupyter.core.launcher import Launcher

    config = _set_up(s3_bucket)
    launcher = Launcher(config, home=starburst_home)
    ended = time.time() - 8 * DAY
    old = JobRecord("bj-20261001-100000-eeeeee", backend="fargate", state=JobState.DONE, created=ended, finished=ended)
    live = JobRecord("bj-20261129-100000-ffffff", backend="fargate", state=JobState.RUNNING, created=time.time())
    for record in (old, live):
        files = launcher.backend("fargate").job_files(record.id)
        files.write_record(record.dumps().encode())
        files.write_events(0, [])
    here = JobRecord("bj-20261129-090000-aaaaaa", backend="local", state=JobState.DONE, created=time.time())
    launcher.store.write(here)
    jobs = commands.Jobs(starburst_home, config)
    text = jobs.status_text()
    assert all(r.id in text for r in (old, live, here)), text

    go, keep, problem = jobs.prunable(7)
    assert [found.record.id for found, _ in go] == [old.id] and not problem
    pruned = jobs.prune([found for found, _ in go])
    assert pruned.removed == [old.id] and not pruned.errors
    store = launcher.backend("fargate").job_files("").store
    assert store.list_folders("jobs/") == [f"jobs/{live.id}/"]


def test_a_bucket_moto_refuses_is_one_line_in_status(starburst_home, moto_env):
    config = _set_up("starburst-no-such-bucket-0000")
    JobStore(starburst_home).write(JobRecord("bj-20261129-090000-aaaaaa", backend="local", state=JobState.DONE))
    text = commands.Jobs(starburst_home, config).status_text()
    assert "bj-20261129-090000-aaaaaa" in text
    last = text.splitlines()[-1]
    assert (
        last.startswith("(the jobs in bucket starburst-no-such-bucket-0000 could not be listed (") and "\n" not in last
    )

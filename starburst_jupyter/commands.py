"""What the faces can ask of starburst besides running a job: status, logs, cancel, config, AWS set-up and the
worker image. Each command returns data or text; the magics, the `starburst` CLI and the Jupyter server
extension only parse, call and print (or serve). Imports no IPython.

The config is read only by the commands that need it, and commands on existing jobs (cancel, logs) need no
job defaults: a config.toml with a bad value must never stop a running job from being cancelled.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from starburst_jupyter.core.config import KEYS, Config, config_path, load_config, parse_assignments, save_values
from starburst_jupyter.display.progress import ImageProgressLines
from starburst_jupyter.errors import BurstConfigError

LIST_LIMIT = 50
LOG_FOLLOW_BYTES = 1 << 20  # the most of one worker's log one read of `logs --follow` takes
Pairs = list[tuple[Any, Any]]  # (prune.Found, prune.Verdict) pairs
PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "arm64"}


# ----- the config -------------------------------------------------------------------------------------


def config_text(config: Config | None = None) -> str:
    """Every key and its current value, one `key = value` a line."""
    config = config or load_config()
    return "\n".join(f"{key} = {getattr(config, key)!r}" for key in KEYS)


#: What each config key means (the job options' keys take their text from core/options.py); a key missing
#: here fails tests/test_cli_polish.py, so a new key cannot go unexplained.
CONFIG_MEANINGS = {
    "max_workers": "the most workers one job may have (a larger --workers is refused)",
    "max_result_bytes": "the largest result one item may send back, in bytes (or 64MB); larger ones fail",
    "local_concurrency": "local backend: workers that run at once (none: this machine's CPU count)",
    "local_warm_seconds": "local backend: seconds a warm worker pool (a fork server) waits idle; 0: none",
    "region": "the AWS region of the fargate backend (its set-up, tasks, bucket, logs, prices)",
    "arch": "the worker image's and Fargate tasks' CPU architecture: x86_64 or arm64 (20% cheaper)",
    "keep_payloads": "keep a finished job's tasks, claims and results in its store (for debugging)",
    "bucket": "fargate: the S3 bucket of job objects (saved by `setup`)",
    "cluster": "fargate: the ECS cluster that runs the tasks (saved by `setup`)",
    "subnets": "fargate: where tasks run; each needs a route to the internet (saved by `setup`)",
    "security_groups": "fargate: the tasks' security group, no inbound rules (saved by `setup`)",
    "assign_public_ip": "fargate: give tasks a public IP (needed in subnets routed to an internet gateway)",
    "execution_role_arn": "fargate: the role ECS uses to pull the image and write logs (saved by `setup`)",
    "task_role_arn": "fargate: the role workers run with: the job bucket only (saved by `setup`)",
    "driver_role_arn": "fargate: the role of a detached job's driver task (saved by `setup`)",
    "log_group": "fargate: the CloudWatch Logs group of worker output",
    "ecr_repository": "fargate: the ECR repository of worker images",
    "image": "docker/fargate: a worker image of your own (none: this environment's image, built by starburst)",
    "fargate_vcpu_quota": "fargate: the vCPU quota to plan with (none: read from AWS Service Quotas)",
    "base_image": "the worker image's base (none: python:<this Python>-slim-bookworm)",
    "requirements": "a requirements file for the worker image instead of this environment's packages",
    "auto_build": "build and push a missing worker image before a job, instead of refusing it",
}


def config_explain_text(config: Config | None = None) -> str:
    """Every config key: its meaning, its built-in default and, when it differs, the value in effect."""
    from starburst_jupyter.core.options import OPTIONS

    config = config or config_for_existing_jobs()
    defaults = Config()
    meanings = {option.name: option.help for option in OPTIONS} | CONFIG_MEANINGS
    width = max(len(key) for key in KEYS)
    lines = [f"config keys (set with key=value; saved in {config_path()}):"]
    for key in KEYS:
        default, value = getattr(defaults, key), getattr(config, key)
        now = f"; now {value!r}" if value != default else ""
        lines.append(f"  {key:<{width}}  {meanings.get(key, '')} [default {default!r}{now}]")
    return "\n".join(lines)


def config_set(assignments: str | dict[str, Any]) -> Path:
    """Validate and save `key=value ...` (or a dict) to the config file; returns the file's path."""
    values = parse_assignments(assignments) if isinstance(assignments, str) else dict(assignments)
    return save_values(values)


def config_for_existing_jobs(path: Path | None = None) -> Config:
    """The config as far as it can be read: a key whose value is refused (or a file that does not parse) is left
    at its built-in default. For commands on jobs that already exist, which take their settings from the job's
    record and need the config only for where things are (bucket, region, cluster)."""
    try:
        return load_config(path)
    except BurstConfigError:
        pass
    try:
        raw = tomllib.loads((path or config_path()).read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return Config()
    config = Config()
    for key, value in raw.items():
        try:
            config = config.with_values({key: value})
        except BurstConfigError:
            continue
    return config


def with_image_options(config: Config, requirements: str | None = None, platform: str | None = None) -> Config:
    """--requirements and --platform override the config for this job (or this build) only."""
    values: dict[str, Any] = {}
    if requirements:
        values["requirements"] = requirements
    if platform:
        values["arch"] = PLATFORMS[platform]
    return config.with_values(values) if values else config


# ----- jobs in the store ------------------------------------------------------------------------------


class Jobs:
    """Commands on the jobs of one job store, over one launcher made when first needed (its backends keep
    their clients between calls, e.g. in the Jupyter server). Thread-safe to share."""

    def __init__(self, home: Path | None = None, config: Config | None = None):
        from starburst_jupyter.stores.records import JobStore

        self.store = JobStore(home)
        self._home = home
        self._config = config
        self._launcher: Any = None
        self._lock = threading.Lock()

    @property
    def launcher(self) -> Any:
        with self._lock:
            if self._launcher is None:
                from starburst_jupyter.core.launcher import Launcher

                self._launcher = Launcher(self._config or config_for_existing_jobs(), home=self._home)
            return self._launcher

    def find(self, job: str) -> dict[str, Any]:
        """The record of the job with this id or unique prefix (KeyError with a message otherwise)."""
        return self.store.find(job.strip())

    def list(self, limit: int | None = LIST_LIMIT) -> list[dict[str, Any]]:
        return self.store.list(limit=limit)

    def status_text(self, job: str | None = None, limit: int | None = LIST_LIMIT) -> str:
        """One job in detail, or the table of jobs (newest first): this machine's and, when a bucket is
        configured, the bucket's (jobs launched from any machine with the same set-up)."""
        from starburst_jupyter.display.status import format_job, format_jobs

        if job and job.strip():
            return format_job(self.record(job))
        gathered = self.gathered(limit)
        text = format_jobs([found.record for found in gathered.jobs])
        return f"{text}\n({gathered.problem})" if gathered.problem else text

    def gathered(self, limit: int | None = LIST_LIMIT) -> Any:
        """The jobs of this machine and of the bucket, merged by id (the newer record wins): a prune.Gathered.
        Without a bucket in the config, no AWS call is made."""
        from starburst_jupyter.core.prune import gather

        return gather(self.launcher, limit)

    def record(self, job: str) -> Any:
        """A job's newest record (a JobRecord): this machine's, or the copy its driver keeps in the job's store
        when that is newer, or the bucket's for a job launched elsewhere. KeyError with a message if none."""
        try:
            record = self.store.find_record(job.strip())
        except KeyError:
            if not self.launcher.config.bucket:
                raise
            return self.launcher.job_record(job.strip())[0]
        if record.damaged or record.backend not in ("local", "docker", "fargate"):
            return record
        try:
            return self.launcher.job_record(record.id)[0]
        except Exception:  # the store's copy cannot be read now: this machine's record still says much
            return record

    def follow(self, job: str) -> Any:
        """A DetachedJob on the job (not yet following: the caller waits or collects)."""
        return self.launcher.follow(job.strip(), start=False)

    def collect(self, job: str, partial: bool = False, timeout: float | None = None) -> tuple[Any, str]:
        """(The job's JobResult from its store, its backend): after it ends (TimeoutError after `timeout`
        seconds; the job goes on), or now with `partial` (PENDING for the items not finished)."""
        from starburst_jupyter.core.detached import collect
        from starburst_jupyter.core.options import check_wait_seconds

        timeout = check_wait_seconds(timeout, "timeout")  # refused before the job is looked up
        handle = self.follow(job)
        record = handle.status()
        if partial or record.is_terminal:
            return collect(handle.files, record, partial=partial), record.backend
        return handle.wait(timeout), record.backend

    def extend(self, job: str, minutes: float) -> tuple[str, float]:
        """Give a running job `minutes` more before its --timeout: (its id, the new deadline). Minutes that are not
        finite or would carry the deadline past any clock are refused before the job is looked up."""
        from starburst_jupyter.core.options import check_minutes

        minutes = check_minutes(minutes, job.strip())
        handle = self.follow(job)
        return handle.id, handle.extend(minutes)

    def prunable(self, days: float, now: float | None = None) -> tuple[Pairs, Pairs, str]:
        """([(Found, Verdict)] that would be deleted, [(Found, Verdict)] kept, why the bucket could not be
        listed). ValueError for a DAYS that is not a number of days."""
        import time

        from starburst_jupyter.core.prune import check_days, verdict

        days = check_days(days)
        now = time.time() if now is None else now
        gathered = self.gathered(None)
        go: Pairs = []
        keep: Pairs = []
        for found in gathered.jobs:
            judged = verdict(found.record, now, days, found.written)
            (go if judged.prune else keep).append((found, judged))
        return go, keep, gathered.problem

    def prune(self, jobs: Sequence[Any]) -> Any:
        """Delete these jobs (prune.Found) everywhere: a prune.Pruned."""
        from starburst_jupyter.core.prune import prune

        return prune(self.launcher, jobs)

    def logs(self, job: str, worker: int | None = None, *, tail_lines: int | None = None) -> dict[int, str]:
        """{worker index: log text} of a job's workers (one worker's with `worker`; the last lines with tail_lines)."""
        return self.launcher.job_logs(job.strip(), worker, tail_lines=tail_lines)

    def log(self, job: str, worker: int) -> str:
        """One worker's whole log."""
        return self.logs(job, worker)[worker]

    def follow_logs(
        self,
        job: str,
        emit: Callable[[int, str], None],
        worker: int | None = None,
        *,
        tail: int = 10,
        poll: float | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> str:
        """Emit each worker's last `tail` lines, then every new line as it is written, until the job ends (after
        a last read); returns the job's final state. Reads byte ranges of each log (TailsLogsCheaply), so a
        line is emitted once; on Fargate each read lists the stream again, at the backend's log pace."""
        import time

        record = self.record(job)
        launcher = self.launcher
        backend = launcher.backend(record.backend)
        cheap = launcher.capabilities(record.backend).log_tail
        files = backend.job_files(record.id)
        poll = poll if poll is not None else max(1.0, float(getattr(backend, "log_poll_seconds", 0.0) or 0.0))
        offsets: dict[int, int] = {}
        partial: dict[int, bytes] = {}

        def read(index: int, first: bool) -> None:
            if cheap is not None:
                offset = -LOG_FOLLOW_BYTES if first else offsets[index]
                data, start, _ = cheap.read_log_bytes(files, index, offset, LOG_FOLLOW_BYTES)
            else:
                whole = backend.read_log(files, index).encode()
                start = max(0, len(whole) - LOG_FOLLOW_BYTES) if first else offsets[index]
                data = whole[start : start + LOG_FOLLOW_BYTES]
            offsets[index] = start + len(data)
            data = partial.pop(index, b"") + data
            complete, _, rest = data.rpartition(b"\n")
            if rest:
                partial[index] = rest
            lines = complete.decode("utf-8", "replace").splitlines() if complete else []
            if first:
                lines = lines[-tail:] if tail > 0 else []
            for line in lines:
                emit(index, line)

        while True:
            ended = record.is_terminal
            indices = sorted(record.workers) if worker is None else [worker]
            for index in indices:
                read(index, index not in offsets)
            if ended:
                for index, rest in sorted(partial.items()):  # a last line without its newline
                    emit(index, rest.decode("utf-8", "replace"))
                return str(record.state)
            (sleep or time.sleep)(poll)
            record = self.record(job)

    def cancel(self, job: str, reason: str = "cancelled") -> dict[str, Any]:
        """Cancel a job, also one whose kernel is gone; idempotent. Returns the job's record after it."""
        return self.launcher.cancel_job(job.strip(), reason)


def status_text(job: str | None = None) -> str:
    return Jobs().status_text(job)


def logs_text(logs: dict[int, str]) -> str:
    """Each worker's log under a `----- worker N -----` line."""
    return "\n".join(f"----- worker {index} -----\n{text.rstrip() or '(empty)'}" for index, text in logs.items())


def tail_logs(logs: dict[int, str], lines: int) -> tuple[dict[int, str], int]:
    """Each worker's last `lines` lines (0: all), after a line saying how many earlier lines were cut; and the
    number of lines cut in all (a notebook must not receive thousands of lines by default)."""
    shown, cut_total = {}, 0
    for index, text in logs.items():
        kept = text.splitlines(keepends=True)
        head = kept.pop(0) if kept and kept[0].startswith("[... ") else ""  # job_logs' own "MB cut" line
        if lines > 0 and len(kept) > lines:
            cut = len(kept) - lines
            cut_total += cut
            head += f"[... {cut:,} earlier line(s) of worker {index} cut; its last {lines} follow (--tail 0: all)]\n"
            kept = kept[-lines:]
        shown[index] = head + "".join(kept)
    return shown, cut_total


def cancel_text(record: dict[str, Any]) -> str:
    return f"job {record['id']}: {record['state']}"


def collect_text(result: Any, backend: str = "", partial: bool = False) -> str:
    """What `starburst collect` says of a JobResult: the state, counts, cost, duration, and why it ended."""
    from starburst_jupyter.core.detached import PENDING
    from starburst_jupyter.display.status import _duration
    from starburst_jupyter.errors import TaskCancelled

    pending = sum(value is PENDING for value in result.values)
    cancelled = sum(isinstance(exc, TaskCancelled) for _, exc in result.failures)
    failed = len(result.failures) - cancelled
    done = len(result.values) - pending - len(result.failures)
    counts = f"{done} done, {failed} failed, {cancelled} cancelled"
    if partial:
        counts += f", {pending} pending"
    estimate = " (estimate: what Fargate would charge)" if backend in ("local", "docker") else ""
    so_far = " so far" if result.state == "running" else ""
    lines = [
        f"job {result.job_id}: {result.state}; {counts} of {len(result.values)} items; "
        f"cost{so_far} ${result.cost:.4f}{estimate}; {_duration(result.duration)}{so_far}"
    ]
    if result.message:
        lines.append(f"message: {result.message}")
    for index, exc in [(i, e) for i, e in result.failures if not isinstance(e, TaskCancelled)][:5]:
        first = str(exc).splitlines()[0] if str(exc) else ""
        lines.append(f"  item {index} failed: {type(exc).__name__}: {first}")
    return "\n".join(lines)


def write_values(path: str | Path, values: list[Any]) -> Path:
    """Write a results list as one pickle (cloudpickle: exceptions and PENDING load back with pickle.load),
    atomically: a reader never sees half a file."""
    import os

    import cloudpickle

    target = Path(path).expanduser()
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            cloudpickle.dump(values, handle)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target.resolve()


def deadline_text(job_id: str, deadline: float, now: float | None = None) -> str:
    import time

    from starburst_jupyter.core.record import MAX_TIME
    from starburst_jupyter.display.status import _duration

    now = time.time() if now is None else now
    if not 0 <= deadline <= MAX_TIME:  # (a deadline set before extends were bounded: said, not a traceback)
        return f"job {job_id}: its --timeout now ends it after the year 9999: never, in practice"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(deadline))
    return f"job {job_id}: its --timeout now ends it at {when} (local time), in {_duration(deadline - now)}"


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    size = count / 1024
    for unit in ("KB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def prune_plan_text(go: list[Any], keep: list[Any], days: float, problem: str = "") -> str:
    """What prune would delete (a line per job) and what it keeps for now."""
    lines = [f"jobs older than {days:g} days to delete (their records and results): {len(go)}"]
    for found, judged in go:
        where = " and ".join(w for w, yes in (("this machine", found.local), ("bucket", found.shared)) if yes)
        lines.append(f"  {found.record.id}  {found.record.backend or '-'}  {judged.why}  ({where})")
    active = sum(found.record.is_active and not found.record.damaged for found, _ in keep)
    if active:
        lines.append(f"kept {active} active job(s): `starburst cancel JOB` first to prune one")
    if problem:
        lines.append(f"({problem})")
    return "\n".join(lines)


def pruned_text(pruned: Any) -> str:
    size = f"; {_size(pruned.bytes)} freed on this machine" if pruned.bytes else ""
    ids = f": {', '.join(pruned.removed)}" if pruned.removed else ""
    lines = [f"deleted {len(pruned.removed)} job(s){ids}{size}"]
    lines += [f"not deleted: {error}" for error in pruned.errors]
    return "\n".join(lines)


# ----- AWS (fargate) --------------------------------------------------------------------------------------


def setup(dry_run: bool = False, config: Config | None = None) -> str:
    """Plan (dry run) or create what the fargate backend needs, saving it to the config; the steps as text.
    Without credentials: one BurstBackendUnavailable line saying how to configure them, not botocore's name."""
    from starburst_jupyter.backends.fargate.setup import set_up

    config = config or load_config()
    try:
        steps, settings = set_up(config, dry_run=dry_run)
    except Exception as exc:
        problem = credentials_problem(exc)
        if problem is None:
            raise
        from starburst_jupyter.errors import BurstBackendUnavailable

        raise BurstBackendUnavailable(f"Set-up in {config.region} needs AWS credentials: {problem}") from None
    lines = [step.line() for step in steps]
    if dry_run:
        lines.append("(dry run: nothing changed)")
    else:
        lines.append(
            f"saved to the config: {', '.join(sorted(settings))}; --backend fargate is ready once a worker image "
            f"is set (%burst_rebuild or `starburst image build`, or image=URI in the config)"
        )
    return "\n".join(lines)


def teardown_plan(config: Config | None = None) -> tuple[str, bool]:
    """What teardown would delete, as text, and whether anything would be deleted."""
    from starburst_jupyter.backends.fargate.setup import tear_down

    steps = tear_down(config or load_config(), dry_run=True)
    return "\n".join(step.line() for step in steps), any(step.action == "delete" for step in steps)


def teardown(config: Config | None = None) -> str:
    """Delete the AWS resources tagged starburst:managed=true and clear them from the config; what was done, a
    line per resource (deleted, deregistered, kept because not ours). Raises TasksStillRunning, before deleting
    anything, while our cluster runs tasks."""
    from dataclasses import replace

    from starburst_jupyter.backends.fargate.setup import tear_down

    steps = tear_down(config or load_config())
    done = [replace(step, action="deleted") if step.action == "delete" else step for step in steps]
    lines = [step.line() for step in done if step.action != "absent"]
    count = sum(step.action == "deleted" for step in done)
    taskdefs = sum(step.action == "deleted" and step.kind == "task definition" for step in done)
    lines.append(f"deleted {count} resource(s), {taskdefs} of them task definitions")
    return "\n".join(lines)


def quota(spot: bool = False, request: float | None = None, config: Config | None = None) -> str:
    """The Fargate vCPU quota (after asking AWS to raise it to `request` vCPUs, when given)."""
    from starburst_jupyter.backends.fargate.quota import describe_quota, request_increase

    config = config or load_config()
    lines = []
    if request:
        from starburst_jupyter.backends.fargate.clients import client

        requested = request_increase(client("service-quotas", config.region), request, spot=spot)
        lines.append(f"requested {request:g} vCPUs: {requested.get('Status', 'submitted')}")
    lines.append(describe_quota(config, spot=spot))
    return "\n".join(lines)


def credentials_problem(exc: BaseException) -> str | None:
    """What is wrong with the AWS credentials and how to fix it, when `exc` says they are missing or expired."""
    from starburst_jupyter.backends.fargate.clients import error_code
    from starburst_jupyter.backends.fargate.doctor import EXPIRED, NO_CREDENTIALS

    code = error_code(exc)
    if code in NO_CREDENTIALS:
        return f"none were found ({code}). Configure them with `aws configure` (or `aws sso login`), then try again."
    if code in EXPIRED:
        return f"they have expired ({code}). Renew them (`aws sso login`), then try again."
    return None


def doctor(config: Config | None = None) -> tuple[str, bool]:
    """The doctor's report on the fargate set-up (read-only checks, each with its fix) and whether all passed."""
    from starburst_jupyter.backends.fargate.doctor import Check, report_text, run_checks

    problem = None
    if config is None:
        try:
            config = load_config()
        except BurstConfigError as exc:  # said, and the rest is checked with what can be read
            problem = Check("config", False, str(exc), f"fix or delete {config_path()}")
            config = config_for_existing_jobs()
    checks = ([problem] if problem else []) + run_checks(config)
    return report_text(checks), not any(check.ok is False for check in checks)


def setup_policy_text() -> str:
    """The IAM policy document `starburst setup` (and running jobs, teardown, the doctor) needs, as JSON."""
    import json

    from starburst_jupyter.backends.fargate.doctor import user_policy

    return json.dumps(user_policy(), indent=2)


def aws_error_text(exc: BaseException, command: str) -> str | None:
    """One line naming an AWS call's error (None when `exc` is not an AWS error)."""
    if not hasattr(exc, "response") and not type(exc).__module__.startswith("botocore"):
        return None
    from starburst_jupyter.backends.fargate.clients import error_code, error_message

    region = config_for_existing_jobs().region
    problem = credentials_problem(exc)
    if problem is not None:
        return f"{command}: no usable AWS credentials for {region}: {problem}"
    return f"{command}: {error_code(exc)}: {error_message(exc)} (region {region})"


# ----- the worker image ------------------------------------------------------------------------------------


def image_status(config: Config | None = None) -> dict[str, Any]:
    """This environment's worker image: hash, tag, and where it exists (local docker, ECR)."""
    from starburst_jupyter import envimage

    return envimage.image_status(config or load_config())


def image_status_text(config: Config | None = None) -> str:
    return "\n".join(f"{key}: {value}" for key, value in image_status(config).items())


def image_build(
    config: Config | None = None, *, push: bool | None = None, on_progress: Callable[[Any], None] | None = None
) -> str:
    """Build this environment's worker image now (and push it to ECR when `push`, default: backend fargate);
    returns the image's reference."""
    from starburst_jupyter import envimage

    return envimage.rebuild(config or load_config(), push=push, on_progress=on_progress or ImageProgressLines())

"""What the faces can ask of starburst besides running a job: status, logs, cancel, config, AWS set-up and the
worker image. Each command returns data or text; the magics, the `starburst` CLI and the Jupyter server
extension only parse, call and print (or serve). Imports no IPython.

The config is read only by the commands that need it, and commands on existing jobs (cancel, logs) need no
job defaults: a config.toml with a bad value must never stop a running job from being cancelled.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
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
PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "arm64"}


# ----- the config -------------------------------------------------------------------------------------


def config_text(config: Config | None = None) -> str:
    """Every key and its current value, one `key = value` a line."""
    config = config or load_config()
    return "\n".join(f"{key} = {getattr(config, key)!r}" for key in KEYS)


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
        """One job in detail, or the table of jobs (newest first)."""
        from starburst_jupyter.display.status import format_job, format_jobs

        return format_job(self.find(job)) if job and job.strip() else format_jobs(self.list(limit))

    def logs(self, job: str, worker: int | None = None, *, tail_lines: int | None = None) -> dict[int, str]:
        """{worker index: log text} of a job's workers (one worker's with `worker`; the last lines with tail_lines)."""
        return self.launcher.job_logs(job.strip(), worker, tail_lines=tail_lines)

    def log(self, job: str, worker: int) -> str:
        """One worker's whole log."""
        return self.logs(job, worker)[worker]

    def cancel(self, job: str, reason: str = "cancelled") -> dict[str, Any]:
        """Cancel a job, also one whose kernel is gone; idempotent. Returns the job's record after it."""
        return self.launcher.cancel_job(job.strip(), reason)


def status_text(job: str | None = None) -> str:
    return Jobs().status_text(job)


def logs_text(logs: dict[int, str]) -> str:
    """Each worker's log under a `----- worker N -----` line."""
    return "\n".join(f"----- worker {index} -----\n{text.rstrip() or '(empty)'}" for index, text in logs.items())


def cancel_text(record: dict[str, Any]) -> str:
    return f"job {record['id']}: {record['state']}"


# ----- AWS (fargate) --------------------------------------------------------------------------------------


def setup(dry_run: bool = False, config: Config | None = None) -> str:
    """Plan (dry run) or create what the fargate backend needs, saving it to the config; the steps as text."""
    from starburst_jupyter.backends.fargate.setup import set_up

    steps, settings = set_up(config or load_config(), dry_run=dry_run)
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


def aws_error_text(exc: BaseException, command: str) -> str | None:
    """One line naming an AWS call's error (None when `exc` is not an AWS error)."""
    if not hasattr(exc, "response") and not type(exc).__module__.startswith("botocore"):
        return None
    from starburst_jupyter.backends.fargate.clients import error_code, error_message

    region = config_for_existing_jobs().region
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

"""The `starburst` command: the job store and config from a terminal (same core as the magics)."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from typing import NoReturn

from starburst_jupyter import commands
from starburst_jupyter.errors import BurstError


class _Parser(argparse.ArgumentParser):
    """A wrong argument is one line naming it and where help is, not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


# Messages written for both faces name the magics; in a terminal each names the command that does the same.
_TERMINAL = {
    "status": "status",
    "cancel": "cancel",
    "logs": "logs",
    "config": "config",
    "setup": "setup",
    "rebuild": "image build",
    "attach": "collect",
    "doctor": "doctor",
}
_MAGIC_OR_CLI = re.compile(r"`?%burst_\w+[^()`%]*?`?\s*\(or (`starburst [^`]+`)(?: in a terminal)?\)")
_ARG = r"(?:--[\w-]+(?: (?:N|\d+))?|\[--worker N\]|[\w.-]+=[^\s,;()`]*|[A-Z_]{2,}\b|bj-[\w-]+)"
_MAGIC = re.compile(rf"`?%burst_({'|'.join(_TERMINAL)})\b((?: {_ARG})*)`?")
_DOUBLED_PERIOD = re.compile(r"(?<![.])\.\.(?![./])")


def for_terminal(text: str, job: str | None = None) -> str:
    """A message as a terminal user should read it: `starburst status` where it says %burst_status, and no "..",
    which message parts that each end a sentence make when joined. Job ids are known by their shape (bj-...)
    or as `job`, the one the command was given."""
    pattern = _MAGIC
    if job and job.strip():
        arg = rf"(?:{_ARG}|{re.escape(job.strip())}\b)"
        pattern = re.compile(rf"`?%burst_({'|'.join(_TERMINAL)})\b((?: {arg})*)`?")

    def command(match: re.Match[str]) -> str:
        args = match.group(2)
        end = "." if args.endswith(".") and not args.endswith("...") else ""
        return f"`starburst {_TERMINAL[match.group(1)]}{args[: len(args) - len(end)]}`{end}"

    text = pattern.sub(command, _MAGIC_OR_CLI.sub(r"\1", text))
    return _DOUBLED_PERIOD.sub(".", text)


def _say(text: str, err: bool = False, job: str | None = None) -> None:
    print(for_terminal(text, job), file=sys.stderr if err else sys.stdout)


def main(argv: list[str] | None = None) -> int:
    """The command line; `starburst status | head` ends quietly (no BrokenPipeError traceback)."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a reader gone (head) shows here, not as a traceback at exit
        return code
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)  # Python's recipe: no second error when stdout is flushed at exit
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
    from starburst_jupyter import __version__

    parser = _Parser(prog="starburst", description="Burst jobs from the terminal.")
    parser.add_argument("--version", action="version", version=f"starburst-jupyter {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True)
    status = subcommands.add_parser("status", help="list jobs (this machine's and the bucket's), or show one job")
    status.add_argument("job", nargs="?", help="job id or unique prefix")
    cancel = subcommands.add_parser("cancel", help="cancel a job (also one whose kernel is gone)")
    cancel.add_argument("job")
    logs = subcommands.add_parser(
        "logs",
        help="print a job's worker logs, or follow them until the job ends",
        description="Each worker's log under a '----- worker N -----' line; with --follow, new lines as they are "
        "written, '[worker N] ' before each, until the job ends (exit status 0 when it ended done).",
    )
    logs.add_argument("job", help="job id or unique prefix")
    logs.add_argument("--worker", type=int, metavar="N", help="only this worker's log")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each log (0: all)")
    logs.add_argument("--follow", "-f", action="store_true", help="print new lines until the job ends")
    subcommands.add_parser(
        "doctor",
        help="check the fargate set-up, read-only: each problem with the command that fixes it",
        description="Credentials, region, set-up, bucket (a probe object is written and deleted), worker image, "
        "subnets' routes, vCPU quota, task and driver roles. Exit status 1 when a check fails.",
    )
    collect = subcommands.add_parser(
        "collect",
        help="wait for a job and take its results (exit status 0 when it ended done)",
        description="Follow a job (detached, or one whose kernel is gone) to its end and summarise its results.",
    )
    collect.add_argument("job", help="job id or unique prefix")
    collect.add_argument("--out", metavar="FILE", help="write the values, in item order, to FILE as a pickle")
    collect.add_argument(
        "--partial", action="store_true", help="do not wait: what finished so far (PENDING for the rest)"
    )
    collect.add_argument("--timeout", metavar="S", help="wait at most S seconds (the job goes on)")
    extend = subcommands.add_parser("extend", help="give a running job more minutes before its --timeout")
    extend.add_argument("job", help="job id or unique prefix")
    extend.add_argument("minutes", metavar="MINUTES")
    prune = subcommands.add_parser(
        "prune",
        help="delete old finished jobs: their records and results (on this machine and in the bucket)",
        description="Finished (done, failed, cancelled) jobs that ended more than DAYS ago, and damaged records "
        "as old, lose their record and their results. Running jobs are never pruned.",
    )
    prune.add_argument("--older-than", metavar="DAYS", required=True, help="days since the job ended (0: all)")
    prune.add_argument("--yes", action="store_true", help="delete (without it, only list what would go)")
    prune.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    config = subcommands.add_parser("config", help="show or set defaults (key=value ...)")
    config.add_argument("values", nargs="*")
    config.add_argument("--explain", action="store_true", help="every key with its meaning and default")
    setup = subcommands.add_parser("setup", help="create what the fargate backend needs (idempotent) and save it")
    setup.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    setup.add_argument(
        "--print-policy", action="store_true", help="print the IAM policy your AWS identity needs, change nothing"
    )
    teardown = subcommands.add_parser("teardown", help="delete the AWS resources tagged starburst:managed=true")
    teardown.add_argument("--dry-run", action="store_true", help="print what would be deleted, change nothing")
    teardown.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    quota = subcommands.add_parser("quota", help="show the Fargate vCPU quota, or request an increase")
    quota.add_argument("--spot", action="store_true", help="the Fargate Spot quota")
    quota.add_argument("--request", type=float, metavar="VCPUS", help="ask AWS to raise the quota to this many vCPUs")
    image = subcommands.add_parser("image", help="the worker image of this environment (docker and fargate)")
    image.add_argument("action", choices=["status", "build"])
    image.add_argument("--push", action="store_true", default=None, help="build: also push to ECR")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        _say(f"starburst {args.command}: interrupted (a job goes on; `starburst status` shows it)", err=True)
        return 130
    except (KeyError, BurstError) as exc:
        _say(f"starburst {args.command}: {exc.args[0] if exc.args else exc}", err=True, job=getattr(args, "job", None))
        return 2
    except BrokenPipeError:
        raise
    except OSError as exc:  # e.g. STARBURST_HOME is a file, or a folder we may not write: one line, no traceback
        _say(f"starburst {args.command}: {_os_error_text(exc)}", err=True)
        return 1
    except Exception as exc:  # AWS errors: one line naming the call, not a traceback
        line = commands.aws_error_text(exc, f"starburst {args.command}")
        if line is None:
            raise
        _say(line, err=True)
        return 2


def _os_error_text(exc: OSError) -> str:
    """What went wrong on disk, and where to look when it is inside the job store."""
    from starburst_jupyter.core.config import starburst_home

    where = f" ({exc.filename})" if exc.filename else ""
    text = f"{exc.strerror or exc}{where}"
    home = str(starburst_home())
    if exc.filename and str(exc.filename).startswith(home):
        text += f". The job store and config live in STARBURST_HOME={home}: it must be a folder you can write."
    return text


def _number(text: str | None, what: str) -> float | None:
    """A finite number from the command line (BurstError naming the argument otherwise)."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BurstError(f"{what} {text!r} is not a number")
    return value


def _collect(args: argparse.Namespace) -> int:
    from starburst_jupyter.core.options import check_wait_seconds

    timeout = _number(args.timeout, "--timeout")
    if timeout is not None and timeout < 0:
        raise BurstError(f"--timeout {args.timeout}: give seconds, 0 or more")
    timeout = check_wait_seconds(timeout, "--timeout")  # before the job is looked up
    jobs = commands.Jobs()
    try:
        result, backend = jobs.collect(args.job, partial=args.partial, timeout=timeout)
    except TimeoutError as exc:
        print(
            f"starburst collect: {exc}; `starburst collect {args.job} --partial` takes what finished", file=sys.stderr
        )
        return 1
    _say(commands.collect_text(result, backend, partial=args.partial))
    if args.out:
        path = commands.write_values(args.out, result.values)
        print(f"wrote the {len(result.values)} values, in item order, to {path} (pickle; load with pickle.load)")
    return 0 if result.state in ("done", "running") else 1


def _prune(args: argparse.Namespace) -> int:
    days = _number(args.older_than, "--older-than")
    assert days is not None
    jobs = commands.Jobs()
    if days < 0:
        raise BurstError(f"--older-than {args.older_than}: give a number of days, 0 or more (0: every finished job)")
    go, keep, problem = jobs.prunable(days)
    print(commands.prune_plan_text(go, keep, days, problem))
    if not go:
        return 0
    if args.dry_run or not args.yes:
        print("nothing deleted: add --yes to delete them" if not args.dry_run else "(dry run: nothing deleted)")
        return 0
    pruned = jobs.prune([found for found, _ in go])
    print(commands.pruned_text(pruned))
    return 1 if pruned.errors else 0


def _logs(args: argparse.Namespace) -> int:
    if args.tail is not None and args.tail < 0:
        raise BurstError(f"--tail {args.tail}: give a number of lines, 0 or more (0: all)")
    jobs = commands.Jobs()
    if not args.follow:
        logs, _ = commands.tail_logs(jobs.logs(args.job, args.worker), args.tail or 0)
        print(commands.logs_text(logs))
        return 0

    def emit(index: int, line: str) -> None:
        print(line if args.worker is not None else f"[worker {index}] {line}", flush=True)

    state = jobs.follow_logs(args.job, emit, args.worker, tail=10 if args.tail is None else args.tail)
    _say(f"starburst logs: job {args.job.strip()} ended {state}", err=True)
    return 0 if state == "done" else 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "status":
        _say(commands.status_text(args.job), job=args.job)
    elif args.command == "logs":
        return _logs(args)
    elif args.command == "doctor":
        text, ok = commands.doctor()
        _say(text)
        return 0 if ok else 1
    elif args.command == "collect":
        return _collect(args)
    elif args.command == "extend":
        from starburst_jupyter.core.options import check_minutes

        minutes = check_minutes(_number(args.minutes, "MINUTES"), what=f"MINUTES {args.minutes}")
        job_id, deadline = commands.Jobs().extend(args.job, minutes)
        print(commands.deadline_text(job_id, deadline))
    elif args.command == "prune":
        return _prune(args)
    elif args.command == "cancel":
        print(commands.cancel_text(commands.Jobs().cancel(args.job, "cancelled with `starburst cancel`")))
    elif args.command == "setup" and args.print_policy:
        print(commands.setup_policy_text())
    elif args.command == "setup":
        _say(commands.setup(dry_run=args.dry_run))
    elif args.command == "teardown":
        plan, deletes = commands.teardown_plan()
        print(plan)
        if args.dry_run or not deletes:
            return 0
        if not args.yes and input("Delete the resources marked 'delete'? [y/N] ").strip().lower() != "y":
            print("nothing deleted")
            return 1
        from starburst_jupyter.backends.fargate.setup import TasksStillRunning

        try:
            print(commands.teardown())
        except TasksStillRunning as exc:  # refused before anything was deleted: one line, what to do next
            _say(f"starburst teardown: {exc}", err=True)
            return 1
    elif args.command == "quota":
        _say(commands.quota(spot=args.spot, request=args.request))
    elif args.command == "image":
        _say(commands.image_build(push=args.push) if args.action == "build" else commands.image_status_text())
    elif args.explain:
        print(commands.config_explain_text())
    else:
        if args.values:
            print(f"saved to {commands.config_set(' '.join(args.values))}")
        print(commands.config_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `starburst` command: the job store and config from a terminal (same core as the magics)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn

from starburst_jupyter import commands
from starburst_jupyter.errors import BurstError


class _Parser(argparse.ArgumentParser):
    """A wrong argument is one line naming it and where help is, not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="starburst", description="Burst jobs from the terminal.")
    subcommands = parser.add_subparsers(dest="command", required=True)
    status = subcommands.add_parser("status", help="list jobs (this machine's and the bucket's), or show one job")
    status.add_argument("job", nargs="?", help="job id or unique prefix")
    cancel = subcommands.add_parser("cancel", help="cancel a job (also one whose kernel is gone)")
    cancel.add_argument("job")
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
    setup = subcommands.add_parser("setup", help="create what the fargate backend needs (idempotent) and save it")
    setup.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
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
        print(f"starburst {args.command}: interrupted (a job goes on; `starburst status` shows it)", file=sys.stderr)
        return 130
    except (KeyError, BurstError) as exc:
        print(f"starburst: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. STARBURST_HOME is a file, or a folder we may not write: one line, no traceback
        print(f"starburst {args.command}: {_os_error_text(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # AWS errors: one line naming the call, not a traceback
        line = commands.aws_error_text(exc, f"starburst {args.command}")
        if line is None:
            raise
        print(line, file=sys.stderr)
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
    timeout = _number(args.timeout, "--timeout")
    if timeout is not None and timeout < 0:
        raise BurstError(f"--timeout {args.timeout}: give seconds, 0 or more")
    jobs = commands.Jobs()
    try:
        result, backend = jobs.collect(args.job, partial=args.partial, timeout=timeout)
    except TimeoutError as exc:
        print(
            f"starburst collect: {exc}; `starburst collect {args.job} --partial` takes what finished", file=sys.stderr
        )
        return 1
    print(commands.collect_text(result, backend, partial=args.partial))
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


def _run(args: argparse.Namespace) -> int:
    if args.command == "status":
        print(commands.status_text(args.job))
    elif args.command == "collect":
        return _collect(args)
    elif args.command == "extend":
        minutes = _number(args.minutes, "MINUTES")
        assert minutes is not None
        job_id, deadline = commands.Jobs().extend(args.job, minutes)
        print(commands.deadline_text(job_id, deadline))
    elif args.command == "prune":
        return _prune(args)
    elif args.command == "cancel":
        print(commands.cancel_text(commands.Jobs().cancel(args.job, "cancelled with `starburst cancel`")))
    elif args.command == "setup":
        print(commands.setup(dry_run=args.dry_run))
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
            print(f"starburst teardown: {exc}", file=sys.stderr)
            return 1
    elif args.command == "quota":
        print(commands.quota(spot=args.spot, request=args.request))
    elif args.command == "image":
        print(commands.image_build(push=args.push) if args.action == "build" else commands.image_status_text())
    else:
        if args.values:
            print(f"saved to {commands.config_set(' '.join(args.values))}")
        print(commands.config_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

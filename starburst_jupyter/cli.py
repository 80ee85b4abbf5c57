"""The `starburst` command: the job store and config from a terminal (same core as the magics)."""

from __future__ import annotations

import argparse
import sys

from starburst_jupyter import commands
from starburst_jupyter.errors import BurstError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="starburst", description="Burst jobs from the terminal.")
    subcommands = parser.add_subparsers(dest="command", required=True)
    status = subcommands.add_parser("status", help="list jobs, or show one job")
    status.add_argument("job", nargs="?", help="job id or unique prefix")
    cancel = subcommands.add_parser("cancel", help="cancel a job (also one whose kernel is gone)")
    cancel.add_argument("job")
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


def _run(args: argparse.Namespace) -> int:
    if args.command == "status":
        print(commands.status_text(args.job))
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

"""The `starburst` command: the job store and config from a terminal (same core as the magics)."""

from __future__ import annotations

import argparse
import sys

from starburst_jupyter.core.config import KEYS, load_config, parse_assignments, save_values
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.display.status import format_job, format_jobs
from starburst_jupyter.errors import BurstError
from starburst_jupyter.stores.records import JobStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="starburst", description="Burst jobs from the terminal.")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="list jobs, or show one job")
    status.add_argument("job", nargs="?", help="job id or unique prefix")
    cancel = commands.add_parser("cancel", help="cancel a job (also one whose kernel is gone)")
    cancel.add_argument("job")
    config = commands.add_parser("config", help="show or set defaults (key=value ...)")
    config.add_argument("values", nargs="*")
    setup = commands.add_parser("setup", help="create what the fargate backend needs (idempotent) and save it")
    setup.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    teardown = commands.add_parser("teardown", help="delete the AWS resources tagged starburst:managed=true")
    teardown.add_argument("--dry-run", action="store_true", help="print what would be deleted, change nothing")
    teardown.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    quota = commands.add_parser("quota", help="show the Fargate vCPU quota, or request an increase")
    quota.add_argument("--spot", action="store_true", help="the Fargate Spot quota")
    quota.add_argument("--request", type=float, metavar="VCPUS", help="ask AWS to raise the quota to this many vCPUs")
    image = commands.add_parser("image", help="the worker image of this environment (docker and fargate)")
    image.add_argument("action", choices=["status", "build"])
    image.add_argument("--push", action="store_true", default=None, help="build: also push to ECR")
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            store = JobStore()
            print(format_job(store.find(args.job)) if args.job else format_jobs(store.list(limit=50)))
        elif args.command == "cancel":
            record = Launcher().cancel_job(args.job, "cancelled with `starburst cancel`")
            print(f"job {record['id']}: {record['state']}")
        elif args.command in ("setup", "teardown", "quota"):
            return _aws_command(args)
        elif args.command == "image":
            from starburst_jupyter import envimage

            if args.action == "build":
                print(envimage.rebuild(load_config(), push=args.push, on_progress=envimage.TextProgress()))
            else:
                for key, value in envimage.image_status(load_config()).items():
                    print(f"{key}: {value}")
        else:
            if args.values:
                print(f"saved to {save_values(parse_assignments(' '.join(args.values)))}")
            current = load_config()
            print("\n".join(f"{key} = {getattr(current, key)!r}" for key in KEYS))
    except (KeyError, BurstError) as exc:
        print(f"starburst: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # AWS errors: one line naming the call, not a traceback
        from starburst_jupyter.backends.fargate.clients import error_code, error_message

        if not hasattr(exc, "response") and not type(exc).__module__.startswith("botocore"):
            raise
        print(
            f"starburst {args.command}: {error_code(exc)}: {error_message(exc)} (region {load_config().region})",
            file=sys.stderr,
        )
        return 2
    return 0


def _aws_command(args: argparse.Namespace) -> int:
    from starburst_jupyter.backends.fargate.quota import describe_quota, request_increase
    from starburst_jupyter.backends.fargate.setup import set_up, tear_down

    config = load_config()
    if args.command == "setup":
        steps, settings = set_up(config, dry_run=args.dry_run)
        print("\n".join(step.line() for step in steps))
        print("(dry run: nothing changed)" if args.dry_run else f"saved to the config: {', '.join(sorted(settings))}")
    elif args.command == "teardown":
        steps = tear_down(config, dry_run=True)
        print("\n".join(step.line() for step in steps))
        if args.dry_run or not any(step.action == "delete" for step in steps):
            return 0
        if not args.yes and input("Delete the resources marked 'delete'? [y/N] ").strip().lower() != "y":
            print("nothing deleted")
            return 1
        tear_down(config)
        print("deleted")
    else:
        if args.request:
            from starburst_jupyter.backends.fargate.clients import client

            requested = request_increase(client("service-quotas", config.region), args.request, spot=args.spot)
            print(f"requested {args.request:g} vCPUs: {requested.get('Status', 'submitted')}")
        print(describe_quota(config, spot=args.spot))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `starburst` command: the job store and config from a terminal (same core as the magics)."""
from __future__ import annotations

import argparse
import sys

from .config import KEYS, load_config, parse_assignments, save_values
from .errors import BurstError
from .jobstore import JobStore
from .launcher import Launcher
from .status import format_job, format_jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="starburst", description="Burst jobs from the terminal.")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="list jobs, or show one job")
    status.add_argument("job", nargs="?", help="job id or unique prefix")
    cancel = commands.add_parser("cancel", help="cancel a job (also one whose kernel is gone)")
    cancel.add_argument("job")
    config = commands.add_parser("config", help="show or set defaults (key=value ...)")
    config.add_argument("values", nargs="*")
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            store = JobStore()
            print(format_job(store.find(args.job)) if args.job else format_jobs(store.list(limit=50)))
        elif args.command == "cancel":
            record = Launcher().cancel_job(args.job, "cancelled with `starburst cancel`")
            print(f"job {record['id']}: {record['state']}")
        else:
            if args.values:
                print(f"saved to {save_values(parse_assignments(' '.join(args.values)))}")
            current = load_config()
            print("\n".join(f"{key} = {getattr(current, key)!r}" for key in KEYS))
    except (KeyError, BurstError) as exc:
        print(f"starburst: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m starburst_jupyter.core.drive`: drive one detached job to its end, apart from any kernel.

Started by `Launcher.submit(detach=True)` as a process of the launching machine (local, docker) or as an
ECS task (Fargate). Everything it needs is in the job's store: the launching configuration and the
driver's pace (driver.json), the job's record, spec, program and task blocks."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from typing import Any

from starburst_jupyter.core.config import Config
from starburst_jupyter.core.decisions import Timings
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.stores.objects import open_store


def config_from_json(data: dict[str, Any]) -> Config:
    """The Config `Launcher` wrote into driver.json (lists back to tuples; keys this version lacks dropped)."""
    names = {f.name for f in fields(Config)}
    values: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
    return Config(**values)


def timings_from_json(data: dict[str, Any]) -> Timings:
    names = {f.name for f in fields(Timings)}
    values: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
    return Timings(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m starburst_jupyter.core.drive", description=__doc__)
    parser.add_argument("--store", required=True, help="the job's object store (file:///... or s3://bucket)")
    parser.add_argument("--prefix", required=True, help="the job's prefix in that store")
    parser.add_argument("--job", required=True, help="the job id")
    parser.add_argument("--lease", type=int, help="the epoch of the lease its starter took for this driver")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s driver %(levelname)s %(message)s")
    from starburst_jupyter.core.launcher import Launcher

    files = JobFiles(open_store(args.store), args.job, args.prefix)
    setup = files.read_driver_config()
    launcher = Launcher(config_from_json(setup["config"]))
    launcher.timings = timings_from_json(setup.get("timings", {}))
    from starburst_jupyter.core.lease import LeaseLost

    try:
        driver = launcher.detached_driver(files, args.lease)
    except LeaseLost as lost:  # another driver has the job: this one ends at once, having written nothing
        logging.warning("%s", lost)
        return 0
    logging.info("driving job %s (%s, lease epoch %s)", args.job, args.store, driver.lease and driver.lease.epoch)
    driver.run()  # in this thread: the process is the job's driver and ends with it
    outcome = driver.handle.outcome
    logging.info("job %s ended %s", args.job, outcome.state if outcome else "without a result")
    return 0 if outcome is not None else 1


if __name__ == "__main__":
    sys.exit(main())

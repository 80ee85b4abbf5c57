"""Jupyter server extension: the job store over REST for the JupyterLab "Burst" sidebar.

Enabled by the `jupyter_server_config.d/starburst_jupyter.json` that the wheel installs. Routes live
under the server's base URL at `starburst/api/` (see `handlers.py`) and go through the server's own
authentication and XSRF checks. The core never imports this package; this package uses the core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Service:
    """What the REST handlers share for the server's lifetime, held in the app's settings as
    `web_app.settings["starburst"]`: the job store's cached index (listings) and the job commands over one
    launcher, made when first needed, whose backends keep their clients between requests (logs, cancel)."""

    def __init__(self, home: Path | None = None):
        from starburst_jupyter.commands import Jobs
        from starburst_jupyter.stores.records import JobIndex

        self.jobs = Jobs(home)
        self.index = JobIndex(self.jobs.store)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "starburst_jupyter.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from starburst_jupyter.server.handlers import setup_handlers

    serverapp.web_app.settings["starburst"] = Service()
    setup_handlers(serverapp.web_app)
    serverapp.log.info(
        "starburst_jupyter.server: job API at %sstarburst/api/jobs", serverapp.web_app.settings.get("base_url", "/")
    )


# jupyter_server < 2 spelling
load_jupyter_server_extension = _load_jupyter_server_extension

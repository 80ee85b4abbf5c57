"""Jupyter server extension: the job store over REST for the JupyterLab "Burst" sidebar.

Enabled by the `jupyter_server_config.d/starburst_jupyter.json` that the wheel installs. Routes live
under the server's base URL at `starburst/api/` (see `handlers.py`) and go through the server's own
authentication and XSRF checks. The core never imports this package; this package uses the core.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "starburst_jupyter.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from starburst_jupyter.server.handlers import setup_handlers

    setup_handlers(serverapp.web_app)
    serverapp.log.info(
        "starburst_jupyter.server: job API at %sstarburst/api/jobs", serverapp.web_app.settings.get("base_url", "/")
    )


# jupyter_server < 2 spelling
load_jupyter_server_extension = _load_jupyter_server_extension

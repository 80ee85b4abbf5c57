"""starburst-jupyter: burst a notebook cell to many workers.

`%load_ext starburst_jupyter`, then `%%burst --map x in items` on a cell. The Python face is
`burst_map` and `BurstExecutor`. Importing this package does not import IPython.
"""

from __future__ import annotations

import sys

from starburst_jupyter.errors import (
    BurstCancelled,
    BurstCaptureError,
    BurstConfigError,
    BurstError,
    BurstTimeout,
    BurstValidationError,
    ResultTooLarge,
    WorkerLost,
)

__version__ = "0.1.0"
__all__ = [
    "BurstCancelled",
    "BurstCaptureError",
    "BurstConfigError",
    "BurstError",
    "BurstExecutor",
    "BurstTimeout",
    "BurstValidationError",
    "DetachedJob",
    "PENDING",
    "ResultTooLarge",
    "WorkerLost",
    "attach",
    "burst_map",
    "load_ipython_extension",
]


def __getattr__(name: str):
    # Lazy, so `python -m starburst_jupyter.worker` starts without loading the launcher.
    if name in ("burst_map", "BurstExecutor", "attach", "DetachedJob", "PENDING"):
        from starburst_jupyter import api

        return getattr(api, name)
    raise AttributeError(f"module 'starburst_jupyter' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:  # IPython's shell
    from starburst_jupyter.magics import BurstMagics, make_async_transformer

    unload_ipython_extension(ipython)  # a second %load_ext (or %reload_ext) replaces, never doubles
    magics = BurstMagics(ipython)
    ipython.register_magics(magics)
    ipython.input_transformers_cleanup.append(make_async_transformer(ipython, magics))
    _prestart_local_pool()


def _prestart_local_pool() -> None:
    """Start the local worker pool's fork server now, in the background, so the notebook's first local
    %%burst cell (or a script's first burst_map: _warm.py) is already warm. Never in a worker, where a user's
    module may import burst_map without bursting; a broken config is the magics' to report, not the import's."""
    main = getattr(sys.modules.get("__main__"), "__spec__", None)  # a worker runs one of these two as __main__
    if getattr(main, "name", "") in ("starburst_jupyter.worker.__main__", "starburst_jupyter.worker.zygote"):
        return
    from starburst_jupyter.backends import zygote
    from starburst_jupyter.core.config import load_config, starburst_home

    try:
        config = load_config()
    except (BurstConfigError, OSError):
        return
    if config.backend == "local":
        zygote.prestart(config.local_warm_seconds, starburst_home())


def unload_ipython_extension(ipython) -> None:
    """Undo load_ipython_extension: the magics are unknown again and cells are no longer rewritten."""
    from starburst_jupyter.magics import ASYNC_ENTRY, is_async_transformer

    manager = ipython.magics_manager
    ours = manager.registry.pop("BurstMagics", None)
    if ours is not None:
        for kind, table in ours.magics.items():
            registered = manager.magics.get(kind, {})
            for name in table:
                method = registered.get(name)
                if getattr(method, "__self__", None) is ours:
                    del registered[name]
    transformers = ipython.input_transformers_cleanup
    transformers[:] = [t for t in transformers if not is_async_transformer(t)]
    ipython.user_ns.pop(ASYNC_ENTRY, None)

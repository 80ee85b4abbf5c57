"""Imported first by api.py, for its side effect: the local pool's fork server (backends/zygote.py) starts in
the background while the launcher's modules import. Both take ~0.2 s, so a script's first local job finds
its workers' server ready. This does nothing in a worker (a user module that imports burst_map there does not
burst), when the config's backend is not local, and when local_warm_seconds is 0."""

from __future__ import annotations

from starburst_jupyter import _prestart_local_pool

_prestart_local_pool()

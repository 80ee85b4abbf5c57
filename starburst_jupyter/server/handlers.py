"""REST handlers, under the server's base URL:

GET  starburst/api/jobs[?state=running,done|active|finished][&limit=N]   jobs, running first
GET  starburst/api/jobs/<id>                                            one job in detail
GET  starburst/api/jobs/<id>/workers/<n>/log[?cursor=C][&tail=N]        a worker's log lines since C
POST starburst/api/jobs/<id>/cancel  [{"reason": "..."}]                cancel (idempotent)

Every route needs the server's authentication (token or login cookie) and, for POST, its XSRF check.
Errors are JSON `{"message": ..., "reason": ...}` with a 4xx status, never an HTML page.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from starburst_jupyter.backends.logfiles import LogNotReadable
from starburst_jupyter.server import Service, views
from starburst_jupyter.stores.records import TERMINAL_STATES, JobIndex

API = "starburst/api"
JOB_ID = r"(?P<job_id>[^/]+)"
VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DEFAULT_LIMIT = 200  # finished jobs listed at most (running ones are always listed)
MAX_LIMIT = 5000
MAX_LOG_LINES = 2000
MAX_LOG_CHARS = 512 * 1024  # bytes of the log one request reads and returns at most
CANCEL_REASON = "cancelled from the Burst sidebar"


class BurstHandler(APIHandler):
    auth_resource = "starburst"

    @property
    def service(self) -> Service:
        return self.settings["starburst"]

    @property
    def index(self) -> JobIndex:
        return self.service.index

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(views.strict_json(payload))  # (never `Infinity`: it would break the sidebar's JSON.parse)

    def job_id(self, raw: str) -> str:
        if not VALID_ID.match(raw):
            raise web.HTTPError(
                400, f"{raw[:80]!r} is not a job id (ids look like bj-20261123-101500-3f9a2c)", reason="Bad job id"
            )
        return raw

    def record(self, raw: str) -> dict[str, Any]:
        job_id = self.job_id(raw)
        try:
            return self.index.get(job_id)
        except KeyError:
            raise web.HTTPError(404, f"No job {job_id!r} in the job store", reason="No such job") from None

    def int_argument(self, name: str, default: int | None, low: int, high: int) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise web.HTTPError(400, f"{name} must be an integer, not {raw[:40]!r}", reason="Bad request") from None
        if not low <= value <= high:
            raise web.HTTPError(400, f"{name} must be between {low} and {high}, not {value}", reason="Bad request")
        return value


class JobsHandler(BurstHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            states = views.parse_states(self.get_query_arguments("state"))
        except ValueError as exc:
            raise web.HTTPError(400, str(exc), reason="Bad state filter") from None
        limit = self.int_argument("limit", DEFAULT_LIMIT, 0, MAX_LIMIT)
        records = self.index.records()
        version = self.index.version()
        if states is not None:
            records = [r for r in records if r.get("state") in states]
        ordered = views.order(records)
        active = [r for r in ordered if r.get("state") not in TERMINAL_STATES]
        finished = [r for r in ordered if r.get("state") in TERMINAL_STATES]
        now = time.time()
        shown = active + finished[:limit]
        self.write_json(
            {
                "jobs": [views.summary(r, now) for r in shown],
                "matched": len(records),
                "omitted": len(records) - len(shown),
                "version": version,
                "now": now,
            }
        )


class JobHandler(BurstHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        self.write_json({"job": views.detail(self.record(job_id)), "now": time.time()})


class WorkerLogHandler(BurstHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str, worker: str) -> None:
        record = self.record(job_id)
        workers = views.worker_rows(record)
        info = workers.get(worker) if worker.isdigit() else None
        if not isinstance(info, dict):
            known = sorted(int(i) for i in workers)
            raise web.HTTPError(
                404,
                f"Job {record['id']} has no worker {worker[:20]!r}; its workers are {known}",
                reason="No such worker",
            )
        cursor = self.int_argument("cursor", None, 0, 2**62)
        tail = self.int_argument("tail", None, 0, MAX_LOG_LINES)
        ended = not views.worker_running(info, record)
        read = functools.partial(self._read_chunk, record["id"], record["backend"], int(worker), cursor, tail, ended)
        try:
            chunk = await asyncio.get_running_loop().run_in_executor(None, read)
        except web.HTTPError:
            raise
        except LogNotReadable as exc:
            raise web.HTTPError(403, str(exc), reason="Log not readable") from None
        except Exception as exc:  # e.g. a backend that is not available here
            self.log.exception("starburst: reading log %s/%s failed", record["id"], worker)
            raise web.HTTPError(
                500, f"could not read the log: {type(exc).__name__}: {exc}", reason="Log unavailable"
            ) from None
        self.write_json({"job": record["id"], "worker": int(worker), **chunk, "worker_running": not ended})

    def _read_chunk(
        self, job_id: str, backend_name: str, worker: int, cursor: int | None, tail: int | None, ended: bool
    ) -> dict[str, Any]:
        """What one poll returns, reading at most MAX_LOG_CHARS bytes of the log (cursors are byte offsets)."""
        launcher = self.service.jobs.launcher
        backend = launcher.backend(backend_name)
        reader = launcher.capabilities(backend_name).log_tail
        files = backend.job_files(job_id)
        if reader is None:  # a backend without cheap reads: the whole log, as before
            whole = backend.read_log(files, worker).encode()
            reader = _WholeLog(whole)
        if cursor is None and tail is not None:
            data, start, size = reader.read_log_bytes(files, worker, -MAX_LOG_CHARS, MAX_LOG_CHARS)
            return views.log_chunk(data, start, size, ended, tail=tail, max_lines=MAX_LOG_LINES)
        data, start, size = reader.read_log_bytes(files, worker, cursor or 0, MAX_LOG_CHARS)
        if cursor is not None and cursor > size:
            raise web.HTTPError(400, f"cursor {cursor} is past the end of the log ({size} bytes)", reason="Bad cursor")
        return views.log_chunk(data, start, size, ended, limit=MAX_LOG_CHARS, max_lines=MAX_LOG_LINES)


class _WholeLog:
    """read_log_bytes over a log already read whole (a backend without the TailsLogsCheaply capability)."""

    def __init__(self, data: bytes):
        self.data = data

    def read_log_bytes(self, files: Any, worker: int, offset: int, limit: int) -> tuple[bytes, int, int]:
        start = max(0, len(self.data) + offset) if offset < 0 else min(offset, len(self.data))
        return self.data[start : start + limit], start, len(self.data)


class CancelHandler(BurstHandler):
    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        record = self.record(job_id)
        reason = CANCEL_REASON
        if self.request.body.strip():
            try:
                body = json.loads(self.request.body)
            except (ValueError, UnicodeDecodeError):
                raise web.HTTPError(
                    400, 'the body must be JSON, e.g. {"reason": "..."}', reason="Malformed JSON"
                ) from None
            if not isinstance(body, dict) or not isinstance(body.get("reason", ""), str):
                raise web.HTTPError(
                    400, 'the body must be a JSON object whose "reason" is a string', reason="Bad request"
                )
            reason = body.get("reason", "").strip()[:200] or CANCEL_REASON
        before = record.get("state")
        try:
            after = await asyncio.get_running_loop().run_in_executor(
                None, self.service.jobs.cancel, record["id"], reason
            )
        except KeyError:
            raise web.HTTPError(404, f"No job {record['id']!r} in the job store", reason="No such job") from None
        except Exception as exc:  # the core's own error, shown to the user
            self.log.exception("starburst: cancel of %s failed", record["id"])
            raise web.HTTPError(500, f"cancel failed: {type(exc).__name__}: {exc}", reason="Cancel failed") from None
        self.write_json(
            {
                "job": views.detail(after),
                "was": before,
                "cancelled": after.get("state") == "cancelled",
                "already_finished": before in TERMINAL_STATES,
            }
        )


class NotFoundHandler(BurstHandler):
    """Anything else under starburst/api: a JSON 404 rather than the server's HTML page."""

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        raise web.HTTPError(404, f"no such route: {API}/{path[:100]}", reason="Not found")

    post = put = delete = patch = get


def setup_handlers(web_app: Any, service: Service | None = None) -> None:
    """The routes, over the service in the app's settings (`web_app.settings["starburst"]`; given or made here)."""
    if service is not None or "starburst" not in web_app.settings:
        web_app.settings["starburst"] = service or Service()
    base = url_path_join(web_app.settings.get("base_url", "/"), API)
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "jobs") + "/?", JobsHandler),
            (url_path_join(base, "jobs", JOB_ID) + "/?", JobHandler),
            (url_path_join(base, "jobs", JOB_ID, "workers", r"(?P<worker>[^/]+)", "log") + "/?", WorkerLogHandler),
            (url_path_join(base, "jobs", JOB_ID, "cancel") + "/?", CancelHandler),
            (url_path_join(base, "(?P<path>.*)"), NotFoundHandler),
        ],
    )

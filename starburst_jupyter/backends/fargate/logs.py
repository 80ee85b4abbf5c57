"""A Fargate job's worker logs in CloudWatch Logs: live tails for the driver, previews and whole logs for
faces. Reads are batched (one FilterLogEvents per 100 streams per poll) and bounded (one GetLogEvents for
a preview); CloudWatch delivers late and in batches, so every live read looks back LOG_LAG_MS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starburst_jupyter.backends.base import WorkerRef
from starburst_jupyter.backends.fargate.clients import error_code
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.stores.records import JobStore

LOG_STREAMS_BATCH = 100  # FilterLogEvents takes up to 100 stream names
LOG_LAG_MS = 10_000  # how late CloudWatch may deliver a line: each read looks back this far


class CloudWatchLogs:
    def __init__(self, client: Callable[[str], Any], log_group: str, home: Path):
        self._client, self.log_group, self.home = client, log_group, home

    def tail_logs(self, files: JobFiles, refs: list[WorkerRef], cursor: Any) -> tuple[list[tuple[int, str]], Any]:
        """One FilterLogEvents per 100 workers per poll, from where the last read ended."""
        # from the job's first worker on: a stream of a worker taken warm also holds its earlier job's lines;
        # each read goes back LOG_LAG_MS (CloudWatch delivers late, in batches) and skips events already seen
        cursor = cursor or {"since": int(min((r.started for r in refs), default=0) * 1000), "seen": {}}
        logs = self._client("logs")
        by_stream = {r.info["log_stream"]: r.index for r in refs if "log_stream" in r.info}
        streams = sorted(by_stream)
        lines: list[tuple[int, str]] = []
        newest, seen = cursor["since"], dict(cursor["seen"])
        for start in range(0, len(streams), LOG_STREAMS_BATCH):
            kwargs = {
                "logGroupName": self.log_group,
                "logStreamNames": streams[start : start + LOG_STREAMS_BATCH],
                "startTime": max(0, cursor["since"] - LOG_LAG_MS),
            }
            try:
                for page in logs.get_paginator("filter_log_events").paginate(**kwargs):
                    for event in page.get("events", ()):
                        if event["eventId"] in seen:
                            continue
                        seen[event["eventId"]] = event["timestamp"]
                        lines.append((by_stream[event["logStreamName"]], event["message"].rstrip("\n")))
                        newest = max(newest, event["timestamp"])
            except Exception as exc:  # no stream yet (task still starting) is normal
                if error_code(exc) != "ResourceNotFoundException":
                    raise
        horizon = newest - LOG_LAG_MS
        return lines, {"since": newest, "seen": {k: t for k, t in seen.items() if t >= horizon}}

    def _stream_of(self, files: JobFiles, worker: int) -> str | None:
        try:
            stream: str | None = (
                JobStore(self.home).read(files.job_id).get("workers", {}).get(str(worker), {}).get("log_stream")
            )
            return stream
        except KeyError:
            return None

    def read_log_tail(self, files: JobFiles, worker: int, lines: int) -> str:
        """The last lines of a worker's log in one GetLogEvents call (a status view's preview)."""
        stream = self._stream_of(files, worker)
        if not stream:
            return ""
        try:
            reply = self._client("logs").get_log_events(
                logGroupName=self.log_group,
                logStreamName=stream,
                startFromHead=False,
                limit=max(1, min(lines, 10_000)),
            )
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return ""
            raise
        return "".join(event["message"].rstrip("\n") + "\n" for event in reply.get("events", ()))

    def read_log_bytes(self, files: JobFiles, worker: int, offset: int, limit: int) -> tuple[bytes, int, int]:
        """(TailsLogsCheaply) CloudWatch has no byte offsets: the stream is read and only the range is returned
        (a tail without a cursor is one GetLogEvents call through read_log_tail)."""
        data = self.read_log(files, worker).encode()
        start = max(0, len(data) + offset) if offset < 0 else min(offset, len(data))
        return data[start : start + max(0, limit)], start, len(data)

    def read_log(self, files: JobFiles, worker: int) -> str:
        stream = self._stream_of(files, worker)
        if not stream:
            return ""
        logs = self._client("logs")
        lines: list[str] = []
        token = None
        while True:
            kwargs = {"logGroupName": self.log_group, "logStreamName": stream, "startFromHead": True}
            if token:
                kwargs["nextToken"] = token
            try:
                reply = logs.get_log_events(**kwargs)
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return ""
                raise
            lines.extend(event["message"].rstrip("\n") for event in reply.get("events", ()))
            if not reply.get("events") or reply.get("nextForwardToken") == token:
                break
            token = reply.get("nextForwardToken")
        return "\n".join(lines) + ("\n" if lines else "")

"""moto in server mode for the tests: a real HTTP endpoint on 127.0.0.1 that boto3 (in this
process and in worker subprocesses) reaches through the standard AWS_ENDPOINT_URL.

Also two test-only adjustments of moto's S3, both applied at moto's S3 request handler so
that botocore sees real, AWS-shaped HTTP responses and its own retry logic runs for real:

* `S3Faults`: answer chosen requests with an S3 error (503 SlowDown, 500 InternalError, ...)
  instead of, or after, handling them; every S3 request is counted.
* `atomic_conditional_writes`: moto checks `If-None-Match: *` and then writes, with no lock
  between the two, so two concurrent creators can both win (seen here: 1 round in 40 with
  sys.setswitchinterval(1e-6)). Real S3 guarantees one winner; this lock gives moto that
  guarantee so a race test tests our store, not moto's thread scheduling.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

REGION = "us-east-1"


class MotoServer:
    """moto's ThreadedMotoServer on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # verbose=False alone is noisy
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def start(self) -> MotoServer:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def client(self, service: str):
        """A boto3 client of this server (from one shared boto3 session: loading a model is slow).
        Call it with the environment from the `moto_env` fixture in place."""
        import boto3

        if getattr(self, "_session", None) is None:
            self._session = boto3.session.Session()
        return self._session.client(service)

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this moto through boto3's standard configuration."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",  # never wait on an instance-metadata lookup
        }

    # environment variables that would point boto3 elsewhere (a real profile, a real endpoint)
    UNSET = (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL_S3",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    )

    def reset(self) -> None:
        """Drop every moto backend's state (all services)."""
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=10).read()


def new_bucket_name() -> str:
    return f"sb-test-{uuid.uuid4().hex[:12]}"


# ----- S3 request hooks ---------------------------------------------------------------------
@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict

    @property
    def op(self) -> str:
        """A rough S3 operation name, enough to aim faults."""
        q, m = self.query, self.method
        if m == "PUT" and "partNumber=" in q:
            return "UploadPart"
        if m == "POST" and "uploads" in q.split("&"):
            return "CreateMultipartUpload"
        if m == "POST" and "uploadId=" in q:
            return "CompleteMultipartUpload"
        if m == "POST" and "delete" in q.split("&"):
            return "DeleteObjects"
        if m == "GET" and "list-type=2" in q:
            return "ListObjectsV2"
        if m == "PUT" and self.path.count("/") <= 1:
            return "CreateBucket"
        return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(m, m)


@dataclass
class Fault:
    """Answer the first `times` requests that `match` with an S3 error."""

    match: Callable[[Request], bool]
    times: int
    status: int = 503
    code: str = "SlowDown"
    message: str = "Please reduce your request rate."
    after: bool = False  # True: let moto handle the request, then lose the reply (the write landed)
    hits: int = 0


@dataclass
class S3Faults:
    """Counts every S3 request moto serves and injects the planned faults. Use as a context manager."""

    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[Request, str]] = field(default_factory=list)  # (request, "ok" | "fault:<code>")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, match: Callable[[Request], bool] | str, times: int, **kwargs) -> Fault:
        if isinstance(match, str):
            op = match
            match = lambda r: r.op == op
        fault = Fault(match, times, **kwargs)
        self.faults.append(fault)
        return fault

    def count(self, op: str | None = None, outcome: str | None = None) -> int:
        return sum(
            1
            for r, o in self.requests
            if (op is None or r.op == op) and (outcome is None or o == outcome or o.startswith(outcome))
        )

    @property
    def injected(self) -> int:
        return self.count(outcome="fault")

    def _plan(self, request: Request) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.hits < fault.times and fault.match(request):
                    fault.hits += 1
                    self.requests.append((request, f"fault:{fault.code}"))
                    return fault
            self.requests.append((request, "ok"))
            return None

    def _wrap(self, original):
        faults = self

        def handler(response_self, request, full_url, headers):
            from urllib.parse import urlsplit

            parts = urlsplit(full_url)
            seen = Request(request.method, parts.path, parts.query, dict(request.headers))
            fault = faults._plan(seen)
            if fault is None:
                return original(response_self, request, full_url, headers)
            if fault.after:
                original(response_self, request, full_url, headers)
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{fault.code}</Code>'
                f"<Message>{fault.message}</Message><RequestId>{uuid.uuid4().hex}</RequestId></Error>"
            )
            return fault.status, {"Content-Type": "application/xml"}, body.encode()

        return handler

    def __enter__(self) -> S3Faults:
        from moto.s3.responses import S3Response

        self._saved = {name: getattr(S3Response, name) for name in ("key_response", "bucket_response")}
        for name, original in self._saved.items():
            setattr(S3Response, name, self._wrap(original))
        return self

    def __exit__(self, *exc) -> None:
        from moto.s3.responses import S3Response

        for name, original in self._saved.items():
            setattr(S3Response, name, original)


_conditional_lock = threading.RLock()


@contextlib.contextmanager
def atomic_conditional_writes() -> Iterator[None]:
    """Make moto's check-then-write for If-None-Match / If-Match PUTs atomic, as S3's is."""
    from moto.s3.responses import S3Response

    original = S3Response._key_response_put

    def put(self, query, key_name):
        if self.headers.get("If-None-Match") or self.headers.get("If-Match"):
            with _conditional_lock:
                return original(self, query, key_name)
        return original(self, query, key_name)

    S3Response._key_response_put = put
    try:
        yield
    finally:
        S3Response._key_response_put = original


# ----- IAM: the task role's policy enforced ----------------------------------------------------
_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")


class TaskRoleEnforcement:
    """moto's IAM enforcement (signature, then the policies of the caller) for requests signed with chosen
    access keys only: those the stand-in Fargate agent minted for a task's role. Every other caller (the
    test, the launcher) stays unchecked, as moto is by default. moto's switch for this
    (INITIAL_NO_AUTH_ACTION_COUNT) is process-wide and counts requests; this checks per request instead, with
    moto's own IAMRequest classes, so a denied request is the AccessDenied real AWS would answer.
    `denied` lists (access key, action, resource, error code) of each refusal. Use as a context manager."""

    def __init__(self, enforced: Callable[[str], bool]):
        self.enforced = enforced
        self.checked = 0
        self.denied: list[tuple[str, str, str, str]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> TaskRoleEnforcement:
        from urllib.parse import urlparse

        from moto.core.authorization import ActionAuthenticatorMixin

        self._original = original = ActionAuthenticatorMixin._authenticate_and_authorize_action
        outer = self

        def authorize(response_self, iam_request_cls, resource="*"):
            headers = response_self.headers
            found = _CREDENTIAL.search(headers.get("Authorization") or "") or _CREDENTIAL.search(
                urlparse(response_self.uri).query.replace("X-Amz-Credential=", "Credential=")
            )
            if not found or not outer.enforced(found.group(1)):
                return original(response_self, iam_request_cls, resource)
            path = response_self.raw_path
            query = urlparse(response_self.uri).query
            request = iam_request_cls(
                account_id=response_self.current_account,
                method=response_self.method,
                path=path + ("?" + query if query else ""),
                data=response_self.data,
                body=response_self.raw_body,
                headers=headers,
                action=response_self._get_action(),
            )
            with outer._lock:
                outer.checked += 1
            try:
                request.check_signature()
                request.check_action_permitted(resource)
            except Exception as exc:
                with outer._lock:
                    outer.denied.append((found.group(1), str(request._action), resource, type(exc).__name__))
                raise

        ActionAuthenticatorMixin._authenticate_and_authorize_action = authorize
        return self

    def __exit__(self, *exc) -> None:
        from moto.core.authorization import ActionAuthenticatorMixin

        ActionAuthenticatorMixin._authenticate_and_authorize_action = self._original

"""An ObjectStore on Amazon S3 (or anything S3-compatible that boto3 is pointed at).

Same contract as LocalFolderStore:

* `put` is atomic (S3 shows a new object only once it is whole). Small objects are one
  PutObject; large ones a multipart upload whose parts are cut straight from the chunks
  (memoryviews of numpy arrays stay views: only one part at a time is copied, never the
  whole payload joined).
* `create_exclusive` is a conditional PUT (`If-None-Match: *`): S3 lets exactly one writer
  create a key. A 412 PreconditionFailed or 409 ConditionalRequestConflict means someone
  else holds it. Because botocore retries a PUT whose response was lost (timeout, 5xx after
  the write landed), a retry can get 412 for our *own* object; each call therefore tags its
  object with a one-off token and, on 412/409, reads it back to tell "mine" from "theirs".
* `list` returns the objects directly under a folder-like prefix (ListObjectsV2 with
  Delimiter='/', every page).
* Errors are `S3StoreError` (an OSError, like the local store's errors; missing keys are
  also FileNotFoundError) naming the bucket, the key and what to do next.

Retries are botocore's own ("standard" mode, 8 retries = 9 attempts: throttling such as 503 SlowDown,
5xx and dropped connections, with jittered back-off); this module adds no retry loop.
Region, endpoint and credentials come from boto3's standard configuration (AWS_REGION /
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, profiles, the task role), and
nothing here ever logs or prints a credential.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import threading
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from starburst_jupyter.errors import BurstError
from starburst_jupyter.stores.objects import ObjectTooLarge

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

# boto3's S3 client, typed as Any (no boto3-stubs): replies are read as plain dicts.
S3Client: TypeAlias = Any

MiB = 1024 * 1024
# botocore's "max_attempts" here counts retries: 8 retries, 9 attempts in all.
CLIENT_CONFIG = dict(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=60)
_TOKEN = "starburst-token"  # user metadata (x-amz-meta-starburst-token) set by create_exclusive
_EXISTS_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class S3StoreError(BurstError, OSError):
    """An S3 request failed after botocore's retries; the message says which object and what to do."""

    def __init__(self, message: str, *, bucket: str = "", key: str = "", code: str = ""):
        BurstError.__init__(self, message)
        self.bucket, self.key, self.code = bucket, key, code

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


class S3KeyNotFound(S3StoreError, FileNotFoundError):
    """The object does not exist (what LocalFolderStore raises as FileNotFoundError)."""


class S3ObjectStore:
    """Keys live under s3://bucket/prefix/. One boto3 client per store (boto3 clients are thread-safe)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        multipart_threshold: int = 8 * MiB,
        part_size: int = 8 * MiB,
        max_concurrency: int = 4,
        list_page_size: int = 1000,
    ):
        if not bucket or "/" in bucket:
            raise ValueError(f"Not an S3 bucket name: {bucket!r}")
        if part_size < 5 * MiB:
            raise ValueError("S3 multipart parts must be at least 5 MiB (part_size)")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix.rstrip('/')}" if self.prefix else f"s3://{bucket}"
        self.multipart_threshold = max(multipart_threshold, part_size)
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.list_page_size = min(max(1, list_page_size), 1000)  # also the DeleteObjects batch (max 1,000)
        self._make_client()

    def _make_client(self) -> None:
        # (a deep copy: botocore rewrites the retries dict it is given)
        config = Config(**copy.deepcopy(CLIENT_CONFIG), max_pool_connections=max(10, self.max_concurrency + 4))
        self.client = _client(config)
        self.transfer = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.part_size,
            max_concurrency=self.max_concurrency,
            preferred_transfer_client="classic",
        )

    # a store can travel (pickle) by its address; the client is made again on arrival
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("client", "transfer")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._make_client()

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.url!r})"

    def full_key(self, key: str) -> str:
        return self.prefix + key

    def _folder(self, prefix: str) -> str:
        """A folder-like prefix: 'a/b' and 'a/b/' both mean the folder a/b (as on disk), never 'a/bc'."""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return self.prefix + prefix

    # ----- objects ------------------------------------------------------------------------
    def put(self, key: str, chunks: Iterable[bytes | memoryview]) -> None:
        if isinstance(chunks, (bytes, bytearray, memoryview)):
            chunks = [chunks]
        reader = ChunkReader(chunks)
        full = self.full_key(key)
        try:
            if reader.size < self.multipart_threshold:
                # botocore streams the reader (and seeks back to resend it on a retry)
                self.client.put_object(Bucket=self.bucket, Key=full, Body=reader)
            else:
                # s3transfer: CreateMultipartUpload, UploadPart x N (parts read from the chunks one
                # at a time, several in flight), CompleteMultipartUpload; aborts the upload on failure.
                self.client.upload_fileobj(reader, self.bucket, full, Config=self.transfer)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "writing", key) from None
        except Exception as exc:  # s3transfer may wrap the botocore error
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, (ClientError, BotoCoreError)):
                raise self._error(cause, "writing", key) from None
            raise

    def get(self, key: str, limit: int | None = None) -> bytearray:
        """The object's bytes; ObjectTooLarge, before its body is read, when it holds more than `limit`."""
        full = self.full_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            size = int(response["ContentLength"])
            body = response["Body"]
            if limit is not None and size > limit:
                body.close()
                raise ObjectTooLarge(f"s3://{self.bucket}/{full}", size, limit)
            if size >= self.multipart_threshold:
                # Large: parallel ranged GETs through s3transfer, which also retries a stream that
                # breaks mid-way (botocore alone retries only until the response headers arrive).
                body.close()
                data = bytearray(size)
                sink = BytearrayWriter(data)
                # (s3transfer pins its ranged GETs to one version of the object with If-Match.)
                self.client.download_fileobj(self.bucket, full, sink, Config=self.transfer)
                if sink.high != size:
                    raise S3StoreError(
                        f"s3://{self.bucket}/{full} changed size while it was read ({sink.high} of {size} "
                        f"bytes); it is being rewritten, so read it again once the writer is done.",
                        bucket=self.bucket,
                        key=full,
                    )
                return data
            data = bytearray(size)
            view = memoryview(data)
            filled = 0
            with body:
                while filled < size:
                    piece = body.read(min(size - filled, MiB))
                    if not piece:
                        break
                    view[filled : filled + len(piece)] = piece
                    filled += len(piece)
            if filled != size:
                raise S3StoreError(
                    f"s3://{self.bucket}/{full}: the connection ended after {filled} of {size} bytes. "
                    f"Read the object again; if it keeps happening, check the network to S3.",
                    bucket=self.bucket,
                    key=full,
                )
            return data
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "reading", key) from None

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create the key only if nobody has: True for exactly one caller, False for every other."""
        token = uuid.uuid4().hex
        full = self.full_key(key)
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=full, Body=bytes(data), IfNoneMatch="*", Metadata={_TOKEN: token}
            )
            return True
        except ClientError as exc:
            if _code(exc) not in _EXISTS_CODES:
                raise self._error(exc, "creating", key) from None
            if not exc.response.get("ResponseMetadata", {}).get("RetryAttempts"):
                return False  # refused at the first attempt: the key was someone else's
        except BotoCoreError as exc:
            raise self._error(exc, "creating", key) from None
        # The key exists and botocore had retried: it is ours if an earlier attempt of this very
        # call landed but its reply was lost (timeout, 5xx after the write).
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES:  # 409 after a concurrent delete: nobody we know of holds it
                return False
            raise self._error(exc, "checking the owner of", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "checking the owner of", key) from None
        return bool(head.get("Metadata", {}).get(_TOKEN) == token)

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
            return True
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES:
                return False
            raise self._error(exc, "checking", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "checking", key) from None

    def list_folders(self, prefix: str) -> list[str]:
        """Sub-folders directly under a folder-like prefix (S3's CommonPrefixes), in key order."""
        folder = self._folder(prefix)
        folders: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder, Delimiter="/", PaginationConfig={"PageSize": self.list_page_size}
            )
            for page in pages:
                folders.extend(p["Prefix"][len(self.prefix) :] for p in page.get("CommonPrefixes", ()))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "listing", folder[len(self.prefix) :]) from None
        return folders

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        """Keys of the objects directly under a folder-like prefix (not those in its sub-folders), in key
        order; with `start_after`, only the keys after it (S3 skips the rest: one request per 1,000 keys
        returned, however many precede it)."""
        folder = self._folder(prefix)
        keys: list[str] = []
        extra = {"StartAfter": self.full_key(start_after)} if start_after else {}
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=folder,
                Delimiter="/",
                PaginationConfig={"PageSize": self.list_page_size},
                **extra,
            )
            for page in pages:
                keys.extend(obj["Key"][len(self.prefix) :] for obj in page.get("Contents", ()))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "listing", folder[len(self.prefix) :]) from None
        return keys

    def delete(self, key: str) -> None:
        try:  # S3 deletes of a missing key succeed, as the local store's do
            self.client.delete_object(Bucket=self.bucket, Key=self.full_key(key))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "deleting", key) from None

    def delete_prefix(self, prefix: str, *, at_once: bool = False) -> None:
        """Delete every object under a folder-like prefix, sub-folders included: 1,000 per request (always at
        once: `at_once` is for stores that can defer)."""
        folder = self._folder(prefix)
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder, PaginationConfig={"PageSize": self.list_page_size}
            )
            for page in pages:
                objects = [{"Key": obj["Key"]} for obj in page.get("Contents", ())]
                if not objects:
                    continue
                reply = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
                errors = reply.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise S3StoreError(
                        f"Could not delete {len(errors)} object(s) under s3://{self.bucket}/{folder}, e.g. "
                        f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}. "
                        f"{_ADVICE.get(first.get('Code', ''), 'Run the clean-up again.')}",
                        bucket=self.bucket,
                        key=first.get("Key", ""),
                        code=first.get("Code", ""),
                    )
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "deleting under", folder[len(self.prefix) :]) from None

    # ----- errors ---------------------------------------------------------------------------
    def _error(self, exc: Exception, action: str, key: str) -> S3StoreError:
        where = f"s3://{self.bucket}/{self.full_key(key)}"
        if isinstance(exc, ClientError):
            code = _code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = exc.response.get("Error", {}).get("Message", "")
            if code == "NoSuchBucket":
                text = (
                    f"The S3 bucket {self.bucket!r} does not exist (while {action} {where}). Run "
                    f"`starburst setup` to create the job bucket, or check the bucket name and the "
                    f"region (AWS_REGION / AWS_DEFAULT_REGION)."
                )
            elif code in _MISSING_CODES:
                return S3KeyNotFound(
                    f"{where} does not exist (while {action} it).",
                    bucket=self.bucket,
                    key=self.full_key(key),
                    code="NoSuchKey",
                )
            else:
                advice = (
                    _ADVICE.get(code)
                    or _ADVICE_BY_STATUS.get(status or 0)
                    or "Check the message above; if it persists, run `starburst setup` to repair the set-up."
                )
                text = f"S3 refused {action} {where}: {code} (HTTP {status}) {message}. {advice}"
            return S3StoreError(text, bucket=self.bucket, key=self.full_key(key), code=code)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            text = (
                f"No usable AWS credentials for {action} {where}. Configure them the standard way "
                f"(`aws configure` or `aws sso login`, AWS_PROFILE, or a task role on Fargate)."
            )
            return S3StoreError(text, bucket=self.bucket, key=self.full_key(key), code=type(exc).__name__)
        endpoint = self.client.meta.endpoint_url
        attempts = self.client.meta.config.retries.get("total_max_attempts", "several")
        text = (
            f"Could not complete {action} {where} through {endpoint} after {attempts} "
            f"attempts: {type(exc).__name__}: {exc}. Check the network path to S3 (and AWS_ENDPOINT_URL "
            f"if you set it), then try again."
        )
        return S3StoreError(text, bucket=self.bucket, key=self.full_key(key), code=type(exc).__name__)


_ADVICE = {
    "AccessDenied": (
        "The credentials in use are not allowed to do this: on Fargate the task role must "
        "allow s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on the job "
        "bucket; run `starburst setup` to (re)create it."
    ),
    "InvalidAccessKeyId": "The AWS access key is not valid: refresh your credentials (e.g. `aws sso login`).",
    "ExpiredToken": "The AWS session has expired: refresh your credentials (e.g. `aws sso login`).",
    "SignatureDoesNotMatch": "The AWS secret key does not match the access key: check your credentials.",
    "SlowDown": (
        "S3 kept throttling after every retry: fewer workers, or fewer requests per worker "
        "(longer flush/heartbeat intervals), will get under the request-rate limit."
    ),
    "PermanentRedirect": "The bucket is in another region: set AWS_REGION to the bucket's region.",
    "AuthorizationHeaderMalformed": "The bucket is in another region: set AWS_REGION to the bucket's region.",
}
_ADVICE_BY_STATUS = {
    403: _ADVICE["AccessDenied"],
    500: "S3 kept failing after every retry; try again in a minute.",
    503: _ADVICE["SlowDown"],
}


_sessions: dict[str, boto3.session.Session] = {}
_sessions_lock = threading.Lock()
# The variables that choose whose credentials a session finds (a session caches them once found).
_CREDENTIAL_VARS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


def _client(config: Config) -> S3Client:
    """An S3 client from a shared session (loading S3's model once makes later clients ~10x cheaper).

    boto3 sessions are not safe for concurrent client creation, hence the lock; the clients
    themselves are thread-safe. Region and endpoint are read from the environment per client.
    """
    selector = hashlib.sha256("\0".join(os.environ.get(v, "") for v in _CREDENTIAL_VARS).encode()).hexdigest()
    with _sessions_lock:
        session = _sessions.get(selector)
        if session is None:
            session = _sessions[selector] = boto3.session.Session()
        return session.client("s3", config=config)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class ChunkReader(io.RawIOBase):
    """A read-only, seekable file over a list of buffers, so botocore and s3transfer can stream
    (and rewind for a retry) a payload that was never joined into one bytes object."""

    def __init__(self, chunks: Iterable[bytes | bytearray | memoryview]):
        super().__init__()
        self.views = [v for v in (memoryview(c).cast("B") for c in chunks) if v.nbytes]
        self.starts: list[int] = []
        total = 0
        for view in self.views:
            self.starts.append(total)
            total += view.nbytes
        self.size = total
        self.pos = 0
        self._index = 0  # the view holding self.pos (reads are sequential, so no search)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def __len__(self) -> int:
        return self.size - self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        self._index = 0
        while self._index + 1 < len(self.views) and self.starts[self._index + 1] <= self.pos:
            self._index += 1
        return self.pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        out = memoryview(buffer).cast("B")
        filled = 0
        while filled < out.nbytes and self.pos < self.size:
            view, start = self.views[self._index], self.starts[self._index]
            offset = self.pos - start
            n = min(view.nbytes - offset, out.nbytes - filled)
            out[filled : filled + n] = view[offset : offset + n]
            filled += n
            self.pos += n
            if self.pos - start >= view.nbytes and self._index + 1 < len(self.views):
                self._index += 1
        return filled

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.size - self.pos
        size = max(0, min(size, self.size - self.pos))
        buffer = bytearray(size)
        got = self.readinto(buffer)
        return bytes(buffer) if got == size else bytes(buffer[:got])


class BytearrayWriter(io.RawIOBase):
    """A writable, seekable file over a preallocated bytearray: s3transfer writes ranged parts in place."""

    def __init__(self, data: bytearray):
        super().__init__()
        self.data, self.pos, self.high = data, 0, 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: len(self.data)}[whence]
        self.pos = base + offset
        return self.pos

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        end = self.pos + view.nbytes
        if end > len(self.data):
            raise OSError(f"the object grew while it was read (write up to byte {end} of {len(self.data)})")
        self.data[self.pos : end] = view
        self.pos = end
        self.high = max(self.high, end)
        return view.nbytes


def from_url(url: str) -> S3ObjectStore:
    """s3://bucket or s3://bucket/some/prefix"""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"Not an S3 store URL: {url!r} (expected s3://bucket or s3://bucket/prefix)")
    return S3ObjectStore(parsed.netloc, parsed.path.lstrip("/"))


__all__ = ["S3ObjectStore", "S3StoreError", "S3KeyNotFound", "ChunkReader", "from_url"]

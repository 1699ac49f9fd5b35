"""Amazon S3 and S3-compatible object stores (MinIO, Ceph, Wasabi, moto) through boto3.

Reads stream the `GetObject` body. A file smaller than `part_size` becomes one `PutObject` on
commit; a larger one becomes a multipart upload that is completed on commit and aborted on
failure, so an object only ever appears whole. Up to `concurrency` parts (default 4) upload at
once while the next is filled, so a write holds at most (concurrency + 1) × part_size bytes.
With the default `checksums`, every part carries a CRC32 that the store checks, and the object
keeps a composite CRC32 of its parts (what boto3's `upload_file` does too).

With `on_conflict` rename or fail, writes are conditional (`If-None-Match: *` on PutObject and
CompleteMultipartUpload, which S3 refuses with 412 when the key exists): a small file tries the
next free name at commit (its bytes are still in memory); a multipart upload, whose key is fixed
when it starts, picks the first free name then (HEAD) and, should another writer take it before
the commit, fails with a retried `NameTakenMeanwhile`. A store that ignores `If-None-Match`
overwrites.

Settings and secrets: core/endpoints/s3_settings.py; how failures map to endpoint errors:
core/endpoints/s3_errors.py. A bare 403/404 from `HeadObject` (no error body) is asked again with
a one-byte ranged `GetObject` to learn the real code (bad key vs. denied, no key vs. no bucket).
* An aborted multipart upload can still leak if the process dies mid-write; configure the
  bucket's `AbortIncompleteMultipartUpload` lifecycle rule to reclaim those parts.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from core.endpoints.base import (
    CHUNK_SIZE,
    ConfigError,
    FileInfo,
    OnConflict,
    WriteStream,
    clean_path,
    object_answer,
)
from core.endpoints.objectstore import ObjectStoreEndpoint, ObjectWriteStream
from core.endpoints.parts import PartUploads
from core.endpoints.s3_errors import client_error, condition_failed, map_boto_error
from core.endpoints.s3_settings import MAX_PART_SIZE, S3Secrets, S3Settings
from core.endpoints.settings import EndpointSettings

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

# S3 allows 10,000 parts; growing the part size every 1,000 parts keeps huge files possible
# (about 430 GiB with 8 MiB parts) while small and medium files keep the configured size.
PARTS_PER_SIZE_STEP = 1000


# One boto3 session per process, shared by every endpoint's client: a session's loader parses
# S3's service model and endpoint rules once (a session per client parsed them for every push,
# 0.3-0.6 s of CPU each on this class of machine), and a fork server that warmed it hands them
# to every flow run it forks (deployments/forkserver_warm.py). Credentials go to each client,
# so endpoints never share keys; without keys, the session's chain (environment, profile,
# instance role) is resolved once per process, as boto3's default session does. A session is
# not thread-safe, so clients are made under a lock; the clients themselves are.
_session: boto3.session.Session | None = None
_session_lock = threading.Lock()


def new_client(**kwargs: Any) -> Any:
    """An S3 client from the process's shared session (`kwargs` as for `Session.client`)."""
    global _session
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("s3", **kwargs)


def warm() -> None:
    """Parse S3's service model and endpoint rules now, without I/O: for a fork server's preload."""
    new_client(region_name="us-east-1", aws_access_key_id="warm", aws_secret_access_key="warm").close()


class S3ReadStream(io.RawIOBase):
    """A `GetObject` body as a raw stream whose network failures come out as endpoint errors."""

    def __init__(self, body: Any, endpoint: S3Endpoint, what: str) -> None:
        super().__init__()
        self._body = body
        self._endpoint = endpoint
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        with self._endpoint.errors(self._what):
            data: bytes = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3WriteStream(ObjectWriteStream):
    """PutObject for small files; for large ones a multipart upload whose parts go up in the
    background (see core/endpoints/parts.py) while the caller fills the next one."""

    _endpoint: S3Endpoint

    def __init__(
        self, endpoint: S3Endpoint, key: str, what: str, placement: tuple[str, OnConflict] | None = None
    ) -> None:
        super().__init__(endpoint, what, placement, PartUploads(endpoint.concurrency, "s3-part"))
        self._key = key
        self._upload_id: str | None = None
        self._parts_sent = 0
        # Filled by the upload threads; one dict store per part is atomic, so no lock.
        self._parts: dict[int, dict[str, Any]] = {}

    @property
    def upload_id(self) -> str | None:
        return self._upload_id

    def _part_size(self) -> int:
        step = self._parts_sent // PARTS_PER_SIZE_STEP
        return min(self._endpoint.part_size * (1 + step), MAX_PART_SIZE)

    def _send_part(self, part: bytearray) -> None:
        client, bucket = self._endpoint.client, self._endpoint.bucket
        checksum = self._endpoint.part_checksum
        algorithm = {"ChecksumAlgorithm": checksum} if checksum else {}
        if self._upload_id is None:
            if self._placement is not None:
                # The key is fixed from here on: take the first free name now.
                self.path = self._endpoint.first_free(*self._placement)
                self._key = self._endpoint._key(self.path)
            with self._endpoint.errors(self._what):
                created = client.create_multipart_upload(Bucket=bucket, Key=self._key, **algorithm)
            self._upload_id = created["UploadId"]
        self._parts_sent += 1
        number, upload_id = self._parts_sent, self._upload_id

        def upload() -> None:
            with self._endpoint.errors(self._what):
                answer = client.upload_part(
                    Bucket=bucket,
                    Key=self._key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=part,
                    **algorithm,
                )
            entry = {"PartNumber": number, "ETag": answer["ETag"]}
            # S3 checks each part's listed checksum at complete; a store that echoes none gets none.
            if checksum and answer.get(f"Checksum{checksum}"):
                entry[f"Checksum{checksum}"] = answer[f"Checksum{checksum}"]
            self._parts[number] = entry

        self._uploads.submit(upload)

    def _commit(self) -> None:
        client, bucket = self._endpoint.client, self._endpoint.bucket
        if self._upload_id is None:
            if self._placement is not None:
                self._put_new(*self._placement)
                return
            with self._endpoint.errors(self._what):
                answer = client.put_object(Bucket=bucket, Key=self._key, Body=self._buffer)
            self._buffer = bytearray()
            self._record(answer)
            return
        if self._buffer:
            part, self._buffer = self._buffer, bytearray()
            self._send_part(part)  # the last part may be smaller than the minimum
        self._uploads.finish()
        parts = [self._parts[n] for n in range(1, self._parts_sent + 1)]
        condition = {} if self._placement is None else {"IfNoneMatch": "*"}
        with self._endpoint.errors(self._what):
            try:
                answer = client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": parts},
                    **condition,
                )
            except ClientError as exc:
                if self._placement is None or not condition_failed(exc):
                    raise
                self._taken_meanwhile()
        self._record(answer)

    def _put_if_missing(self, key: str) -> Any:
        try:
            return self._endpoint.client.put_object(
                Bucket=self._endpoint.bucket, Key=key, Body=self._buffer, IfNoneMatch="*"
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            return None

    def _record(self, answer: dict[str, Any]) -> None:
        """The object's ETag (and version, on a versioned bucket) for the transfer's record."""
        self.answer = object_answer(str(answer.get("ETag", "")).strip('"'), answer.get("VersionId"))

    def _abort(self) -> None:
        self._buffer = bytearray()
        # No part may still be on its way once the upload is aborted, or S3 could keep it.
        self._uploads.cancel()
        if self._upload_id is None:
            return
        try:
            self._endpoint.client.abort_multipart_upload(
                Bucket=self._endpoint.bucket, Key=self._key, UploadId=self._upload_id
            )
        except (BotoCoreError, ClientError) as exc:
            # Best effort: the original failure matters more; a lifecycle rule reclaims the parts.
            log.warning(
                "could not abort multipart upload: %s",
                self._endpoint.redact(map_boto_error(exc, self._what, self._endpoint.host)),
            )


class S3Endpoint(ObjectStoreEndpoint):
    """An S3 bucket; see S3Settings and S3Secrets."""

    scheme: ClassVar[str] = "s3"
    settings: S3Settings
    secrets: S3Secrets
    # Keys named after the file ({name}) would silently replace an object not yet picked up.
    default_on_conflict: ClassVar[OnConflict | None] = OnConflict.rename
    # Keys per ListObjectsV2 page (S3's maximum); tests lower it to exercise pagination.
    list_page_size: int = 1000

    def __init__(self, settings: EndpointSettings | Mapping[str, Any], secrets: Any = None) -> None:
        super().__init__(settings, secrets)
        self.bucket = self.settings.bucket
        self.prefix = self.settings.root
        self.endpoint_url = self.settings.endpoint_url
        self.region = self.settings.region
        # For messages: the server a failure was talking to (AWS's own when no URL is set).
        self.host = (urlsplit(self.endpoint_url).hostname or "") if self.endpoint_url else "s3.amazonaws.com"
        self.part_size = self.settings.part_size
        self.concurrency = self.settings.concurrency
        self.checksums = self.settings.checksums
        # A multipart upload declares its parts' algorithm, as boto3's upload_file does: S3 then
        # keeps a composite CRC32 of the parts. Undeclared, S3 (and moto) make a full-object
        # CRC64NVME at complete instead, which moto computes over a second copy of the object.
        self.part_checksum = "CRC32" if self.checksums == "when_supported" else None
        self._client: Any = None
        self._lock = threading.Lock()

    # --- client ------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The boto3 client, created on first use so building an endpoint costs no I/O."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        settings = self.settings
        config = Config(
            region_name=self.region,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            # Few retries here: the flow layer retries with backoff and records every attempt.
            retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
            # boto3's default gives each part a CRC32 the store checks: over HTTPS as an unsigned
            # aws-chunked trailer, over plain HTTP (moto here) as a header beside the SHA-256-signed
            # payload. Older S3-compatible stores refuse these checksums: checksums=when_required.
            request_checksum_calculation=self.checksums,
            response_checksum_validation=self.checksums,
            s3={"addressing_style": settings.addressing_style},
        )
        try:
            return new_client(
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                aws_access_key_id=self.secrets.access_key_id,
                aws_secret_access_key=self.secrets.secret_access_key,
                aws_session_token=self.secrets.session_token,
                config=config,
            )
        except (BotoCoreError, ValueError) as exc:
            raise ConfigError(f"cannot set up s3 client for {self.uri('')}: {exc}") from None

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Map boto errors raised inside the block; messages name the object, never a secret."""
        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise self.redact(map_boto_error(exc, what, self.host)) from exc

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # --- paths -------------------------------------------------------------------------------

    def uri(self, path: str) -> str:
        return f"s3://{self.bucket}/{self._key(clean_path(path, allow_root=True))}"

    # --- operations --------------------------------------------------------------------------

    def _list(self, key_prefix: str, rel: str) -> Iterator[FileInfo]:
        with self.errors(self.uri(rel)):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=key_prefix,
                Delimiter="/",
                PaginationConfig={"PageSize": self.list_page_size},
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    path = self._path_of(item["Key"])
                    if path is None:
                        continue
                    yield FileInfo(
                        path=path,
                        size=int(item["Size"]),
                        modified=item["LastModified"].astimezone(UTC),
                        etag=str(item.get("ETag", "")).strip('"') or None,
                    )

    def _head(self, key: str, what: str) -> dict[str, Any]:
        with self.errors(what):
            try:
                answer: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
                return answer
            except ClientError as exc:
                if not client_error(exc)[0].isdigit():
                    raise
                head_error = exc
            # HEAD gave a bare status; a ranged GET says why (see the module docstring).
            probe = self.client.get_object(Bucket=self.bucket, Key=key, Range="bytes=0-0")
            probe["Body"].close()
            raise head_error  # the GET worked after all (a race): report what HEAD said

    def stat(self, path: str) -> FileInfo:
        rel = clean_path(path)
        head = self._head(self._key(rel), self.uri(rel))
        return FileInfo(
            path=rel,
            size=int(head["ContentLength"]),
            modified=head["LastModified"].astimezone(UTC),
            etag=str(head.get("ETag", "")).strip('"') or None,
        )

    def open_read(self, path: str) -> BinaryIO:
        rel = clean_path(path)
        what = self.uri(rel)
        with self.errors(what):
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(rel))
        return io.BufferedReader(S3ReadStream(answer["Body"], self, what), buffer_size=CHUNK_SIZE)

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        rel = clean_path(path)
        placement = None if on_conflict is OnConflict.overwrite else (rel, on_conflict)
        return S3WriteStream(self, self._key(rel), self.uri(rel), placement)

    def delete(self, path: str) -> None:
        rel = clean_path(path)
        key, what = self._key(rel), self.uri(rel)
        self._head(key, what)  # S3 deletes missing keys silently; the contract says NotFound
        with self.errors(what):
            self.client.delete_object(Bucket=self.bucket, Key=key)

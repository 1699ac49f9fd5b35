"""Azure Blob Storage (and Azurite) through azure-storage-blob: one container, an optional prefix.

A file smaller than `block_size` becomes one `Put Blob` on commit; a larger one is staged block
by block (`Put Block`, up to `concurrency` blocks at once, default 4, while the next is filled,
so a write holds at most (concurrency + 1) × block_size bytes) and becomes visible only when
commit sends the block list (`Put Block List`), which replaces any existing blob atomically.

Abort never commits. Azure has no call to discard staged blocks: uncommitted blocks are
invisible to listings, reads and `Get Blob Properties`, and Azure garbage-collects them after
seven days (or drops them at the blob's next commit). Block ids are a random per-write token
plus a counter, always the same length, because Azure refuses a block whose id length differs
from other blocks already staged for the same blob name.

Reads are one streamed `Get Blob` whose body is consumed as it arrives (Azure serves a single
GET from one version of the blob, so a concurrent overwrite never mixes two versions). This goes
through the SDK's generated operation (`BlobClient._client.blob.download`), because the public
`download_blob().chunks()` buffers every range and, worse, materialises it with
`b"".join(list(response))` on a generator whose `__len__` is the range length: CPython
pre-sizes that list, costing 8 bytes per byte of range (a 4 MiB range briefly takes ~36 MiB).
If a future SDK drops that operation, reads fall back to `chunks()` with small ranges (bounded
memory, more requests), so a library upgrade degrades speed, never correctness.

With `on_conflict` rename or fail, writes are conditional (`If-None-Match: *` on Put Blob and
Put Block List, refused with 409/412 when the blob exists): a small file tries the next free name
at commit (its bytes are still in memory); a block list, whose blocks are staged under one blob
name, picks the first free name before the first block and, should another writer take it before
the commit, fails with a retried `NameTakenMeanwhile`.

Settings and secrets: core/endpoints/azure_settings.py; how failures map to endpoint errors
(never quoting a key, SAS or connection string): core/endpoints/azure_errors.py.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, BinaryIO, ClassVar
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
)
from azure.storage.blob import BlobBlock, BlobPrefix, BlobServiceClient, ContainerClient

from core.endpoints.azure_errors import condition_failed, map_azure_error
from core.endpoints.azure_settings import MAX_BLOCK_SIZE, AzureSecrets, AzureSettings, resolve_account
from core.endpoints.base import (
    CHUNK_SIZE,
    ChunkReadStream,
    ConfigError,
    EndpointError,
    FileInfo,
    NotFound,
    OnConflict,
    WriteStream,
    clean_path,
    object_answer,
)
from core.endpoints.objectstore import ObjectStoreEndpoint, ObjectWriteStream
from core.endpoints.parts import PartUploads
from core.endpoints.settings import EndpointSettings

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# A blob holds at most 50,000 blocks; growing the block size every 10,000 blocks keeps huge
# files possible (about 1.2 TiB with 8 MiB blocks) while smaller ones keep the configured size.
BLOCKS_PER_SIZE_STEP = 10_000
MAX_BLOCKS = 50_000
FALLBACK_RANGE = 512 * 1024


class AzureReadStream(ChunkReadStream):
    """A blob download as a raw stream of its chunks; failures come out as endpoint errors."""

    def __init__(self, chunks: Iterator[bytes], endpoint: AzureBlobEndpoint, what: str) -> None:
        super().__init__(chunks, lambda: endpoint.errors(what))

    def close(self) -> None:
        if not self.closed:
            self._pending = memoryview(b"")
            # A streamed GET closed before its end: drop the connection rather than pool it
            # with half a body unread (the public downloader's iterator holds no connection).
            response = getattr(getattr(self._chunks, "response", None), "internal_response", None)
            if response is not None:
                with contextlib.suppress(Exception):
                    response.close()
            self._chunks = iter(())
        super().close()


class AzureWriteStream(ObjectWriteStream):
    """Put Blob for small files; for large ones blocks staged in the background (see
    core/endpoints/parts.py) while the caller fills the next one, then a block list."""

    _endpoint: AzureBlobEndpoint

    def __init__(
        self,
        endpoint: AzureBlobEndpoint,
        blob_name: str,
        what: str,
        placement: tuple[str, OnConflict] | None = None,
    ) -> None:
        super().__init__(endpoint, what, placement, PartUploads(endpoint.concurrency, "azure-block"))
        self._blob_name = blob_name
        self._token = uuid.uuid4().hex  # 32 chars; + 8 digits = every block id is 40 chars
        self._block_ids: builtins.list[str] = []

    @property
    def block_ids(self) -> builtins.list[str]:
        """The ids handed to Put Block so far (unencoded): empty while the file fits in one block."""
        return builtins.list(self._block_ids)

    def _part_size(self) -> int:
        step = len(self._block_ids) // BLOCKS_PER_SIZE_STEP
        return min(self._endpoint.block_size * (1 + step), MAX_BLOCK_SIZE)

    def _send_part(self, block: bytearray) -> None:
        if len(self._block_ids) >= MAX_BLOCKS:
            raise EndpointError(f"{self._what}: file too large for one blob ({MAX_BLOCKS} blocks)")
        if not self._block_ids and self._placement is not None:
            # Blocks are staged under one blob name: take the first free name now.
            self.path = self._endpoint.first_free(*self._placement)
            self._blob_name = self._endpoint._key(self.path)
        block_id = f"{self._token}{len(self._block_ids):08d}"
        blob = self._endpoint.blob_client(self._blob_name)

        def upload() -> None:
            with self._endpoint.errors(self._what):
                blob.stage_block(block_id, block, length=len(block))

        self._uploads.submit(upload)
        self._block_ids.append(block_id)

    def _commit(self) -> None:
        blob = self._endpoint.blob_client(self._blob_name)
        if not self._block_ids and self._placement is not None:
            self._put_new(*self._placement)
            return
        if not self._block_ids:
            data, self._buffer = bytes(self._buffer), bytearray()
            with self._endpoint.errors(self._what):
                answer = blob.upload_blob(data, length=len(data), overwrite=True, blob_type="BlockBlob")
            self._record(answer)
            return
        if self._buffer:
            block, self._buffer = self._buffer, bytearray()
            self._send_part(block)  # the last block may be smaller than the others
        self._uploads.finish()
        blocks = [BlobBlock(block_id=i) for i in self._block_ids]
        if self._placement is None:
            with self._endpoint.errors(self._what):
                answer = blob.commit_block_list(blocks)
            self._record(answer)
            return
        with self._endpoint.errors(self._what):
            try:
                answer = blob.commit_block_list(blocks, match_condition=MatchConditions.IfMissing)
            except HttpResponseError as exc:
                if not condition_failed(exc):
                    raise
                self._taken_meanwhile()
        self._record(answer)

    def _put_if_missing(self, key: str) -> Any:
        data = bytes(self._buffer)
        try:
            return self._endpoint.blob_client(key).upload_blob(
                data, length=len(data), overwrite=False, blob_type="BlockBlob"
            )
        except HttpResponseError as exc:
            if not condition_failed(exc):
                raise
            return None

    def _record(self, answer: dict[str, Any]) -> None:
        """The blob's ETag (and version, where versioning is on) for the transfer's record."""
        self.answer = object_answer(str(answer.get("etag") or "").strip('"'), answer.get("version_id"))

    def _abort(self) -> None:
        # Nothing to undo: staged blocks stay invisible and Azure garbage-collects them. Blocks
        # in flight are waited for, so no thread still writes once the stream is aborted.
        self._buffer = bytearray()
        self._uploads.cancel()
        if self._block_ids:
            log.debug("abandoned %d uncommitted blocks for %s", len(self._block_ids), self._what)


class AzureBlobEndpoint(ObjectStoreEndpoint):
    """A container; see AzureSettings and AzureSecrets (core/endpoints/azure_settings.py)."""

    scheme: ClassVar[str] = "azure"
    settings: AzureSettings
    secrets: AzureSecrets
    # Blob names after the file ({name}) would silently replace a blob not yet picked up.
    default_on_conflict: ClassVar[OnConflict | None] = OnConflict.rename
    # Blobs per List Blobs page (Azure's maximum); tests lower it to exercise pagination.
    list_page_size: int = 5000
    # One streamed GET per read (see the module docstring); tests turn it off to try the fallback.
    streamed_reads: bool = True

    def __init__(self, settings: EndpointSettings | Mapping[str, Any], secrets: Any = None) -> None:
        super().__init__(settings, secrets)
        self.container = self.settings.container
        self.prefix = self.settings.root
        self.block_size = self.settings.block_size
        self.concurrency = self.settings.concurrency
        try:
            self.account_url, self.account_name = resolve_account(self.settings, self.secrets)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._service: BlobServiceClient | None = None
        self._container_client: ContainerClient | None = None
        self._lock = threading.Lock()

    # --- client ------------------------------------------------------------------------------

    def _client_options(self) -> dict[str, Any]:
        return {
            "connection_timeout": self.settings.connect_timeout,
            "read_timeout": self.settings.read_timeout,
            # Few retries here: the flow layer retries with backoff and records every attempt.
            "retry_total": self.settings.max_attempts - 1,
            # The SDK waits 15 s before its first retry by default; a quick one suits a block
            # that hit a blip, and anything longer is the flow's backoff to decide.
            "initial_backoff": 1,
            "increment_base": 2,
            "random_jitter_range": 1,
            # Streamed reads hand us the body in pieces of this size.
            "connection_data_block_size": 256 * 1024,
            # Only for the fallback reader (see the module docstring): small ranges bound memory.
            "max_single_get_size": FALLBACK_RANGE,
            "max_chunk_get_size": FALLBACK_RANGE,
        }

    @property
    def container_client(self) -> ContainerClient:
        """The container's client, created on first use so building an endpoint costs no I/O."""
        if self._container_client is None:
            with self._lock:
                if self._container_client is None:
                    self._service = self._make_service()
                    self._container_client = self._service.get_container_client(self.container)
        return self._container_client

    def _make_service(self) -> BlobServiceClient:
        s, options = self.secrets, self._client_options()
        try:
            if s.connection_string:
                return BlobServiceClient.from_connection_string(s.connection_string, **options)
            credential: Any
            if s.account_key:
                credential = {"account_name": self.account_name, "account_key": s.account_key}
            else:
                credential = str(s.sas_token).lstrip("?")
            return BlobServiceClient(str(self.account_url), credential=credential, **options)
        except (ValueError, AzureError) as exc:
            # The SDK's message may quote the connection string: name only the kind of problem.
            problem = type(exc).__name__
            raise ConfigError(f"cannot set up azure client for {self.uri('')}: {problem}") from None

    def blob_client(self, blob_name: str) -> Any:
        return self.container_client.get_blob_client(blob_name)

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Map SDK errors raised inside the block; messages name the blob, never a secret."""
        try:
            yield
        except AzureError as exc:
            host = urlsplit(self.account_url or "").hostname or "the server"
            raise self.redact(map_azure_error(exc, what, host)) from exc

    def close(self) -> None:
        service, self._service, self._container_client = self._service, None, None
        if service is not None:
            service.close()

    # --- paths -------------------------------------------------------------------------------

    def uri(self, path: str) -> str:
        return f"azure://{self.account_name}/{self.container}/{self._key(clean_path(path, allow_root=True))}"

    # --- operations --------------------------------------------------------------------------

    def _list(self, key_prefix: str, rel: str) -> Iterator[FileInfo]:
        with self.errors(self.uri(rel)):
            items = self.container_client.walk_blobs(
                name_starts_with=key_prefix or None,
                delimiter="/",
                include=["metadata"],
                results_per_page=self.list_page_size,
            )
            for item in items:
                if isinstance(item, BlobPrefix):
                    continue
                path = self._path_of(str(item.name))
                # Folder markers of accounts with a hierarchical namespace are skipped too.
                if path is None or (item.metadata or {}).get("hdi_isfolder") == "true":
                    continue
                yield self._info(path, item)

    @staticmethod
    def _info(path: str, props: Any) -> FileInfo:
        modified: datetime = props.last_modified
        return FileInfo(
            path=path,
            size=int(props.size),
            modified=modified.astimezone(UTC),
            etag=str(props.etag or "").strip('"') or None,
        )

    def stat(self, path: str) -> FileInfo:
        rel = clean_path(path)
        with self.errors(self.uri(rel)):
            props = self.blob_client(self._key(rel)).get_blob_properties()
        if (props.metadata or {}).get("hdi_isfolder") == "true":
            raise NotFound(f"{self.uri(rel)}: is a folder, not a file")
        return self._info(rel, props)

    def open_read(self, path: str) -> BinaryIO:
        rel = clean_path(path)
        what = self.uri(rel)
        blob = self.blob_client(self._key(rel))
        with self.errors(what):
            chunks = self._download(blob)
        return io.BufferedReader(AzureReadStream(chunks, self, what), buffer_size=CHUNK_SIZE)

    def _download(self, blob: Any) -> Iterator[bytes]:
        """The blob's bytes as they arrive from one GET, exactly as stored (never decompressed)."""
        operation = getattr(getattr(getattr(blob, "_client", None), "blob", None), "download", None)
        if operation is None or not self.streamed_reads:
            if operation is None:
                log.warning("azure-storage-blob has no generated download operation; using chunked reads")
            chunks: Iterator[bytes] = blob.download_blob().chunks()
            return chunks
        body: Iterator[bytes] = iter(operation(decompress=False))
        return body

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        rel = clean_path(path)
        placement = None if on_conflict is OnConflict.overwrite else (rel, on_conflict)
        return AzureWriteStream(self, self._key(rel), self.uri(rel), placement)

    def delete(self, path: str) -> None:
        rel = clean_path(path)
        with self.errors(self.uri(rel)):
            self.blob_client(self._key(rel)).delete_blob()

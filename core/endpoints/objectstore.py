"""What S3 and Azure Blob endpoints share: their common settings (where under the bucket or
container files go, how many parts of a write are in flight, how long the SDK waits and retries
before the flow's own retries), and naming, listing and free names over keys under a prefix."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Annotated, Any, NoReturn

from pydantic import Field, field_validator

from core.endpoints.base import (
    Endpoint,
    FileInfo,
    InvalidPath,
    NameTaken,
    NameTakenMeanwhile,
    NotFound,
    OnConflict,
    WriteStream,
    clean_path,
)
from core.endpoints.conflict import candidates, first_free
from core.endpoints.parts import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, PartUploads
from core.endpoints.settings import EndpointSettings


class ObjectStoreSettings(EndpointSettings):
    prefix: str = ""
    """Key prefix: a folder under the bucket or container that the endpoint's root is."""
    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] = DEFAULT_CONCURRENCY
    """Parts of one write uploaded at once (memory: concurrency + 1 parts)."""
    connect_timeout: Annotated[float, Field(gt=0)] = 10
    """Seconds to wait for a connection."""
    read_timeout: Annotated[float, Field(gt=0)] = 60
    """Seconds to wait for an answer."""
    max_attempts: Annotated[int, Field(ge=1)] = 2
    """Tries of one request inside the SDK (the data flow retries the whole file on top)."""

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        try:
            clean_path(value, allow_root=True)
        except InvalidPath as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def root(self) -> str:
        """The prefix as a clean relative path ("" for the whole bucket or container)."""
        return clean_path(self.prefix, allow_root=True)


class ObjectStoreEndpoint(Endpoint):
    """An endpoint over keys under a prefix (`prefix` is its clean form): an object's key is
    "<prefix>/<path>"; a listing is one level of keys; a name is free when `stat` finds nothing."""

    prefix: str

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix and rel else self.prefix or rel

    def list(self, folder: str = "") -> Iterator[FileInfo]:
        rel = clean_path(folder, allow_root=True)
        key = self._key(rel)
        return self._list(key + "/" if key else "", rel)

    @abstractmethod
    def _list(self, key_prefix: str, rel: str) -> Iterator[FileInfo]:
        """The files whose keys start with `key_prefix` and go no deeper."""

    @abstractmethod
    def errors(self, what: str) -> AbstractContextManager[None]:
        """Maps the SDK's failures inside the block to endpoint errors naming `what`."""

    def _path_of(self, key: str) -> str | None:
        """A listed key's path under the root; None for folder markers and keys our paths cannot
        name ("a//b", backslashes), which listings skip."""
        path = key[len(self.prefix) + 1 :] if self.prefix else key
        try:
            return None if key.endswith("/") or clean_path(path) != path else path
        except InvalidPath:
            return None

    def first_free(self, rel: str, on_conflict: OnConflict) -> str:
        """The first name of `rel`, `name (2).ext`, … with no object; `rel` alone for fail."""
        return first_free(rel, on_conflict, self._exists, self.uri)

    def _exists(self, rel: str) -> bool:
        try:
            self.stat(rel)
        except NotFound:
            return False
        return True


class ObjectWriteStream(WriteStream):
    """A write to an object store, cut into parts: the caller's bytes fill one part at a time
    (memory: the parts in flight plus this one) and each full part goes to `_send_part`. A file
    that fits in one part is put whole at commit; with a placement (on_conflict rename or fail),
    only where nothing is: `_put_if_missing` at the first free name."""

    def __init__(
        self,
        endpoint: ObjectStoreEndpoint,
        what: str,
        placement: tuple[str, OnConflict] | None,
        uploads: PartUploads,
    ) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._what = what
        self._placement = placement  # (relative path, rename|fail) when an object there must stay
        self._buffer = bytearray()
        self._uploads = uploads

    @abstractmethod
    def _part_size(self) -> int:
        """How big the next part is."""

    @abstractmethod
    def _send_part(self, part: bytearray) -> None:
        """Hand one full part (or the last one, at commit) to the upload."""

    @abstractmethod
    def _put_if_missing(self, key: str) -> Any:
        """Put the buffered bytes at `key` only if nothing is there: the store's answer, or None
        when the name is taken."""

    @abstractmethod
    def _record(self, answer: Any) -> None:
        """Keep what the store answered (ETag, version) as the write's `answer`."""

    def _write(self, data: bytes) -> None:
        self._uploads.raise_failure()  # a part that failed in the background stops the write here
        # Fill the buffer only up to one part: memory stays at the parts in flight plus this one.
        view = memoryview(data)
        while view:
            room = self._part_size() - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) == self._part_size():
                part, self._buffer = self._buffer, bytearray()
                self._send_part(part)

    def _put_new(self, rel: str, on_conflict: OnConflict) -> None:
        """Put the file only where nothing is: the first free name (rename), or `rel` alone (fail)."""
        for name in candidates(rel) if on_conflict is OnConflict.rename else iter([rel]):
            with self._endpoint.errors(self._endpoint.uri(name)):
                answer = self._put_if_missing(self._endpoint._key(name))
            if answer is None:
                if on_conflict is OnConflict.fail:
                    raise NameTaken(
                        f"{self._endpoint.uri(name)} exists and on_conflict is fail; not replaced"
                    )
                continue
            self._buffer = bytearray()
            self.path = name
            self._record(answer)
            return
        raise NameTaken(f"{self._endpoint.uri(rel)} and every numbered name after it are taken")

    def _taken_meanwhile(self) -> NoReturn:
        assert self._placement is not None
        uri = self._endpoint.uri(self.path or self._placement[0])
        if self._placement[1] is OnConflict.fail:
            raise NameTaken(f"{uri} exists and on_conflict is fail; not replaced")
        raise NameTakenMeanwhile(f"{uri} was taken by another writer during the upload; will pick another")

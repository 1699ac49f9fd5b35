"""The Endpoint protocol every storage and protocol module implements, and its error tree.

An endpoint is a named place files come from or go to. Implementations are small: they map
five operations onto one backend and translate its failures into the errors below, so tasks
can decide what to retry without knowing the backend.

Contract (checked for every implementation by tests/endpoints/contract.py):

* Paths are relative POSIX paths ("folder/name.ext"); `clean_path` rejects absolute paths,
  `..`, empty segments, NUL and backslashes with `InvalidPath` before any I/O.
* `list(folder)` yields the files directly inside `folder` ("" is the root), never the
  temporary names of writes in progress, in name order.
* `stat(path)` returns a `FileInfo` or raises `NotFound`.
* `open_read(path)` returns a binary stream to be used as a context manager; it never
  loads the whole file.
* `open_write(path, on_conflict)` returns a `WriteStream`. Bytes land under a temporary name
  (or an uncommitted multipart upload / block list) and become visible only when the `with`
  block ends without an exception. An exception, or `abort()`, leaves nothing behind. A file
  already at `path` is replaced atomically (`overwrite`, the default), or kept while the new
  one takes the first free name of `path`, `name (2).ext`, … (`rename`), or kept while the
  write fails with `NameTaken` (`fail`); the stream's `path` then says where the bytes went
  (see core/endpoints/conflict.py). Types that send messages rather than name files refuse
  any policy but `overwrite` (`default_on_conflict` is None).
* `delete(path)` removes one file or raises `NotFound`.
* `close()` releases connections; endpoints are also context managers.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Self, TypeVar, get_type_hints

from core.endpoints.errors import (
    AuthError,
    ConfigError,
    Deferrable,
    DnsError,
    EndpointError,
    InvalidPath,
    NameTaken,
    NameTakenMeanwhile,
    NotFound,
    PermissionDenied,
    TemporaryDnsError,
    TlsError,
    TransientError,
    Unreachable,
)
from core.endpoints.settings import EndpointSecrets, EndpointSettings, NotScrubbed
from core.endpoints.settings import parse as parse_settings
from core.redact import Scrubber, secret_strings

# The error tree lives in core/endpoints/errors.py and is importable from here, as it always was.
__all__ = [
    "CHUNK_SIZE",
    "AuthError",
    "ChunkReadStream",
    "ConfigError",
    "Deferrable",
    "DnsError",
    "Endpoint",
    "EndpointError",
    "FileInfo",
    "InvalidPath",
    "NameTaken",
    "NameTakenMeanwhile",
    "NotFound",
    "OnConflict",
    "PermissionDenied",
    "TemporaryDnsError",
    "TlsError",
    "TransientError",
    "Unreachable",
    "WriteStream",
    "clean_path",
    "copy_stream",
    "object_answer",
    "secret_values",
]

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK_SIZE = 1024 * 1024

E = TypeVar("E", bound=BaseException)


class OnConflict(StrEnum):
    """What a write does when its name is taken: see core/endpoints/conflict.py."""

    rename = "rename"
    overwrite = "overwrite"
    fail = "fail"


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    modified: datetime
    etag: str | None = None

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


def clean_path(path: str, *, allow_root: bool = False) -> str:
    """Normalise a relative POSIX path, refusing anything that could escape the endpoint's root."""
    if "\x00" in path or "\\" in path:
        raise InvalidPath(f"invalid character in path {path!r}")
    stripped = path.strip("/") if allow_root else path
    if stripped.startswith("/"):
        raise InvalidPath(f"absolute path not allowed: {path!r}")
    parts = [p for p in stripped.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidPath(f"'..' not allowed in path {path!r}")
    if not parts and not allow_root:
        raise InvalidPath("empty path")
    return "/".join(parts)


class WriteStream(ABC):
    """A binary sink whose bytes become visible only on `commit()`; `abort()` discards them.

    After a commit, `answer` may hold what the destination said about the write, kept with the
    transfer for the run history: a small JSON-able dict whose "summary" is one line for people
    (an HTTP API's status and body, an email's Message-ID, an AS2 MDN, an object's ETag). It
    never holds a secret.
    """

    def __init__(self) -> None:
        self.bytes_written = 0
        self.answer: dict[str, Any] | None = None
        # Where the bytes went, once committed, when the endpoint may choose another name
        # (on_conflict rename); None means the path asked for.
        self.path: str | None = None
        self._done = False

    @abstractmethod
    def _write(self, data: bytes) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _abort(self) -> None: ...

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._done:
            raise ValueError("write to a finished stream")
        # Convert first: len() of a memoryview counts items, not bytes.
        chunk = data if isinstance(data, bytes) else bytes(data)
        self._write(chunk)
        self.bytes_written += len(chunk)
        return len(chunk)

    def commit(self) -> None:
        if not self._done:
            self._done = True
            try:
                self._commit()
            except BaseException:
                # A failed commit (rename, complete-multipart) must still leave nothing behind;
                # the commit error is the one worth reporting, so a failing clean-up is ignored.
                with contextlib.suppress(Exception):
                    self._abort()
                raise

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def secret_values(settings: EndpointSettings, secrets: EndpointSecrets) -> set[str]:
    """Every string of an endpoint that must never leave the process, from its secrets model:
    each field's strings (nested ones too) but those marked `NotScrubbed` (login names), and the
    pieces the model names (`EndpointSecrets.pieces`: a SAS signature, a URL's query values).
    The one place redaction learns what is secret; core/redact.py's Scrubber does the hiding."""
    values: set[str] = set()
    for name, field in type(secrets).model_fields.items():
        if not any(isinstance(item, NotScrubbed) for item in field.metadata):
            values |= secret_strings(getattr(secrets, name))
    values |= secrets.pieces(settings)
    return {value for value in values if value}


class Endpoint(ABC):
    """One backend. Subclasses set `scheme`, annotate `settings` and `secrets` with their two models
    (core/endpoints/settings.py), which become `settings_model` and `secrets_model`, and implement
    the six operations. The constructor gets both models, or dicts it parses once."""

    scheme: ClassVar[str]
    settings_model: ClassVar[type[EndpointSettings]] = EndpointSettings
    secrets_model: ClassVar[type[EndpointSecrets]] = EndpointSecrets
    # Types tradelane creates itself (a partner's mailbox): not offered by `endpoint add --type`
    # or `endpoint schema`.
    internal: ClassVar[bool] = False
    # What a delivery does with a name that exists when its data flow does not say; None for types
    # where every delivery is a new message (http, email, as2), to which on_conflict does not apply.
    default_on_conflict: ClassVar[OnConflict | None] = None

    settings: EndpointSettings
    secrets: EndpointSecrets
    # The account whose stored row this endpoint was opened from (core/endpoints/rows.open_row);
    # None when built from settings alone. AS2 looks its partner's profile up in that account.
    account_id: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls).get("__annotations__", {})
        if "settings" in own or "secrets" in own:
            hints = get_type_hints(cls)
            cls.settings_model = hints["settings"]
            cls.secrets_model = hints["secrets"]
            # An endpoint in YAML is {name, type, secrets, <its settings>}: those three are taken.
            if taken := {"name", "type", "secrets"} & set(cls.settings_model.field_keys()):
                raise TypeError(f"{cls.__name__}: a setting may not be named {', '.join(sorted(taken))}")

    def __init__(
        self,
        settings: EndpointSettings | Mapping[str, Any],
        secrets: EndpointSecrets | Mapping[str, Any] | None = None,
    ) -> None:
        self.settings, self.secrets = self.parse(settings, secrets)

    @classmethod
    def parse(
        cls,
        settings: EndpointSettings | Mapping[str, Any],
        secrets: EndpointSecrets | Mapping[str, Any] | None = None,
    ) -> tuple[EndpointSettings, EndpointSecrets]:
        """Both models, checked (SettingsError naming every problem); models already parsed for
        this type are taken as they are."""
        if isinstance(settings, cls.settings_model) and isinstance(secrets, cls.secrets_model):
            return settings, secrets
        config = settings.stored() if isinstance(settings, EndpointSettings) else settings
        given = secrets.stored() if isinstance(secrets, EndpointSecrets) else secrets
        return parse_settings(cls.scheme, cls.settings_model, cls.secrets_model, config, given)

    def secret_values(self) -> set[str]:
        """Every string of this endpoint that must never leave the process (`secret_values`)."""
        return secret_values(self.settings, self.secrets)

    @cached_property
    def scrubber(self) -> Scrubber:
        """Hides this endpoint's secrets (see core/redact.py) in its errors and answers."""
        return Scrubber(self.secret_values())

    def redact(self, error: E) -> E:
        """`error` with every secret of this endpoint replaced by `***` in its message."""
        return self.scrubber.error(error)

    @abstractmethod
    def list(self, folder: str = "") -> Iterator[FileInfo]: ...

    @abstractmethod
    def stat(self, path: str) -> FileInfo: ...

    @abstractmethod
    def open_read(self, path: str) -> BinaryIO: ...

    @abstractmethod
    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream: ...

    @abstractmethod
    def delete(self, path: str) -> None: ...

    def exists_dir(self, path: str) -> bool | None:
        """Whether folder `path` exists; None for stores without folders (object stores, messages).

        A B2B connection's files must land in the folder its receiver chose, never in one a write
        silently re-created after it was removed (core/delivery.py checks this first).
        """
        return None

    def refuse_on_conflict(self, on_conflict: OnConflict) -> None:
        """For types that send messages: there is no name to take, so no policy but the default."""
        if on_conflict is not OnConflict.overwrite:
            raise ConfigError(f"on_conflict does not apply to {self.scheme}: every delivery is a new message")

    def close(self) -> None:  # noqa: B027  (most endpoints hold nothing to release)
        """Release connections; the default holds none."""

    def uri(self, path: str) -> str:
        """Where `path` lives, for people: no credentials, ever."""
        return f"{self.scheme}:{path}"

    def check(self) -> None:
        """Connect and list the root: what `tradelane endpoint test` runs. Raises EndpointError."""
        for _ in self.list(""):
            break

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def object_answer(etag: str, version: str | None) -> dict[str, Any]:
    """A write's `answer` for an object store: the object's ETag, and its version if kept."""
    answer: dict[str, Any] = {
        "summary": f"ETag {etag}" + (f", version {version}" if version else ""),
        "etag": etag,
    }
    if version:
        answer["version_id"] = version
    return answer


def copy_stream(src: BinaryIO, dst: WriteStream, chunk_size: int = CHUNK_SIZE) -> int:
    """Stream src into dst in bounded chunks; returns bytes copied."""
    total = 0
    while chunk := src.read(chunk_size):
        dst.write(chunk)
        total += len(chunk)
    return total


class ChunkReadStream(io.RawIOBase):
    """A raw stream over an iterator of byte chunks; `guard()` wraps each fetch to map backend errors.

    Backends that stream a download as chunks (HTTP bodies, blob downloads) subclass it and add
    what closing must release.
    """

    def __init__(
        self, chunks: Iterator[bytes], guard: Callable[[], contextlib.AbstractContextManager[Any]]
    ) -> None:
        super().__init__()
        self._chunks = chunks
        self._guard = guard
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            with self._guard():
                chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

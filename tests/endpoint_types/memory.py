"""A brand-new endpoint type, written as a third party would: this one module, and one line to
register it (`register("memory", "tests.endpoint_types.memory:MemoryEndpoint")`). Its CLI flags,
YAML keys, JSON Schema, listing and redaction all come from the two models below.

Files live in named spaces in this process's memory: a fake for tests of pure logic, not a
place to keep anything (a write is held whole until it is committed).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, BinaryIO, ClassVar, Literal

from pydantic import Field

from core.endpoints.base import (
    AuthError,
    Endpoint,
    FileInfo,
    NotFound,
    OnConflict,
    PermissionDenied,
    WriteStream,
    clean_path,
)
from core.endpoints.settings import EndpointSecrets, EndpointSettings, Flag

SPACES: dict[str, dict[str, bytes]] = {}
TOKENS: dict[str, str] = {}  # a space's token, when it wants one


class MemorySettings(EndpointSettings):
    """Files in a named space in this process's memory."""

    space: str
    """The space holding the files."""
    max_files: Annotated[int, Field(ge=1)] = 100
    """Most files the space takes."""
    read_only: bool = False
    """Refuse writes and deletes."""
    labels: Annotated[tuple[str, ...], Flag("--label", help="A label (repeatable).")] = ()
    """Labels shown with the endpoint."""
    color: Literal["red", "green"] = "green"
    """A choice, to show how choices are checked."""


class MemorySecrets(EndpointSecrets):
    token: str | None = None
    """The space's token, if it wants one."""


class _Write(WriteStream):
    def __init__(self, endpoint: MemoryEndpoint, path: str) -> None:
        super().__init__()
        self._endpoint, self._path, self._buffer = endpoint, path, io.BytesIO()

    def _write(self, data: bytes) -> None:
        self._buffer.write(data)

    def _commit(self) -> None:
        self._endpoint.space[self._path] = self._buffer.getvalue()

    def _abort(self) -> None:
        self._buffer = io.BytesIO()


class MemoryEndpoint(Endpoint):
    scheme: ClassVar[str] = "memory"
    settings: MemorySettings
    secrets: MemorySecrets

    def __init__(self, settings: Any, secrets: Any = None) -> None:
        super().__init__(settings, secrets)
        self.space = SPACES.setdefault(self.settings.space, {})

    def _login(self) -> None:
        wanted = TOKENS.get(self.settings.space)
        if wanted is not None and wanted != self.secrets.token:
            raise self.redact(
                AuthError(f"memory space {self.settings.space}: token {self.secrets.token} refused")
            )

    def list(self, folder: str = "") -> Iterator[FileInfo]:
        self._login()
        rel = clean_path(folder, allow_root=True)
        prefix = f"{rel}/" if rel else ""
        for path in sorted(self.space):
            if path.startswith(prefix) and "/" not in path[len(prefix) :]:
                yield self.stat(path)

    def stat(self, path: str) -> FileInfo:
        rel = clean_path(path)
        if rel not in self.space:
            raise NotFound(f"memory:{rel}")
        return FileInfo(rel, len(self.space[rel]), datetime.now(UTC))

    def open_read(self, path: str) -> BinaryIO:
        self.stat(path)
        return io.BytesIO(self.space[clean_path(path)])

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        self._login()
        if self.settings.read_only:
            raise PermissionDenied(f"memory space {self.settings.space} is read-only")
        if len(self.space) >= self.settings.max_files:
            raise PermissionDenied(f"memory space {self.settings.space} is full")
        return _Write(self, clean_path(path))

    def delete(self, path: str) -> None:
        self.stat(path)
        del self.space[clean_path(path)]

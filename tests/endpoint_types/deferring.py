"""A test-only endpoint type that says "not now": a folder (the `file` type) that is away while a
flag file exists, as a peer instance that is down is (core.endpoints.base.Deferrable). Registered
like any third-party type, through an entry point (tests/e2e/test_waiting_up.py), so every process
of a real `tradelane up` finds it.
"""

from __future__ import annotations

import os
from typing import ClassVar

from core.endpoints.base import Deferrable, OnConflict, WriteStream
from core.endpoints.file import FileEndpoint, FileSettings


class DeferringSettings(FileSettings):
    """A folder that cannot take files while a flag file exists."""

    away_while: str
    """While this file exists, every write is deferred (the destination is away)."""


class DeferringEndpoint(FileEndpoint):
    scheme: ClassVar[str] = "deferring"
    settings: DeferringSettings

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        if os.path.exists(self.settings.away_while):
            raise Deferrable(f"{self.uri(path)} is away (the flag file is there)")
        return super().open_write(path, on_conflict)

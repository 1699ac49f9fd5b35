"""Where a step's derived files are written: each one streamed under a temporary name, hashed on the
way, renamed when complete; and, when the step fails, every file it wrote is removed, so no half
(or partial set of) output is ever left behind.

    with Staging(directory) as stage:
        with stage.create("po.edi.gz") as out:
            gzip_compress(src, out, name="po.edi")
    stage.files  # [DerivedFile(name="po.edi.gz", path=..., size=..., sha256=...)]

Files are stored as numbered names in the directory (``0001``, ``0002``, ...); a derived file's
`name` is only data, never a path joined onto the directory, so a hostile name cannot escape it.
Give each run of a step a directory of its own (a re-run after a crash starts numbering again and
would find what the crashed run left).

A program that writes its output by name (gpg --output) gets `create_for_program(name)`: the path
to write, hashed as it grows (core/transforms/growing.py).

Each staged file keeps its identity when it was hashed (`FileIdentity`: device, inode, size,
modification time): a file that still has it holds the bytes that were hashed, which lets a push
that puts the very file in place (a hard link) take its hash without reading it again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Protocol, Self

from core.transforms.growing import GrowingFile


class Writable(Protocol):
    """Where a step writes bytes: a binary file, a socket's writer, an endpoint's upload stream."""

    def write(self, data: bytes, /) -> int | None: ...

    def flush(self) -> None: ...


class HashingWriter:
    """A binary writer that counts and SHA-256-hashes what passes through it to `target`."""

    def __init__(self, target: Writable) -> None:
        self.target = target
        self.size = 0
        self._sha = hashlib.sha256()

    def write(self, data: bytes, /) -> int:
        self.target.write(data)
        self._sha.update(data)
        n = len(data)
        self.size += n
        return n

    def flush(self) -> None:
        self.target.flush()

    def close(self) -> None:
        """Flush only: the target belongs to whoever gave it (zipfile calls this on its writer)."""
        self.target.flush()

    def sha256(self) -> str:
        """Lowercase hex SHA-256 of everything written so far."""
        return self._sha.hexdigest()


class FileIdentity(NamedTuple):
    """A file as it was when its bytes were hashed: any write to it since changes its modification
    time (or size), a replacement its inode."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> FileIdentity:
        return cls(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


@dataclass(frozen=True)
class DerivedFile:
    """A file a step produced: its logical name, where it is staged, its size and SHA-256, and
    its identity when it was hashed."""

    name: str
    path: Path
    size: int
    sha256: str
    identity: FileIdentity | None = None


class Staging:
    """A directory a step writes derived files into, all or nothing (see the module's docstring).

    Used as a context manager, an exception leaving the ``with`` block removes every file created
    through it; without one, call `discard` on failure yourself.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.files: list[DerivedFile] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            self.discard()

    @contextmanager
    def create(self, name: str) -> Iterator[HashingWriter]:
        """A writer for the derived file `name`; it appears in `files` only if the block completes."""
        index = len(self.files) + 1
        final = self.directory / f"{index:04d}"
        part = self.directory / f"{index:04d}.part"
        with part.open("wb") as raw:
            writer = HashingWriter(raw)
            try:
                yield writer
                raw.flush()
                os.fsync(raw.fileno())
            except BaseException:
                raw.close()
                part.unlink(missing_ok=True)
                raise
            info = os.fstat(raw.fileno())
        # Bytes that reached the file other than through `writer` would make its hash not the file's.
        identity = FileIdentity.of(info) if info.st_size == writer.size else None
        part.replace(final)
        self.files.append(DerivedFile(name, final, writer.size, writer.sha256(), identity))

    @contextmanager
    def create_for_program(self, name: str) -> Iterator[GrowingFile]:
        """The derived file `name` for a program to write by its path (`GrowingFile.path`), hashed
        as it grows; the caller runs the program between `follow` and `finish` (see
        core/transforms/growing.py). It appears in `files` only if the block completes."""
        index = len(self.files) + 1
        final = self.directory / f"{index:04d}"
        part = self.directory / f"{index:04d}.part"
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        growing = GrowingFile(part, fd)
        try:
            yield growing
            size, sha256 = growing.finish()
            if growing.over_limit:
                raise RuntimeError(f"{name}: its writer passed the limit and was not stopped by an error")
            os.fsync(fd)
            identity = FileIdentity.of(os.fstat(fd))
        except BaseException:
            growing.stop()
            os.close(fd)
            part.unlink(missing_ok=True)
            raise
        os.close(fd)
        part.replace(final)
        self.files.append(DerivedFile(name, final, size, sha256, identity))

    def discard(self) -> None:
        """Remove every file written through this staging (an unfinished one removes itself)."""
        for file in self.files:
            file.path.unlink(missing_ok=True)
        self.files = []

"""The byte plumbing around gpg: what goes in counted (and hashed), what comes out hashed and written
to the sink, and an OpenPGP message told from other data by its first bytes."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from core.pgp.errors import PgpNotPgpError, PgpTooLargeError


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> Any: ...


@runtime_checkable
class SelfHashing(Protocol):
    """A sink that counts and SHA-256-hashes what it is given (a staged file's writer, core/transforms/
    staging.py): its hash is the output's, and the output is not hashed a second time."""

    size: int

    def write(self, data: bytes, /) -> Any: ...

    def sha256(self) -> str: ...


# Packet tags an OpenPGP message can start with (RFC 9580 §5): PKESK, signature, SKESK, one-pass
# signature, compressed, (SE)data, marker, literal, SEIPD, AEAD.
MESSAGE_TAGS = frozenset({1, 2, 3, 4, 8, 9, 10, 11, 18, 20})
SNIFF_BYTES = 1024


def file_on_disk(source: Readable) -> str | None:
    """The path of `source` if it is a regular file read from its start, opened under that name."""
    name = getattr(source, "name", None)
    fileno, tell = getattr(source, "fileno", None), getattr(source, "tell", None)
    if not isinstance(name, str) or fileno is None or tell is None:
        return None
    try:
        opened = os.fstat(fileno())
        named = os.stat(name)
        at_start = tell() == 0
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    same = (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)
    if not (same and at_start and stat.S_ISREG(opened.st_mode)):
        return None
    told = getattr(source, "read_by_name", None)
    if callable(told):
        told()  # the source may hash the file while the program reads it (core/derived.py)
    return os.path.abspath(name)


def sniff(source: Readable) -> bytes:
    """The first bytes of `source`, if they start an OpenPGP message; PgpNotPgpError if not."""
    head = b""
    while len(head) < SNIFF_BYTES:
        chunk = source.read(SNIFF_BYTES - len(head))
        if not chunk:
            break
        head += chunk
    if not head:
        raise PgpNotPgpError("the file is empty, not an OpenPGP message")
    text = head.lstrip()
    if text.startswith(b"-----BEGIN PGP "):
        if text.startswith((b"-----BEGIN PGP MESSAGE-----", b"-----BEGIN PGP SIGNED MESSAGE-----")):
            return head
        kind = text[15 : text.find(b"-----", 15)].decode("ascii", "replace")
        raise PgpNotPgpError(f"the file is an armored PGP {kind}, not a message")
    first = head[0]
    if first & 0x80:
        tag = first & 0x3F if first & 0x40 else (first >> 2) & 0x0F
        if tag in MESSAGE_TAGS:
            return head
    raise PgpNotPgpError("the file is not OpenPGP data (neither an armored nor a binary PGP message)")


class CountingReader:
    """`source` (after the bytes already read from it) with its size, and its SHA-256 if `hashing`."""

    def __init__(self, source: Readable, head: bytes = b"", *, hashing: bool = True) -> None:
        self._source = source
        self._head = head
        self.size = 0
        self._hash = hashlib.sha256() if hashing else None
        self.failure: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            if self._head:
                data, self._head = self._head, b""
            else:
                data = self._source.read(size)
        except BaseException as exc:  # gpg's writer thread swallows it: keep it to raise later
            self.failure = exc
            raise
        self.size += len(data)
        if self._hash is not None:
            self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        assert self._hash is not None
        return self._hash.hexdigest()

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure


class HashingWriter:
    """python-gnupg's `on_data`: every chunk gpg writes goes to `sink`, hashed, none kept in memory.

    Past `limit` bytes, or when the sink fails, gpg is stopped (`stop`) and the error kept for
    python-gnupg to hand back: a small message that inflates without end costs neither disk nor time.
    """

    def __init__(self, sink: Writable, limit: int | None = None) -> None:
        self._sink = sink
        self._limit = limit
        self.size = 0
        # A fresh self-hashing sink will hash exactly what is written here: its hash is ours.
        self._hashed_by_sink = isinstance(sink, SelfHashing) and sink.size == 0
        self._hash = None if self._hashed_by_sink else hashlib.sha256()
        self.stop: Callable[[], None] = lambda: None
        self._failed = False

    def __call__(self, chunk: bytes) -> bool:
        if not chunk or self._failed:
            return False
        try:
            if self._limit is not None and self.size + len(chunk) > self._limit:
                raise PgpTooLargeError(
                    f"the decrypted file is larger than the limit of {self._limit} bytes: stopped there"
                )
            self._sink.write(chunk)
        except BaseException:
            self._failed = True
            self.stop()
            raise
        if self._hash is not None:
            self._hash.update(chunk)
        self.size += len(chunk)
        return False  # tells python-gnupg not to keep the chunk

    def hexdigest(self) -> str:
        if self._hash is None:
            assert isinstance(self._sink, SelfHashing)
            return self._sink.sha256()
        return self._hash.hexdigest()

    @staticmethod
    def raise_failure(result: Any) -> None:
        failure = getattr(result, "on_data_failure", None)
        if failure is not None:
            raise failure


class DescriptorSink:
    """A sink writing every chunk whole to an open file descriptor (a staged file gpg cannot be
    trusted to write by name: see `decrypt`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes, /) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        return len(data)

"""Streaming: a few hundred MiB made on the fly pass through encrypt and decrypt with flat memory."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.pgp import PgpError
from tests.pgp.support import GpgCli, decrypt, encrypt

SIZE = 300 * 1024 * 1024
# Far below SIZE: a whole file held in memory would show.
ALLOWED_GROWTH = 64 * 1024 * 1024


class Generated:
    """SIZE bytes made as they are read (varied, so not trivially compressible), hashed on the way."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.hash = hashlib.sha256()
        self.block = os.urandom(4096)
        self.counter = 0

    def read(self, size: int = -1) -> bytes:
        size = min(self.left if size < 0 else size, self.left, 1 << 20)
        chunks = []
        for _ in range(0, size, 4096):
            self.counter += 1
            chunks.append(self.counter.to_bytes(8, "big") + self.block[8:])
        data = b"".join(chunks)[:size]
        self.left -= len(data)
        self.hash.update(data)
        return data


class HashingSink:
    def __init__(self) -> None:
        self.size = 0
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.size += len(data)
        self.hash.update(data)
        return len(data)


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Samples this process's resident memory while the block runs: [baseline, peak]."""
    found = [rss(), rss()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            found[1] = max(found[1], rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield found
    finally:
        done.set()
        sampler.join()


def test_large_stream_encrypts_and_decrypts_with_flat_memory(partner: GpgCli, ours: str) -> None:
    source = Generated(SIZE)
    with tempfile.TemporaryFile() as message:
        with peak_rss() as memory:
            sealed = encrypt(source, message, ["ours"], sign="ours")
        assert memory[1] - memory[0] < ALLOWED_GROWTH, memory
        assert sealed.bytes_in == SIZE and sealed.input_sha256 == source.hash.hexdigest()
        assert sealed.bytes_out == message.tell()

        message.seek(0)
        sink = HashingSink()
        with peak_rss() as memory:
            opened = decrypt(message, sink, verify="required")
        assert memory[1] - memory[0] < ALLOWED_GROWTH, memory
        assert opened.bytes_out == SIZE == sink.size
        assert opened.sha256 == source.hash.hexdigest() == sink.hash.hexdigest()
        assert opened.signature_verified and opened.signer_fingerprint == ours


def test_a_named_file_is_read_by_gpg_itself(partner: GpgCli, ours: str, tmp_path: Path) -> None:
    """A message in a file on disk goes to gpg by name (no pipe from Python): same answer."""
    data = os.urandom(3 * 1024 * 1024)
    path = tmp_path / "message.gpg"
    path.write_bytes(
        partner.run("--trust-model", "always", "--sign", "--encrypt", "-r", ours, data=data).stdout
    )
    sink = HashingSink()
    with path.open("rb") as source:
        result = decrypt(source, sink, verify="required")
    assert result.bytes_in == path.stat().st_size and result.bytes_out == len(data) == sink.size
    assert result.sha256 == hashlib.sha256(data).hexdigest() == sink.hash.hexdigest()
    assert result.signer_fingerprint == partner.fingerprint
    # A file opened at another position is streamed from there instead, like any stream.
    with path.open("rb") as source:
        source.seek(1)
        with pytest.raises(PgpError):
            decrypt(source, HashingSink())


def test_into_a_staged_file_the_plaintext_is_hashed_once_by_its_writer(
    partner: GpgCli, ours: str, tmp_path: Path
) -> None:
    """A staged file's writer hashes what it is given: decrypt takes that hash as its own (not a
    second pass over every byte), and it is the plaintext's."""
    from core.transforms.staging import Staging

    data = os.urandom(2 * 1024 * 1024)
    message = partner.run("--trust-model", "always", "--sign", "--encrypt", "-r", ours, data=data).stdout
    with Staging(tmp_path / "stage") as stage:
        with stage.create("plain.bin") as out:
            result = decrypt(io.BytesIO(message), out, verify="required")
        (staged,) = stage.files
    assert result.sha256 == staged.sha256 == hashlib.sha256(data).hexdigest()
    assert result.bytes_out == staged.size == len(data) == staged.path.stat().st_size

    # A writer that was given bytes before is not the output's alone: decrypt hashes its own.
    with Staging(tmp_path / "stage2") as stage, stage.create("with-header.bin") as out:
        out.write(b"header")
        result = decrypt(io.BytesIO(message), out, verify="required")
    assert result.sha256 == hashlib.sha256(data).hexdigest() != out.sha256()


@pytest.mark.parametrize("bound", [True, False], ids=["gpg-writes-it", "through-the-pipe"])
def test_into_a_file_for_gpg_gpg_writes_it_by_name_and_it_is_hashed_as_it_grows(
    partner: GpgCli, ours: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bound: bool
) -> None:
    """A staged file made for a program: gpg writes it itself (`--output`), nothing passes through
    this process's pipes, and the hash is of the file's bytes. Where gpg cannot be bound to die
    with its caller (no setpriv), its output comes through the pipe into that file instead."""
    from core.pgp import streams
    from core.transforms.staging import FileIdentity, Staging

    if not bound:
        monkeypatch.setattr(streams, "dies_with_caller", lambda: ())

    data = os.urandom(5 * 1024 * 1024)
    message = tmp_path / "message.gpg"
    message.write_bytes(
        partner.run("--trust-model", "always", "--sign", "--encrypt", "-r", ours, data=data).stdout
    )
    with Staging(tmp_path / "stage") as stage, message.open("rb") as source:
        with stage.create_for_program("plain.bin") as out:
            result = decrypt(source, out, verify="required")
        (staged,) = stage.files
    assert result.sha256 == staged.sha256 == hashlib.sha256(data).hexdigest()
    assert result.bytes_out == staged.size == len(data) and staged.path.read_bytes() == data
    assert result.signature_verified and result.signer_fingerprint == partner.fingerprint
    assert staged.identity == FileIdentity.of(staged.path.stat())

"""gzip and zip both ways, against the real `gzip`, `zip` and `unzip` command lines."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from core.transforms.compression import (
    CorruptArchive,
    DecompressLimits,
    ZipReader,
    compress_file,
    decompress_file,
    gunzip_name,
    gzip_compress,
    gzip_decompress,
    unzip,
    zip_compress,
)
from core.transforms.staging import Staging
from tests.test_validators import GeneratedStream


def edi_lines(count: int, seed: int = 1) -> bytes:
    """Text that compresses like real EDI (5-10x), not like a run of zeros."""
    rng = random.Random(seed)
    return b"".join(
        b"LIN+%d++%012d:SRS'\nQTY+21:%d'\n" % (i, rng.randrange(10**12), rng.randrange(99))
        for i in range(count)
    )


DATA = edi_lines(40_000)  # about 1.2 MB


def run(*args: str, cwd: Path, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(args, cwd=cwd, input=stdin, capture_output=True, check=True, timeout=60)
    return done.stdout


class Unseekable(io.RawIOBase):
    """A write-only stream with no tell() or seek(), like an upload to an endpoint."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return self.buffer.write(data)


class UnseekableReader(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._inner.readinto(buffer)


# --------------------------------------------------------------------------------------------
# gzip


def test_gzip_compress_is_read_by_gzip_and_is_reproducible(tmp_path: Path) -> None:
    out = io.BytesIO()
    result = gzip_compress(io.BytesIO(DATA), out, name="po.edi")
    assert result.read == len(DATA)
    assert result.written == len(out.getvalue())
    assert result.sha256 == hashlib.sha256(out.getvalue()).hexdigest()
    (tmp_path / "po.edi.gz").write_bytes(out.getvalue())
    assert run("gzip", "-dc", "po.edi.gz", cwd=tmp_path) == DATA
    assert b"po.edi" in run("gzip", "-lN", "po.edi.gz", cwd=tmp_path)  # the original name is kept
    # the same input gives the same bytes: a step run again yields the same SHA-256
    again = io.BytesIO()
    assert gzip_compress(io.BytesIO(DATA), again, name="po.edi").sha256 == result.sha256
    # and it works into a stream that cannot seek
    unseekable = Unseekable()
    gzip_compress(io.BytesIO(DATA), unseekable, name="po.edi")
    assert unseekable.buffer.getvalue() == out.getvalue()


def test_gzip_decompress_reads_gzip_output(tmp_path: Path) -> None:
    (tmp_path / "po.edi").write_bytes(DATA)
    compressed = run("gzip", "-c", "-9", "po.edi", cwd=tmp_path)
    out = io.BytesIO()
    result = gzip_decompress(io.BytesIO(compressed), out)
    assert out.getvalue() == DATA
    assert (result.read, result.written) == (len(compressed), len(DATA))
    assert result.sha256 == hashlib.sha256(DATA).hexdigest()
    # byte by byte, too
    small = io.BytesIO()
    gzip_decompress(io.BytesIO(compressed), small, chunk_size=1)
    assert small.getvalue() == DATA


def test_gzip_decompress_reads_concatenated_members_and_zero_padding(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"first part\n")
    (tmp_path / "b").write_bytes(DATA)
    joined = run("gzip", "-c", "a", cwd=tmp_path) + run("gzip", "-c", "b", cwd=tmp_path) + b"\0" * 1000
    (tmp_path / "joined.gz").write_bytes(joined)
    expected = run("gzip", "-dc", "joined.gz", cwd=tmp_path)
    assert expected == b"first part\n" + DATA
    for chunk_size in (1, 7, 4096, 1 << 20):
        out = io.BytesIO()
        gzip_decompress(io.BytesIO(joined), out, chunk_size=chunk_size)
        assert out.getvalue() == expected


def test_gunzip_name() -> None:
    assert gunzip_name("po.edi.gz") == "po.edi"
    assert gunzip_name("PO.EDI.GZ") == "PO.EDI"
    assert gunzip_name("backup.tgz") == "backup.tar"
    assert gunzip_name("po.edi.gzip") == "po.edi"
    assert gunzip_name("po.edi") == "po.edi"
    assert gunzip_name(".gz") == ".gz"


def test_gzip_memory_stays_flat_both_ways() -> None:
    def blocks() -> Iterator[bytes]:
        block = edi_lines(2000)
        for _ in range(400):  # about 24 MB
            yield block

    class Sink:
        size = 0

        def write(self, data: bytes) -> int:
            self.size += len(data)
            return len(data)

        def flush(self) -> None:
            pass

    compressed = io.BytesIO()
    tracemalloc.start()
    try:
        result = gzip_compress(GeneratedStream(blocks()), compressed, chunk_size=64 * 1024)  # type: ignore[arg-type]
        compress_peak = tracemalloc.get_traced_memory()[1] - compressed.getbuffer().nbytes
        tracemalloc.reset_peak()
        compressed.seek(0)
        sink = Sink()
        gzip_decompress(compressed, sink, chunk_size=64 * 1024)
        _, decompress_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.size == result.read > 20_000_000
    assert compress_peak < 4 * 1024 * 1024, f"compress peak {compress_peak / 2**20:.1f} MiB"
    # the compressed input itself (about 6 MB, held by the BytesIO) is not counted against it
    assert decompress_peak - compressed.getbuffer().nbytes < 4 * 1024 * 1024


# --------------------------------------------------------------------------------------------
# zip


@pytest.mark.parametrize("seekable", [True, False])
@pytest.mark.parametrize("known_size", [True, False])
def test_zip_compress_is_read_by_unzip(tmp_path: Path, seekable: bool, known_size: bool) -> None:
    target: io.BytesIO | Unseekable = io.BytesIO() if seekable else Unseekable()
    result = zip_compress(
        io.BytesIO(DATA),
        target,
        member_name="po.edi",
        size=len(DATA) if known_size else None,
        date_time=datetime(2024, 1, 15, 12, 30),
    )
    archive = target.getvalue() if isinstance(target, io.BytesIO) else target.buffer.getvalue()
    assert result.sha256 == hashlib.sha256(archive).hexdigest()
    (tmp_path / "po.edi.zip").write_bytes(archive)
    assert b"No errors detected" in run("unzip", "-t", "po.edi.zip", cwd=tmp_path)
    assert run("unzip", "-p", "po.edi.zip", "po.edi", cwd=tmp_path) == DATA
    listing = run("unzip", "-l", "po.edi.zip", cwd=tmp_path).decode()
    assert "2024-01-15 12:30   po.edi" in listing
    run("unzip", "-q", "po.edi.zip", "-d", "out", cwd=tmp_path)
    assert (tmp_path / "out" / "po.edi").read_bytes() == DATA
    assert (tmp_path / "out" / "po.edi").stat().st_mode & 0o777 == 0o644


def test_zip_compress_member_name_is_a_bare_name() -> None:
    out = io.BytesIO()
    zip_compress(io.BytesIO(b"x"), out, member_name="../../etc/po.edi")
    assert zipfile.ZipFile(out).namelist() == ["po.edi"]
    with pytest.raises(ValueError, match="cannot name a zip member"):
        zip_compress(io.BytesIO(b"x"), io.BytesIO(), member_name="dir/..")


def make_zip(tmp_path: Path, *files: str, flags: tuple[str, ...] = ()) -> bytes:
    """Run `zip` in tmp_path/src and return the archive it wrote."""
    archive = tmp_path / "made.zip"
    archive.unlink(missing_ok=True)
    run("zip", "-q", *flags, str(archive), *files, cwd=tmp_path / "src")
    return archive.read_bytes()


@pytest.fixture
def src_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "orders" / "2024").mkdir(parents=True)
    (src / "po_1.edi").write_bytes(DATA)
    (src / "orders" / "2024" / "po_2.edi").write_bytes(edi_lines(500, seed=2))
    (src / "empty.txt").write_bytes(b"")
    (src / "ünïcødé.csv").write_bytes("naïve,café\n".encode())
    return src


@pytest.mark.parametrize("flags", [["-r"], ["-r", "-0"], ["-r", "-fz"], ["-r", "-9", "-D"]])
@pytest.mark.parametrize("seekable", [True, False])
def test_unzip_reads_zip_output_member_by_member(
    tmp_path: Path, src_tree: Path, flags: list[str], seekable: bool
) -> None:
    archive = make_zip(tmp_path, ".", flags=tuple(flags))
    source = io.BytesIO(archive) if seekable else UnseekableReader(archive)
    with Staging(tmp_path / "stage") as stage:
        files = unzip(source, stage)  # type: ignore[arg-type]
    names = {file.name: file for file in files}
    expected = {
        "po_1.edi": DATA,
        "orders/2024/po_2.edi": edi_lines(500, seed=2),
        "empty.txt": b"",
        "ünïcødé.csv": "naïve,café\n".encode(),
    }
    assert sorted(names) == sorted(expected)  # directory entries are not files
    for name, content in expected.items():
        assert names[name].path.read_bytes() == content
        assert names[name].size == len(content)
        assert names[name].sha256 == hashlib.sha256(content).hexdigest()
        assert names[name].path.parent == tmp_path / "stage"
    assert sorted(os.listdir(tmp_path / "stage")) == ["0001", "0002", "0003", "0004"]  # no spool, no parts


def test_zip_reader_yields_name_and_stream_pairs(tmp_path: Path, src_tree: Path) -> None:
    archive = make_zip(tmp_path, "po_1.edi", "empty.txt")
    with ZipReader(io.BytesIO(archive)) as reader:
        assert [(m.name, m.size) for m in reader.members] == [("po_1.edi", len(DATA)), ("empty.txt", 0)]
        read = {name: stream.read() for name, stream in reader}
    assert read == {"po_1.edi": DATA, "empty.txt": b""}


def test_round_trip_through_both_command_lines(tmp_path: Path) -> None:
    """ours → unzip/gzip, and zip/gzip → ours, on the same bytes."""
    zipped = io.BytesIO()
    zip_compress(io.BytesIO(DATA), zipped, member_name="po.edi")
    (tmp_path / "ours.zip").write_bytes(zipped.getvalue())
    run("unzip", "-q", "ours.zip", "-d", "src", cwd=tmp_path)
    theirs = make_zip(tmp_path, "po.edi")
    with Staging(tmp_path / "stage") as stage:
        [file] = unzip(io.BytesIO(theirs), stage)
    assert (file.name, file.path.read_bytes()) == ("po.edi", DATA)
    gzipped = io.BytesIO()
    gzip_compress(io.BytesIO(DATA), gzipped, name="po.edi")
    recompressed = run(
        "gzip", "-c", cwd=tmp_path, stdin=run("gzip", "-dc", cwd=tmp_path, stdin=gzipped.getvalue())
    )
    out = io.BytesIO()
    gzip_decompress(io.BytesIO(recompressed), out)
    assert out.getvalue() == DATA


def test_limits_take_sizes_in_words() -> None:
    limits = DecompressLimits(max_total_size="1.5 GiB", max_ratio=50, max_members=3)  # type: ignore[arg-type]
    assert limits.max_total_size == 1536 * 1024 * 1024
    assert DecompressLimits().model_dump() == {
        "max_ratio": 200.0,
        "max_total_size": 10 * 1024**3,
        "max_members": 1000,
    }
    with pytest.raises(ValueError, match="max_ratio"):
        DecompressLimits(max_ratio=0.5)
    with pytest.raises(ValueError, match="invalid size"):
        DecompressLimits(max_total_size="lots")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Extra inputs"):
        DecompressLimits(max_size=1)  # type: ignore[call-arg]


def test_staging_keeps_nothing_of_a_failed_step(tmp_path: Path) -> None:
    stage = Staging(tmp_path / "stage")
    with pytest.raises(RuntimeError), stage:
        with stage.create("one") as out:
            out.write(b"complete")
        with stage.create("two") as out:
            out.write(b"half")
            raise RuntimeError("the step failed")
    assert stage.files == []
    assert os.listdir(tmp_path / "stage") == []


@pytest.mark.parametrize("kind", ["gzip", "zip"])
@pytest.mark.parametrize("seekable", [True, False])
def test_compress_file_and_decompress_file_round_trip(tmp_path: Path, kind: str, seekable: bool) -> None:
    with Staging(tmp_path / "stage") as stage:
        packed = compress_file(io.BytesIO(DATA), "po.edi", stage, format=kind, size=len(DATA))
        assert packed.name == f"po.edi.{'gz' if kind == 'gzip' else 'zip'}"
        # the command line reads what we wrote
        tool = ["gzip", "-dc"] if kind == "gzip" else ["unzip", "-p"]
        assert run(*tool, str(packed.path), cwd=tmp_path) == DATA
        raw = packed.path.read_bytes()
        source = io.BytesIO(raw) if seekable else UnseekableReader(raw)
        # told by the first bytes, not by the name
        [unpacked] = decompress_file(source, "renamed.bin", stage)  # type: ignore[arg-type]
    assert unpacked.name == ("renamed.bin" if kind == "gzip" else "po.edi")
    assert unpacked.path.read_bytes() == DATA
    assert unpacked.sha256 == hashlib.sha256(DATA).hexdigest()


def test_decompress_file_names_and_refusals(tmp_path: Path) -> None:
    stage = Staging(tmp_path / "stage")
    (tmp_path / "po.edi").write_bytes(DATA)
    [gunzipped] = decompress_file(io.BytesIO(run("gzip", "-c", "po.edi", cwd=tmp_path)), "po.edi.gz", stage)
    assert gunzipped.name == "po.edi"
    with pytest.raises(CorruptArchive, match=r"po.edi: neither gzip nor zip \(it starts b'LIN\+'\)"):
        decompress_file(io.BytesIO(DATA), "po.edi", stage)
    with pytest.raises(ValueError, match="unknown compression format 'rar'"):
        compress_file(io.BytesIO(DATA), "po.edi", stage, format="rar")
    assert [file.name for file in stage.files] == ["po.edi"]
    assert os.listdir(tmp_path / "stage") == ["0001"]


def test_zip_memory_stays_flat_both_ways(tmp_path: Path) -> None:
    def blocks() -> Iterator[bytes]:
        block = edi_lines(2000)
        for _ in range(400):  # about 24 MB
            yield block

    tracemalloc.start()
    try:
        with (tmp_path / "big.zip").open("wb") as written:
            source: Any = GeneratedStream(blocks())
            result = zip_compress(source, written, member_name="big.edi", chunk_size=64 * 1024)
        _, compress_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with (tmp_path / "big.zip").open("rb") as read, Staging(tmp_path / "stage") as stage:
            [file] = unzip(read, stage, chunk_size=64 * 1024)
        _, decompress_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert file.size == result.read > 20_000_000
    assert compress_peak < 4 * 1024 * 1024, f"compress peak {compress_peak / 2**20:.1f} MiB"
    assert decompress_peak < 4 * 1024 * 1024, f"decompress peak {decompress_peak / 2**20:.1f} MiB"

"""Hostile input to the transforms: zip and gzip bombs, lying and corrupt archives, names that climb
out, encrypted members; broken and oversized EDI envelopes. Each is refused with a clear error of
its own type, and no output (whole or half) is left behind."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from core.transforms.compression import (
    CompressionError,
    CorruptArchive,
    DecompressLimits,
    EncryptedMember,
    LimitExceeded,
    UnsafeMemberName,
    UnsupportedArchive,
    gzip_decompress,
    unzip,
)
from core.transforms.edi_route import MAX_COMBINATIONS, UnreadableEnvelope, route_stream
from core.transforms.staging import Staging
from tests.transforms.edi_samples import edifact, isa_header, x12

MIB = 1024 * 1024
GOOD = b"ISA*00*a perfectly good member\n" * 1000


def zeros_gzip(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MIB)
    return b"".join(compressor.compress(block) for _ in range(size // MIB)) + compressor.flush()


def build_zip(
    members: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED
) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


class CountingSink:
    """Counts what a refused decompression wrote before it stopped."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def refused_unzip(
    tmp_path: Path, archive: bytes, error: type[CompressionError], match: str, **limits: object
) -> str:
    """unzip must refuse `archive` with `error` and leave the staging directory empty, nothing
    outside it."""
    before = set(tmp_path.iterdir())
    stage = Staging(tmp_path / "stage")
    with pytest.raises(error, match=match) as caught:
        unzip(io.BytesIO(archive), stage, DecompressLimits(**limits))  # type: ignore[arg-type]
    assert stage.files == []
    assert os.listdir(tmp_path / "stage") == []
    assert set(tmp_path.iterdir()) - before <= {tmp_path / "stage"}
    return str(caught.value)


# --------------------------------------------------------------------------------------------
# gzip


def test_a_gzip_bomb_stops_at_the_ratio_limit_early() -> None:
    bomb = zeros_gzip(256 * MIB)  # about 250 KB
    sink = CountingSink()
    with pytest.raises(
        LimitExceeded, match=r"gzip file expands \d+ times .* over max_ratio 200 \(a zip bomb\?\)"
    ):
        gzip_decompress(io.BytesIO(bomb), sink, chunk_size=64 * 1024)
    assert sink.size < 16 * MIB  # stopped long before the 256 MiB


def test_a_gzip_bomb_under_the_ratio_stops_at_the_total() -> None:
    sink = CountingSink()
    limits = DecompressLimits(max_ratio=5000, max_total_size="8MiB")  # type: ignore[arg-type]
    with pytest.raises(
        LimitExceeded, match=r"more than 8.0 MiB decompressed, over max_total_size 8388608 bytes"
    ):
        gzip_decompress(io.BytesIO(zeros_gzip(64 * MIB)), sink, limits=limits)
    assert sink.size <= 8 * MIB + 256 * 1024


def test_a_refused_gzip_leaves_no_staged_file(tmp_path: Path) -> None:
    with pytest.raises(LimitExceeded), Staging(tmp_path / "stage") as stage, stage.create("bomb") as out:
        gzip_decompress(io.BytesIO(zeros_gzip(64 * MIB)), out)
    assert os.listdir(tmp_path / "stage") == []


def gz(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[: len(b) // 2], r"truncated gzip stream \(unexpected end of file\)"),
        (lambda b: b[:-8] + bytes([b[-8] ^ 1]) + b[-7:], r"not a valid gzip stream \(.*incorrect data check"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), r"not a valid gzip stream \(.*incorrect length check"),
        (lambda b: b + b"trailing junk", r"data after the end of the gzip stream \(not a gzip member\)"),
        (lambda b: b + b"\0\0\0junk", r"data after the end of the gzip stream \(not zero padding\)"),
        (lambda b: b"PK\x03\x04" + b, r"not a valid gzip stream \(.*incorrect header check"),
        (lambda b: b"", r"empty file, not gzip"),
        (lambda b: b[:1], r"truncated gzip stream"),
    ],
)
def test_corrupt_gzip_is_refused(mangle: Callable[[bytes], bytes], message: str) -> None:
    with pytest.raises(CorruptArchive, match=message):
        gzip_decompress(io.BytesIO(mangle(gz(GOOD))), io.BytesIO(), name="po.edi.gz")


# --------------------------------------------------------------------------------------------
# zip bombs


def test_a_zip_bomb_is_refused_from_its_directory_before_a_byte_is_written(tmp_path: Path) -> None:
    bomb = build_zip([("good.txt", GOOD), ("zeros.bin", bytes(64 * MIB))])
    message = refused_unzip(tmp_path, bomb, LimitExceeded, r"zip member 'zeros.bin' expands \d+ times")
    assert "over max_ratio 200" in message
    message = refused_unzip(
        tmp_path, bomb, LimitExceeded, "its members declare", max_ratio=5000, max_total_size="16MiB"
    )
    assert "over max_total_size 16777216 bytes" in message


def test_many_small_members_over_max_members(tmp_path: Path) -> None:
    archive = build_zip([(f"po_{i}.edi", GOOD) for i in range(3)])
    refused_unzip(tmp_path, archive, LimitExceeded, "more than 2 files, over max_members", max_members=2)


def test_a_directory_too_big_for_max_members_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """Empty entries make no ratio and no size, but a million of them would fill memory."""
    archive = build_zip([(f"e{i}", b"") for i in range(50)])
    refused_unzip(tmp_path, archive, LimitExceeded, "its directory lists 50 entries in ", max_members=10)


def patch_sizes(archive: bytes, member: str, uncompressed: int) -> bytes:
    """Make both the local header and the central directory of `member` claim `uncompressed` bytes."""
    data = bytearray(archive)
    name = member.encode()
    for signature, name_at, size_at in ((b"PK\x03\x04", 30, 22), (b"PK\x01\x02", 46, 24)):
        at = data.find(signature)
        while at >= 0:
            if data[at + name_at : at + name_at + len(name)] == name:
                struct.pack_into("<I", data, at + size_at, uncompressed)
            at = data.find(signature, at + 4)
    return bytes(data)


def test_a_zip_lying_about_its_sizes_is_caught_while_it_streams(tmp_path: Path) -> None:
    """The directory says 1000 bytes; the data holds 8 MiB. What is produced is checked, not what
    is claimed - and the good member before it is removed too (all or nothing)."""
    liar = patch_sizes(build_zip([("good.txt", GOOD), ("liar.bin", bytes(8 * MIB))]), "liar.bin", 1000)
    assert zipfile.ZipFile(io.BytesIO(liar)).getinfo("liar.bin").file_size == 1000
    refused_unzip(tmp_path, liar, CorruptArchive, r"zip member 'liar.bin': Bad CRC-32")


def test_entries_sharing_their_data_are_refused(tmp_path: Path) -> None:
    """A known non-recursive bomb: many directory entries pointing at one compressed payload."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.bin", bytes(MIB))
        first = archive.filelist[0]
        for copy in range(1, 10):
            clone = zipfile.ZipInfo(f"a{copy}.bin", first.date_time)
            for attribute in ("compress_type", "CRC", "compress_size", "file_size", "header_offset"):
                setattr(clone, attribute, getattr(first, attribute))
            archive.filelist.append(clone)
    refused_unzip(
        tmp_path,
        out.getvalue(),
        CorruptArchive,
        "zip member 'a.bin' overlaps the next entry's data",
        max_ratio=5000,
    )


# --------------------------------------------------------------------------------------------
# names


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil.txt", r"zip member '../evil.txt' climbs out with '..'"),
        ("orders/../../evil.txt", r"climbs out with '..'"),
        ("..\\evil.txt", r"climbs out with '..'"),
        ("/etc/cron.d/evil", r"zip member '/etc/cron.d/evil' has an absolute path"),
        ("C:\\Windows\\evil.dll", r"has an absolute path"),
        ("\\\\server\\share\\evil", r"has an absolute path"),
        ("evil\x1b[2J.txt", r"holds control characters"),
        ("./", r"is empty"),
    ],
)
def test_names_that_could_escape_are_refused(tmp_path: Path, name: str, message: str) -> None:
    archive = build_zip([("good.txt", GOOD), (zipfile.ZipInfo(name), b"owned")])
    assert name in zipfile.ZipFile(io.BytesIO(archive)).namelist()
    refused_unzip(tmp_path, archive, UnsafeMemberName, message)


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's own "Duplicate name" warning
        archive = build_zip([("po.edi", GOOD), ("./po.edi", b"the other one")])
        twice = build_zip([("po.edi", GOOD), ("po.edi", b"the other one")])
    refused_unzip(tmp_path, archive, UnsafeMemberName, "zip member name 'po.edi' appears twice")
    refused_unzip(tmp_path, twice, UnsafeMemberName, "appears twice")


def test_a_symbolic_link_member_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.txt").write_bytes(GOOD)
    (src / "passwd").symlink_to("/etc/passwd")
    subprocess.run(["zip", "-q", "-y", "../links.zip", "good.txt", "passwd"], cwd=src, check=True, timeout=60)
    archive = (tmp_path / "links.zip").read_bytes()
    (tmp_path / "links.zip").unlink()
    shutil.rmtree(src)
    refused_unzip(tmp_path, archive, UnsafeMemberName, "zip member 'passwd' is a symbolic link")


# --------------------------------------------------------------------------------------------
# encryption, methods, corruption


def test_an_encrypted_member_is_refused_clearly(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "po.edi").write_bytes(GOOD)
    subprocess.run(["zip", "-q", "-P", "secret", "../locked.zip", "po.edi"], cwd=src, check=True, timeout=60)
    archive = (tmp_path / "locked.zip").read_bytes()
    (tmp_path / "locked.zip").unlink()
    (src / "po.edi").unlink()
    src.rmdir()
    message = refused_unzip(tmp_path, archive, EncryptedMember, "zip member 'po.edi' is encrypted")
    assert "password-protected archives are refused" in message


@pytest.mark.parametrize(("method", "label"), [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")])
def test_methods_whose_memory_cannot_be_bounded_are_refused(tmp_path: Path, method: int, label: str) -> None:
    archive = build_zip([("po.edi", GOOD)], method=method)
    refused_unzip(tmp_path, archive, UnsupportedArchive, f"zip member 'po.edi' is compressed with {label}")


def flip_in_data(archive: bytes, member: str) -> bytes:
    data = bytearray(archive)
    at = data.find(b"PK\x03\x04")  # the first local header
    while data[at + 30 : at + 30 + len(member)] != member.encode():
        at = data.find(b"PK\x03\x04", at + 4)
    name_length, extra_length = struct.unpack_from("<HH", data, at + 26)
    data[at + 30 + name_length + extra_length + 40] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize(
    ("mangle", "error", "message"),
    [
        (
            lambda z: b"this is not a zip file at all" * 10,
            CorruptArchive,
            "not a zip archive, or its directory",
        ),
        (lambda z: z[: len(z) // 2], CorruptArchive, "not a zip archive, or its directory is damaged"),
        (lambda z: b"", CorruptArchive, "not a zip archive"),
        (lambda z: flip_in_data(z, "second.txt"), CorruptArchive, r"zip member 'second.txt': "),
        (lambda z: build_zip([]), CorruptArchive, "the archive holds no files"),
        (lambda z: z.replace(b"second.txt", b"second.TXT", 1), CorruptArchive, "differ"),
    ],
)
def test_corrupt_zips_are_refused_and_leave_nothing(
    tmp_path: Path, mangle: Callable[[bytes], bytes], error: type[CompressionError], message: str
) -> None:
    archive = build_zip([("first.txt", GOOD), ("second.txt", GOOD * 3)])
    refused_unzip(tmp_path, mangle(archive), error, message)


# --------------------------------------------------------------------------------------------
# EDI envelopes


def refused_route(data: bytes, match: str) -> UnreadableEnvelope:
    with pytest.raises(UnreadableEnvelope, match=match) as caught:
        route_stream(io.BytesIO(data), [{"dest": "anywhere"}])
    return caught.value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (x12().replace(b"ISA*00*", b"ISA*0*", 1), r"x12: segment 1 \(ISA\): ISA must be 106 characters"),
        (x12()[:60], r"truncated ISA header \(60 of 106 characters\)"),
        (x12().replace(b"*000000001*0*P*>~", b"*00000000X*0*P*>~", 1), "ISA13 control number '00000000X'"),
        (x12().replace(b"*0*P*>~", b"*0*P**", 1), "separators in ISA"),
        (x12().replace(b"IEA*1*", b"IEA*2*"), "IEA01 group count '2' does not match 1"),
        (x12() + b"GARBAGE", "expected ISA after IEA, found 'GAR'"),
        (bytes(range(256)) * 4, "not an X12 or EDIFACT interchange"),
        (b" \r\n" * 40_000, r"more than 65536 blank bytes before the interchange"),
        (b"\n" * 70_000 + x12(), r"more than 65536 blank bytes before the interchange"),
        (b"UNA:+.? '" + b"UNB" + b"+" * (2 * MIB), "segment longer than"),
        (edifact(una=":::::'"), r"invalid service string advice"),
    ],
)
def test_broken_envelopes_are_refused(data: bytes, message: str) -> None:
    refused_route(data, message)


def test_an_oversized_envelope_value_is_refused() -> None:
    refused_route(edifact(sender="S" * 5000), "UNB02 is 5000 characters long")


def test_too_many_distinct_combinations_are_refused() -> None:
    sets = [f"{n:03d}" for n in range(MAX_COMBINATIONS + 1)]
    error = refused_route(
        x12([("PO", sets)]), f"more than {MAX_COMBINATIONS} distinct envelope value combinations"
    )
    assert error.envelope is not None and len(error.envelope.combinations) == MAX_COMBINATIONS


def test_a_una_that_changes_delimiters_is_honoured_not_rejected() -> None:
    # The terminator is '+' and the element separator "'": the defaults swapped.
    data = edifact(["INVOIC"], una=":'.? +")
    assert data.startswith(b"UNA:'.? +\nUNB'UNOC:3'")
    result = route_stream(io.BytesIO(data), [{"UNH": "INVOIC", "dest": "eu-invoices"}])
    assert result.dest == "eu-invoices"
    # and an X12 interchange whose separators are the ones EDIFACT uses
    x = (isa_header(sep="+", comp=":", term="'") + "\n").encode() + x12(sep="+", comp=":", term="'")[107:]
    assert route_stream(io.BytesIO(x), [{"ST": "850", "dest": "erp"}]).dest == "erp"

"""gzip and zip, both ways, streamed, with limits that stop a zip bomb before it fills a disk.

* `gzip_compress` / `gzip_decompress`: one stream in, one stream out. Compressed output is
  reproducible (the header's time is `mtime`, default 0, and it keeps the original name), so a
  step that is run again yields the same bytes and the same SHA-256. Decompression reads
  concatenated members (``cat a.gz b.gz``) as ``gzip -d`` does, and zero padding after the last.
* `zip_compress`: one file in, an archive holding it as its one member out. The output need not be
  seekable (sizes then go in data descriptors, which every unzip reads).
* `ZipReader` / `unzip`: an archive in, each member a derived file out. The source is spooled to a
  temporary file first if it cannot seek (a zip's directory is at its end). The whole central
  directory is checked before a byte is written, and each member is checked again as it streams.
  `unzip` is all or nothing: one bad member and nothing it wrote is left behind.

Decompression is refused with a `CompressionError` whose subclass says why: `CorruptArchive`
(not gzip/zip, truncated, bad CRC, overlapping members), `LimitExceeded` (a `DecompressLimits`
limit, named in the message), `UnsafeMemberName` (absolute, ``..``, duplicate, a symbolic
link), `EncryptedMember`, `UnsupportedArchive` (a compression method other than stored and
deflate: bzip2, LZMA and deflate64 members are refused, as zipfile cannot bound their memory).

Why ~640 lines in one module: the limits are checked at the same points of both formats (declared
sizes, then bytes produced), and keeping gzip and zip side by side keeps those checks alike.
"""

from __future__ import annotations

import posixpath
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, BinaryIO, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from core.transforms.staging import DerivedFile, HashingWriter, Staging, Writable
from core.validators import CHUNK_SIZE, parse_size

GIB = 1024**3
# The compression ratio is checked only once a file (or member) has produced this much: small
# files of one repeated byte legitimately compress 100-1000 times, and are harmless.
RATIO_GRACE_BYTES = 1024 * 1024
# Output chunk of one decompression call: bounds memory however dense the input is.
_OUT_CHUNK = 256 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
# zip's oldest representable time, used when no time is given so archives are reproducible.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SUPPORTED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_METHOD_NAMES = {12: "bzip2", 14: "LZMA", 9: "deflate64", 93: "zstandard", 95: "xz", 98: "PPMd", 99: "AES"}
_ENCRYPTED = 0x1
_STRONG_ENCRYPTION = 0x40

Size = Annotated[int, BeforeValidator(parse_size), Field(ge=1)]


class DecompressLimits(BaseModel):
    """How far decompression may go. Each is checked against the archive's own claims before
    anything is written, and against the bytes actually produced while it streams."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Output bytes per compressed byte, for a whole gzip file and for each zip member, checked once
    # it has produced RATIO_GRACE_BYTES. Text and EDI compress 5-50x; deflate cannot pass 1032x, which a
    # bomb of zeros reaches.
    max_ratio: float = Field(default=200.0, gt=1)
    # Bytes decompressed from one file, all members together (accepts "10GiB", "500MB", ...).
    max_total_size: Size = 10 * GIB
    # Members (files; directory entries are not counted) in one zip.
    max_members: int = Field(default=1000, ge=1)


class CompressionError(Exception):
    """A file (de)compression refuses; str() is the reason. Subclasses say which refusal."""


class CorruptArchive(CompressionError):
    """Not a gzip / zip file, truncated, failing its CRC, or with overlapping members."""


class LimitExceeded(CompressionError):
    """Decompression would pass a `DecompressLimits` limit (the message names it)."""


class UnsafeMemberName(CompressionError):
    """A zip member whose name is absolute, climbs out with ``..``, repeats another, or is a link."""


class EncryptedMember(CompressionError):
    """A password-protected zip member (refused: there is no password to give)."""


class UnsupportedArchive(CompressionError):
    """A zip member compressed with a method other than stored or deflate."""


@dataclass(frozen=True)
class StreamResult:
    """What a one-stream step read and wrote: input bytes, output bytes and the output's SHA-256."""

    read: int
    written: int
    sha256: str


def _hashing(dst: Writable) -> HashingWriter:
    """`dst` itself when it is a fresh HashingWriter (a staged file), else a hashing wrapper."""
    if isinstance(dst, HashingWriter) and dst.size == 0:
        return dst
    return HashingWriter(dst)


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


class _Budget:
    """Counts output against the limits; `what` names the file or member in messages."""

    def __init__(self, limits: DecompressLimits) -> None:
        self.limits = limits
        self.total = 0

    def check_ratio(self, what: str, produced: int, consumed: int) -> None:
        ratio = produced / max(consumed, 1)
        if produced > RATIO_GRACE_BYTES and ratio > self.limits.max_ratio:
            raise LimitExceeded(
                f"{what} expands {ratio:.0f} times ({_human(produced)} from {_human(consumed)}), over "
                f"max_ratio {self.limits.max_ratio:g} (a zip bomb?)"
            )

    def add(self, what: str, n: int) -> None:
        self.total += n
        if self.total > self.limits.max_total_size:
            raise LimitExceeded(
                f"{what}: more than {_human(self.limits.max_total_size)} decompressed, over max_total_size "
                f"{self.limits.max_total_size} bytes (a zip bomb?)"
            )


# --------------------------------------------------------------------------------------------
# gzip


def gzip_name(name: str) -> str:
    """The compressed file's name: ``po.edi`` → ``po.edi.gz``."""
    return name + ".gz"


def gunzip_name(name: str) -> str:
    """The decompressed file's name, as gunzip picks it: drop ``.gz`` / ``.gzip`` / ``-gz`` / ``.z``,
    ``.tgz`` → ``.tar``; a name without those suffixes is kept as it is."""
    lower = name.lower()
    if lower.endswith(".tgz"):
        return name[:-4] + ".tar"
    for suffix in (".gzip", ".gz", "-gz", ".z"):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def gzip_compress(
    src: BinaryIO,
    dst: Writable,
    *,
    name: str = "",
    mtime: int = 0,
    level: int = 6,
    chunk_size: int = CHUNK_SIZE,
) -> StreamResult:
    """Compress `src` into `dst` as one gzip member recording the original `name` and `mtime`."""
    import gzip

    out = _hashing(dst)
    read = 0
    with gzip.GzipFile(filename=name, mode="wb", compresslevel=level, fileobj=out, mtime=mtime) as gz:
        while chunk := src.read(chunk_size):
            read += len(chunk)
            gz.write(chunk)
    out.flush()
    return StreamResult(read, out.size, out.sha256())


def gzip_decompress(
    src: BinaryIO,
    dst: Writable,
    *,
    limits: DecompressLimits | None = None,
    name: str = "gzip file",
    chunk_size: int = CHUNK_SIZE,
) -> StreamResult:
    """Decompress every gzip member of `src` into `dst`, within `limits`. Raises `CorruptArchive`
    or `LimitExceeded`; on a refusal `dst` holds a partial output the caller must discard (a
    `Staging` file does that by itself)."""
    budget = _Budget(limits or DecompressLimits())
    out = _hashing(dst)
    decomp = zlib.decompressobj(wbits=31)
    read = 0
    padding = False  # after the last member: only zero bytes may follow
    while chunk := src.read(chunk_size):
        read += len(chunk)
        data = chunk
        drain = False  # zlib may hold output for no more input: call again until it is out
        while data or drain:
            if padding:
                if data.strip(b"\0"):
                    raise CorruptArchive(f"{name}: data after the end of the gzip stream (not zero padding)")
                break
            if decomp.eof:  # the previous member ended: another member, or zero padding
                if data.startswith(b"\0"):
                    padding = True
                    continue
                if data[:2] != _GZIP_MAGIC[: len(data[:2])]:
                    raise CorruptArchive(f"{name}: data after the end of the gzip stream (not a gzip member)")
                decomp = zlib.decompressobj(wbits=31)
            try:
                produced = decomp.decompress(data, _OUT_CHUNK)
            except zlib.error as exc:
                raise CorruptArchive(f"{name}: not a valid gzip stream ({exc})") from None
            if produced:
                budget.add(name, len(produced))
                out.write(produced)
                budget.check_ratio(name, out.size, read)
            if decomp.eof:
                data, drain = decomp.unused_data, False
            else:
                data, drain = decomp.unconsumed_tail, len(produced) == _OUT_CHUNK
    if read == 0:
        raise CorruptArchive(f"{name}: empty file, not gzip")
    if not decomp.eof and not padding:
        raise CorruptArchive(f"{name}: truncated gzip stream (unexpected end of file)")
    out.flush()
    return StreamResult(read, out.size, out.sha256())


# --------------------------------------------------------------------------------------------
# zip


def zip_name(name: str) -> str:
    """The archive's name: ``po.edi`` → ``po.edi.zip``."""
    return name + ".zip"


def zip_compress(
    src: BinaryIO,
    dst: Writable,
    *,
    member_name: str,
    size: int | None = None,
    date_time: datetime | tuple[int, int, int, int, int, int] = ZIP_EPOCH,
    level: int = 6,
    chunk_size: int = CHUNK_SIZE,
) -> StreamResult:
    """Write a zip archive holding `src` as its one member `member_name` (a bare name; a path is
    cut to its last part). `size`, when known, keeps a small file's archive free of zip64 fields;
    without it the member is written zip64-ready (any unzip since 6.0 reads both)."""
    base = posixpath.basename(member_name.replace("\\", "/"))
    if not base or base in (".", ".."):
        raise ValueError(f"cannot name a zip member {member_name!r}")
    if isinstance(date_time, datetime):
        date_time = max(ZIP_EPOCH, date_time.timetuple()[:6])
    out = _hashing(dst)
    info = zipfile.ZipInfo(base, date_time=date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--, as zip(1) records it
    info.create_system = 3  # unix, so unzip honours the mode above
    read = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        if size is not None:
            info.file_size = size
        info._compresslevel = level  # type: ignore[attr-defined]
        with archive.open(info, "w", force_zip64=size is None) as member:
            while chunk := src.read(chunk_size):
                read += len(chunk)
                member.write(chunk)
    out.flush()
    return StreamResult(read, out.size, out.sha256())


@dataclass(frozen=True)
class ZipMember:
    """A file inside a zip: its safe relative name (``/``-separated), declared sizes, and entry."""

    name: str
    size: int
    compressed_size: int
    info: zipfile.ZipInfo


def safe_member_name(raw: str) -> str:
    """A member name as a relative ``/`` path, or `UnsafeMemberName`: no absolute path or drive, no
    ``..``, no control characters; ``\\`` counts as a separator, ``.`` and empty parts drop out."""
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise UnsafeMemberName(f"zip member name {raw!r} holds control characters")
    unified = raw.replace("\\", "/")
    if unified.startswith("/") or (len(unified) >= 2 and unified[1] == ":" and unified[0].isalpha()):
        raise UnsafeMemberName(f"zip member {raw!r} has an absolute path (refused: it could escape)")
    parts = [part for part in unified.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeMemberName(f"zip member {raw!r} climbs out with '..' (path traversal refused)")
    if not parts:
        raise UnsafeMemberName(f"zip member name {raw!r} is empty")
    return "/".join(parts)


class ZipReader:
    """An archive opened for reading, every member already checked against the limits (see
    `check`). Iterate for ``(name, stream)`` pairs, in archive order; each stream enforces the
    limits again on the bytes it really produces and checks the CRC at its end.

        with ZipReader(src, limits) as archive:
            for name, stream in archive:
                ...

    A member stream raises `CompressionError` mid-read; the caller discards what it wrote
    (`unzip` does this for you, all members or none).
    """

    def __init__(
        self,
        src: BinaryIO,
        limits: DecompressLimits | None = None,
        *,
        name: str = "zip file",
        spool_dir: Path | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.limits = limits or DecompressLimits()
        self.name = name
        self.chunk_size = chunk_size
        self._spool: BinaryIO | None = None
        if not _seekable(src):
            self._spool = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 - closed by close()
            shutil.copyfileobj(src, self._spool, chunk_size)
            self._spool.seek(0)
            src = self._spool
        try:
            _check_directory_size(src, self.limits, name)
            self._zip = zipfile.ZipFile(src)
        except LimitExceeded:
            self._close_spool()
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            self._close_spool()
            raise CorruptArchive(f"{name}: not a zip archive, or its directory is damaged ({exc})") from None
        try:
            self.members = self.check()
        except BaseException:
            self.close()
            raise
        self._budget = _Budget(self.limits)

    def check(self) -> list[ZipMember]:
        """Every file member, after refusing the archive if any entry breaks a rule: unsafe or
        duplicate names, links, encryption, unsupported methods, overlapping data (one compressed
        payload shared by many entries, a known bomb), or declared sizes over the limits."""
        limits, name = self.limits, self.name
        members: list[ZipMember] = []
        seen: set[str] = set()
        total = 0
        for info in self._zip.infolist():
            safe = safe_member_name(_text_name(info))
            if info.is_dir():
                continue
            if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeMemberName(f"zip member {info.filename!r} is a symbolic link (refused)")
            if safe in seen:
                raise UnsafeMemberName(f"zip member name {safe!r} appears twice")
            seen.add(safe)
            if info.flag_bits & (_ENCRYPTED | _STRONG_ENCRYPTION) or info.compress_type == 99:
                raise EncryptedMember(
                    f"zip member {safe!r} is encrypted (password-protected archives are refused; "
                    "send it unencrypted, or encrypt the whole file with PGP)"
                )
            if info.compress_type not in _SUPPORTED_METHODS:
                method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
                raise UnsupportedArchive(
                    f"zip member {safe!r} is compressed with {method}; only stored and deflate are read"
                )
            if len(members) >= limits.max_members:
                raise LimitExceeded(f"{name}: more than {limits.max_members} files, over max_members")
            total += info.file_size
            if total > limits.max_total_size:
                raise LimitExceeded(
                    f"{name}: its members declare {_human(total)} or more, over max_total_size "
                    f"{limits.max_total_size} bytes (a zip bomb?)"
                )
            _Budget(limits).check_ratio(f"zip member {safe!r}", info.file_size, info.compress_size)
            members.append(ZipMember(safe, info.file_size, info.compress_size, info))
        self._check_overlap()
        return members

    def _check_overlap(self) -> None:
        entries = sorted(self._zip.infolist(), key=lambda i: i.header_offset)
        if not entries:
            return
        end_of_data = self._zip.start_dir
        for this, following in zip(entries, [*entries[1:], None], strict=True):
            # 30 bytes of local header at least, then the name, then the compressed data.
            end = this.header_offset + 30 + _name_length(this) + this.compress_size
            limit = following.header_offset if following is not None else end_of_data
            if end > limit:
                raise CorruptArchive(
                    f"{self.name}: zip member {this.filename!r} overlaps the next entry's data "
                    "(entries sharing data are a zip bomb technique)"
                )

    def __iter__(self) -> Iterator[tuple[str, MemberStream]]:
        for member in self.members:
            with self.open(member) as stream:
                yield member.name, stream

    def open(self, member: ZipMember) -> MemberStream:
        """A stream of the member's decompressed bytes, limits and CRC enforced."""
        try:
            raw = self._zip.open(member.info)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CorruptArchive(f"zip member {member.name!r}: {exc}") from None
        return MemberStream(raw, member, self._budget)

    def close(self) -> None:
        self._zip.close()
        self._close_spool()

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class MemberStream:
    """A member's decompressed bytes, read(), with the archive's limits counted as they come."""

    def __init__(self, raw: Any, member: ZipMember, budget: _Budget) -> None:
        self._raw = raw
        self._member = member
        self._budget = budget
        self.produced = 0

    def read(self, n: int = -1) -> bytes:
        if n < 0:  # to the end, as asked (limits still apply)
            return b"".join(iter(lambda: self.read(CHUNK_SIZE), b""))
        what = f"zip member {self._member.name!r}"
        try:
            data: bytes = self._raw.read(n)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise CorruptArchive(f"{what}: {exc}") from None
        if data:
            self.produced += len(data)
            self._budget.add(what, len(data))
            self._budget.check_ratio(what, self.produced, self._member.compressed_size)
        elif self.produced != self._member.size:
            raise CorruptArchive(f"{what}: {self.produced} bytes, its entry says {self._member.size}")
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Entries (files and directories) the central directory may list per allowed member, and bytes
# per entry: names are rarely over 200 bytes, extra fields a few dozen.
_ENTRIES_PER_MEMBER = 4
_BYTES_PER_ENTRY = 1024


def _check_directory_size(src: BinaryIO, limits: DecompressLimits, name: str) -> None:
    """Refuse a central directory too big for `max_members` before zipfile reads it whole into
    memory and makes an object per entry (a million empty entries is a memory bomb of its own)."""
    end = zipfile._EndRecData(src)  # type: ignore[attr-defined]  # private, stable since Python 2
    if end is None:
        return  # not a zip: zipfile says so next
    entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    most = _ENTRIES_PER_MEMBER * limits.max_members
    if entries > most or size > most * _BYTES_PER_ENTRY:
        raise LimitExceeded(
            f"{name}: its directory lists {entries} entries in {size} bytes, more than max_members "
            f"{limits.max_members} allows (a zip bomb?)"
        )


def _text_name(info: zipfile.ZipInfo) -> str:
    """The member's name as its writer meant it. Without the UTF-8 flag, zipfile reads cp437; but
    Info-ZIP's zip records the UTF-8 name in a Unicode Path extra field (0x7075), and many tools
    write UTF-8 without flagging it: take the field when its CRC matches, else UTF-8 if the bytes
    are valid UTF-8 (cp437 names with accents practically never are), else cp437."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        raw = info.orig_filename.encode("cp437")
    except UnicodeEncodeError:
        return info.filename
    extra = info.extra
    while len(extra) >= 4:
        kind, length = struct.unpack("<HH", extra[:4])
        body = extra[4 : 4 + length]
        # version 1, then the CRC-32 of the name in the header (so a stale field is ignored)
        if (
            kind == 0x7075
            and len(body) >= 5
            and body[0] == 1
            and body[1:5] == struct.pack("<I", zlib.crc32(raw))
        ):
            try:
                return body[5:].decode("utf-8")
            except UnicodeDecodeError:
                break
        extra = extra[4 + length :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return info.filename


def _name_length(info: zipfile.ZipInfo) -> int:
    """Bytes of the member's name as stored (UTF-8 when flagged, else cp437)."""
    try:
        return len(info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"))
    except UnicodeEncodeError:
        return len(info.orig_filename.encode("utf-8"))


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def unzip(
    src: BinaryIO,
    staging: Staging,
    limits: DecompressLimits | None = None,
    *,
    name: str = "zip file",
    chunk_size: int = CHUNK_SIZE,
) -> list[DerivedFile]:
    """Every member of the archive `src` as a derived file in `staging`, in archive order, named by
    its safe relative path. All or nothing: on any refusal every file this call wrote is removed
    and the `CompressionError` propagates. An archive with no files is refused as well."""
    before = len(staging.files)
    try:
        with ZipReader(src, limits, name=name, spool_dir=staging.directory, chunk_size=chunk_size) as archive:
            if not archive.members:
                raise CorruptArchive(f"{name}: the archive holds no files")
            for member_name, stream in archive:
                with staging.create(member_name) as out:
                    while chunk := stream.read(chunk_size):
                        out.write(chunk)
    except BaseException:
        for file in staging.files[before:]:
            file.path.unlink(missing_ok=True)
        del staging.files[before:]
        raise
    return staging.files[before:]


# --------------------------------------------------------------------------------------------
# one call per direction, for a template


class _Prefixed:
    """`head` (already read from `rest`) followed by the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._rest.read(n)

    def seekable(self) -> bool:
        return False


def compress_file(
    src: BinaryIO, name: str, staging: Staging, *, format: str = "gzip", size: int | None = None
) -> DerivedFile:
    """`src`, called `name`, compressed as one derived file: ``format="gzip"`` gives ``NAME.gz``,
    ``"zip"`` gives ``NAME.zip`` holding one member ``NAME``. `size`, when known, is `src`'s length."""
    if format == "gzip":
        with staging.create(gzip_name(name)) as out:
            gzip_compress(src, out, name=name)
    elif format == "zip":
        with staging.create(zip_name(name)) as out:
            zip_compress(src, out, member_name=name, size=size)
    else:
        raise ValueError(f"unknown compression format {format!r} (gzip or zip)")
    return staging.files[-1]


def decompress_file(
    src: BinaryIO, name: str, staging: Staging, limits: DecompressLimits | None = None
) -> list[DerivedFile]:
    """`src`, called `name`, decompressed into derived files: a gzip file gives one (named as
    `gunzip_name` says), a zip archive one per member (named by their paths inside it). The format
    is told by the first bytes, not the name. All or nothing; refusals are `CompressionError`s."""
    if _seekable(src):
        start = src.tell()
        magic = src.read(4)
        src.seek(start)
        stream: BinaryIO = src
    else:
        magic = src.read(4)
        stream = _Prefixed(magic, src)  # type: ignore[assignment]
    if magic.startswith(_GZIP_MAGIC):
        with staging.create(gunzip_name(name)) as out:
            gzip_decompress(stream, out, limits=limits, name=name)
        return staging.files[-1:]
    if magic in (b"PK\x03\x04", b"PK\x05\x06"):
        return unzip(stream, staging, limits, name=name)
    raise CorruptArchive(f"{name}: neither gzip nor zip (it starts {magic!r})")

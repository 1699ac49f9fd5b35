"""The protocol-independent mailbox filesystem: paths, permissions, uploads through intake, resume."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import pytest

from core.mailbox import staging
from core.mailbox.view import (
    AlreadyExists,
    Busy,
    Forbidden,
    InvalidName,
    MailboxError,
    MailboxView,
    NoSuchFile,
    QuotaExceeded,
)
from mailboxes.auth import MailboxAuth
from tests.mailboxes.conftest import MakePartner, PartnerLogin


def open_view(partner: PartnerLogin, auth: MailboxAuth, protocol: str = "sftp") -> MailboxView:
    return MailboxView(partner.user(), auth, "127.0.0.1", protocol)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def visible(partner: PartnerLogin, folder: str = "upload") -> list[str]:
    return sorted(p.name for p in (partner.home / folder).iterdir())


@pytest.mark.parametrize(
    ("path", "cwd", "expected"),
    [
        ("/", "/", "/"),
        ("", "/upload", "/upload"),
        (".", "/upload", "/upload"),
        ("a.txt", "/upload", "/upload/a.txt"),
        ("../download/x", "/upload", "/download/x"),
        ("../../../..", "/upload", "/"),
        ("/..//other/upload", "/", "/other/upload"),
        ("//upload///./a", "/", "/upload/a"),
        ("upload/", "/", "/upload"),
    ],
)
def test_normalize(path: str, cwd: str, expected: str) -> None:
    assert MailboxView.normalize(path, cwd) == expected


def test_nul_is_refused() -> None:
    with pytest.raises(InvalidName):
        MailboxView.normalize("/upload/a\x00b")


def test_home_lists_the_two_folders_with_their_permissions(partner: PartnerLogin, auth: MailboxAuth) -> None:
    v = open_view(partner, auth)
    entries = v.listdir("/")
    assert [(e.name, e.is_dir) for e in entries] == [("download", True), ("upload", True)]
    assert stat.S_ISDIR(v.stat("/").mode) and v.stat("/").mode & 0o777 == 0o555
    assert v.stat("/upload").name == "upload"


def test_listings_hide_hidden_staged_special_and_foreign_files(
    make_partner: MakePartner, auth: MailboxAuth
) -> None:
    me, other = make_partner(), make_partner()
    me.put_download("report.csv", b"a,b\n")
    (me.home / "download" / ".tradelane-tmp-123").write_bytes(b"half")
    (me.home / "download" / "sub").mkdir()
    other.put_download("secret.csv", b"theirs")
    os.symlink(other.home / "download" / "secret.csv", me.home / "download" / "link.csv")
    v = open_view(me, auth)
    assert [e.name for e in v.listdir("/download")] == ["report.csv"]
    assert v.stat("/download/report.csv").size == 4
    for path in ("/download/link.csv", "/download/.tradelane-tmp-123", "/download/sub"):
        with pytest.raises(NoSuchFile):
            v.stat(path)
    with pytest.raises(NoSuchFile):
        v.open_read("/download/link.csv")
    # Every way of naming the other partner's file resolves inside my own home.
    for path in (
        f"../{other.name}/download/secret.csv",
        f"/../../{other.name}/download/secret.csv",
        f"/..//{other.name}/download/secret.csv",
        f"/download/../../{other.name}/download/secret.csv",
        str(other.home / "download" / "secret.csv"),
    ):
        with pytest.raises(NoSuchFile):
            v.stat(path)
        with pytest.raises((NoSuchFile, Forbidden)):
            v.open_read(path)
        with pytest.raises((NoSuchFile, Forbidden)):
            v.open_upload(path)
    with pytest.raises(NoSuchFile):
        v.listdir(f"/../{other.name}")


def test_download_reads_and_audits_bytes_sent(partner: PartnerLogin, auth: MailboxAuth) -> None:
    data = os.urandom(100_000)
    partner.put_download("out.bin", data)
    v = open_view(partner, auth)
    with v.open_read("/download/out.bin") as f:
        assert f.read() == data
    with v.open_read("download/out.bin", offset=60_000) as f:
        assert f.read(10) == data[60_000:60_010]
        assert f.pread(5, 0) == data[:5]
    events = partner.audit("download")
    sizes = [(e.target, e.detail["size"]) for e in events]
    assert sizes == [("download/out.bin", 100_000), ("download/out.bin", 15)]
    assert events[1].detail["offset"] == 60_000 and events[0].detail["protocol"] == "sftp"


def test_permissions(make_partner: MakePartner, auth: MailboxAuth) -> None:
    partner = make_partner()
    v = open_view(partner, auth)
    with pytest.raises(Forbidden):
        v.open_upload("/download/x.txt")
    with pytest.raises(Forbidden):
        v.open_upload("/x.txt")
    with pytest.raises(Forbidden):
        v.open_upload("/upload")
    handle = v.open_upload("/upload/x.txt")
    handle.write(b"hello")
    handle.complete()
    with pytest.raises(Forbidden):
        v.open_read("/upload/x.txt")
    with pytest.raises(Forbidden):
        v.remove("/upload/x.txt")
    with pytest.raises(Forbidden):
        v.remove("/upload")
    with pytest.raises(Forbidden):
        v.mkdir("/upload/sub")
    with pytest.raises(Forbidden):
        v.mkdir("/new")
    with pytest.raises(AlreadyExists):
        v.mkdir("/upload")
    with pytest.raises(Forbidden):
        v.rmdir("/upload")
    with pytest.raises(Forbidden):
        v.rename("/upload/x.txt", "/upload/y.txt")
    partner.put_download("d.txt", b"d")
    with pytest.raises(Forbidden):
        v.rename("/download/d.txt", "/upload/d.txt")
    v.remove("/download/d.txt")
    assert visible(partner, "download") == []
    assert partner.audit("delete")[0].target == "download/d.txt"

    keeper = make_partner(can_delete_downloads=False)
    keeper.put_download("d.txt", b"d")
    kv = open_view(keeper, auth)
    assert kv.stat("/download").mode & 0o777 == 0o555
    with pytest.raises(Forbidden):
        kv.remove("/download/d.txt")
    assert visible(keeper, "download") == ["d.txt"]


@pytest.mark.parametrize("name", ["a\x01b", ".hidden", "x" * 256])
def test_bad_upload_names(partner: PartnerLogin, auth: MailboxAuth, name: str) -> None:
    with pytest.raises((InvalidName, NoSuchFile)):
        open_view(partner, auth).open_upload(f"/upload/{name}")


def test_upload_goes_through_intake(make_partner: MakePartner, auth: MailboxAuth, tmp_path: Path) -> None:
    partner = make_partner(flow_to=tmp_path / "out")
    v = open_view(partner, auth)
    data = os.urandom(300_000)
    handle = v.open_upload("/upload/po.json")
    for i in range(0, len(data), 65536):
        handle.write(data[i : i + 65536], offset=i)
    assert visible(partner) == [] and partner.receipts() == []
    receipt = handle.complete()
    assert receipt is not None and receipt.sha256 == sha(data) and receipt.size == len(data)
    assert receipt.protocol == "sftp" and receipt.folder == "upload" and receipt.name == "po.json"
    assert (partner.home / "upload" / "po.json").read_bytes() == data
    assert [t.state for t in partner.transfers()] == ["pending"]
    assert handle.complete() is receipt  # idempotent
    assert partner.audit("upload")[0].detail["sha256"] == sha(data)


def test_empty_upload(partner: PartnerLogin, auth: MailboxAuth) -> None:
    receipt = open_view(partner, auth).open_upload("/upload/empty.txt").complete()
    assert receipt is not None and receipt.size == 0 and receipt.sha256 == sha(b"")


def test_broken_upload_leaves_nothing_and_resumes_by_append(partner: PartnerLogin, auth: MailboxAuth) -> None:
    data = os.urandom(500_000)
    v = open_view(partner, auth)
    first = v.open_upload("/upload/big.bin")
    first.write(data[:200_000])
    first.abandon()
    assert visible(partner) == [] and partner.receipts() == []
    assert "big.bin" not in [e.name for e in v.listdir("/upload")]
    assert v.stat("/upload/big.bin").size == 200_000  # what `reput` / FTP SIZE ask
    assert partner.audit("upload.incomplete")[0].detail["received"] == 200_000

    second = open_view(partner, auth).open_upload("/upload/big.bin", append=True)
    second.write(data[200_000:], offset=200_000)
    receipt = second.complete()
    assert receipt is not None and receipt.sha256 == sha(data) and receipt.size == len(data)
    assert (partner.home / "upload" / "big.bin").read_bytes() == data
    assert len(partner.receipts()) == 1
    assert not (v.staging / "upload" / "big.bin").exists()  # the staged bytes went into place


def test_resume_at_offset_like_ftp_rest(partner: PartnerLogin, auth: MailboxAuth) -> None:
    data = os.urandom(100_000)
    v = open_view(partner, auth)
    h = v.open_upload("/upload/r.bin")
    h.write(data[:70_000])
    h.abandon()
    with pytest.raises(MailboxError):
        v.open_upload("/upload/r.bin", offset=80_000)  # beyond what was received
    h = v.open_upload("/upload/r.bin", offset=50_000)  # the client re-sends a little more
    assert v.stat("/upload/r.bin").size == 50_000
    h.write(data[50_000:])
    receipt = h.complete()
    assert receipt is not None and receipt.sha256 == sha(data)


def test_first_write_decides_where_an_open_without_truncate_resumes(
    partner: PartnerLogin, auth: MailboxAuth
) -> None:
    data = os.urandom(50_000)
    v = open_view(partner, auth)
    h = v.open_upload("/upload/w.bin")
    h.write(data[:30_000])
    h.abandon()
    h = v.open_upload("/upload/w.bin", offset=None)
    with pytest.raises(MailboxError):
        h.write(b"x", offset=40_000)
    h.write(data[30_000:], offset=30_000)
    assert h.complete().sha256 == sha(data)  # type: ignore[union-attr]
    # Same open, but the client starts over from 0: the stale bytes go.
    h = v.open_upload("/upload/w2.bin")
    h.write(b"old old old old")
    h.abandon()
    h = v.open_upload("/upload/w2.bin", offset=None)
    h.write(b"new", offset=0)
    assert h.complete().sha256 == sha(b"new")  # type: ignore[union-attr]


def test_appending_to_a_received_file_is_refused(partner: PartnerLogin, auth: MailboxAuth) -> None:
    v = open_view(partner, auth)
    h = v.open_upload("/upload/done.txt")
    h.write(b"complete")
    h.complete()
    with pytest.raises(Forbidden):
        v.open_upload("/upload/done.txt", append=True)
    with pytest.raises(MailboxError):
        v.open_upload("/upload/done.txt", offset=8)
    h = v.open_upload("/upload/done.txt")  # a whole new upload replaces it
    h.write(b"again")
    assert h.complete() is not None
    assert len(partner.receipts()) == 2


def test_rewritten_bytes_still_hash_the_whole_file(partner: PartnerLogin, auth: MailboxAuth) -> None:
    # Writes may go back over what was written (never past the end: tests/hostile, sparse writes).
    data = os.urandom(40_000)
    h = open_view(partner, auth).open_upload("/upload/ooo.bin")
    h.write(os.urandom(30_000), offset=0)
    h.write(data[30_000:], offset=30_000)
    h.write(data[10_000:30_000], offset=10_000)
    h.write(data[:10_000], offset=0)
    receipt = h.complete()
    assert receipt is not None and receipt.sha256 == sha(data)


def test_size_limit(make_partner: MakePartner, auth: MailboxAuth) -> None:
    partner = make_partner(max_file_bytes=1000)
    v = open_view(partner, auth)
    h = v.open_upload("/upload/big.bin")
    h.write(b"x" * 600)
    with pytest.raises(QuotaExceeded):
        h.write(b"x" * 600)
    assert visible(partner) == [] and partner.receipts() == []
    with pytest.raises(NoSuchFile):
        v.stat("/upload/big.bin")  # nothing kept to resume: it can never fit
    assert partner.audit("upload.refused")


def test_one_writer_per_file(partner: PartnerLogin, auth: MailboxAuth) -> None:
    a, b = open_view(partner, auth), open_view(partner, auth)
    h = a.open_upload("/upload/same.txt")
    with pytest.raises(Busy):
        b.open_upload("/upload/same.txt")
    h.write(b"1")
    h.complete()
    h2 = b.open_upload("/upload/same.txt")
    h2.abandon()


def test_temporary_name_then_rename(make_partner: MakePartner, auth: MailboxAuth, tmp_path: Path) -> None:
    partner = make_partner(flow_to=tmp_path / "out")
    v = open_view(partner, auth, protocol="ftp")
    data = os.urandom(10_000)
    h = v.open_upload("/upload/invoice.xml.filepart")
    h.write(data)
    assert h.complete() is None  # stays staged: nothing visible, nothing triggered
    assert visible(partner) == [] and partner.receipts() == []
    assert v.stat("/upload/invoice.xml.filepart").size == len(data)
    with pytest.raises(Forbidden):
        v.rename("/upload/invoice.xml.filepart", "/download/invoice.xml")
    receipt = v.rename("/upload/invoice.xml.filepart", "/upload/invoice.xml")
    assert receipt is not None and receipt.name == "invoice.xml" and receipt.sha256 == sha(data)
    assert visible(partner) == ["invoice.xml"]
    assert [t.state for t in partner.transfers()] == ["pending"]
    with pytest.raises(NoSuchFile):
        v.stat("/upload/invoice.xml.filepart")
    # A restart forgets the cached hash: the rename re-reads the file.
    h = v.open_upload("/upload/b.part")
    h.write(b"bbb")
    h.complete()
    staging._finished.clear()
    assert v.rename("upload/b.part", "upload/b.tmp") is None
    assert v.rename("/upload/b.tmp", "/upload/b").sha256 == sha(b"bbb")  # type: ignore[union-attr]


def test_remove_discards_an_unfinished_upload(partner: PartnerLogin, auth: MailboxAuth) -> None:
    v = open_view(partner, auth)
    h = v.open_upload("/upload/gone.bin")
    h.write(b"123")
    h.abandon()
    v.remove("/upload/gone.bin")
    with pytest.raises(NoSuchFile):
        v.stat("/upload/gone.bin")
    with pytest.raises(NoSuchFile):
        v.remove("/upload/gone.bin")


def test_stale_partials_are_swept_when_a_session_opens(partner: PartnerLogin, auth: MailboxAuth) -> None:
    v = open_view(partner, auth)
    for name in ("old.bin", "new.bin"):
        h = v.open_upload(f"/upload/{name}")
        h.write(b"data")
        h.abandon()
    old = v.staging / "upload" / "old.bin"
    os.utime(old, (time.time() - 25 * 3600,) * 2)
    staging._last_sweep.clear()
    open_view(partner, auth)
    assert not old.exists() and (v.staging / "upload" / "new.bin").exists()
    assert v.sweep_partials() == 0  # rate-limited: once a minute per partner

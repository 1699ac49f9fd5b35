"""Exact resumes (`Staging.resume_at`, the portal's tus PATCH) and the running hash kept between
requests (`pause()`), so an upload in many parts is hashed once, not once per part."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from core.mailbox import staging
from core.mailbox.view import Busy, MailboxView, NoSuchFile, OffsetMismatch
from mailboxes.auth import MailboxAuth
from tests.mailboxes.conftest import MakePartner, PartnerLogin


def open_view(partner: PartnerLogin, auth: MailboxAuth) -> MailboxView:
    return MailboxView(partner.user(), auth, "127.0.0.1", "portal")


def test_a_resume_at_a_stale_offset_is_refused_and_truncates_nothing(
    partner: PartnerLogin, auth: MailboxAuth
) -> None:
    v = open_view(partner, auth)
    h = v.resume_upload("/upload/po.json", 0)
    h.write(b"x" * 1000)
    h.pause()
    # A browser re-sending its first request (offset 0) must not cut what was received.
    with pytest.raises(OffsetMismatch) as refused:
        v.resume_upload("/upload/po.json", 0)
    assert refused.value.have == 1000
    with pytest.raises(OffsetMismatch):
        v.resume_upload("/upload/po.json", 1500)
    assert v.stat("/upload/po.json").size == 1000
    # Nothing staged yet and an offset past zero: refused, and no empty file left behind.
    with pytest.raises(OffsetMismatch) as nothing:
        v.resume_upload("/upload/other.json", 10)
    assert nothing.value.have == 0
    with pytest.raises(NoSuchFile):
        v.stat("/upload/other.json")


def test_one_writer_and_the_exact_offset_wins(partner: PartnerLogin, auth: MailboxAuth) -> None:
    v = open_view(partner, auth)
    h = v.resume_upload("/upload/a.bin", 0)
    h.write(b"abc")
    with pytest.raises(Busy):
        v.resume_upload("/upload/a.bin", 3)
    h.pause()
    h = v.resume_upload("/upload/a.bin", 3)
    h.write(b"def")
    receipt = h.complete()
    assert receipt is not None and receipt.sha256 == hashlib.sha256(b"abcdef").hexdigest()
    assert receipt.protocol == "portal" and partner.receipts()[-1].size == 6


def test_a_chunked_upload_reads_the_staged_file_once(
    make_partner: MakePartner, auth: MailboxAuth, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    partner = make_partner(flow_to=tmp_path / "out")
    v = open_view(partner, auth)
    reads: list[tuple[int, int]] = []
    real = staging.sha256_of

    def counted(fd: int, end: int, sha: object = None, start: int = 0) -> object:
        reads.append((start, end))
        return real(fd, end, sha, start)  # type: ignore[arg-type]

    monkeypatch.setattr(staging, "sha256_of", counted)
    chunk, parts = 64 * 1024, 64
    whole = hashlib.sha256()
    offset = 0
    for n in range(parts):
        data = os.urandom(chunk)
        whole.update(data)
        h = v.resume_upload("/upload/big.bin", offset)
        h.write(data)
        offset += len(data)
        if n == parts // 2:
            h.abandon()  # a dropped request keeps the running hash as well
        elif n < parts - 1:
            h.pause()
    receipt = h.complete()
    assert receipt is not None and receipt.sha256 == whole.hexdigest()
    # Every part continued the hash the previous one left: the staged prefix was never re-read.
    assert sum(end - start for start, end in reads) == 0


def test_a_changed_staged_file_is_hashed_again_not_trusted(partner: PartnerLogin, auth: MailboxAuth) -> None:
    v = open_view(partner, auth)
    h = v.resume_upload("/upload/c.bin", 0)
    h.write(b"1234")
    h.pause()
    staged = v.staging / "upload" / "c.bin"
    with open(staged, "r+b") as f:  # someone rewrote the bytes behind the cache's back
        f.write(b"9")
    os.utime(staged, ns=(1, 1))
    h = v.resume_upload("/upload/c.bin", 4)
    h.write(b"5")
    receipt = h.complete()
    assert receipt is not None and receipt.sha256 == hashlib.sha256(b"92345").hexdigest()

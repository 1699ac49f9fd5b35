"""Keeping each receipt's bytes (core/receipt_files.py) through the one intake: failures leave no
orphan, a staged upload goes back where the client can resume it, and a mailbox folder moved
elsewhere behind a symlink still works."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import partners, receipt_files
from core.config import get_settings
from core.db import init_db, session_scope
from core.intake import PartnerSender, receive_staged, receive_stream
from tests.isolation import isolated_home
from tests.tenancy import home_scope


@pytest.fixture
def sender(tmp_path: Path) -> Iterator[PartnerSender]:
    with isolated_home(tmp_path / "home"):
        init_db()
        with session_scope() as session:
            sender = PartnerSender.of(
                partners.add(session, home_scope(session), "acme", password="receipt-files-pw-1")
            )
        yield sender  # committed: intake checks the sender may still send


def kept_files() -> list[Path]:
    store = get_settings().mailbox_root / receipt_files.STORE_DIR
    return [p for p in store.rglob("*") if p.is_file()] if store.exists() else []


def test_an_upload_that_cannot_be_shown_leaves_no_kept_bytes(sender: PartnerSender) -> None:
    blocker = get_settings().mailbox_root / "home" / "acme" / "upload" / "po.json"
    blocker.mkdir()
    (blocker / "inside").write_bytes(b"x")  # a non-empty folder where the link must go
    with pytest.raises(OSError):
        receive_stream(sender, "upload", "po.json", io.BytesIO(b"{}"), protocol="rest")
    assert kept_files() == []


def test_a_staged_upload_that_cannot_be_shown_goes_back_to_its_staging_file(
    sender: PartnerSender, tmp_path: Path
) -> None:
    staged = get_settings().mailbox_root / ".partial" / "home" / "acme" / "upload" / "po.json"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"{}")
    blocker = get_settings().mailbox_root / "home" / "acme" / "upload" / "po.json"
    blocker.mkdir()
    (blocker / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        receive_staged(sender, "upload", "po.json", staged, sha256="0" * 64, protocol="sftp")
    assert staged.read_bytes() == b"{}"
    assert kept_files() == []


def test_a_mailbox_folder_moved_behind_a_symlink_still_takes_files_in(tmp_path: Path) -> None:
    elsewhere = tmp_path / "bigger-disk" / "mailboxes"
    elsewhere.mkdir(parents=True)
    with isolated_home(tmp_path / "home"):
        (tmp_path / "home").mkdir()
        os.symlink(elsewhere, tmp_path / "home" / "mailboxes")
        init_db()
        with session_scope() as session:
            acme = PartnerSender.of(
                partners.add(session, home_scope(session), "acme", password="receipt-files-pw-1")
            )
        receipt = receive_stream(acme, "upload", "po.json", io.BytesIO(b"{}"), protocol="rest")
        assert receipt.visible_path == "home/acme/upload/po.json"
        assert (elsewhere / "home" / "acme" / "upload" / "po.json").read_bytes() == b"{}"
        assert (elsewhere / receipt.storage_path).read_bytes() == b"{}"

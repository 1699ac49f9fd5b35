"""core/hash_beside.py and Upload.write_batch: a batch hashed in another thread while it is
written gives the receipt the same SHA-256 and bytes as hashing in line; a batch past the limit
leaves nothing; a write that fails mid-batch still waits for the hash before the caller goes on."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import partners, receipt_files
from core.config import get_settings
from core.db import init_db, session_scope
from core.hash_beside import PARALLEL_FROM, update_beside
from core.intake import PartnerSender, Upload, UploadTooLarge
from core.models import Receipt
from tests.isolation import isolated_home
from tests.tenancy import home_scope


@pytest.fixture
def sender(tmp_path: Path) -> Iterator[PartnerSender]:
    with isolated_home(tmp_path / "home"):
        init_db()
        with session_scope() as session:
            sender = PartnerSender.of(
                partners.add(session, home_scope(session), "acme", password="hash-beside-pw-1")
            )
        yield sender


@pytest.mark.parametrize("piece_size", [1000, 64 * 1024, 1024 * 1024])  # in line, and beside
def test_a_batched_upload_has_the_receipt_of_its_bytes(sender: PartnerSender, piece_size: int) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    upload = Upload(sender, "upload", "big.bin", protocol="rest")
    batch = 8 * piece_size
    for start in range(0, len(data), batch):
        chunk = data[start : start + batch]
        upload.write_batch([chunk[i : i + piece_size] for i in range(0, len(chunk), piece_size)])
    receipt: Receipt = upload.commit()
    assert receipt.size == len(data)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    assert visible("big.bin").read_bytes() == data


def visible(name: str) -> Path:
    return get_settings().mailbox_root / "home" / "acme" / "upload" / name


def test_a_batch_past_the_limit_is_refused_and_leaves_nothing(sender: PartnerSender) -> None:
    upload = Upload(sender, "upload", "big.bin", protocol="rest", max_bytes=PARALLEL_FROM * 2)
    upload.write_batch([bytes(PARALLEL_FROM)])
    with pytest.raises(UploadTooLarge):
        upload.write_batch([bytes(PARALLEL_FROM), b"x"])
    assert not visible("big.bin").exists()
    store = get_settings().mailbox_root / receipt_files.STORE_DIR
    assert not store.exists() or not [p for p in store.rglob("*") if p.is_file()]


def test_a_failing_write_still_waits_for_the_hash() -> None:
    """The pieces are the caller's again only once the hashing thread is done with them."""
    done = threading.Event()
    threads: list[int] = []

    class Slow:
        def update(self, piece: bytes) -> None:
            threads.append(threading.get_ident())
            done.wait(0.2)
            done.set()

    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        update_beside(Slow(), [bytes(PARALLEL_FROM)], fail)
    assert done.is_set()
    assert threads and threads[0] != threading.get_ident()  # hashed beside, not in line

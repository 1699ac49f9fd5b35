"""SFTP and FTP uploads into an S3 storage (moto): written in order, the bytes stream into a
multipart upload as they arrive, which becomes the receipt's object only when the client closes the
file; a broken upload aborts it (nothing in the bucket, no receipt) and keeps the staged bytes, so
a resume still completes the file (copied into the bucket at the end)."""

from __future__ import annotations

import ftplib
import io
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from sqlmodel import select

from core.config import get_settings
from core.db import session_scope
from core.models import Receipt
from mailboxes.auth import MailboxAuth
from mailboxes.ftp import FTPServer
from mailboxes.sftp.server import SFTPServer
from tests.mailboxes.conftest import lenient_settings
from tests.storage.conftest import PREFIX, Store, make_store

MIB = 1024 * 1024
PASSWORD = "storage-Pass-1"  # acme's, from tests/storage/conftest.py


@pytest.fixture
def s3_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with make_store(request, tmp_path, "s3") as store:
        yield store


@pytest.fixture
def sftp_server(s3_store: Store) -> Iterator[SFTPServer]:
    settings = lenient_settings(sftp_port=0)
    server = SFTPServer(settings, MailboxAuth(settings))
    server.start()
    yield server
    server.stop()


def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def receipts(name: str) -> list[Receipt]:
    with session_scope() as session:
        return list(session.exec(select(Receipt).where(Receipt.name == name)).all())


def kept(store: Store, receipt: Receipt) -> bytes:
    data: bytes = store.s3.get_object(Bucket=store.bucket, Key=f"{PREFIX}/{receipt.storage_path}")[
        "Body"
    ].read()
    return data


def test_an_sftp_upload_streams_into_the_bucket_and_shows_at_close(
    s3_store: Store, sftp_server: SFTPServer
) -> None:
    data = secrets.token_bytes(12 * MIB)  # two parts
    transport = paramiko.Transport(("127.0.0.1", sftp_server.port))
    try:
        transport.connect(username="acme", password=PASSWORD)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        handle = sftp.open("upload/big.bin", "wb")
        handle.write(data[: 10 * MIB])
        handle.flush()
        # Under way: a multipart upload in the bucket, no object and no receipt yet.
        until(lambda: s3_store.multipart_uploads() != [], "the upload did not reach the bucket")
        assert s3_store.kept_keys() == [] and receipts("big.bin") == []
        handle.write(data[10 * MIB :])
        handle.close()
    finally:
        transport.close()
    (receipt,) = receipts("big.bin")
    assert kept(s3_store, receipt) == data
    assert s3_store.multipart_uploads() == []
    staged = get_settings().mailbox_root / ".partial" / "home" / "acme" / "upload" / "big.bin"
    assert not staged.exists()


def test_a_broken_sftp_upload_leaves_nothing_in_the_bucket_and_can_be_resumed(
    s3_store: Store, sftp_server: SFTPServer
) -> None:
    data = secrets.token_bytes(11 * MIB)
    transport = paramiko.Transport(("127.0.0.1", sftp_server.port))
    transport.connect(username="acme", password=PASSWORD)
    sftp = paramiko.SFTPClient.from_transport(transport)
    assert sftp is not None
    handle = sftp.open("upload/cut.bin", "wb")
    handle.write(data[: 9 * MIB])
    handle.flush()
    until(lambda: s3_store.multipart_uploads() != [], "the upload did not reach the bucket")
    transport.close()  # the connection drops mid-upload
    until(lambda: s3_store.multipart_uploads() == [], "the broken upload was not aborted")
    assert s3_store.kept_keys() == [] and receipts("cut.bin") == []
    # The staged bytes wait on this machine: the client resumes after what the server has.
    transport = paramiko.Transport(("127.0.0.1", sftp_server.port))
    try:
        transport.connect(username="acme", password=PASSWORD)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        have = sftp.stat("upload/cut.bin").st_size
        assert have is not None and 0 < have <= 9 * MIB
        with sftp.open("upload/cut.bin", "ab") as resumed:
            resumed.write(data[have:])
    finally:
        transport.close()
    (receipt,) = receipts("cut.bin")
    assert kept(s3_store, receipt) == data and receipt.size == len(data)
    assert s3_store.multipart_uploads() == []


def test_an_ftp_upload_streams_into_the_bucket(s3_store: Store) -> None:
    settings = lenient_settings(ftp_port=0, ftp_require_tls=False)
    server = FTPServer(settings, MailboxAuth(settings))
    server.start()
    data = secrets.token_bytes(6 * MIB)
    try:
        ftp = ftplib.FTP(timeout=10)
        ftp.connect("127.0.0.1", server.port)
        try:
            ftp.login("acme", PASSWORD)
            ftp.storbinary("STOR upload/po.bin", io.BytesIO(data))
        finally:
            ftp.close()
    finally:
        server.stop()
    (receipt,) = receipts("po.bin")
    assert kept(s3_store, receipt) == data
    assert s3_store.multipart_uploads() == []

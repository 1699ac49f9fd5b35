"""A partner's mailbox in the storage, a local folder or an S3 bucket (moto): a data flow delivers
into its `download/` there (`rename` and exactly once kept), the partner lists, reads and deletes
those files over SFTP (paramiko against our server) and FTP (ftplib), and what it uploads over
either becomes a receipt whose kept bytes are in the storage."""

from __future__ import annotations

import ftplib
import io
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from sqlmodel import select

from core import dataflows, delivery, partners
from core.config import get_settings
from core.db import session_scope
from core.models import Receipt, Transfer, TransferState
from mailboxes.auth import MailboxAuth
from mailboxes.ftp import FTPServer
from mailboxes.sftp.server import SFTPServer
from tests.mailboxes.conftest import lenient_settings
from tests.storage.conftest import PREFIX, Store
from tests.storage.test_kept_bytes import carry, receive
from tests.tenancy import home_scope

PASSWORD = "mailbox-Pass-2026"


@pytest.fixture
def bob(store: Store) -> Store:
    """The partner bob, and a data flow from acme's `*.edi` into bob's download/."""
    with session_scope() as session:
        scope = home_scope(session)
        partner = partners.add(session, scope, "bob", password=PASSWORD)
        partner.can_delete_downloads = True
        session.add(partner)
        dataflows.add(
            session,
            scope,
            "acme-bob",
            source="mailbox:acme",
            dest="mailbox:bob",
            pattern="*.edi",
            dest_path="download/{name}",
        )
    return store


def download(store: Store) -> dict[str, bytes]:
    """bob's download/ as the storage holds it."""
    if store.bucket is None:
        folder = get_settings().mailbox_root / "home" / "bob" / "download"
        return {p.name: p.read_bytes() for p in folder.iterdir()}
    prefix = f"{PREFIX}/home/bob/download/"
    listed = store.s3.list_objects_v2(Bucket=store.bucket, Prefix=prefix).get("Contents", [])
    return {
        item["Key"].removeprefix(prefix): store.s3.get_object(Bucket=store.bucket, Key=item["Key"])[
            "Body"
        ].read()
        for item in listed
    }


def transfers_to_bob() -> list[int]:
    with session_scope() as session:
        flow_id = dataflows.require(session, home_scope(session), "acme-bob").id
        rows = session.exec(select(Transfer).where(Transfer.data_flow_id == flow_id).order_by(Transfer.id))  # type: ignore[arg-type]
        return [row.id for row in rows if row.id is not None]


def deliver(name: str, data: bytes) -> None:
    receive(name, data)
    pending = [t for t in transfers_to_bob() if not _final(t)]
    assert carry(pending) == [TransferState.delivered] * len(pending)


def _final(transfer_id: int) -> bool:
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None
        return transfer.state == TransferState.delivered


def test_a_delivery_into_a_mailbox_lands_in_the_storage_once(bob: Store) -> None:
    deliver("inv.edi", b"ISA*first~")
    deliver("inv.edi", b"ISA*second~")  # the first is not picked up yet: renamed, not replaced
    assert download(bob) == {"inv.edi": b"ISA*first~", "inv (2).edi": b"ISA*second~"}
    if bob.bucket is not None:
        assert not (get_settings().mailbox_root / "home" / "bob" / "download" / "inv.edi").exists()
    # Carried again (a crash before the record): found there with the same bytes, not written again.
    first = transfers_to_bob()[0]
    with session_scope() as session:
        transfer = session.get(Transfer, first)
        assert transfer is not None
        transfer.state = TransferState.pending
        session.add(transfer)
    (job,) = delivery.start_run([first], None).jobs
    delivered = delivery.push(job)
    assert delivered.uri == "mailbox://bob/download/inv.edi"
    assert download(bob) == {"inv.edi": b"ISA*first~", "inv (2).edi": b"ISA*second~"}


@pytest.fixture
def sftp_server(bob: Store) -> Iterator[SFTPServer]:
    settings = lenient_settings(sftp_port=0)
    server = SFTPServer(settings, MailboxAuth(settings))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ftp_server(bob: Store) -> Iterator[FTPServer]:
    settings = lenient_settings(ftp_port=0, ftp_require_tls=False)
    server = FTPServer(settings, MailboxAuth(settings))
    server.handler.auth_failed_timeout = 0.01
    server.start()
    yield server
    server.stop()


def kept_receipt(store: Store, name: str) -> bytes:
    with session_scope() as session:
        receipt = session.exec(select(Receipt).where(Receipt.name == name)).one()
    if store.bucket is None:
        return (get_settings().mailbox_root / receipt.storage_path).read_bytes()
    data: bytes = store.s3.get_object(Bucket=store.bucket, Key=f"{PREFIX}/{receipt.storage_path}")[
        "Body"
    ].read()
    assert not (get_settings().mailbox_root / receipt.storage_path).exists()
    return data


def test_sftp_lists_reads_and_deletes_download_and_uploads_into_the_storage(
    bob: Store, sftp_server: SFTPServer
) -> None:
    deliver("a.edi", b"ISA*a~")
    deliver("b.edi", b"ISA*b~" * 50_000)
    transport = paramiko.Transport(("127.0.0.1", sftp_server.port))
    try:
        transport.connect(username="bob", password=PASSWORD)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        listed = {entry.filename: entry.st_size for entry in sftp.listdir_attr("download")}
        assert listed == {"a.edi": 6, "b.edi": 300_000}
        assert sftp.stat("download/b.edi").st_size == 300_000
        with sftp.open("download/b.edi", "rb") as handle:
            handle.seek(6 * 1000)  # a positioned read, as a resumed download asks
            assert handle.read(6) == b"ISA*b~"
            handle.seek(0)
            assert handle.read() == b"ISA*b~" * 50_000
        sftp.remove("download/a.edi")
        assert set(download(bob)) == {"b.edi"}
        with pytest.raises(FileNotFoundError):
            sftp.stat("download/a.edi")
        sftp.putfo(io.BytesIO(b'{"po": "sftp"}'), "upload/po.json")
    finally:
        transport.close()
    assert kept_receipt(bob, "po.json") == b'{"po": "sftp"}'


def test_ftp_lists_reads_and_deletes_download_and_uploads_into_the_storage(
    bob: Store, ftp_server: FTPServer
) -> None:
    deliver("c.edi", b"ISA*c~" * 1000)
    deliver("d.edi", b"ISA*d~")
    ftp = ftplib.FTP(timeout=10)
    ftp.connect("127.0.0.1", ftp_server.port)
    try:
        ftp.login("bob", PASSWORD)
        assert sorted(ftp.nlst("download")) == ["c.edi", "d.edi"]
        facts = {name: int(f["size"]) for name, f in ftp.mlsd("download", facts=["size"])}
        assert facts == {"c.edi": 6000, "d.edi": 6}
        out = io.BytesIO()
        ftp.retrbinary("RETR download/c.edi", out.write)
        assert out.getvalue() == b"ISA*c~" * 1000
        out = io.BytesIO()
        ftp.retrbinary("RETR download/c.edi", out.write, rest=5994)  # REST: the last 6 bytes
        assert out.getvalue() == b"ISA*c~"
        ftp.delete("download/d.edi")
        assert set(download(bob)) == {"c.edi"}
        with pytest.raises(ftplib.error_perm):
            ftp.size("download/d.edi")
        ftp.storbinary("STOR upload/po2.json", io.BytesIO(b'{"po": "ftp"}'))
    finally:
        ftp.close()
    assert kept_receipt(bob, "po2.json") == b'{"po": "ftp"}'


def test_a_removed_partner_leaves_nothing_for_the_next_of_its_name(bob: Store, tmp_path: Path) -> None:
    deliver("old.edi", b"ISA*old~")
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["partner", "remove", "bob", "--force"])
    assert result.exit_code == 0, result.output
    where = get_settings().storage_url if bob.bucket is not None else str(get_settings().mailbox_root)
    assert f"its files were kept in {where}/.removed/partner-" in result.output.replace("\n", "")
    with session_scope() as session:
        partners.add(session, home_scope(session), "bob", password=PASSWORD)
    assert download(bob) == {}
    if bob.bucket is not None:  # kept out of reach, in the bucket's .removed/
        listed = bob.s3.list_objects_v2(Bucket=bob.bucket, Prefix=f"{PREFIX}/.removed/")["Contents"]
        assert [item["Key"].rsplit("/", 2)[-2:] for item in listed] == [["download", "old.edi"]]


def test_upload_shows_a_received_file_until_it_is_delivered(bob: Store, sftp_server: SFTPServer) -> None:
    """On S3 nothing is linked into upload/: the listing comes from the receipts, and says the same."""
    with session_scope() as session:
        scope = home_scope(session)
        partners.set_password(session, scope, partners.require(session, scope, "acme"), PASSWORD)
    transport = paramiko.Transport(("127.0.0.1", sftp_server.port))
    try:
        transport.connect(username="acme", password=PASSWORD)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        sftp.putfo(io.BytesIO(b"v1"), "upload/po.json")  # (paramiko stats it after the upload)
        sftp.putfo(io.BytesIO(b"version 2"), "upload/po.json")
        assert [(e.filename, e.st_size) for e in sftp.listdir_attr("upload")] == [("po.json", 9)]
        with session_scope() as session:
            rows = session.exec(select(Transfer).order_by(Transfer.id)).all()  # type: ignore[arg-type]
            ids = [row.id for row in rows if row.id is not None]
        assert carry(ids[:1]) == [TransferState.delivered]  # v1: v2 is still shown
        assert sftp.listdir("upload") == ["po.json"]
        assert carry(ids[1:]) == [TransferState.delivered]
        assert sftp.listdir("upload") == []
        with pytest.raises(FileNotFoundError):
            sftp.stat("upload/po.json")
    finally:
        transport.close()

"""Every upload ends in one commit, `core.intake.commit`, whichever door it came through.

A REST upload (bytes streamed into intake's private temporary file) and an SFTP upload broken off
and resumed (bytes staged by `core.mailbox.staging`) differ only in where the bytes waited: both
reach the same function, and give the same receipt, the same hard link into upload/ and the same
pending transfer.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import paramiko
import pytest
import uvicorn
from sqlmodel import select

from api.app import create_app
from core import intake
from core.db import HOME_ACCOUNT, session_scope
from core.mailbox import layout, staging
from core.models import Receipt, Transfer
from mailboxes.auth import MailboxAuth
from mailboxes.sftp import SFTPServer
from tests.mailboxes.conftest import MakePartner, PartnerLogin, lenient_settings


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[intake.Arrival, str]]:
    """Every call of `intake.commit`: what arrived, and how its bytes were staged."""
    calls: list[tuple[intake.Arrival, str]] = []
    real = intake.commit

    def spy(arrival: intake.Arrival, staged: intake.Staged, **kwargs: Any) -> Receipt:
        calls.append((arrival, type(staged).__name__))
        return real(arrival, staged, **kwargs)

    monkeypatch.setattr(intake, "commit", spy)
    return calls


@contextlib.contextmanager
def rest_api() -> Iterator[httpx.Client]:
    """The real app, served by uvicorn on a free loopback port, and a client of it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(), log_level="warning", lifespan="off", http="h11", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive())
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def rest_upload(partner: PartnerLogin, name: str, data: bytes) -> None:
    with rest_api() as client:
        _rest_upload(client, partner, name, data)


def _rest_upload(client: httpx.Client, partner: PartnerLogin, name: str, data: bytes) -> None:
    form = {"grant_type": "password", "username": partner.name, "password": partner.password}
    token = client.post("/api/authentication", data=form).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    home = client.get("/api/folders", headers=bearer).json()["resources"][0]
    children = client.get(f"/api/folders/{home['id']}/children", headers=bearer).json()["resources"]
    upload = next(f for f in children if f["subspace"] == "upload")
    headers = {
        **bearer,
        "Content-Disposition": f"attachment; filename={name}",
        "Content-Type": "application/octet-stream",
    }
    response = client.post(f"/api/folders/{upload['id']}/files", headers=headers, content=data)
    assert response.status_code == 201, response.text


def sftp_client(server: SFTPServer, partner: PartnerLogin) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    transport = paramiko.Transport(("127.0.0.1", server.port))
    transport.connect(username=partner.name, password=partner.password)
    return transport, paramiko.SFTPClient.from_transport(transport)


def resumed_sftp_upload(partner: PartnerLogin, auth: MailboxAuth, name: str, data: bytes) -> None:
    """Half the file, the connection dropped; then the rest appended in a new session, and closed."""
    server = SFTPServer(lenient_settings(sftp_port=0), auth)
    server.start()
    staged = layout.staging(HOME_ACCOUNT, partner.name) / layout.UPLOAD / name
    half = len(data) // 2
    try:
        transport, client = sftp_client(server, partner)
        handle = client.open(f"/upload/{name}", "wb")
        handle.write(data[:half])
        handle.flush()
        transport.close()  # gone without a CLOSE: the bytes stay staged for a resume

        def abandoned() -> bool:
            return staged not in staging._active and staged.exists() and staged.stat().st_size == half

        wait_until(abandoned, timeout=10)
        assert name not in [r.name for r in partner.receipts()]  # nothing taken in yet
        transport, client = sftp_client(server, partner)
        try:
            with client.open(f"/upload/{name}", "ab") as handle:
                handle.write(data[half:])
        finally:
            transport.close()
    finally:
        server.stop()


def test_rest_and_resumed_sftp_uploads_end_in_the_same_commit(
    make_partner: MakePartner, auth: MailboxAuth, tmp_path: Path, commits: list[tuple[intake.Arrival, str]]
) -> None:
    partner = make_partner(flow_to=tmp_path / "out")
    data = os.urandom(300_001)
    rest_upload(partner, "by-rest.bin", data)
    resumed_sftp_upload(partner, auth, "by-sftp.bin", data)

    assert [(a.name, a.protocol, kind) for a, kind in commits] == [
        ("by-rest.bin", "rest", "Upload"),
        ("by-sftp.bin", "sftp", "StagedFile"),
    ]
    rest, sftp = (a for a, _ in commits)
    assert (rest.folder, rest.size, rest.sha256) == (sftp.folder, sftp.size, sftp.sha256)
    assert rest.sha256 == hashlib.sha256(data).hexdigest()

    receipts = {r.name: r for r in partner.receipts()}
    assert set(receipts) == {"by-rest.bin", "by-sftp.bin"}
    same = ("account_id", "partner_id", "folder", "size", "sha256")
    assert [getattr(receipts["by-rest.bin"], f) for f in same] == [
        getattr(receipts["by-sftp.bin"], f) for f in same
    ]
    root = layout.root()
    for name, receipt in receipts.items():
        kept, visible = root / receipt.storage_path, root / (receipt.visible_path or "")
        assert receipt.storage_path.startswith(f"{layout.STORE_DIR}/")
        assert receipt.visible_path == f"{HOME_ACCOUNT}/{partner.name}/upload/{name}"
        assert visible == partner.home / "upload" / name
        assert os.path.samefile(kept, visible) and kept.stat().st_nlink == 2  # a link, not a copy
        assert kept.read_bytes() == data
        with session_scope() as session:
            transfers = session.exec(select(Transfer).where(Transfer.receipt_id == receipt.id)).all()
        assert [t.state for t in transfers] == ["pending"]


def test_a_staged_file_without_its_hash_is_hashed_once_by_the_same_commit(
    partner: PartnerLogin, commits: list[tuple[intake.Arrival, str]]
) -> None:
    data = os.urandom(70_000)
    staged = layout.staging(HOME_ACCOUNT, partner.name) / layout.UPLOAD / "unhashed.bin"
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(data)
    receipt = intake.receive_staged(partner.user(), layout.UPLOAD, "unhashed.bin", staged, protocol="sftp")
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    assert [(a.sha256, kind) for a, kind in commits] == [(receipt.sha256, "StagedFile")]
    assert not staged.exists() and (partner.home / "upload" / "unhashed.bin").read_bytes() == data


def test_work_refused_in_the_receipts_transaction_puts_the_staged_file_back(partner: PartnerLogin) -> None:
    """`also` (a tus upload's row marked done, say) refuses: nothing committed, so nothing is shown
    and the bytes are back where the client resumes them, whole, to be taken in again."""
    data = os.urandom(20_000)
    staged = layout.staging(HOME_ACCOUNT, partner.name) / layout.UPLOAD / "refused-also.bin"
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(data)

    def refuses(session: Any, receipt: Receipt) -> None:
        raise RuntimeError("the upload was taken in elsewhere")

    with pytest.raises(RuntimeError):
        intake.receive_staged(
            partner.user(), layout.UPLOAD, "refused-also.bin", staged, protocol="portal", also=refuses
        )
    visible = partner.home / "upload" / "refused-also.bin"
    assert staged.read_bytes() == data and not visible.exists()
    with session_scope() as session:
        assert session.exec(select(Receipt).where(Receipt.name == "refused-also.bin")).first() is None
    user = partner.user()
    receipt = intake.receive_staged(user, layout.UPLOAD, "refused-also.bin", staged, protocol="portal")
    assert receipt.sha256 == hashlib.sha256(data).hexdigest() and visible.read_bytes() == data


def test_a_rolled_back_receipt_leaves_an_earlier_file_of_the_name_shown(partner: PartnerLogin) -> None:
    first = os.urandom(1000)
    staged = layout.staging(HOME_ACCOUNT, partner.name) / layout.UPLOAD / "again.bin"
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(first)
    intake.receive_staged(partner.user(), layout.UPLOAD, "again.bin", staged, protocol="sftp")
    staged.write_bytes(first)  # the same file sent again (a copy another process took in first)

    def refuses(session: Any, receipt: Receipt) -> None:
        raise RuntimeError("taken in elsewhere")

    with pytest.raises(RuntimeError):
        user = partner.user()
        intake.receive_staged(user, layout.UPLOAD, "again.bin", staged, protocol="portal", also=refuses)
    assert (partner.home / "upload" / "again.bin").read_bytes() == first  # still shown

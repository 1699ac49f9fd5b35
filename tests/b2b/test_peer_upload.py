"""The receiving side of a push (DESIGN-12 §5.5, §5.6, §5.9) over real httpx against the real API app
under uvicorn: create, PATCH, resume from the offset held, the signed receipt, idempotency by
(connection, key, SHA-256), and the file taken in through intake into the landing flow."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import select

from core.b2b import keys, receipts, signing
from core.db import session_scope
from core.mailbox import layout
from core.models import Connection, PeerUpload, Receipt, Transfer
from tests.b2b.peer_site import Site, create, declare, new_sender, patch, serve


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from serve(tmp_path_factory.mktemp("peer-upload") / "home")


@pytest.fixture
def client(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=30) as c:
        yield c


def test_a_file_pushed_whole_is_taken_in_once_with_a_signed_receipt(client: httpx.Client) -> None:
    sender = new_sender()
    data = os.urandom(700_000)
    declared = declare(sender, data)
    made = create(client, sender, declared)
    assert made.status_code == 201, made.text
    upload = made.json()["upload"]
    assert made.json()["offset"] == 0 and made.json()["complete"] is False
    again = create(client, sender, declared)
    assert again.status_code == 200 and again.json()["upload"] == upload and again.json()["offset"] == 0

    done = patch(client, sender, upload, 0, data)
    assert done.status_code == 200, done.text
    answer = done.json()
    assert answer["complete"] is True
    facts = receipts.check(
        receipts.SignedReceipt.from_json(answer),
        key_id=sender.our_key_id,
        public_key=keys.public_key(sender.our_public_key),
        expected=receipts.Expected(declared["key"], "po.edi", len(data), declared["sha256"]),
    )
    assert facts.connection == sender.uid

    with session_scope() as session:
        receipt = session.get(Receipt, facts.receipt_id)
        conn = session.get(Connection, sender.connection_id)
        assert receipt is not None and conn is not None
        assert (
            receipt.protocol == "b2b"
            and receipt.connection_id == conn.id
            and receipt.sha256 == declared["sha256"]
        )
        flows = [
            t.data_flow_id for t in session.exec(select(Transfer).where(Transfer.receipt_id == receipt.id))
        ]
        assert flows == [conn.data_flow_id]  # the landing flow carries it
        row = session.exec(select(PeerUpload).where(PeerUpload.uid == upload)).one()
        assert row.state == "complete" and row.receipt_id == receipt.id and row.resumes == 0

    # The same transfer again (a retry, a crash requeue, a replay): the same receipt, nothing new.
    repeat = create(client, sender, declared)
    assert repeat.status_code == 200 and repeat.json()["complete"] is True
    assert repeat.json()["receipt"] == answer["receipt"]
    assert patch(client, sender, upload, 0, data).json()["receipt"] == answer["receipt"]
    with session_scope() as session:
        count = len(session.exec(select(Receipt).where(Receipt.connection_id == sender.connection_id)).all())
    assert count == 1


def test_a_broken_upload_resumes_from_the_offset_held(client: httpx.Client) -> None:
    sender = new_sender()
    data = os.urandom(1_500_000)
    declared = declare(sender, data, name="big.bin", transfer_id=7)
    upload = create(client, sender, declared).json()["upload"]
    first = patch(client, sender, upload, 0, data[:600_000])
    assert first.status_code == 200 and first.json() == {
        "upload": upload,
        "complete": False,
        "offset": 600_000,
    }
    held = create(client, sender, declared)
    assert held.status_code == 200 and held.json()["offset"] == 600_000
    asked = client.build_request("GET", f"/peer/v1/connections/{sender.uid}/uploads/{upload}")
    signing.sign_request(asked, sender.signer)
    assert client.send(asked).json() == {"upload": upload, "complete": False, "offset": 600_000}
    wrong = patch(client, sender, upload, 0, data)
    assert wrong.status_code == 409 and wrong.json()["offset"] == 600_000
    done = patch(client, sender, upload, 600_000, data[600_000:], chunked=True)
    assert done.status_code == 200 and done.json()["complete"] is True, done.text
    with session_scope() as session:
        row = session.exec(select(PeerUpload).where(PeerUpload.uid == upload)).one()
        receipt = session.get(Receipt, row.receipt_id)
    assert row.resumes == 1 and receipt is not None and receipt.size == len(data)
    # Taken in: the staged bytes moved into the store, nothing is left staged.
    assert not [p for p in (layout.root() / layout.PEER_DIR).rglob("*") if p.is_file()]

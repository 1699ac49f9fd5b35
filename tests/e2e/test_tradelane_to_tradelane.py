"""One tradelane sends to another: A's sftp and ftp endpoints deliver into B's SFTP and FTPS mailboxes.

Two real `tradelane up` systems, each with its own home and ports. B gives A a partner login; A
configures two endpoints the way an operator would, with default settings apart from what any
server needs (B's host key pinned on first contact, B's self-signed FTPS certificate as the CA).
A partner's upload to A is carried by A's data flows into B's mailbox, arrives in B as a receipt,
and B's own data flow delivers it on.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailboxes.ftp import CERT_FILE
from tests.b2b.peers_pair import Pair
from tests.e2e.helpers import PartnerClient, delivered, sha256, unique
from tests.system import System

B_LOGIN, B_PASSWORD = "tradelane-a", "a-sends-to-b-S3cret"


@pytest.fixture
def receiver(peer_pair: Pair) -> System:
    """System B: instance B of the session's pair (system A is the session's shared one)."""
    return peer_pair.b.system


def test_a_file_sent_by_one_tradelane_arrives_in_another(
    system: System, receiver: System, tmp_path: Path
) -> None:
    a, b = system, receiver
    # B: a partner login for A, and a data flow that takes what A sends to a folder.
    inbox = tmp_path / "b-inbox"
    b.cli("partner", "add", B_LOGIN, "--password", B_PASSWORD)
    b.cli("endpoint", "add", "b-inbox", "--type", "file", "--path", str(inbox))
    b.cli("flow", "add", "from-a", "--source", f"mailbox:{B_LOGIN}", "--dest", "b-inbox")

    # A: B's mailbox as two endpoints, and data flows that send a partner's uploads there.
    to_sftp, to_ftps, sender = unique("to-b-sftp"), unique("to-b-ftps"), unique("acme")
    sender_password = "acme-sends-pw-1"
    a.cli("partner", "add", sender, "--password", sender_password)
    a.cli(
        "endpoint", "add", to_sftp, "--type", "sftp", "--host", "127.0.0.1",
        "--port", b.env["TRADELANE_SFTP_PORT"], "--user", B_LOGIN, "--password", B_PASSWORD,
        "--path", "upload", "--accept-host-key",
    )  # fmt: skip
    a.cli(
        "endpoint", "add", to_ftps, "--type", "ftp", "--host", "127.0.0.1",
        "--port", b.env["TRADELANE_FTP_PORT"], "--user", B_LOGIN, "--password", B_PASSWORD,
        "--path", "upload", "--tls", "explicit", "--cafile", str(b.home / CERT_FILE),
    )  # fmt: skip
    a.cli("endpoint", "test", to_sftp)
    a.cli("endpoint", "test", to_ftps)
    for flow, pattern in ((to_sftp, "*.sftp.json"), (to_ftps, "*.ftps.json")):
        a.cli("flow", "add", flow, "--source", f"mailbox:{sender}", "--pattern", pattern, "--dest", flow)

    payloads = {
        "po_850.sftp.json": b'{"po": "850-0001", "via": "sftp"}' * 2000,
        "po_851.ftps.json": b'{"po": "851-0001", "via": "ftps"}' * 2000,
    }
    client = PartnerClient(a, sender, sender_password)
    for name, data in payloads.items():
        assert client.upload(name, data).status_code == 201
    client.close()

    a.wait_for(delivered(1), timeout=90, flow=to_sftp)
    a.wait_for(delivered(1), timeout=90, flow=to_ftps)
    rows = b.wait_for(delivered(2), timeout=90, flow="from-a")
    assert sorted(r["file"] for r in rows) == sorted(payloads)
    for name, data in payloads.items():
        assert sha256((inbox / name).read_bytes()) == sha256(data)
    # B took each in once, under its final name, over the protocol it came by.
    with sqlite3.connect(b.home / "tradelane.db") as store:
        receipts = store.execute(
            "SELECT receipt.name, protocol, sha256 FROM receipt JOIN partner ON partner.id = partner_id"
            " WHERE partner.name = ? ORDER BY receipt.name",
            (B_LOGIN,),
        ).fetchall()
    assert receipts == [
        ("po_850.sftp.json", "sftp", sha256(payloads["po_850.sftp.json"])),
        ("po_851.ftps.json", "ftp", sha256(payloads["po_851.ftps.json"])),
    ]

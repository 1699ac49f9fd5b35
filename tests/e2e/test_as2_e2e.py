"""AS2 end to end against `tradelane up`, configured with the CLI as a user would: a partner sends
AS2 → a data flow delivers the payload to S3; and a partner uploads by SFTP → a data flow sends it
by AS2 to the peer (a pyas2lib server sharing no code with tradelane), which answers with a
signed MDN."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pyas2lib
import pytest

from tests.as2.peer import Identity, PeerServer, judge_mdn, partner_of, post, wire
from tests.e2e.helpers import delivered, sha256, unique
from tests.servers import moto_client
from tests.system import System

PASSWORD = "As2-e2e-partner-pw-1"
TIMEOUT = 120.0  # generous: the machine may be busy; no timing is asserted


@pytest.fixture
def peer_id() -> str:
    return unique("PEER").upper()


@pytest.fixture
def our_id() -> str:
    return unique("TRADELANE").upper()


@pytest.fixture
def peer(system: System, our_id: str, peer_id: str, tmp_path: Path) -> Iterator[PeerServer]:
    """Our AS2 identity made with the CLI, and a peer AS2 server that knows it by its PEM."""
    system.cli("as2", "org", "create", "--as2-id", our_id)
    our_cert = system.cli("as2", "org", "cert", "--as2-id", our_id).stdout
    assert our_cert.startswith("-----BEGIN CERTIFICATE-----"), our_cert
    us = Identity(our_id, key_pem="", cert_pem=our_cert)  # the peer only has our certificate
    server = PeerServer(me=Identity.new(peer_id), partner=partner_of(us)).start()
    try:
        yield server
    finally:
        server.stop()


def _configure_peer_profile(system: System, peer: PeerServer, our_id: str, mailbox: str, tmp: Path) -> None:
    cert = tmp / "peer.pem"
    cert.write_text(peer.me.cert_pem)
    system.cli("partner", "add", mailbox, "--password", PASSWORD)
    # The as2 partner command exactly as the README gives it (with --org: the session may hold
    # other AS2 identities).
    system.cli(
        "as2",
        "partner",
        "add",
        peer.me.as2_id,
        "--mailbox",
        mailbox,
        "--url",
        peer.url,
        "--cert",
        str(cert),
        "--sign",
        "sha256",
        "--encrypt",
        "aes256",
        "--mdn",
        "sync",
        "--mdn-sign",
        "sha256",
        "--org",
        our_id,
    )


def _as2_messages(system: System, **filters: str) -> list[dict[str, Any]]:
    args = ["as2", "messages", "--json", "--limit", "1000"]
    for key, value in filters.items():
        args += [f"--{key}", value]
    rows: list[dict[str, Any]] = json.loads(system.cli(*args).stdout)
    return rows


def test_as2_in_to_s3_and_sftp_out_by_as2_with_signed_mdn(
    system: System, moto_server: str, peer: PeerServer, our_id: str, tmp_path: Path
) -> None:
    peer_id = peer.me.as2_id
    mailbox_p, mailbox_q = unique("as2p"), unique("as2q")
    _configure_peer_profile(system, peer, our_id, mailbox_p, tmp_path)
    listed = {p["as2_id"]: p for p in json.loads(system.cli("as2", "partner", "list", "--json").stdout)}
    assert listed[peer_id]["mailbox"] == mailbox_p
    assert (listed[peer_id]["sign"], listed[peer_id]["encrypt"]) == ("sha256", "aes256")
    assert listed[peer_id]["allow_unsigned"] is False

    # ---- inbound: the peer sends signed + encrypted AS2 → mailbox P → data flow → S3 ----------
    bucket = unique("as2-lake")
    s3 = moto_client(moto_server)
    s3.create_bucket(Bucket=bucket)
    lake, flow_in = unique("lake"), unique("as2-in")
    system.cli(
        "endpoint",
        "add",
        lake,
        "--type",
        "s3",
        "--bucket",
        bucket,
        "--prefix",
        "as2/",
        "--endpoint-url",
        moto_server,
        "--access-key-id",
        "test",
        "--secret-access-key",
        "test",
    )
    system.cli("flow", "add", flow_in, "--source", f"mailbox:{mailbox_p}", "--dest", lake)

    inbound = bytes(range(256)) * 64 + b"\r\n\n\r\x00" + os.urandom(200_000) + b"\n"
    message = pyas2lib.Message(
        sender=peer.me.organization(),
        receiver=partner_of(
            Identity(our_id, "", peer.partner.verify_cert.decode()),
            sign=True,
            digest_alg="sha256",
            encrypt=True,
            enc_alg="aes_256_cbc",
            mdn_mode="SYNC",
            mdn_digest_alg="sha256",
        ),
    )
    message.build(inbound, filename="inbound_850.bin", content_type="application/octet-stream")
    headers, body = wire(message)
    response = post(f"{system.api}/as2/receive", headers, body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("multipart/signed"), response.headers
    status, detail, mdn = judge_mdn(response, message)  # pyas2lib verifies signature and MIC
    assert (status, detail) == ("processed", None)
    assert mdn.digest_alg == "sha256"
    mdn_mic = re.search(rb"Received-content-MIC:\s*([^,\r\n]+)\s*,\s*(\S+)", response.content, re.I)
    assert mdn_mic is not None, response.content[:2000]
    assert mdn_mic.group(1).decode().strip() == message.mic.decode()
    assert mdn_mic.group(2).decode().lower() == "sha256"

    [row] = system.wait_for(delivered(1), timeout=TIMEOUT, flow=flow_in)
    assert row["file"] == "inbound_850.bin"
    assert row["sha256"] == sha256(inbound)
    obj = s3.get_object(Bucket=bucket, Key="as2/inbound_850.bin")["Body"].read()
    assert sha256(obj) == sha256(inbound) and len(obj) == len(inbound)
    [got_in] = _as2_messages(system, direction="in", partner=peer_id)
    assert got_in["message_id"] == message.message_id
    assert got_in["status"] == "received" and got_in["disposition"] == "processed"
    assert got_in["signed"] and got_in["encrypted"] and got_in["mdn_signed"]
    assert got_in["mic"] == message.mic.decode() and got_in["receipt_id"] is not None

    # ---- outbound: partner Q uploads by SFTP → data flow → AS2 to the peer → signed MDN -------
    out, flow_out = unique("as2-out"), unique("as2-send")
    system.cli("partner", "add", mailbox_q, "--password", PASSWORD)
    system.cli("endpoint", "add", out, "--type", "as2", "--partner", peer_id)
    system.cli("flow", "add", flow_out, "--source", f"mailbox:{mailbox_q}", "--dest", out)

    outbound = os.urandom(150_000) + b"\r\n.\r\n\x00\xff" + bytes(range(256)) * 16
    transport = paramiko.Transport(("127.0.0.1", int(system.env["TRADELANE_SFTP_PORT"])))
    try:
        transport.connect(username=mailbox_q, password=PASSWORD)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        with sftp.open("/upload/po_out_850.bin", "wb") as f:
            f.write(outbound)
    finally:
        transport.close()

    [sent_row] = system.wait_for(delivered(1), timeout=TIMEOUT, flow=flow_out)
    assert sent_row["sha256"] == sha256(outbound)
    with peer.lock:
        received = list(peer.received)
    [got] = [r for r in received if r.filename == "po_out_850.bin"]
    assert got.status == "processed" and got.detail is None
    assert sha256(got.payload) == sha256(outbound) and got.payload == outbound
    assert got.headers.get("AS2-From") == our_id and got.headers.get("AS2-To") == peer_id

    [msg_out] = _as2_messages(system, direction="out", partner=peer_id)
    assert msg_out["message_id"] == got.message_id
    assert msg_out["status"] == "acknowledged", msg_out
    assert msg_out["disposition"] == "processed"
    assert msg_out["mdn_mode"] == "sync" and msg_out["mdn_signed"] and msg_out["mdn_sign"] == "sha256"
    assert msg_out["signed"] and msg_out["encrypted"] and msg_out["mic_alg"] == "sha256"
    assert msg_out["sha256"] == sha256(outbound) and msg_out["file_name"] == "po_out_850.bin"
    assert msg_out["error"] is None
    assert msg_out["transfer_id"] == sent_row["id"]
    assert sent_row["destination_uri"].endswith(f"#{got.message_id}")

"""SFTP end to end against `tradelane up`: a partner's SFTP upload is delivered by a data flow
byte for byte, and what a flow puts into another partner's download/ is fetched over SFTP."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko

from tests.e2e.helpers import delivered, sha256, unique
from tests.system import System

PASSWORD = "sftp-partner-pw-1"


def _sftp(system: System, user: str) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    transport = paramiko.Transport(("127.0.0.1", int(system.env["TRADELANE_SFTP_PORT"])))
    transport.connect(username=user, password=PASSWORD)
    return transport, paramiko.SFTPClient.from_transport(transport)


def test_sftp_upload_is_delivered_and_a_delivery_is_fetched_over_sftp(system: System, tmp_path: Path) -> None:
    sender, receiver = unique("sftpa"), unique("sftpb")
    for name in (sender, receiver):
        system.cli("partner", "add", name, "--password", PASSWORD)
    out, to_file, to_partner = unique("dir"), unique("flow"), unique("flow")
    system.cli("endpoint", "add", out, "--type", "file", "--path", str(tmp_path / "out"))
    system.cli("flow", "add", to_file, "--source", f"mailbox:{sender}", "--dest", out)
    system.cli("flow", "add", to_partner, "--source", f"mailbox:{sender}", "--dest", f"mailbox:{receiver}")

    data = os.urandom(3 * 1024 * 1024 + 5)
    transport, sftp = _sftp(system, sender)
    with sftp.open("/upload/po_850.bin", "wb") as f:
        f.write(data)
    transport.close()

    system.wait_for(delivered(1), flow=to_file)
    assert (tmp_path / "out" / "po_850.bin").read_bytes() == data
    system.wait_for(delivered(1), flow=to_partner)

    transport, sftp = _sftp(system, receiver)
    try:
        assert sftp.listdir("/download") == ["po_850.bin"]
        with sftp.open("/download/po_850.bin", "rb") as f:
            f.prefetch()
            got = f.read()
    finally:
        transport.close()
    assert sha256(got) == sha256(data)

"""Outboxes through a real `tradelane up`: an account user of the sending account puts files into
`b2b/orders/` by REST, OpenSSH `sftp` and ftplib; held while the connection is pending, carried at
once when active, byte for byte into the receiver's moto S3 bucket; allow-view on and off on every
surface (REST, CLI, SFTP, FTP); a revoked connection's outbox refuses writes everywhere.
"""

from __future__ import annotations

import ftplib
import io
import os
from pathlib import Path

import httpx
import pytest

from tests.b2b.outbox_doors import cli_json, folder_named, new_pair, upload
from tests.system import System


@pytest.fixture
def up(outbox_system: System) -> System:
    return outbox_system


def test_files_sent_by_rest_sftp_and_ftp_land_byte_for_byte(
    up: System, moto_server: str, tmp_path: Path
) -> None:
    pair = new_pair(up, moto_server)
    held = os.urandom(150_000)
    (tmp_path / "held.bin").write_bytes(held)
    said = pair.sftp("cd b2b/orders\nput held.bin\n", tmp_path)
    assert "denied" not in said.lower() and "failure" not in said.lower(), said
    assert pair.wait_state("held.bin", "held")["size"] == len(held)
    assert cli_json(up, "account", "list")[0].keys() >= {"connections"}
    counts = {a["name"]: a["connections"] for a in cli_json(up, "account", "list")}
    assert counts[pair.sender] == 1

    pair.accept()
    assert pair.landed("held.bin") == held

    with pair.rest() as rest:
        box = folder_named(rest, "b2b", "orders")
        assert box["subspace"] == "outbox" and box["permissions"] == ["upload"]  # no view yet
        data = os.urandom(220_000)
        sent = upload(rest, box["id"], "rest.json", data)
        assert sent.status_code == 201, sent.text
        assert sent.json()["name"] == "rest.json" and sent.json()["length"] == len(data)
    assert pair.landed("rest.json") == data

    data = os.urandom(300_001)
    (tmp_path / "po.edi").write_bytes(data)
    said = pair.sftp("put po.edi /b2b/orders/po.edi\n", tmp_path)
    assert "denied" not in said.lower(), said
    assert pair.landed("po.edi") == data
    # A client that uploads to a temporary name and renames it (WinSCP, rclone) sends one file.
    said = pair.sftp(
        "put po.edi /b2b/orders/late.edi.part\nrename /b2b/orders/late.edi.part /b2b/orders/late.edi\n",
        tmp_path,
    )
    assert "denied" not in said.lower() and "failure" not in said.lower(), said
    assert pair.landed("late.edi") == data

    data = os.urandom(123_457)
    ftp = pair.ftp()
    try:
        facts = dict(ftp.mlsd("/b2b"))
        assert facts["orders"]["perm"] == "ec"  # enter, create files; no listing without the view
        ftp.storbinary("STOR /b2b/orders/ftp.bin", io.BytesIO(data))
    finally:
        ftp.quit()
    assert pair.landed("ftp.bin") == data
    sent_files = {r["file"]: r["state"] for r in pair.history()}
    assert set(sent_files) == {"held.bin", "rest.json", "po.edi", "late.edi", "ftp.bin"}


def test_allow_view_on_and_off_on_every_surface(up: System, moto_server: str, tmp_path: Path) -> None:
    pair = new_pair(up, moto_server)
    pair.accept()
    data = os.urandom(4096)
    (tmp_path / "seen.txt").write_bytes(data)
    pair.sftp("put seen.txt /b2b/orders/seen.txt\n", tmp_path)
    pair.landed("seen.txt")
    refusal = "home has not allowed viewing its folder"

    # Off (the default): every surface refuses, with the same words.
    with pair.rest() as rest:
        box = folder_named(rest, "b2b", "orders")
        listed = rest.get(f"/api/folders/{box['id']}/files")
        assert listed.status_code == 403 and refusal in listed.json()["message"]
        through = rest.get(f"/api/connections/{pair.id}/files")
        assert through.status_code == 403 and refusal in through.json()["message"]
    cli = up.cli("connect", "files", "to-home", "--account", pair.sender, check=False)
    assert cli.returncode == 1 and "403" in cli.stdout + cli.stderr and refusal in cli.stdout + cli.stderr
    said = pair.sftp("ls -l /b2b/orders\n", tmp_path)
    assert refusal in said or "denied" in said.lower(), said
    ftp = pair.ftp()
    try:
        with pytest.raises(ftplib.error_perm, match=refusal):
            list(ftp.mlsd("/b2b/orders"))
    finally:
        ftp.quit()

    # On: names, sizes and times, never a path, on every surface; nothing can be read back.
    pair.view(True)
    with pair.rest() as rest:
        box = folder_named(rest, "b2b", "orders")
        assert box["permissions"] == ["list", "upload"]
        listed = rest.get(f"/api/folders/{box['id']}/files")
        assert listed.status_code == 200, listed.text
        files = listed.json()["resources"]
        assert [(f["name"], f["length"]) for f in files] == [("seen.txt", len(data))]
        through = rest.get(f"/api/connections/{pair.id}/files").json()
        assert [(f["name"], f["size"]) for f in through] == [("seen.txt", len(data))]
        for text in (listed.text, httpx.Response(200, json=through).text):
            assert "inbound" not in text and f"from/{pair.sender}" not in text and pair.bucket not in text
        # The listed file's own link answers its metadata (through the connection, same view rule);
        # its content is the receiver's: an account user reads nothing back.
        itself = rest.get(files[0]["_links"]["self"]["href"])
        assert itself.status_code == 200, itself.text
        assert (itself.json()["name"], itself.json()["length"]) == ("seen.txt", len(data))
        assert rest.get(f"/api/files/{files[0]['id']}/content").status_code in (403, 404)
    shown = cli_json(up, "connect", "files", "to-home", "--account", pair.sender)
    assert [(f["name"], f["size"]) for f in shown] == [("seen.txt", len(data))]
    said = pair.sftp("ls -l /b2b/orders\n-get /b2b/orders/seen.txt got.txt\n", tmp_path)
    assert "seen.txt" in said and str(len(data)) in said, said
    assert not (tmp_path / "got.txt").exists()
    ftp = pair.ftp()
    try:
        facts = dict(ftp.mlsd("/b2b/orders"))
        assert int(facts["seen.txt"]["size"]) == len(data) and facts["seen.txt"]["type"] == "file"
        assert dict(ftp.mlsd("/b2b"))["orders"]["perm"] == "elc"
        with pytest.raises(ftplib.error_perm):
            ftp.retrbinary("RETR /b2b/orders/seen.txt", lambda _: None)
    finally:
        ftp.quit()

    # Off again: refused again.
    pair.view(False)
    with pair.rest() as rest:
        assert rest.get(f"/api/connections/{pair.id}/files").status_code == 403
        assert rest.get(f"/api/files/{files[0]['id']}").status_code == 403


def test_a_revoked_connections_outbox_refuses_writes_everywhere(
    up: System, moto_server: str, tmp_path: Path
) -> None:
    pair = new_pair(up, moto_server)
    pair.accept()
    up.cli("connect", "revoke", "to-home", "--account", pair.sender)
    (tmp_path / "late.bin").write_bytes(b"too late")
    said = pair.sftp("put late.bin /b2b/orders/late.bin\n", tmp_path)
    assert "was revoked on" in said or "denied" in said.lower(), said
    with pair.rest() as rest:
        box = folder_named(rest, "b2b", "orders")  # still shown, so the user sees why
        assert box["permissions"] == []
        refused = upload(rest, box["id"], "late.bin", b"too late")
        assert refused.status_code == 403 and "was revoked on" in refused.json()["message"]
    ftp = pair.ftp()
    try:
        with pytest.raises(ftplib.error_perm, match="was revoked on"):
            ftp.storbinary("STOR /b2b/orders/late.bin", io.BytesIO(b"too late"))
    finally:
        ftp.quit()
    assert pair.history() == []
    counts = {a["name"]: a["connections"] for a in cli_json(up, "account", "list")}
    assert counts[pair.sender] == 0

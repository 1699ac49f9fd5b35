"""Hostile use of the outboxes (`b2b/<outbox>/`) through a real `tradelane up`, by REST (httpx),
OpenSSH `sftp` and ftplib: climbing out of b2b/, another account's outbox, writing into b2b/
itself, renaming across outboxes, and a partner login, which sees no b2b/ at all. Every refusal
leaves nothing received: the sender's connection history stays empty and the bucket untouched.
"""

from __future__ import annotations

import ftplib
import io
from pathlib import Path

import pytest

from tests.b2b.outbox_doors import (
    PASSWORD,
    Pair,
    cli_json,
    folder_named,
    new_pair,
    unique,
    upload,
)
from tests.servers import moto_client
from tests.system import System


@pytest.fixture
def up(outbox_system: System) -> System:
    return outbox_system


@pytest.fixture
def pair(up: System, moto_server: str) -> Pair:
    made = new_pair(up, moto_server)
    made.accept()
    return made


def nothing_received(pair: Pair) -> None:
    assert pair.history() == []
    assert moto_client(pair.moto).list_objects_v2(Bucket=pair.bucket).get("KeyCount", 0) == 0


def refused(said: str) -> bool:
    lower = said.lower()
    return "denied" in lower or "failure" in lower or "no such file" in lower or "not found" in lower


def test_paths_that_climb_out_of_the_outbox_are_refused(pair: Pair, tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"climb")
    for target in ("/b2b/orders/../../x.bin", "/b2b/orders/../../../etc/passwd", "../../.store/x.bin",
                   "/b2b/orders/sub/x.bin", "/b2b/orders/.hidden", "/.partial/x.bin"):  # fmt: skip
        said = pair.sftp(f"cd /b2b/orders\nput x.bin {target}\n", tmp_path)
        assert refused(said), (target, said)
    ftp = pair.ftp()
    try:
        ftp.cwd("/b2b/orders")
        for target in ("../../x.bin", "../x.bin", "/etc/x.bin", "sub/x.bin"):
            with pytest.raises(ftplib.error_perm):
                ftp.storbinary(f"STOR {target}", io.BytesIO(b"climb"))
    finally:
        ftp.quit()
    with pair.rest() as rest:
        box = folder_named(rest, "b2b", "orders")
        for name in ("../x.bin", "a/b.bin", ".hidden"):
            answer = upload(rest, box["id"], name, b"climb")
            assert answer.status_code == 400, (name, answer.text)
    nothing_received(pair)


def test_another_accounts_outbox_is_nobodys_folder(up: System, moto_server: str, tmp_path: Path) -> None:
    mine = new_pair(up, moto_server)
    outbox = unique("theirs")
    theirs = new_pair(up, moto_server, outbox=outbox)
    mine.accept()
    theirs.accept()
    assert outbox in theirs.sftp("ls -1 /b2b\n", tmp_path)
    (tmp_path / "x.bin").write_bytes(b"not yours")
    said = mine.sftp(f"ls -1 /b2b\nput x.bin /b2b/{outbox}/x.bin\n", tmp_path)
    assert outbox not in said.replace(f"/b2b/{outbox}/x.bin", "") and refused(said), said
    ftp = mine.ftp()
    try:
        with pytest.raises(ftplib.error_perm):
            ftp.storbinary(f"STOR /b2b/{outbox}/x.bin", io.BytesIO(b"not yours"))
        with pytest.raises(ftplib.error_perm):
            ftp.cwd(f"/b2b/{outbox}")
    finally:
        ftp.quit()
    with theirs.rest() as rest:
        their_box = folder_named(rest, "b2b", outbox)
    with mine.rest() as rest:
        assert rest.get(f"/api/folders/{their_box['id']}").status_code == 404
        assert upload(rest, their_box["id"], "x.bin", b"not yours").status_code == 404
        assert rest.get(f"/api/connections/{theirs.id}/files").status_code == 404
    nothing_received(theirs)
    nothing_received(mine)


def test_nothing_is_written_into_b2b_itself(pair: Pair, tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"b2b")
    said = pair.sftp("put x.bin /b2b/x.bin\n", tmp_path)
    assert refused(said), said  # OpenSSH prints "Permission denied", not the server's words
    said = pair.sftp("mkdir /b2b/mine\n", tmp_path)
    assert refused(said), said
    said = pair.sftp("put x.bin /x.bin\n", tmp_path)
    assert refused(said), said
    # A file sent through the outbox cannot be deleted or read back from it.
    said = pair.sftp(
        "put x.bin /b2b/orders/sent.bin\n-rm /b2b/orders/sent.bin\n-get /b2b/orders/sent.bin back.bin\n",
        tmp_path,
    )
    assert "denied" in said.lower() and refused(said.lower().split("get /b2b/orders/sent.bin")[1]), said
    assert not (tmp_path / "back.bin").exists()
    assert pair.landed("sent.bin") == b"b2b"
    ftp = pair.ftp()
    try:
        with pytest.raises(ftplib.error_perm, match="outboxes"):
            ftp.storbinary("STOR /b2b/x.bin", io.BytesIO(b"b2b"))
        with pytest.raises(ftplib.error_perm):
            ftp.mkd("/b2b/mine")
        with pytest.raises(ftplib.error_perm):
            ftp.rmd("/b2b/orders")
        with pytest.raises(ftplib.error_perm, match="cannot be deleted"):
            ftp.delete("/b2b/orders/sent.bin")
    finally:
        ftp.quit()
    with pair.rest() as rest:
        b2b = folder_named(rest, "b2b")
        answer = upload(rest, b2b["id"], "x.bin", b"b2b")
        assert answer.status_code == 403 and "b2b/<outbox>" in answer.json()["message"]
    assert [r["file"] for r in pair.history()] == ["sent.bin"]


def test_renaming_across_outboxes_is_refused(pair: Pair, tmp_path: Path) -> None:
    up = pair.system
    cli_json(
        up, "connect", "invite", "--account", pair.sender, "--send", "--outbox", "second",
        "--email", "ops@home.example", "--name", "to-home-2",
    )  # fmt: skip
    (tmp_path / "x.bin.part").write_bytes(b"moved")
    said = pair.sftp(
        "put x.bin.part /b2b/orders/x.bin.part\n"
        "-rename /b2b/orders/x.bin.part /b2b/second/x.bin\n"
        "-rename /b2b/orders/x.bin.part /b2b/x.bin\n"
        "-rename /b2b/orders/x.bin.part /x.bin\n",
        tmp_path,
    )
    assert said.lower().count("failure") + said.lower().count("denied") >= 3, said
    ftp = pair.ftp()
    try:
        with pytest.raises(ftplib.error_perm, match="within one outbox"):
            ftp.rename("/b2b/orders/x.bin.part", "/b2b/second/x.bin")
    finally:
        ftp.quit()
    nothing_received(pair)
    second = cli_json(up, "transfers", "--connection", "to-home-2", "--account", pair.sender)
    assert second == []


def test_a_partner_login_sees_no_b2b(pair: Pair, tmp_path: Path) -> None:
    partner = unique("widgets")
    pair.system.cli("partner", "add", partner, "--password", PASSWORD, "--account", pair.sender)
    said = pair.sftp("ls -1 /\n-ls -1 /b2b\n-ls -1 /b2b/orders\n", tmp_path, user=partner)
    assert "upload" in said and "download" in said and refused(said), said
    assert "orders" not in said.replace("/b2b/orders", ""), said
    (tmp_path / "x.bin").write_bytes(b"partner")
    said = pair.sftp("put x.bin /b2b/orders/x.bin\n", tmp_path, user=partner)
    assert refused(said), said
    ftp = pair.ftp(user=partner)
    try:
        assert sorted(n.rpartition("/")[2] for n in ftp.nlst("/")) == ["download", "upload"]
        with pytest.raises(ftplib.error_perm):
            ftp.cwd("/b2b")
        with pytest.raises(ftplib.error_perm):
            ftp.storbinary("STOR /b2b/orders/x.bin", io.BytesIO(b"partner"))
    finally:
        ftp.quit()
    with pair.rest(partner) as rest:
        home = rest.get("/api/folders").json()["resources"][0]
        children = rest.get(f"/api/folders/{home['id']}/children").json()["resources"]
        assert sorted(c["name"] for c in children) == ["download", "upload"]
        assert rest.get(f"/api/connections/{pair.id}/files").status_code == 403
    nothing_received(pair)

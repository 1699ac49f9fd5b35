"""Accounts as tenants through every door at once: the REST API (uvicorn, httpx), SFTP (OpenSSH's
sftp, paramiko) and FTP (ftplib), served from one home as `tradelane up` serves them and configured
with the `tradelane` command.

* A partner of another account logs in everywhere and its files land in that account's folders;
  one account's logins reach nothing of another's, by id or by name.
* An account user logs in with its e-mail address over the same doors and sees its home with
  `b2b/` in it, whose children are the account's outboxes (core/mailbox/outboxes.py) - its own
  account's only; it can write nothing outside them, and its sessions end with its login.
"""

from __future__ import annotations

import ftplib
import io
import itertools
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import paramiko
import pytest
import uvicorn
from sqlmodel import select
from typer.testing import CliRunner

from api.app import create_app
from cli.main import app as cli_app
from core import db
from core.config import get_settings
from core.crypto import signing_key
from core.db import session_scope
from core.endpoints.mailbox import mailbox_root_for
from core.mailbox import outboxes
from core.models import Account, AuditEvent, Partner, Receipt
from core.tenancy import Scope
from mailboxes.auth import MailboxAuth
from mailboxes.ftp import FTPServer
from mailboxes.sftp import SFTPServer
from tests.isolation import isolated_home
from tests.servers import require_tool
from tests.waiting import wait_for

SSHPASS = require_tool("sshpass")
SFTP = require_tool("sftp")
runner = CliRunner()
_names = itertools.count(1)
PASSWORD = "Acc0unts-Door-Pass"
_UNSET = [k for k in os.environ if k.startswith("TRADELANE_") and k != "TRADELANE_HOME"]
# Every login here comes from 127.0.0.1: failures in one test must not ban it for the next.
LENIENT = {"TRADELANE_LOCKOUT_FAILURES": "100000", "TRADELANE_LOCKOUT_ACCOUNT_FAILURES": "100000"}


@dataclass
class Doors:
    api: str
    sftp: SFTPServer
    ftp: FTPServer


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    saved = {key: os.environ.pop(key) for key in _UNSET}
    os.environ.update(LENIENT)
    try:
        with isolated_home(tmp_path_factory.mktemp("accounts-doors")):
            db.init_db()
            settings = get_settings()
            auth = MailboxAuth()
            sftp = SFTPServer(settings.model_copy(update={"sftp_port": 0}), auth)
            ftp_settings = {"ftp_port": 0, "ftp_passive_ports": "", "ftp_require_tls": False}
            ftp = FTPServer(settings.model_copy(update=ftp_settings), auth)
            ftp.handler.auth_failed_timeout = 0.01
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.bind(("127.0.0.1", 0))
            config = uvicorn.Config(create_app(), log_level="warning", lifespan="off", http="h11")
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()
            sftp.start()
            ftp.start()
            wait_for(lambda: server.started, "uvicorn to start")
            try:
                yield Doors(f"http://127.0.0.1:{sock.getsockname()[1]}", sftp, ftp)
            finally:
                server.should_exit = True
                thread.join(15)
                sftp.stop()
                ftp.stop()
                sock.close()
    finally:
        for key in LENIENT:
            os.environ.pop(key, None)
        os.environ.update(saved)


def cli(*args: str, ok: bool = True) -> str:
    result = runner.invoke(cli_app, list(args))
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def new_account() -> tuple[str, str]:
    """A fresh account and its admin's e-mail address."""
    n = next(_names)
    name, email = f"acct{n}", f"Admin{n}@Acct{n}.example"
    cli("account", "add", name, "--email", email, "--password", PASSWORD)
    return name, email.lower()


def new_partner(account: str) -> str:
    name = f"{account}-p{next(_names)}"
    cli("partner", "add", name, "--password", PASSWORD, "--account", account)
    return name


# --- REST -----------------------------------------------------------------------------------------


def token(doors: Doors, username: str, password: str = PASSWORD) -> str:
    with httpx.Client(base_url=doors.api, timeout=30) as client:
        data = {"grant_type": "password", "username": username, "password": password}
        r = client.post("/api/authentication", data=data)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def get(doors: Doors, bearer: str, path: str) -> httpx.Response:
    with httpx.Client(base_url=doors.api, timeout=30) as client:
        return client.get(path, headers={"Authorization": f"Bearer {bearer}"})


def folders(doors: Doors, bearer: str) -> dict[str, dict[str, object]]:
    """The login's folders by subspace ("home" for its home), walked from GET /api/folders."""
    home = get(doors, bearer, "/api/folders").json()["resources"][0]
    found: dict[str, dict[str, object]] = {"home": home}
    todo = [home]
    while todo:
        r = get(doors, bearer, f"/api/folders/{todo.pop()['id']}/children")
        assert r.status_code == 200, r.text
        for child in r.json()["resources"]:
            found[str(child["subspace"]) + ("" if child["subspace"] != "outbox" else f":{child['name']}")] = (
                child
            )
            todo.append(child)
    return found


def upload(doors: Doors, bearer: str, folder_id: object, name: str, data: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}", "Content-Disposition": f"attachment; filename={name}"}
    with httpx.Client(base_url=doors.api, timeout=30) as client:
        return client.post(f"/api/folders/{folder_id}/files", headers=headers, content=data)


# --- SFTP (OpenSSH) and FTP ---------------------------------------------------------------------


def openssh_sftp(doors: Doors, user: str, commands: str, cwd: Path) -> str:
    """Run an OpenSSH sftp batch as `user` (a partner's name or an e-mail address)."""
    done = subprocess.run(
        [SSHPASS, "-p", PASSWORD, SFTP, "-o", "BatchMode=no", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no", "-o", "LogLevel=ERROR",
         "-o", f"User={user}", "-P", str(doors.sftp.port), "-b", "-", "127.0.0.1"],
        input=commands.encode(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd, timeout=60,
    )  # fmt: skip
    return done.stdout.decode()


def ftp_login(doors: Doors, user: str, password: str = PASSWORD) -> ftplib.FTP:
    client = ftplib.FTP(timeout=10)
    client.connect("127.0.0.1", doors.ftp.port)
    try:
        client.login(user, password)
    except BaseException:
        client.close()
        raise
    return client


def paramiko_sftp(doors: Doors, user: str) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", doors.sftp.port), 10))
    try:
        transport.connect(username=user, password=PASSWORD)
        return transport, paramiko.SFTPClient.from_transport(transport)
    except BaseException:
        transport.close()
        raise


def receipts(partner: str) -> list[Receipt]:
    with session_scope() as session:
        row = session.exec(select(Partner).where(Partner.name == partner)).one()
        return list(session.exec(select(Receipt).where(Receipt.partner_id == row.id)))


def account_id(name: str) -> int:
    with session_scope() as session:
        value = session.exec(select(Account.id).where(Account.name == name)).one()
        assert value is not None
        return value


# --- partners of another account ---------------------------------------------------------------


def test_a_partner_of_another_account_lands_in_that_accounts_folders(doors: Doors, tmp_path: Path) -> None:
    account, _ = new_account()
    partner = new_partner(account)
    home = mailbox_root_for(account, partner)
    assert home == get_settings().mailbox_root / account / partner
    bearer = token(doors, partner)
    r = upload(doors, bearer, folders(doors, bearer)["upload"]["id"], "rest.json", b'{"via": "rest"}')
    assert r.status_code == 201, r.text
    (tmp_path / "sftp.json").write_bytes(b'{"via": "sftp"}')
    said = openssh_sftp(doors, partner, "cd upload\nput sftp.json\nls -1\n", tmp_path)
    assert "sftp.json" in said, said
    client = ftp_login(doors, partner)
    try:
        client.storbinary("STOR /upload/ftp.json", io.BytesIO(b'{"via": "ftp"}'))
    finally:
        client.quit()
    for name in ("rest.json", "sftp.json", "ftp.json"):
        assert (home / "upload" / name).is_file(), name
    got = receipts(partner)
    assert sorted(r.name for r in got) == ["ftp.json", "rest.json", "sftp.json"]
    assert {r.account_id for r in got} == {account_id(account)}
    assert {r.visible_path for r in got} == {
        f"{account}/{partner}/upload/{n}" for n in ("ftp.json", "rest.json", "sftp.json")
    }
    assert not (get_settings().mailbox_root / "home" / partner).exists()


def test_one_account_reaches_nothing_of_another_by_id_or_by_name(doors: Doors) -> None:
    mine, theirs = new_partner("home"), new_partner(new_account()[0])
    my_token, their_token = token(doors, mine), token(doors, theirs)
    their_folders = folders(doors, their_token)
    r = upload(doors, their_token, their_folders["upload"]["id"], "secret.csv", b"a,b\n")
    assert r.status_code == 201, r.text
    their_file = r.json()["id"]
    for folder in their_folders.values():
        for path in (f"/api/folders/{folder['id']}", f"/api/folders/{folder['id']}/files"):
            answer = get(doors, my_token, path)
            assert answer.status_code == 404, (path, answer.text)  # not 403: it does not exist for me
    assert get(doors, my_token, f"/api/files/{their_file}").status_code == 404
    assert upload(doors, my_token, their_folders["upload"]["id"], "x.csv", b"x").status_code == 404
    # Names: no path of mine leads to their home, over SFTP or FTP.
    transport, client = paramiko_sftp(doors, mine)
    try:
        assert sorted(client.listdir("/")) == ["download", "upload"]
        for path in (f"/../{theirs}/upload", f"/{theirs}/upload/secret.csv", "/../../../home"):
            with pytest.raises(OSError):
                client.stat(path)
    finally:
        client.close()
        transport.close()
    ftp = ftp_login(doors, mine)
    try:
        with pytest.raises(ftplib.error_perm):
            ftp.retrbinary(f"RETR /../{theirs}/upload/secret.csv", lambda _: None)
    finally:
        ftp.quit()


# --- account users ------------------------------------------------------------------------------


def test_an_account_user_logs_in_everywhere_and_sees_b2b(doors: Doors, tmp_path: Path) -> None:
    account, email = new_account()
    bearer = token(doors, email.upper())  # an address is compared in lower case
    seen = folders(doors, bearer)
    assert seen["home"]["name"] == email and seen["home"]["permissions"] == ["list"]
    assert set(seen) == {"home", "b2b"} and seen["b2b"]["name"] == "b2b"
    assert get(doors, bearer, f"/api/folders/{seen['b2b']['id']}/children").json()["resources"] == []
    assert get(doors, bearer, f"/api/folders/{seen['home']['id']}/files").json()["resources"] == []
    refused = upload(doors, bearer, seen["home"]["id"], "x.json", b"{}")
    assert refused.status_code == 403 and "account user" in refused.json()["message"]
    # SFTP (OpenSSH) and FTP show the same tree, and take no file outside an outbox.
    (tmp_path / "x.json").write_bytes(b"{}")
    said = openssh_sftp(doors, email, "ls -1 /\nls -1 /b2b\n", tmp_path)
    assert "b2b" in said and "upload" not in said, said
    said = openssh_sftp(doors, email, "put x.json /x.json\n", tmp_path)
    assert "outboxes" in said or "denied" in said.lower() or "failure" in said.lower(), said
    client = ftp_login(doors, email)
    try:
        assert client.nlst("/") == ["b2b"] or client.nlst("/") == ["/b2b"]
        assert client.nlst("/b2b") == []
        with pytest.raises(ftplib.error_perm, match="outboxes"):
            client.storbinary("STOR /x.json", io.BytesIO(b"{}"))
        with pytest.raises(ftplib.error_perm):
            client.mkd("/b2b/mine")
    finally:
        client.quit()
    with session_scope() as session:
        logins = session.exec(
            select(AuditEvent).where(AuditEvent.action == "login", AuditEvent.actor == f"user:{email}")
        ).all()
    assert {e.detail["protocol"] for e in logins} >= {"rest", "sftp", "ftp"}
    assert {e.account_id for e in logins} == {account_id(account)}


def test_b2b_children_are_the_accounts_outboxes_and_only_its_own(
    doors: Doors, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account, email = new_account()
    other, other_email = new_account()

    def boxes(session: object, scope: Scope) -> list[outboxes.Outbox]:  # what connections fill in
        names = {account: ["invoices", "orders"], other: ["theirs"]}.get(scope.account_name, [])
        return [outboxes.Outbox(name, 0, "active", allow_view=False) for name in names]

    monkeypatch.setattr(outboxes, "outboxes", boxes)
    bearer = token(doors, email)
    seen = folders(doors, bearer)
    assert {k for k in seen if k.startswith("outbox:")} == {"outbox:orders", "outbox:invoices"}
    assert seen["outbox:orders"]["parentId"] == seen["b2b"]["id"]
    said = openssh_sftp(doors, email, "ls -1 /b2b\n", tmp_path)
    assert "orders" in said and "invoices" in said and "theirs" not in said, said
    client = ftp_login(doors, email)
    try:
        assert sorted(n.rpartition("/")[2] for n in client.nlst("/b2b")) == ["invoices", "orders"]
        with pytest.raises(ftplib.error_perm):
            client.cwd("/b2b/theirs")
    finally:
        client.quit()
    # Another account's outbox id is nobody's folder here.
    other_seen = folders(doors, token(doors, other_email))
    assert get(doors, bearer, f"/api/folders/{other_seen['outbox:theirs']['id']}").status_code == 404


def test_account_user_logins_are_refused_and_end_with_the_user(doors: Doors) -> None:
    account, email = new_account()
    cli("account", "user", "add", f"ops@{account}.example", "--role", "operator", "--password", PASSWORD,
        "--account", account)  # fmt: skip
    ops = f"ops@{account}.example"
    with httpx.Client(base_url=doors.api, timeout=30) as client:
        data = {"grant_type": "password", "username": ops, "password": "Wrong-Pass-123456"}
        assert client.post("/api/authentication", data=data).status_code == 401
    bearer = token(doors, ops)
    transport, sftp = paramiko_sftp(doors, ops)
    try:
        assert sftp.listdir("/") == ["b2b"]
        cli("account", "user", "set", ops, "--role", "read-only", "--account", account)
        # A lower role ends its sessions and tokens (the watcher reads users as it reads partners).
        wait_for(lambda: not transport.is_active(), "the user's SFTP session to end", 15)
        assert get(doors, bearer, "/api/folders").status_code == 401
    finally:
        sftp.close()
        transport.close()
    cli("account", "user", "set", ops, "--disable", "--account", account)
    with pytest.raises(ftplib.error_perm):
        ftp_login(doors, ops).close()
    cli("account", "user", "remove", ops, "--account", account)
    with pytest.raises(paramiko.AuthenticationException):
        paramiko_sftp(doors, ops)
    # A token naming a partner's uid as a user (or the reverse) is nobody's.
    partner = new_partner(account)
    with session_scope() as session:
        uid = session.exec(select(Partner.uid).where(Partner.name == partner)).one()
    now = int(time.time())
    forged = {"sub": uid, "name": partner, "knd": "u", "iat": now, "exp": now + 60, "typ": "access"}
    forged_token = jwt.encode(forged, signing_key(), algorithm="HS256")
    assert get(doors, forged_token, "/api/folders").status_code == 401
    # A token from before account users (no `knd`) is still a partner's.
    old = {k: v for k, v in forged.items() if k != "knd"}
    assert get(doors, jwt.encode(old, signing_key(), algorithm="HS256"), "/api/folders").status_code == 200
    assert get(doors, token(doors, partner), "/api/folders").status_code == 200
    # An admin's token is refused on a partner's file routes with a reason, not a crash; a file's
    # metadata answers account users too (an outbox's listed files), so a bogus id is just not found.
    answer = get(doors, token(doors, email), "/api/files/bm90LWEtZmlsZQ/content")
    assert answer.status_code == 403 and "account user" in answer.json()["message"]
    assert get(doors, token(doors, email), "/api/files/bm90LWEtZmlsZQ").status_code == 404

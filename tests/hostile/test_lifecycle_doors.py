"""The login policy, per-partner settings and the end of sessions, through every door at once: the
REST API (uvicorn, httpx), SFTP (paramiko and OpenSSH's sftp) and FTP (ftplib), served from one
home as `tradelane up` serves them, and changed with the `tradelane` command as an operator would.

Clients connect from addresses of their own (127.x.y.z: all of 127/8 is loopback), so bans are per
test; the thresholds are the defaults (TRADELANE_LOCKOUT_FAILURES=5, account lock on 10 failures
from 3 addresses).
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import itertools
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paramiko
import pytest
import uvicorn
from sqlmodel import col, select
from typer.testing import CliRunner

from api.app import create_app
from cli.main import app as cli_app
from core import db, partners
from core.config import get_settings
from core.db import HOME_ACCOUNT, session_scope
from core.endpoints.mailbox import mailbox_root_for
from core.models import AuditEvent, Receipt
from core.models import Partner as PartnerRow
from core.sessions import shared_registry
from mailboxes.auth import MailboxAuth
from mailboxes.ftp import FTPServer
from mailboxes.sftp import SFTPServer
from tests.addresses import fresh_loopback
from tests.isolation import isolated_home
from tests.servers import require_tool
from tests.tenancy import home_scope
from tests.waiting import wait_for

SSHPASS = require_tool("sshpass")
SFTP = require_tool("sftp")
runner = CliRunner()
_names = itertools.count(1)
# The defaults are what this module tests; a developer's shell must not change them.
_UNSET = [k for k in os.environ if k.startswith("TRADELANE_") and k != "TRADELANE_HOME"]


@dataclass
class Doors:
    api: str
    sftp: SFTPServer
    ftp: FTPServer


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    saved = {key: os.environ.pop(key) for key in _UNSET}
    try:
        with isolated_home(tmp_path_factory.mktemp("lifecycle-doors")):
            db.init_db()
            settings = get_settings()
            # One MailboxAuth with the process's settings: the same session registry as the API.
            auth = MailboxAuth()
            sftp = SFTPServer(settings.model_copy(update={"sftp_port": 0}), auth)
            # Plain FTP, opted in (TLS is required by default; tests/hostile/test_exhaust_ftp.py).
            ftp_settings = {"ftp_port": 0, "ftp_passive_ports": "", "ftp_require_tls": False}
            ftp = FTPServer(settings.model_copy(update=ftp_settings), auth)
            ftp.handler.auth_failed_timeout = 0.01  # pyftpdlib waits 3 s before answering a bad login
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
        os.environ.update(saved)


def cli(*args: str, ok: bool = True) -> str:
    result = runner.invoke(cli_app, list(args))
    assert (result.exit_code == 0) == ok, result.output
    return result.output


@dataclass
class Partner:
    name: str
    password: str

    @property
    def home(self) -> Path:
        return mailbox_root_for(HOME_ACCOUNT, self.name)


def new_partner(prefix: str = "door") -> Partner:
    name, password = f"{prefix}{next(_names)}", f"Door-Pass-{os.urandom(4).hex()}"
    cli("partner", "add", name, "--password", password)
    return Partner(name, password)


# --- the three doors ------------------------------------------------------------------------------


def rest(doors: Doors, source: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source) if source else None
    return httpx.Client(base_url=doors.api, transport=transport, timeout=30)


def rest_login(doors: Doors, name: str, password: str, source: str | None = None) -> httpx.Response:
    with rest(doors, source) as client:
        data = {"grant_type": "password", "username": name, "password": password}
        return client.post("/api/authentication", data=data)


def rest_token(doors: Doors, p: Partner, source: str | None = None) -> str:
    r = rest_login(doors, p.name, p.password, source)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def rest_upload(doors: Doors, token: str, name: str, data: bytes) -> httpx.Response:
    with rest(doors) as client:
        auth = {"Authorization": f"Bearer {token}"}
        home = client.get("/api/folders", headers=auth).json()["resources"][0]["id"]
        children = client.get(f"/api/folders/{home}/children", headers=auth).json()["resources"]
        upload = next(f["id"] for f in children if f["subspace"] == "upload")
        headers = {**auth, "Content-Disposition": f"attachment; filename={name}"}
        return client.post(f"/api/folders/{upload}/files", headers=headers, content=data)


def rest_downloads(doors: Doors, token: str) -> list[str]:
    with rest(doors) as client:
        auth = {"Authorization": f"Bearer {token}"}
        home = client.get("/api/folders", headers=auth).json()["resources"][0]["id"]
        children = client.get(f"/api/folders/{home}/children", headers=auth).json()["resources"]
        download = next(f["id"] for f in children if f["subspace"] == "download")
        files = client.get(f"/api/folders/{download}/files", headers=auth).json()["resources"]
        return [f["name"] for f in files]


@dataclass
class Sftp:
    transport: paramiko.Transport
    client: paramiko.SFTPClient

    def close(self) -> None:
        self.client.close()
        self.transport.close()


def sftp(doors: Doors, name: str, password: str, source: str | None = None) -> Sftp:
    sock = socket.create_connection(("127.0.0.1", doors.sftp.port), 10, (source or "127.0.0.1", 0))
    try:
        transport = paramiko.Transport(sock)
        try:
            transport.connect(username=name, password=password)
            return Sftp(transport, paramiko.SFTPClient.from_transport(transport))
        except BaseException:
            transport.close()
            raise
    except BaseException:
        sock.close()  # Transport.close() does nothing for a transport that never became active
        raise


def sftp_refused(doors: Doors, name: str, password: str, source: str | None = None) -> bool:
    try:
        sftp(doors, name, password, source).close()
    except paramiko.AuthenticationException:
        return True
    return False


def ftp(doors: Doors, name: str, password: str, source: str | None = None) -> ftplib.FTP:
    client = ftplib.FTP(timeout=10, source_address=(source, 0) if source else None)
    try:  # a refused connection or login closes its socket here, not in the garbage collector
        client.connect("127.0.0.1", doors.ftp.port)
        client.login(name, password)
    except BaseException:
        client.close()
        raise
    return client


def ftp_refusal(doors: Doors, name: str, password: str, source: str | None = None) -> str:
    with pytest.raises(ftplib.error_perm) as refused:
        ftp(doors, name, password, source).close()
    return str(refused.value)


def audit(action: str, target: str) -> list[AuditEvent]:
    with session_scope() as session:
        query = select(AuditEvent).where(AuditEvent.action == action, AuditEvent.target == target)
        return list(session.exec(query))


def receipts_of(name: str) -> list[Receipt]:
    with session_scope() as session:
        partner = partners.get(session, home_scope(session), name)
        assert partner is not None
        return list(session.exec(select(Receipt).where(Receipt.partner_id == partner.id)))


# --- lockout is no longer a weapon ----------------------------------------------------------------


def test_five_bad_rest_logins_ban_the_address_and_leave_the_partner_alone(doors: Doors) -> None:
    p, guesser = new_partner(), fresh_loopback()
    for _ in range(5):
        assert rest_login(doors, p.name, "not-the-password", guesser).status_code == 401
    # The address is banned on every door, whatever user it tries, even with the right password...
    banned = rest_login(doors, p.name, p.password, guesser)
    assert banned.status_code == 429 and int(banned.headers["retry-after"]) > 0
    assert sftp_refused(doors, p.name, p.password, guesser)
    assert "Too many failed logins" in ftp_refusal(doors, p.name, p.password, guesser)
    assert audit("address.ban", guesser)
    # ...and the partner, from anywhere else, is not locked out of anything.
    elsewhere = fresh_loopback()
    assert rest_login(doors, p.name, p.password, elsewhere).status_code == 200
    sftp(doors, p.name, p.password, elsewhere).close()
    ftp(doors, p.name, p.password, elsewhere).quit()
    assert not audit("partner.lock", p.name)


def test_an_account_locks_only_on_failures_from_several_addresses_and_unlock_lifts_it(doors: Doors) -> None:
    p = new_partner()
    live = sftp(doors, p.name, p.password, fresh_loopback())  # a session from before the attack
    one, two, three = fresh_loopback(), fresh_loopback(), fresh_loopback()
    for _ in range(4):  # under the per-address ban, from each of three addresses, on every door
        assert rest_login(doors, p.name, "guess", one).status_code == 401
        assert sftp_refused(doors, p.name, "guess", two)
    for _ in range(2):
        assert ftp_refusal(doors, p.name, "guess", three) == "530 Login incorrect."
    [lock] = audit("partner.lock", p.name)
    assert lock.detail["addresses"] == 3 and lock.detail["failures"] == 10
    # Locked: the right password reads exactly as a wrong one, on every door, from anywhere...
    anywhere = fresh_loopback()
    wrong = rest_login(doors, p.name, "guess", anywhere)
    right = rest_login(doors, p.name, p.password, anywhere)
    assert right.status_code == wrong.status_code == 401 and right.json() == wrong.json()
    assert sftp_refused(doors, p.name, p.password, anywhere)
    assert ftp_refusal(doors, p.name, p.password, anywhere) == "530 Login incorrect."
    # ...and the session that was open is ended.
    wait_for(lambda: not live.transport.is_active(), "the locked partner's SFTP session to end")
    [listed] = [row for row in _partner_list() if row["name"] == p.name]
    assert listed["locked_until"]
    # The CLI lifts the lock in the running servers at once.
    assert "unlocked" in cli("partner", "unlock", p.name)
    assert rest_login(doors, p.name, p.password, anywhere).status_code == 200
    sftp(doors, p.name, p.password, anywhere).close()
    ftp(doors, p.name, p.password, anywhere).quit()


def _partner_list() -> list[dict[str, object]]:
    import json

    rows: list[dict[str, object]] = json.loads(cli("partner", "list", "--json"))
    return rows


# --- partner settings, each enforced on REST, SFTP and FTP ----------------------------------------


def test_the_allow_list_is_enforced_on_every_door(doors: Doors) -> None:
    p, me = new_partner(), fresh_loopback()  # its refusals count against this address alone
    token = rest_token(doors, p, me)
    live = sftp(doors, p.name, p.password, me)
    cli("partner", "set", p.name, "--allow-ip", "10.20.0.0/16")
    assert rest_login(doors, p.name, p.password, me).status_code == 401
    assert sftp_refused(doors, p.name, p.password, me)
    assert ftp_refusal(doors, p.name, p.password, me) == "530 Login incorrect."
    with rest(doors) as client:  # a token from before no longer works from outside the list
        assert client.get("/api/folders", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    wait_for(lambda: not live.transport.is_active(), "the SFTP session from outside the list to end")
    cli("partner", "set", p.name, "--allow-ip", "10.20.0.0/16", "--allow-ip", "127.0.0.0/8")
    assert rest_login(doors, p.name, p.password, me).status_code == 200
    sftp(doors, p.name, p.password, me).close()
    ftp(doors, p.name, p.password, me).quit()
    [row] = [r for r in _partner_list() if r["name"] == p.name]
    assert row["allowed_networks"] == ["10.20.0.0/16", "127.0.0.0/8"]
    cli("partner", "set", p.name, "--clear-allow-ip")
    assert rest_login(doors, p.name, p.password, fresh_loopback()).status_code == 200


def test_the_file_size_limit_is_enforced_on_every_door(doors: Doors) -> None:
    p, me = new_partner(), fresh_loopback()  # its refusals count against this address alone
    cli("partner", "set", p.name, "--max-file-size", "1KiB")
    token = rest_token(doors, p, me)
    assert rest_upload(doors, token, "big.bin", os.urandom(2048)).status_code == 413
    assert rest_upload(doors, token, "small.bin", os.urandom(1000)).status_code == 201
    conn = sftp(doors, p.name, p.password, me)
    try:
        with pytest.raises(OSError):
            conn.client.putfo(io.BytesIO(os.urandom(2048)), "/upload/big-sftp.bin")
        conn.client.putfo(io.BytesIO(os.urandom(1000)), "/upload/small-sftp.bin")
    finally:
        conn.close()
    client = ftp(doors, p.name, p.password, me)
    try:
        with pytest.raises(ftplib.error_perm, match=r"^552"):
            client.storbinary("STOR upload/big-ftp.bin", io.BytesIO(os.urandom(2048)))
        client.storbinary("STOR upload/small-ftp.bin", io.BytesIO(os.urandom(1000)))
    finally:
        client.close()
    assert sorted(r.name for r in receipts_of(p.name)) == ["small-ftp.bin", "small-sftp.bin", "small.bin"]
    [row] = [r for r in _partner_list() if r["name"] == p.name]
    assert row["max_file_bytes"] == 1024


def test_the_session_limit_counts_every_door(doors: Doors) -> None:
    p, me = new_partner(), fresh_loopback()  # its refusals count against this address alone
    cli("partner", "set", p.name, "--max-sessions", "1")
    token = rest_token(doors, p, me)  # a token is not a session; a transfer is
    first = sftp(doors, p.name, p.password, me)
    try:
        with pytest.raises(paramiko.SSHException):
            sftp(doors, p.name, p.password, me).close()
        assert "Too many sessions" in ftp_refusal(doors, p.name, p.password, me)
        assert rest_upload(doors, token, "while-busy.bin", b"x").status_code == 429
    finally:
        first.close()
    wait_for(lambda: rest_upload(doors, token, "later.bin", b"x").status_code == 201, "the session to close")
    client = ftp(doors, p.name, p.password, me)  # one at a time, whichever door
    try:
        assert sftp_refused_or_limited(doors, p)
    finally:
        client.quit()
    [row] = [r for r in _partner_list() if r["name"] == p.name]
    assert row["max_sessions"] == 1


def sftp_refused_or_limited(doors: Doors, p: Partner) -> bool:
    try:
        sftp(doors, p.name, p.password).close()
    except paramiko.SSHException:
        return True
    return False


def test_a_new_password_and_disabling_apply_on_every_door(doors: Doors, opened: contextlib.ExitStack) -> None:
    p, me = new_partner(), fresh_loopback()  # its refusals count against this address alone
    token = rest_token(doors, p, me)
    live_ftp = ftp(doors, p.name, p.password, me)
    opened.callback(live_ftp.close)  # the server ends the session; our end is closed here
    new_password = "Brand-New-Pass-42"
    cli("partner", "set", p.name, "--password", new_password)
    assert rest_login(doors, p.name, p.password, me).status_code == 401
    assert sftp_refused(doors, p.name, p.password, me)
    assert ftp_refusal(doors, p.name, p.password, me) == "530 Login incorrect."
    with rest(doors) as client:  # tokens and sessions from before the change end
        assert client.get("/api/folders", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    wait_for(lambda: _ftp_gone(live_ftp), "the FTP session to end after the new password")
    p.password = new_password
    assert rest_login(doors, p.name, p.password, me).status_code == 200
    live_sftp = sftp(doors, p.name, p.password, me)
    assert "disabled" in cli("partner", "set", p.name, "--disable")
    wait_for(lambda: not live_sftp.transport.is_active(), "the disabled partner's SFTP session to end")
    me = fresh_loopback()  # (five refusals from one address would ban it)
    assert rest_login(doors, p.name, p.password, me).status_code == 401
    assert sftp_refused(doors, p.name, p.password, me)
    assert ftp_refusal(doors, p.name, p.password, me) == "530 Login incorrect."
    cli("partner", "set", p.name, "--enable")
    sftp(doors, p.name, p.password, me).close()


def _ftp_gone(client: ftplib.FTP) -> bool:
    try:
        client.voidcmd("NOOP")
    except (OSError, EOFError, ftplib.Error):
        return True
    return False


# --- removal: sessions end, the name starts empty -------------------------------------------------


def test_sessions_of_a_removed_partner_end_and_cannot_upload(
    doors: Doors, tmp_path: Path, opened: contextlib.ExitStack
) -> None:
    p = new_partner()
    paramiko_session = sftp(doors, p.name, p.password)
    opened.callback(paramiko_session.close)
    half = paramiko_session.client.open("/upload/half.bin", "wb")
    half.write(os.urandom(64 * 1024))
    ftp_session = ftp(doors, p.name, p.password)
    opened.callback(ftp_session.close)  # the server ends the session; our end is closed here
    # OpenSSH's sftp, logged in and waiting for its next command on stdin.
    openssh = subprocess.Popen(
        [SSHPASS, "-p", p.password, SFTP, "-o", "BatchMode=no", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no", "-o", "LogLevel=ERROR",
         "-P", str(doors.sftp.port),
         "-b", "-", f"{p.name}@127.0.0.1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    opened.enter_context(openssh)  # its pipes closed (and the process waited for) at the end
    assert openssh.stdin is not None and openssh.stdout is not None
    openssh.stdin.write(b"pwd\n")
    openssh.stdin.flush()
    said = [openssh.stdout.readline() for _ in range(2)]  # "sftp> pwd", then the answer
    assert any(b"Remote working directory" in line for line in said), said

    out = cli("partner", "remove", p.name)
    assert "removed" in out and "sessions end" in out
    wait_for(lambda: not paramiko_session.transport.is_active(), "the paramiko session to end")
    wait_for(lambda: _ftp_gone(ftp_session), "the FTP session to end")
    partner_id = removed_partner(p.name).id
    assert partner_id is not None
    wait_for(lambda: shared_registry().count(partner_id) == 0, "every session of the partner to end")
    # OpenSSH's client finds out when it next speaks: its upload fails, and nothing is received.
    (tmp_path / "late.txt").write_bytes(b"too late")
    with contextlib.suppress(BrokenPipeError):
        openssh.stdin.write(b"put late.txt /upload/late.txt\n")
        openssh.stdin.close()
    assert openssh.wait(30) != 0
    with pytest.raises((OSError, EOFError, paramiko.SSHException)):
        half.write(b"more")
        half.close()  # would have completed the upload
    with pytest.raises(paramiko.AuthenticationException):
        sftp(doors, p.name, p.password)
    assert receipts_of_removed(p.name) == []


def removed_partner(name: str) -> PartnerRow:
    with session_scope() as session:
        query = select(PartnerRow).where(col(PartnerRow.name).startswith(f"{name}.removed."))
        return session.exec(query).one()


def receipts_of_removed(name: str) -> list[Receipt]:
    partner_id = removed_partner(name).id
    with session_scope() as session:
        return list(session.exec(select(Receipt).where(Receipt.partner_id == partner_id)))


def test_a_reused_name_starts_empty_on_every_door(doors: Doors) -> None:
    old = new_partner("reuse")
    (old.home / "download" / "old-company-invoice.edi").write_bytes(b"ISA*old company's invoice")
    conn = sftp(doors, old.name, old.password)  # an unfinished upload, waiting to be resumed
    handle = conn.client.open("/upload/resume-me.bin", "wb")
    handle.write(b"half of the old company's file")
    conn.transport.close()  # dropped before the file was closed: staged for a resume
    staged = get_settings().mailbox_root / ".partial" / HOME_ACCOUNT / old.name / "upload" / "resume-me.bin"
    wait_for(lambda: staged.exists() and staged.stat().st_size > 0, "the staged upload")
    cli("partner", "remove", old.name)

    new = Partner(old.name, "Another-Company-Pass-9")
    cli("partner", "add", new.name, "--password", new.password)
    assert rest_downloads(doors, rest_token(doors, new)) == []
    conn = sftp(doors, new.name, new.password)
    try:
        assert conn.client.listdir("/download") == []
        with pytest.raises(FileNotFoundError):
            conn.client.stat("/upload/resume-me.bin")  # the old company's staged bytes are not here
    finally:
        conn.close()
    client = ftp(doors, new.name, new.password)
    try:
        assert client.nlst("download") == []
    finally:
        client.quit()
    kept = get_settings().mailbox_root / ".removed" / f"partner-{removed_partner(old.name).id}"
    assert (kept / "download" / "old-company-invoice.edi").read_bytes() == b"ISA*old company's invoice"
    assert list((kept / ".partial").rglob("resume-me.bin"))

"""What the exhaust stream's hostile tests share: a throwaway home, partners, and the real servers
(the API under uvicorn+httptools as `tradelane up` serves it, SFTP, FTP/FTPS) started with small
limits so that each cap is reached in a moment.

Test modules take the fixtures with `from tests.hostile.exhaust_support import *`. Attacks come
from 127.0.0.2 (loopback answers all of 127/8), partners from 127.0.0.1, so per-address caps
can be told from caps for everyone.
"""

from __future__ import annotations

import contextlib
import ftplib
import itertools
import os
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
import uvicorn
from sqlmodel import select

from api.app import create_app
from api.server import uvicorn_config
from core import db, partners
from core.config import Settings, get_settings
from core.db import HOME_ACCOUNT, session_scope
from core.endpoints.mailbox import mailbox_root_for
from core.mailbox.view import PARTIAL_DIR_NAME
from core.models import Receipt
from mailboxes.auth import MailboxAuth
from mailboxes.ftp import FTPServer
from mailboxes.sftp import SFTPServer
from tests.isolation import isolated_home
from tests.tenancy import home_scope
from tests.waiting import wait_for as wait_until  # the name test_exhaust_* use

__all__ = [
    "ATTACKER",
    "Partner",
    "api_server",
    "connect_from",
    "exhaust_home",
    "ftp_server",
    "ftps",
    "make_partner",
    "server_closed",
    "settings_with",
    "sftp_login",
    "sftp_server",
    "wait_until",
]

ATTACKER = "127.0.0.2"
_names = itertools.count(1)


@pytest.fixture(scope="module")
def exhaust_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_home(tmp_path_factory.mktemp("tradelane-exhaust")) as home:
        db.init_db()
        yield home


@dataclass
class Partner:
    name: str
    password: str

    @property
    def home(self) -> Path:
        return mailbox_root_for(HOME_ACCOUNT, self.name)

    @property
    def staging(self) -> Path:
        return get_settings().mailbox_root / PARTIAL_DIR_NAME / HOME_ACCOUNT / self.name / "upload"

    def put_download(self, name: str, data: bytes) -> None:
        (self.home / "download").mkdir(parents=True, exist_ok=True)
        (self.home / "download" / name).write_bytes(data)

    def receipts(self) -> list[Receipt]:
        with session_scope() as session:
            partner = partners.require(session, home_scope(session), self.name)
            return list(session.exec(select(Receipt).where(Receipt.partner_id == partner.id)).all())


@pytest.fixture(scope="module")
def make_partner(exhaust_home: Path) -> Callable[[], Partner]:
    def make() -> Partner:
        name = f"x{next(_names)}-{os.urandom(2).hex()}"
        password = f"Pw-{secrets.token_hex(6)}-S3cret-0123"  # never containing the name
        with session_scope() as session:
            partners.add(session, home_scope(session), name, password=password)
        return Partner(name, password)

    return make


def settings_with(**overrides: Any) -> Settings:
    """The home's settings with `overrides` (what each server of a test is started with); logins
    from 127.x are never banned here, so one test's refused clients cannot lock out the next's."""
    lenient = {"lockout_failures": 100_000, "lockout_account_failures": 100_000}
    return get_settings().model_copy(update={**lenient, **overrides})


@contextlib.contextmanager
def sftp_server(**overrides: Any) -> Iterator[SFTPServer]:
    settings = settings_with(sftp_port=0, **overrides)
    server = SFTPServer(settings, MailboxAuth(settings))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def ftp_server(**overrides: Any) -> Iterator[FTPServer]:
    settings = settings_with(ftp_port=0, ftp_passive_ports="", **overrides)
    server = FTPServer(settings, MailboxAuth(settings))
    server.handler.auth_failed_timeout = 0.01  # pyftpdlib waits 3 s before answering a bad login
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def api_server(**overrides: Any) -> Iterator[int]:
    """The API served exactly as `tradelane up` serves it (api.server), on a free port: its port."""
    settings = settings_with(api_port=0, **overrides)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(create_app(), settings, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), "uvicorn to start", timeout=15)
    assert thread.is_alive(), "uvicorn did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def connect_from(port: int, source: str = ATTACKER, timeout: float = 10) -> socket.socket:
    """A raw connection from `source`; the caller closes it (`with connect_from(...) as sock`, or
    an ExitStack for several): one left to the garbage collector is a ResourceWarning, an error."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


def server_closed(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (fails if it does not in time)."""
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def sftp_login(port: int, partner: Partner) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.connect(username=partner.name, password=partner.password)
        client = paramiko.SFTPClient.from_transport(transport)
        assert client is not None
    except BaseException:
        transport.close()
        raise
    return transport, client


def ftps(port: int, partner: Partner | None = None, source: str = "127.0.0.1") -> ftplib.FTP_TLS:
    """An FTPS client (AUTH TLS, PROT P), logged in as `partner` if one is given."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    ftp = ftplib.FTP_TLS(context=context, timeout=10, source_address=(source, 0))
    ftp.connect("127.0.0.1", port, source_address=(source, 0))
    if partner is not None:
        ftp.login(partner.name, partner.password)
        ftp.prot_p()
    return ftp

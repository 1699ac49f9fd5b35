"""A session refused over the partner's session limit is audited once, the same way by every door."""

from __future__ import annotations

import ftplib
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from core.config import Settings
from mailboxes.auth import MailboxAuth
from mailboxes.ftp import FTPServer
from mailboxes.sftp import SFTPServer
from tests.mailboxes.conftest import LENIENT, MakePartner, PartnerLogin


@pytest.fixture(scope="module")
def servers(tradelane_home: Path) -> Iterator[tuple[SFTPServer, FTPServer]]:
    settings = Settings(sftp_port=0, ftp_port=0, ftp_require_tls=False, **LENIENT)
    auth = MailboxAuth(settings)
    with SFTPServer(settings, auth) as sftp, FTPServer(settings, auth) as ftp:
        ftp.handler.auth_failed_timeout = 0.01  # pyftpdlib waits 3 s before answering a bad login
        yield sftp, ftp


def ftp_login(server: FTPServer, partner: PartnerLogin) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=10)
    try:  # a refused login closes its socket here, not in the garbage collector
        ftp.connect("127.0.0.1", server.port)
        ftp.login(partner.name, partner.password)
    except BaseException:
        ftp.close()
        raise
    return ftp


def sftp_login(server: SFTPServer, partner: PartnerLogin) -> paramiko.Transport:
    transport = paramiko.Transport(("127.0.0.1", server.port))
    transport.connect(username=partner.name, password=partner.password)
    return transport


def test_ftp_and_sftp_refusals_read_alike_in_the_audit(
    servers: tuple[SFTPServer, FTPServer], make_partner: MakePartner
) -> None:
    sftp, ftp = servers
    partner = make_partner(max_connections=1)
    first = ftp_login(ftp, partner)
    try:
        with pytest.raises(ftplib.error_perm, match="Too many sessions"):
            ftp_login(ftp, partner)
        transport = sftp_login(sftp, partner)
        try:
            with pytest.raises(paramiko.SSHException):
                paramiko.SFTPClient.from_transport(transport)
        finally:
            transport.close()
    finally:
        first.close()
    events = partner.audit("login.refused")
    assert [(e.detail["protocol"], e.target) for e in events] == [
        ("ftp", partner.name),
        ("sftp", partner.name),
    ]
    assert all("session" in e.detail["reason"] for e in events)
    assert partner.audit("login.failed") == []  # a limit is not a wrong password

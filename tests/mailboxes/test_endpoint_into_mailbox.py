"""tradelane's own sftp and ftp endpoints deliver into tradelane's own SFTP and FTPS mailboxes.

The endpoint uploads under a temporary name and renames when done; the mailbox refuses hidden
names and takes only completed uploads. For each `temp_name` the upload must arrive as exactly one
receipt under its final name, with nothing left staged. The servers and clients are the real ones:
`mailboxes.sftp`/`mailboxes.ftp` on loopback ports, `core.endpoints.sftp`/`core.endpoints.ftp`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings, get_settings
from core.endpoints.base import Endpoint
from core.endpoints.ftp import FtpEndpoint
from core.endpoints.hostkeys import fetch_host_key
from core.endpoints.sftp import SftpEndpoint
from core.mailbox.view import PARTIAL_DIR_NAME
from mailboxes.auth import MailboxAuth
from mailboxes.ftp import FTPServer
from mailboxes.sftp import SFTPServer
from tests.mailboxes.conftest import LENIENT, MakePartner, PartnerLogin

MODES = [None, "suffix", "prefix", "none"]  # None: the endpoint's default


def auth_for(settings: Settings) -> MailboxAuth:
    return MailboxAuth(settings.model_copy(update=LENIENT))


@pytest.fixture(scope="module")
def sftp_mailbox(tradelane_home: Path) -> Iterator[SFTPServer]:
    settings = get_settings().model_copy(update={"sftp_port": 0})
    server = SFTPServer(settings, auth_for(settings))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ftps_mailbox(tradelane_home: Path) -> Iterator[FTPServer]:
    settings = Settings(ftp_port=0, ftp_require_tls=True, ftp_passive_ports="")
    server = FTPServer(settings, auth_for(settings))
    server.start()
    yield server
    server.stop()


def sftp_endpoint(server: SFTPServer, partner: PartnerLogin, mode: str | None) -> SftpEndpoint:
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": partner.name,
        "path": "/upload",
        "host_key": fetch_host_key("127.0.0.1", server.port),
    }
    if mode:
        config["temp_name"] = mode
    return SftpEndpoint(config, {"password": partner.password})


def ftps_endpoint(server: FTPServer, partner: PartnerLogin, mode: str | None) -> FtpEndpoint:
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": partner.name,
        "path": "/upload",
        "tls": "explicit",
        "cafile": str(server.cert_file),  # the mailbox's self-signed certificate, pinned
    }
    if mode:
        config["temp_name"] = mode
    return FtpEndpoint(config, {"password": partner.password})


def deliver_and_check(endpoint: Endpoint, partner: PartnerLogin, protocol: str) -> None:
    data = b'{"po": "850-0001"}\n' * 5000
    with endpoint:
        with endpoint.open_write("po_850.json") as stream:
            stream.write(data[:40_000])
            stream.write(data[40_000:])
        assert [info.path for info in endpoint.list()] == ["po_850.json"]
    [receipt] = partner.receipts()
    assert (receipt.name, receipt.folder, receipt.protocol) == ("po_850.json", "upload", protocol)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest() and receipt.size == len(data)
    assert (partner.home / "upload" / "po_850.json").read_bytes() == data
    staging = get_settings().mailbox_root / PARTIAL_DIR_NAME / "home" / partner.name
    assert not [p for p in staging.rglob("*") if p.is_file()], "something was left staged"


@pytest.mark.parametrize("mode", MODES)
def test_sftp_endpoint_delivers_into_a_tradelane_sftp_mailbox(
    sftp_mailbox: SFTPServer, make_partner: MakePartner, mode: str | None
) -> None:
    partner = make_partner("sftpin")
    deliver_and_check(sftp_endpoint(sftp_mailbox, partner, mode), partner, "sftp")


@pytest.mark.parametrize("mode", MODES)
def test_ftp_endpoint_delivers_into_a_tradelane_ftps_mailbox(
    ftps_mailbox: FTPServer, make_partner: MakePartner, mode: str | None
) -> None:
    partner = make_partner("ftpsin")
    deliver_and_check(ftps_endpoint(ftps_mailbox, partner, mode), partner, "ftp")


@pytest.mark.parametrize("kind", ["sftp", "ftps"])
def test_a_broken_delivery_leaves_no_receipt(
    sftp_mailbox: SFTPServer, ftps_mailbox: FTPServer, make_partner: MakePartner, kind: str
) -> None:
    partner = make_partner("broken")
    endpoint: Endpoint
    if kind == "sftp":
        endpoint = sftp_endpoint(sftp_mailbox, partner, None)
    else:
        endpoint = ftps_endpoint(ftps_mailbox, partner, None)
    with endpoint, pytest.raises(RuntimeError), endpoint.open_write("half.json") as stream:
        stream.write(b"{" * 100_000)
        raise RuntimeError("the sending side broke")
    assert partner.receipts() == []
    assert not (partner.home / "upload" / "half.json").exists()

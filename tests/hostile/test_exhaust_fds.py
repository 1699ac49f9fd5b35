"""File descriptors (issue 10): one partner's open files are capped across sessions and protocols,
and all partners' together, so a greedy partner cannot use up the descriptors others need to log in.
"""

from __future__ import annotations

import ftplib
import io
from collections.abc import Callable

import httpx
import paramiko
import pytest

from core.limits import LimitReached, OpenFiles
from core.login import LoginUser
from mailboxes.auth import MailboxAuth
from mailboxes.ftp import FTPServer
from mailboxes.sftp import SFTPServer
from tests.hostile.exhaust_support import *  # noqa: F403
from tests.hostile.exhaust_support import Partner, api_server, ftps, settings_with, sftp_login, sftp_server


@pytest.fixture
def greedy(make_partner: Callable[[], Partner]) -> Partner:
    partner = make_partner()
    partner.put_download("offer.bin", b"o" * 4096)
    return partner


def open_until_refused(clients: list[paramiko.SFTPClient], tries: int) -> tuple[list[object], str]:
    """Open download/offer.bin over and over on every client; what was opened, and the refusal."""
    opened: list[object] = []
    for client in clients:
        for _ in range(tries):
            try:
                opened.append(client.open("/download/offer.bin", "rb"))
            except OSError as exc:
                return opened, str(exc)
    return opened, ""


def test_open_files_are_capped_per_partner_across_sessions(
    greedy: Partner, make_partner: Callable[[], Partner]
) -> None:
    other = make_partner()
    other.put_download("offer.bin", b"x")
    limits = {"max_open_files_per_partner": 6, "sftp_max_handles_per_session": 100}
    with sftp_server(**limits) as server:
        sessions = [sftp_login(server.port, greedy) for _ in range(3)]
        opened, refusal = open_until_refused([client for _, client in sessions], tries=100)
        assert len(opened) == 6
        assert "too many open files: this login already has 6 open (at most 6)" in refusal
        transport, client = sftp_login(server.port, other)  # another partner is not affected
        assert client.open("/download/offer.bin", "rb").read() == b"x"
        transport.close()
        for transport, _ in sessions:
            transport.close()


def test_sftp_and_ftp_share_one_partners_budget(greedy: Partner) -> None:
    settings = settings_with(sftp_port=0, ftp_port=0, ftp_passive_ports="", max_open_files_per_partner=2)
    auth = MailboxAuth(settings)  # one ledger for both doors, as `tradelane up` has
    with SFTPServer(settings, auth) as sftp_srv, FTPServer(settings, auth) as ftp_srv:
        transport, client = sftp_login(sftp_srv.port, greedy)
        held = [client.open("/download/offer.bin", "rb") for _ in range(2)]
        with ftps(ftp_srv.port, greedy) as ftp:
            with pytest.raises(ftplib.error_temp, match="450 too many open files"):
                ftp.retrbinary("RETR /download/offer.bin", io.BytesIO().write)
            held.pop().close()
            out = io.BytesIO()
            ftp.retrbinary("RETR /download/offer.bin", out.write)
            assert out.getvalue() == b"o" * 4096
        transport.close()


def test_a_greedy_partner_cannot_stop_another_partners_login(
    greedy: Partner, make_partner: Callable[[], Partner]
) -> None:
    """The issue's attack, scaled down: partners opening handles until the process has no descriptors.

    With every partner together allowed 8 open files and each partner 5, two greedy partners
    get 5 + 3; a third partner still logs in over SFTP and REST (which need descriptors of their
    own) and is told clearly, not with a crash, that files are busy.
    """
    second = make_partner()
    second.put_download("offer.bin", b"s")
    third = make_partner()
    third.put_download("offer.bin", b"t")
    limits = {
        "max_open_files_per_partner": 5,
        "mailbox_max_open_files": 8,
        "sftp_max_handles_per_session": 100,
    }
    with sftp_server(**limits) as server, api_server() as api:
        first_sessions = [sftp_login(server.port, greedy) for _ in range(2)]
        second_sessions = [sftp_login(server.port, second) for _ in range(2)]
        first, _ = open_until_refused([c for _, c in first_sessions], tries=50)
        second_opened, refusal = open_until_refused([c for _, c in second_sessions], tries=50)
        assert (len(first), len(second_opened)) == (5, 3)
        assert "too many open files on this server right now" in refusal
        transport, client = sftp_login(server.port, third)  # logs in and lists
        assert client.listdir("/download") == ["offer.bin"]
        with pytest.raises(OSError, match="too many open files on this server"):
            client.open("/download/offer.bin", "rb")
        transport.close()
        r = httpx.post(
            f"http://127.0.0.1:{api}/api/authentication",
            data={"grant_type": "password", "username": third.name, "password": third.password},
        )
        assert r.status_code == 200
        for t, _ in first_sessions + second_sessions:
            t.close()


def test_the_open_files_ledger() -> None:
    ledger = OpenFiles(per_partner=2, total=3)
    ledger.acquire(1)
    ledger.acquire(1)
    with pytest.raises(LimitReached, match="at most 2"):
        ledger.acquire(1)
    ledger.acquire(2)
    with pytest.raises(LimitReached, match="on this server"):
        ledger.acquire(3)
    ledger.release(1)
    ledger.acquire(3)
    ledger.release(9)  # never held: ignored
    assert (ledger.held(1), ledger.held(2), ledger.held(3)) == (1, 1, 1)


def test_a_partner_and_an_account_user_with_the_same_id_are_counted_apart() -> None:
    ledger = OpenFiles(per_partner=1, total=10)
    partner = LoginUser(partner_id=7, account_id=1, name="acme")
    user = LoginUser(partner_id=7, account_id=1, name="ops@acme.example", kind="user")
    ledger.acquire(partner.key)
    ledger.acquire(user.key)  # its own allowance, not the partner's
    with pytest.raises(LimitReached, match="at most 1"):
        ledger.acquire(user.key)
    assert ledger.held(partner.key) == ledger.held(user.key) == 1

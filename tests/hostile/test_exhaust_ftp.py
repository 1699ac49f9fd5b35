"""FTP exhaustion and defaults (issue 10, 14, 16): per-address and total caps, the login grace
time, TLS required by default, and refused resumes that leave nothing behind.

ftplib (FTPS, as partners must now use) and raw sockets against the real server.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import socket
import time
from collections.abc import Callable

import pytest

from core.config import Settings
from tests.hostile.exhaust_support import *  # noqa: F403
from tests.hostile.exhaust_support import (
    ATTACKER,
    Partner,
    connect_from,
    ftp_server,
    ftps,
    server_closed,
    wait_until,
)


def banner(sock: socket.socket) -> str:
    return sock.recv(1024).decode()


def test_tls_is_required_by_default_and_plain_ftp_is_an_explicit_opt_in(
    make_partner: Callable[[], Partner],
) -> None:
    assert Settings().ftp_require_tls is True
    partner = make_partner()
    with ftp_server() as server, ftplib.FTP(timeout=10) as plain:
        plain.connect("127.0.0.1", server.port)
        with pytest.raises(ftplib.error_perm, match="SSL/TLS required"):
            plain.login(partner.name, partner.password)
        with ftps(server.port, partner) as ftp:
            ftp.storbinary("STOR /upload/over-tls.txt", io.BytesIO(b"secret"))
    with ftp_server(ftp_require_tls=False) as server, ftplib.FTP(timeout=10) as plain:
        plain.connect("127.0.0.1", server.port)
        plain.login(partner.name, partner.password)  # the operator opted in
        assert plain.nlst("/upload") == ["over-tls.txt"]


def test_one_address_cannot_take_every_connection(make_partner: Callable[[], Partner]) -> None:
    partner = make_partner()
    with ftp_server(mailbox_max_connections_per_address=3) as server, contextlib.ExitStack() as stack:
        held = [stack.enter_context(connect_from(server.port)) for _ in range(3)]
        assert all(banner(s).startswith("220") for s in held)
        with connect_from(server.port) as refused:
            assert server_closed(refused).startswith(b"421 Too many connections from the same IP")
        with ftps(server.port, partner) as ftp:  # another address: served
            assert sorted(ftp.nlst("/")) == ["download", "upload"]


def test_connections_in_all_are_capped(make_partner: Callable[[], Partner]) -> None:
    with (
        ftp_server(mailbox_max_connections=3, mailbox_max_connections_per_address=0) as server,
        contextlib.ExitStack() as stack,
    ):
        held = [stack.enter_context(connect_from(server.port, f"127.0.0.{n}")) for n in (2, 3, 4, 5)]
        replies = [banner(s)[:3] for s in held]
        assert "421" in replies and "220" in replies


def test_a_connection_that_does_not_log_in_in_time_is_closed_even_if_it_keeps_talking(
    make_partner: Callable[[], Partner],
) -> None:
    partner = make_partner()
    with (
        ftp_server(login_grace_seconds=0.5) as server,
        ftps(server.port, partner) as logged_in,
        connect_from(server.port) as chatty,
    ):
        assert banner(chatty).startswith("220")
        answers = b""
        deadline = time.monotonic() + 10
        while b"421" not in answers and time.monotonic() < deadline:
            try:  # NOOPs reset the idle timer, never the grace time
                chatty.sendall(b"NOOP\r\n")
                answers += chatty.recv(1024)
            except OSError:
                break
            time.sleep(0.05)
        assert b"421 Not logged in within 0.5 seconds; closing." in answers
        assert server_closed(chatty) == b""
        assert logged_in.pwd() == "/"  # a logged-in session is not touched


def test_refused_resumes_leave_no_staging_file(make_partner: Callable[[], Partner]) -> None:
    partner = make_partner()
    with ftp_server() as server, ftps(server.port, partner) as ftp:
        with pytest.raises(ftplib.error_perm, match="cannot resume"):
            ftp.storbinary("STOR /upload/never.bin", io.BytesIO(b"x" * 10), rest=100)
        ftp.storbinary("STOR /upload/done.bin", io.BytesIO(b"whole"))
        with pytest.raises(ftplib.error_perm, match="already received"):
            ftp.storbinary("APPE /upload/done.bin", io.BytesIO(b"more"))
        wait_until(lambda: len(partner.receipts()) == 1, what="the receipt")
    assert not partner.staging.exists() or sorted(p.name for p in partner.staging.iterdir()) == []
    assert sorted(p.name for p in (partner.home / "upload").iterdir()) == ["done.bin"]


def test_a_greedy_session_address_does_not_lock_out_others(make_partner: Callable[[], Partner]) -> None:
    """The issue's attack: 512 idle connections from one address; every partner got 421."""
    partner = make_partner()
    with ftp_server(mailbox_max_connections_per_address=5) as server, contextlib.ExitStack() as stack:
        attempts = [stack.enter_context(connect_from(server.port, ATTACKER)) for _ in range(20)]
        held = [s for s in attempts if banner(s).startswith("220")]
        assert len(held) == 5
        with ftps(server.port, partner) as ftp:
            ftp.storbinary("STOR /upload/po.txt", io.BytesIO(b"po"))
    assert [r.name for r in partner.receipts()] == ["po.txt"]

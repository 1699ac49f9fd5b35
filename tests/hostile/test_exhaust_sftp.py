"""SFTP exhaustion (issue 10): login grace time, MaxStartups, per-address and total caps, channels
that never start the sftp subsystem, handles per session, sparse writes; forged SSH packets (an
absurd length, which paramiko's own reader would sit waiting for, and a bad MAC).

Real paramiko clients (and raw SSH messages where a hostile client would break the rules) against
the real server, started per test with small limits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import paramiko
import pytest
from paramiko.common import cMSG_CHANNEL_DATA

from core.limits import Startups
from mailboxes.sftp import OPEN_WINDOW, WINDOW_SIZE
from tests.hostile.exhaust_support import *  # noqa: F403
from tests.hostile.exhaust_support import (
    ATTACKER,
    Partner,
    connect_from,
    server_closed,
    sftp_login,
    sftp_server,
    wait_until,
)

MIB = 1024 * 1024


def key_exchange_only(port: int, source: str = ATTACKER) -> paramiko.Transport:
    """A client that finishes key exchange and never authenticates (the caller closes it)."""
    sock = connect_from(port, source)
    try:
        transport = paramiko.Transport(sock)
        transport.start_client(timeout=10)
    except BaseException:
        sock.close()  # Transport.close() does nothing for a transport that is not active
        raise
    return transport


def refusal_line(port: int, source: str = ATTACKER) -> str:
    """What the server says to a connection it turns away before the SSH version exchange."""
    with connect_from(port, source) as sock:
        return server_closed(sock).decode()


def test_a_connection_that_does_not_log_in_within_the_grace_time_is_closed(
    make_partner: Callable[[], Partner],
) -> None:
    partner = make_partner()
    with sftp_server(login_grace_seconds=2) as server:
        # Log in first: on a loaded machine an argon2 login can take longer than a short grace.
        transport, client = sftp_login(server.port, partner)
        lingering = key_exchange_only(server.port)
        wait_until(lambda: not lingering.is_active(), what="the server to close the connection")
        assert server.connection_count == 1
        assert client.listdir("/") == ["download", "upload"]  # a logged-in session stays
        transport.close()


def test_max_startups_caps_connections_not_logged_in(make_partner: Callable[[], Partner]) -> None:
    partner = make_partner()
    no_per_address_caps = {"mailbox_max_connections_per_address": 0, "sftp_max_startups_per_address": 0}
    with sftp_server(sftp_max_startups="3", **no_per_address_caps) as server, contextlib.ExitStack() as stack:
        pending = [stack.enter_context(key_exchange_only(server.port, f"127.0.0.{n}")) for n in (2, 3, 4)]
        line = refusal_line(server.port, "127.0.0.5")
        assert "too many connections not logged in yet" in line and "MaxStartups 3:100:3" in line
        pending[0].close()
        wait_until(lambda: server.connection_count == 2, what="the server to see the close")
        transport, client = sftp_login(server.port, partner)  # a slot is free again
        assert client.listdir("/upload") == []
        transport.close()


def test_one_address_cannot_take_every_connection(make_partner: Callable[[], Partner]) -> None:
    partner = make_partner()
    with sftp_server(mailbox_max_connections_per_address=3) as server, contextlib.ExitStack() as held:
        for _ in range(3):
            held.enter_context(key_exchange_only(server.port))
        assert f"too many connections from {ATTACKER} (3)" in refusal_line(server.port)
        transport, client = sftp_login(server.port, partner)  # from 127.0.0.1: served
        assert client.listdir("/") == ["download", "upload"]
        transport.close()


def test_one_address_cannot_fill_the_startups_and_make_logins_a_lottery(
    make_partner: Callable[[], Partner],
) -> None:
    partner = make_partner()
    with sftp_server(sftp_max_startups_per_address=2) as server, contextlib.ExitStack() as pending:
        for _ in range(2):
            pending.enter_context(key_exchange_only(server.port))
        assert f"too many connections from {ATTACKER} not logged in yet (2)" in refusal_line(server.port)
        transport, client = sftp_login(server.port, partner)
        assert client.listdir("/") == ["download", "upload"]
        transport.close()


def test_connections_in_all_are_capped(make_partner: Callable[[], Partner]) -> None:
    with (
        sftp_server(mailbox_max_connections=2, mailbox_max_connections_per_address=0) as server,
        contextlib.ExitStack() as held,
    ):
        for n in (2, 3):
            held.enter_context(key_exchange_only(server.port, f"127.0.0.{n}"))
        assert "too many connections (2)" in refusal_line(server.port, "127.0.0.1")


def test_max_startups_drops_at_random_between_start_and_full() -> None:
    startups = Startups.parse("10:30:100")
    assert not startups.refuse(9, roll=lambda: 0.0)
    assert startups.refuse(10, roll=lambda: 0.29) and not startups.refuse(10, roll=lambda: 0.30)
    assert startups.refuse(55, roll=lambda: 0.64) and not startups.refuse(55, roll=lambda: 0.65)
    assert startups.refuse(100, roll=lambda: 0.999)
    with pytest.raises(ValueError, match="start:rate:full"):
        Startups.parse("10:30")


def _raw_channel_data(transport: paramiko.Transport, channel: paramiko.Channel, data: bytes) -> None:
    """Channel data sent without regard for the window the server offered, as a hostile client does."""
    m = paramiko.Message()
    m.add_byte(cMSG_CHANNEL_DATA)
    m.add_int(channel.remote_chanid)
    m.add_string(data)
    transport._send_user_message(m)


def test_a_channel_without_the_sftp_subsystem_holds_at_most_a_small_window(
    make_partner: Callable[[], Partner],
) -> None:
    partner = make_partner()
    with sftp_server() as server:
        transport = paramiko.Transport(("127.0.0.1", server.port))
        transport.connect(username=partner.name, password=partner.password)
        idle = transport.open_session(timeout=10)
        assert idle.out_window_size == OPEN_WINDOW  # what the server offers a channel nobody reads
        sftp = transport.open_session(timeout=10)
        sftp.invoke_subsystem("sftp")
        wait_until(lambda: sftp.out_window_size > OPEN_WINDOW, what="the window to grow")
        assert sftp.out_window_size == WINDOW_SIZE  # ...and a running sftp session
        sent = 0
        with pytest.raises((EOFError, OSError, paramiko.SSHException)):
            while sent < 16 * MIB:  # the 16 MiB per channel, ignoring the window
                _raw_channel_data(transport, idle, b"x" * 32768)
                sent += 32768
                if not transport.is_active():
                    raise EOFError("disconnected")
        assert sent < 16 * MIB
        wait_until(lambda: server.connection_count == 0, what="the server to drop the connection")


def test_exec_shell_and_other_subsystems_are_refused_and_their_channel_closed(
    make_partner: Callable[[], Partner],
) -> None:
    partner = make_partner()
    with sftp_server() as server:
        transport = paramiko.Transport(("127.0.0.1", server.port))
        transport.connect(username=partner.name, password=partner.password)
        asks = (
            lambda c: c.exec_command("cat /etc/passwd"),
            lambda c: c.invoke_shell(),
            lambda c: c.invoke_subsystem("netconf"),
        )
        for ask in asks:
            channel = transport.open_session(timeout=10)
            with pytest.raises(paramiko.SSHException):
                ask(channel)
            wait_until(lambda c=channel: c.closed, what="the server to close the channel")
        transport.close()


def test_handles_per_session_are_capped(make_partner: Callable[[], Partner]) -> None:
    partner = make_partner()
    partner.put_download("offer.bin", b"o" * 100)
    with sftp_server(sftp_max_handles_per_session=3) as server:
        transport, client = sftp_login(server.port, partner)
        files = [client.open("/download/offer.bin", "rb") for _ in range(3)]
        with pytest.raises(OSError, match="too many open handles in this SFTP session \\(at most 3\\)"):
            client.open("/download/offer.bin", "rb")
        files.pop().close()
        assert client.open("/download/offer.bin", "rb").read() == b"o" * 100
        transport.close()


def test_a_write_past_the_end_is_refused_and_leaves_nothing(make_partner: Callable[[], Partner]) -> None:
    partner = make_partner()
    with sftp_server() as server:
        transport, client = sftp_login(server.port, partner)
        with client.open("/upload/sparse.bin", "wb") as f, pytest.raises(OSError, match="gap"):
            f.seek(100 * MIB - 1)  # one byte at 100 MiB - 1: a 100 MiB file from one byte sent
            f.write(b"x")
            f.flush()
        client.close()
        transport.close()
    assert partner.receipts() == []
    assert not (partner.home / "upload" / "sparse.bin").exists()
    staged = partner.staging / "sparse.bin"
    assert not staged.exists() or staged.stat().st_size == 0


def test_in_order_writes_and_rewrites_are_still_fine(make_partner: Callable[[], Partner]) -> None:
    partner = make_partner()
    with sftp_server() as server:
        transport, client = sftp_login(server.port, partner)
        with client.open("/upload/ok.bin", "wb") as f:
            f.write(b"a" * 1000)
            f.seek(500)
            f.write(b"b" * 1000)
        transport.close()
    [receipt] = partner.receipts()
    assert receipt.size == 1500
    assert (partner.home / "upload" / "ok.bin").read_bytes() == b"a" * 500 + b"b" * 1000


def _etm_login(port: int, partner: Partner) -> paramiko.Transport:
    """A logged-in client that agreed on AES-CTR with an encrypt-then-MAC HMAC, as OpenSSH's does
    with us: its packets take the server's own reader (mailboxes/sftp/fastpath.py)."""
    transport = paramiko.Transport(("127.0.0.1", port))
    options = transport.get_security_options()
    options.ciphers = ("aes128-ctr",)
    options.digests = ("hmac-sha2-256-etm@openssh.com",)
    try:
        transport.connect(username=partner.name, password=partner.password)
    except BaseException:
        transport.close()
        raise
    assert transport.remote_mac == "hmac-sha2-256-etm@openssh.com"
    return transport


@pytest.mark.parametrize(
    "raw",
    [
        (0xFFFFFFF0).to_bytes(4, "big") + bytes(12),  # "4 GiB follow": refused before it is awaited
        (64).to_bytes(4, "big") + bytes(64 + 32),  # a packet whose MAC is wrong
    ],
    ids=["absurd-length", "bad-mac"],
)
def test_a_forged_packet_ends_that_connection_and_no_other(
    make_partner: Callable[[], Partner], raw: bytes
) -> None:
    partner = make_partner()
    with sftp_server() as server:
        bystander, client = sftp_login(server.port, partner)
        forger = _etm_login(server.port, partner)
        try:
            wait_until(lambda: server.connection_count == 2, what="both logins")
            forger.sock.sendall(raw)  # the length is not encrypted under encrypt-then-MAC
            wait_until(lambda: server.connection_count == 1, what="the server to drop the forger")
            assert sorted(client.listdir("/")) == ["download", "upload"]  # the other one goes on
        finally:
            forger.close()
            bystander.close()

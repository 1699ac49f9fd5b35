"""What an unauthenticated (or one greedy) client gets from a real `tradelane up` (issue 10, exhaustion).

    python -m bench.exhaust_probe                  # every probe, against a fresh `tradelane up`
    python -m bench.exhaust_probe rest sftp        # some of them: rest, header, sftp, channels, ftp, fds
    python -m bench.exhaust_probe --wait 40        # how long idle connections are left before counting

Each probe attacks from 127.0.0.2 where it can (loopback answers the whole 127/8), so that partners
logging in from 127.0.0.1 show whether an attacker's address costs anyone else anything. Figures
come from /proc of the `up` process (the API, SFTP and FTP servers all live in it): RSS, threads,
open file descriptors. This is a measurement, not a test: it prints what it saw.
"""

from __future__ import annotations

import argparse
import contextlib
import ftplib
import logging
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import paramiko
from paramiko.common import cMSG_CHANNEL_DATA

from tests.system import System, run_system

ATTACKER = "127.0.0.2"
PASSWORD = "Probe-pw-0123456789"
MIB = 1024 * 1024


# --- the server process ----------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """RSS and peak RSS (MiB), threads and open descriptors of one process."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) // 1024
        elif key == "Threads":
            fields[key] = int(value)
    fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return fields


def settle(seconds: float = 1.0) -> None:
    time.sleep(seconds)


def still_open(sock: socket.socket) -> bool:
    """True while the server has neither answered nor closed this connection."""
    try:
        sock.setblocking(False)
        return sock.recv(1, socket.MSG_PEEK) is None  # pragma: no cover (recv never returns None)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            sock.setblocking(True)


def connect_from(address: str, port: int, source: str = ATTACKER, timeout: float = 10) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect((address, port))
    return sock


def report(title: str, rows: list[tuple[str, object]]) -> None:
    print(f"\n== {title}")
    for key, value in rows:
        print(f"   {key:<58} {value}")
    sys.stdout.flush()


# --- REST --------------------------------------------------------------------------------------


def probe_rest_idle(system: System, wait: float) -> None:
    """300 connections that send nothing and 300 that send half a request header, then wait."""
    pid = system.proc.pid  # type: ignore[union-attr]
    port = int(system.env["TRADELANE_API_PORT"])
    before = proc_status(pid)
    idle: list[socket.socket] = []
    half: list[socket.socket] = []
    refused = 0
    for i in range(600):
        try:
            sock = connect_from("127.0.0.1", port)
        except OSError:
            refused += 1
            continue
        if i % 2:
            with contextlib.suppress(OSError):
                sock.sendall(b"GET /api/folders HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            half.append(sock)
        else:
            idle.append(sock)
    settle()
    answered_at_once = sum(not still_open(s) for s in idle + half)
    during = proc_status(pid)
    time.sleep(wait)
    after = proc_status(pid)
    legit = _rest_login_works(system)
    report(
        f"REST: 300 idle + 300 half-sent connections from {ATTACKER}",
        [
            ("connections refused at connect", refused),
            ("answered/closed within 1 s (refused by a cap)", answered_at_once),
            (f"idle still open after {wait:.0f} s", f"{sum(map(still_open, idle))}/{len(idle)}"),
            (f"half-sent still open after {wait:.0f} s", f"{sum(map(still_open, half))}/{len(half)}"),
            ("server fds before / during / after", f"{before['fds']} / {during['fds']} / {after['fds']}"),
            ("server RSS MiB before / during", f"{before['VmRSS']} / {during['VmRSS']}"),
            ("a partner's REST login from 127.0.0.1 meanwhile", legit),
        ],
    )
    for sock in idle + half:
        sock.close()


def _rest_login_works(system: System) -> str:
    try:
        r = httpx.post(
            f"{system.api}/api/authentication",
            data={"grant_type": "password", "username": "probe-b", "password": PASSWORD},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        return f"failed: {exc!r}"
    return "ok" if r.status_code == 200 else f"HTTP {r.status_code}"


def probe_rest_header(system: System, total: int = 200 * MIB) -> None:
    """One request header that never ends: how much does the server take, and what does it cost?"""
    pid = system.proc.pid  # type: ignore[union-attr]
    port = int(system.env["TRADELANE_API_PORT"])
    before = proc_status(pid)
    sock = connect_from("127.0.0.1", port, timeout=30)
    sock.sendall(b"GET /api/folders HTTP/1.1\r\nHost: x\r\nX-Big: ")
    chunk = b"a" * MIB
    sent = 0
    answer = b""
    started = time.monotonic()
    try:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError as exc:
        answer = f"send failed after {sent // 1024} KiB: {exc.__class__.__name__}".encode()
    with contextlib.suppress(OSError):
        sock.settimeout(2)
        got = sock.recv(200)
        if got:
            answer = got.split(b"\r\n", 1)[0]
    settle(2)
    after = proc_status(pid)
    report(
        "REST: a 200 MB request header that never ends",
        [
            ("MiB the client got to send", f"{sent // MIB} (in {time.monotonic() - started:.1f} s)"),
            ("what the server said", answer.decode(errors="replace") or "(nothing)"),
            ("server RSS MiB before / after", f"{before['VmRSS']} / {after['VmRSS']}"),
            ("server peak RSS MiB before / after", f"{before['VmHWM']} / {after['VmHWM']}"),
        ],
    )
    sock.close()


# --- SFTP --------------------------------------------------------------------------------------


def _kex_only(port: int, source: str) -> paramiko.Transport | None:
    try:
        sock = connect_from("127.0.0.1", port, source)
        transport = paramiko.Transport(sock)
        transport.start_client(timeout=30)
    except (OSError, paramiko.SSHException, EOFError):
        return None
    return transport


def probe_sftp_unauthenticated(system: System, wait: float, n: int = 200) -> None:
    """`n` connections that finish key exchange and never authenticate."""
    pid = system.proc.pid  # type: ignore[union-attr]
    port = int(system.env["TRADELANE_SFTP_PORT"])
    before = proc_status(pid)
    transports: list[paramiko.Transport | None] = [None] * n

    def open_one(i: int) -> None:
        transports[i] = _kex_only(port, ATTACKER)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(n)]
    for i, thread in enumerate(threads):
        thread.start()
        if i % 20 == 19:
            time.sleep(0.2)
    for thread in threads:
        thread.join()
    held = [t for t in transports if t is not None]
    settle()
    during = proc_status(pid)
    active_now = sum(t.is_active() for t in held)
    time.sleep(wait)
    active_later = sum(t.is_active() for t in held)
    legit = _sftp_login_works(port, "probe-b")
    report(
        f"SFTP: {n} connections from {ATTACKER} that finish key exchange and never log in",
        [
            ("finished key exchange", f"{len(held)}/{n}"),
            ("held by the server 1 s later", active_now),
            (f"held after {wait:.0f} s more", active_later),
            ("server threads before / during", f"{before['Threads']} / {during['Threads']}"),
            ("server fds before / during", f"{before['fds']} / {during['fds']}"),
            ("a partner's SFTP login from 127.0.0.1 meanwhile", legit),
        ],
    )
    for t in held:
        t.close()
    settle(3)  # let the server see them go before the next probe


def _sftp_login_works(port: int, user: str) -> str:
    try:
        with paramiko.Transport(("127.0.0.1", port)) as transport:
            transport.connect(username=user, password=PASSWORD)
            sftp = paramiko.SFTPClient.from_transport(transport)
            assert sftp is not None
            sftp.listdir("/")
            return "ok"
    except Exception as exc:
        return f"failed: {exc!r}"


def _logged_in(port: int, user: str, tries: int = 5) -> paramiko.Transport:
    """A logged-in transport; retried, since an earlier probe's connections may still be pending."""
    for attempt in range(tries):
        transport = paramiko.Transport(("127.0.0.1", port))
        try:
            transport.connect(username=user, password=PASSWORD)
            return transport
        except (paramiko.SSHException, EOFError, OSError):
            transport.close()
            if attempt == tries - 1:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def _raw_channel_data(transport: paramiko.Transport, channel: paramiko.Channel, data: bytes) -> None:
    """Send channel data ignoring the window the server offered (a hostile client does)."""
    m = paramiko.Message()
    m.add_byte(cMSG_CHANNEL_DATA)
    m.add_int(channel.remote_chanid)
    m.add_string(data)
    transport._send_user_message(m)


def probe_sftp_channels(system: System, per_channel: int = 16 * MIB) -> None:
    """3 logged-in connections × 4 session channels that never start a subsystem, each sent 16 MiB."""
    pid = system.proc.pid  # type: ignore[union-attr]
    port = int(system.env["TRADELANE_SFTP_PORT"])
    before = proc_status(pid)
    accepted = 0
    errors: list[str] = []
    transports = []
    chunk = os.urandom(32 * 1024)
    for _ in range(3):
        transport = _logged_in(port, "probe-a")
        transports.append(transport)
        for _ in range(4):
            try:
                channel = transport.open_session(timeout=10)
            except Exception as exc:
                errors.append(repr(exc))
                continue
            sent = 0
            try:
                while sent < per_channel and transport.is_active():
                    _raw_channel_data(transport, channel, chunk)
                    sent += len(chunk)
            except Exception as exc:
                errors.append(repr(exc))
            accepted += sent
    settle(3)
    after = proc_status(pid)
    alive = sum(t.is_active() for t in transports)
    report(
        "SFTP: 12 session channels with no subsystem, 16 MiB sent into each (window ignored)",
        [
            ("MiB the client got to send", accepted // MIB),
            ("connections still open afterwards", f"{alive}/3"),
            ("server RSS MiB before / after", f"{before['VmRSS']} / {after['VmRSS']}"),
            ("first error the client saw", errors[0][:80] if errors else "(none)"),
        ],
    )
    for t in transports:
        t.close()


# --- FTP ---------------------------------------------------------------------------------------


def probe_ftp(system: System, wait: float, n: int = 512) -> None:
    """`n` idle connections from one address that never log in; then partners log in."""
    pid = system.proc.pid  # type: ignore[union-attr]
    port = int(system.env["TRADELANE_FTP_PORT"])
    before = proc_status(pid)
    socks: list[socket.socket] = []
    banners: dict[str, int] = {}
    for _ in range(n):
        try:
            sock = connect_from("127.0.0.1", port, timeout=5)
            line = sock.recv(200).split(b" ", 1)[0].decode(errors="replace") or "(closed)"
        except OSError as exc:
            line = exc.__class__.__name__
        banners[line] = banners.get(line, 0) + 1
        socks.append(sock)
    settle()
    during = proc_status(pid)
    other = _ftp_login_works(port, "127.0.0.1")
    same = _ftp_login_works(port, ATTACKER)
    time.sleep(wait)
    held = sum(map(still_open, socks))
    report(
        f"FTP: {n} idle pre-login connections from {ATTACKER}",
        [
            ("first reply per connection", banners),
            (f"still open after {wait:.0f} s more", held),
            ("server threads before / during", f"{before['Threads']} / {during['Threads']}"),
            ("a partner's FTPS login from 127.0.0.1 meanwhile", other),
            (f"a partner's FTPS login from {ATTACKER} meanwhile", same),
        ],
    )
    for sock in socks:
        sock.close()


def _ftp_login_works(port: int, source: str) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with ftplib.FTP_TLS(context=context, timeout=10, source_address=(source, 0)) as ftp:
            ftp.connect("127.0.0.1", port, source_address=(source, 0))
            ftp.login("probe-b", PASSWORD)
            ftp.prot_p()
            ftp.nlst("/download")
            return "ok"
    except Exception as exc:
        return f"failed: {str(exc)[:70]}"


# --- file descriptors ---------------------------------------------------------------------------


@contextlib.contextmanager
def sftp_clients(port: int, user: str, sessions: int, channels: int) -> Iterator[list[paramiko.SFTPClient]]:
    transports: list[paramiko.Transport] = []
    clients: list[paramiko.SFTPClient] = []
    try:
        for _ in range(sessions):
            try:
                transport = _logged_in(port, user)
            except Exception:
                break
            transports.append(transport)
            for _ in range(channels):
                try:
                    client = paramiko.SFTPClient.from_transport(transport)
                except Exception:
                    break
                if client is not None:
                    clients.append(client)
        yield clients
    finally:
        for t in transports:
            t.close()


def probe_fds(system: System) -> None:
    """Two partners each open 10 sessions × 4 channels × 256 handles; can a third still log in?"""
    pid = system.proc.pid  # type: ignore[union-attr]
    port = int(system.env["TRADELANE_SFTP_PORT"])
    before = proc_status(pid)
    opened: dict[str, int] = {}
    refusals: dict[str, set[str]] = {}
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        for user in ("probe-a", "probe-c"):
            clients = stack.enter_context(sftp_clients(port, user, 10, 4))
            handles: list[Any] = []
            for client in clients:
                for _ in range(256):
                    try:
                        handles.append(client.open("/download/offer.bin", "rb"))
                    except Exception as exc:
                        refusals.setdefault(user, set()).add(str(exc).split(":")[0][:60] or repr(exc))
                        break
            opened[user] = len(handles)
            stack.callback(lambda hs=handles: [_quiet(h.close) for h in hs])
        elapsed = time.monotonic() - started
        during = proc_status(pid)
        sftp_b = _sftp_login_works(port, "probe-b")
        rest_b = _rest_login_works(system)
    report(
        "File descriptors: partners probe-a and probe-c, 10 sessions × 4 channels × 256 opens each",
        [
            ("handles opened (probe-a / probe-c)", f"{opened.get('probe-a')} / {opened.get('probe-c')}"),
            ("refusals probe-a saw", sorted(refusals.get("probe-a", ())) or "(none)"),
            ("seconds spent opening", f"{elapsed:.1f}"),
            (
                "server fds before / during (process limit)",
                f"{before['fds']} / {during['fds']} ({_nofile(pid)})",
            ),
            ("probe-b's SFTP login meanwhile", sftp_b),
            ("probe-b's REST login meanwhile", rest_b),
        ],
    )


def _quiet(fn: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):
        fn()


def _nofile(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return line.split()[3]
    return "?"


# --- main ---------------------------------------------------------------------------------------

PROBES = ("rest", "header", "sftp", "channels", "ftp", "fds")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("probes", nargs="*", help=f"some of: {', '.join(PROBES)} (default: all)")
    parser.add_argument("--wait", type=float, default=40.0, help="seconds before counting held connections")
    args = parser.parse_args()
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # refused connections are expected here
    chosen = args.probes or list(PROBES)
    if unknown := set(chosen) - set(PROBES):
        parser.error(f"unknown probe(s): {', '.join(sorted(unknown))}")
    with run_system() as system:
        for name in ("probe-a", "probe-b", "probe-c"):
            system.cli("partner", "add", name, "--password", PASSWORD)
            download = system.home / "mailboxes" / "home" / name / "download"
            download.mkdir(parents=True, exist_ok=True)
            (download / "offer.bin").write_bytes(os.urandom(4096))
        print(f"tradelane up: pid {system.proc.pid}, {proc_status(system.proc.pid)}")  # type: ignore[union-attr]
        if "rest" in chosen:
            probe_rest_idle(system, args.wait)
        if "header" in chosen:
            probe_rest_header(system)
        if "sftp" in chosen:
            probe_sftp_unauthenticated(system, args.wait)
        if "channels" in chosen:
            probe_sftp_channels(system)
        if "ftp" in chosen:
            probe_ftp(system, args.wait)
        if "fds" in chosen:
            probe_fds(system)


if __name__ == "__main__":
    main()

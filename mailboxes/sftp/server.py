"""The SFTP server: accepts connections (within the limits), hands each to paramiko, reaps idle ones."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

from core.config import Settings
from mailboxes.auth import MailboxAuth
from mailboxes.sftp import fastpath
from mailboxes.sftp.auth import SSHServer
from mailboxes.sftp.channels import MAX_PACKET_SIZE, OPEN_WINDOW, Transport
from mailboxes.sftp.connection import PROTOCOL, Connection
from mailboxes.sftp.hostkeys import load_host_keys
from mailboxes.sftp.limits import refused, turn_away
from mailboxes.sftp.sockets import BufferedSocket
from mailboxes.sftp.subsystem import SFTPSession

log = logging.getLogger(__name__)

SERVER_VERSION = "SSH-2.0-tradelane"


class SFTPServer:
    """Listens for SFTP clients; `start()` returns once listening, `stop()` ends every session."""

    def __init__(self, settings: Settings, auth: MailboxAuth) -> None:
        self.settings = settings
        self.auth = auth
        self.host = settings.host
        self.port = settings.sftp_port
        self.idle_timeout = settings.idle_timeout_seconds
        self.login_grace = settings.login_grace_seconds
        self.startups = settings.startups
        self.host_keys = load_host_keys(settings.sftp_host_key_dir or settings.home_dir)
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        sock = socket.create_server((self.host, self.port), backlog=128, reuse_port=False)
        sock.settimeout(0.5)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stopping.clear()
        for target, name in ((self._accept_loop, "sftp-accept"), (self._reap_loop, "sftp-idle")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("SFTP server listening on %s:%d", self.host, self.port)

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        for thread in self._threads:
            thread.join(5)
        self._threads.clear()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.transport.close()
        for conn in connections:
            conn.transport.join(5)
            conn.finish()

    def __enter__(self) -> SFTPServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                client, address = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)
                continue
            with self._lock:
                connections = list(self._connections)
            refusal = refused(self.settings, self.startups, connections, address[0])
            if refusal is not None:
                turn_away(client, address[0], refusal)
                continue
            try:
                self._serve(client, address[0])
            except Exception:
                log.exception("could not start an SFTP session for %s", address[0])
                with contextlib.suppress(OSError):
                    client.close()

    def _serve(self, client: socket.socket, remote_addr: str) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = Transport(
            BufferedSocket(client),
            default_window_size=OPEN_WINDOW,  # grown to WINDOW_SIZE when the sftp subsystem starts
            default_max_packet_size=MAX_PACKET_SIZE,
        )
        fastpath.install(transport)
        transport.local_version = SERVER_VERSION
        transport.banner_timeout = transport.handshake_timeout = 30
        transport.auth_timeout = 60
        for key in self.host_keys:
            transport.add_server_key(key)
        conn = Connection(self.settings, self.auth, transport, remote_addr)
        transport.set_subsystem_handler("sftp", SFTPSession)

        def finished() -> None:
            conn.finish()
            with self._lock:
                self._connections.discard(conn)

        transport.on_finish = finished
        with self._lock:
            self._connections.add(conn)
        transport.start_server(event=threading.Event(), server=SSHServer(conn))

    def _reap_loop(self) -> None:
        """Close connections idle for longer than the idle timeout (no SFTP request, no data),
        and those not logged in within the login grace time."""
        interval = max(0.05, min(1.0, self.idle_timeout / 4, self.login_grace / 4))
        while not self._stopping.wait(interval):
            now = time.monotonic()
            with self._lock:
                late = [
                    c
                    for c in self._connections
                    if now - c.connected_at > self.login_grace and not c.transport.is_authenticated()
                ]
                idle = [c for c in self._connections if now - c.last_activity > self.idle_timeout]
            for conn in late:
                log.info(
                    "closing SFTP connection from %s: not logged in within %.0fs",
                    conn.remote_addr,
                    self.login_grace,
                )
                conn.connected_at = float("inf")  # once
                conn.transport.close()
            for conn in idle:
                if conn.user is not None:
                    with contextlib.suppress(Exception):
                        self.auth.record(conn.user, "session.idle", "/", conn.remote_addr, protocol=PROTOCOL)
                log.info("closing idle SFTP connection from %s", conn.remote_addr)
                conn.touch()  # once
                conn.transport.close()

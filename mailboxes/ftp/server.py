"""The FTP/FTPS server: pyftpdlib's threaded server on an IOLoop of its own, in a background thread."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from core.config import Settings
from mailboxes.auth import MailboxAuth
from mailboxes.ftp.authorizer import MailboxAuthorizer
from mailboxes.ftp.certificate import ensure_certificate, make_ssl_context
from mailboxes.ftp.control import MailboxFTPHandler
from mailboxes.ftp.data import MailboxDTPHandler
from mailboxes.ftp.pyftpd import IOLoop, ThreadedFTPServer

log = logging.getLogger(__name__)


def parse_port_range(value: str) -> list[int] | None:
    """ "30000-30100" (or "30000-30010,31000") → the ports; "" → None (the kernel picks)."""
    ports: list[int] = []
    for part in value.replace(" ", "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if not 0 < first <= last <= 65535:
            raise ValueError(f"invalid passive port range {value!r}")
        ports.extend(range(first, last + 1))
    return ports or None


class ThreadedServer(ThreadedFTPServer):  # type: ignore[misc]  # pyftpdlib ships no type hints
    """pyftpdlib's threaded server, with its stop flag per instance instead of per class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._exit = threading.Event()
        self._lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _accept_new_cons(self) -> bool:
        # pyftpdlib asks before the new session's thread is counted, with `<=`: one too many.
        return not self.max_cons or self._map_len() < self.max_cons


class FTPServer:
    """FTP + explicit FTPS for partner mailboxes; `start()` returns once it is listening."""

    def __init__(self, settings: Settings, auth: MailboxAuth) -> None:
        self.settings = settings
        self.auth = auth
        self.host = settings.host
        self.port = settings.ftp_port
        self.cert_file, self.key_file = ensure_certificate(settings)
        timeout = settings.idle_timeout_seconds or None
        dtp = type("DTPHandler", (MailboxDTPHandler,), {"timeout": timeout})
        self.handler: type[MailboxFTPHandler] = type(
            "Handler",
            (MailboxFTPHandler,),
            {
                "auth": auth,
                "authorizer": MailboxAuthorizer(auth),
                "dtp_handler": dtp,
                "ssl_context": make_ssl_context(self.cert_file, self.key_file),
                "certfile": str(self.cert_file),
                "keyfile": str(self.key_file),
                "tls_control_required": settings.ftp_require_tls,
                "tls_data_required": settings.ftp_require_tls,
                "passive_ports": parse_port_range(settings.ftp_passive_ports),
                "masquerade_address": settings.ftp_passive_address,
                "timeout": timeout,
                "login_grace": settings.login_grace_seconds,
            },
        )
        self._server: ThreadedServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the FTP server is already running")
        self._stopping.clear()
        # An IOLoop of its own: pyftpdlib's default is one per process, shared by every server.
        server = ThreadedServer((self.host, self.port), self.handler, ioloop=IOLoop())
        server.max_cons = self.settings.mailbox_max_connections
        server.max_cons_per_ip = self.settings.mailbox_max_connections_per_address
        self._server = server
        self.port = server.address[1]
        self._thread = threading.Thread(target=self._serve, args=(server,), name="ftp-server", daemon=True)
        self._thread.start()
        log.info(
            "FTP/FTPS on %s:%s (TLS %s)",
            self.host,
            self.port,
            "required" if self.settings.ftp_require_tls else "optional",
        )

    def _serve(self, server: ThreadedServer) -> None:
        try:
            while not self._stopping.is_set():
                server.ioloop.loop(timeout=0.2, blocking=False)
        except Exception:
            log.exception("the FTP server stopped")
        finally:
            with contextlib.suppress(Exception):
                server.close_all()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join(timeout=15)
        self._server = None

    def __enter__(self) -> FTPServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

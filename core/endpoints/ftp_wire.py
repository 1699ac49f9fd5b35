"""The pieces of FTP and FTPS that ftplib leaves to its caller: data connections that resume the
control connection's TLS session (servers such as vsftpd and pyftpdlib require it), implicit TLS,
MLSD facts and times, empty listings closed mid-handshake, and failures as endpoint errors (by
reply code, and by words such as "permission" for servers that answer 550 to everything)."""

from __future__ import annotations

import contextlib
import ftplib
import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime

from core.endpoints.base import (
    AuthError,
    EndpointError,
    FileInfo,
    NotFound,
    PermissionDenied,
    TransientError,
    Unreachable,
)
from core.endpoints.network import network_error

DENIED_WORDS = ("permission", "privilege", "denied", "not allowed", "forbidden", "access", "read-only")
EPOCH = datetime.fromtimestamp(0, tz=UTC)


def empty_if_closed_unopened(ftp: ftplib.FTP, listing: Callable[[], list[FileInfo]]) -> list[FileInfo]:
    """Run a listing; an empty one whose data connection the server closed before the TLS handshake
    finished is empty, not an error.

    pyftpdlib (and so tradelane's own FTPS mailbox) may close the data connection of an empty
    listing while the client is still in its TLS handshake; the control channel then says 226, the
    listing complete. Anything but a success reply there is raised as usual.
    """
    try:
        return listing()
    except ssl.SSLError as exc:
        if not (isinstance(exc, ssl.SSLEOFError) or exc.reason == "SHUTDOWN_WHILE_IN_INIT"):
            raise
        ftp.voidresp()  # the reply to the listing command: 226 when it was complete
        return []


def reply_code(exc: BaseException) -> str:
    return str(exc)[:3]


def map_ftp_error(exc: BaseException, what: str) -> EndpointError:
    """Translate an ftplib, socket or TLS failure into the endpoint error tree."""
    if isinstance(exc, EndpointError):
        return exc
    text = str(exc).strip()
    if isinstance(exc, ftplib.error_perm):
        code = reply_code(exc)
        if code in ("530", "532"):
            return AuthError(f"{what}: login refused: {text}")
        if code == "550":
            if any(word in text.lower() for word in DENIED_WORDS):
                return PermissionDenied(f"{what}: {text}")
            return NotFound(f"{what}: {text}")
        if code == "553":
            return PermissionDenied(f"{what}: {text}")
        return EndpointError(f"{what}: {text}")
    if isinstance(exc, ftplib.error_temp):
        return TransientError(f"{what}: {text}")
    if isinstance(exc, ftplib.error_reply | ftplib.error_proto):
        return EndpointError(f"{what}: unexpected answer from the server: {text}")
    if found := network_error(exc, what):
        return found
    if isinstance(exc, OSError | EOFError):
        return Unreachable(f"{what}: connection lost ({text or type(exc).__name__})")
    if isinstance(exc, UnicodeError):
        return EndpointError(f"{what}: a name the server sent is not UTF-8")
    return EndpointError(f"{what}: {type(exc).__name__}: {text}")


def lost_connection(exc: BaseException) -> bool:
    """Whether `exc` says the control connection is gone (worth one retry on a pooled one)."""
    if isinstance(exc, ftplib.error_temp):
        return reply_code(exc) == "421"
    return isinstance(exc, EOFError | ConnectionError | ssl.SSLEOFError | ssl.SSLZeroReturnError) or (
        isinstance(exc, OSError) and not isinstance(exc, ssl.SSLCertVerificationError | socket.gaierror)
    )


def parse_time(value: str) -> datetime:
    """An MLSD `modify` fact or an MDTM answer: YYYYMMDDHHMMSS[.sss], in UTC."""
    digits, _, fraction = value.strip().partition(".")
    try:
        stamp = datetime.strptime(digits[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return EPOCH
    if fraction.isdigit():
        stamp = stamp.replace(microsecond=int((fraction + "000000")[:6]))
    return stamp


def parse_facts(text: str) -> tuple[dict[str, str], str]:
    """``type=file;size=5;modify=...; name`` -> ({"type": "file", ...}, "name")."""
    facts_text, _, name = text.partition(" ")
    facts: dict[str, str] = {}
    for fact in facts_text.split(";"):
        key, sep, value = fact.partition("=")
        if sep:
            facts[key.lower()] = value
    return facts, name


class TLSSessionReuse(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if getattr(self, "_prot_p", False):
            session = getattr(self.sock, "session", None)
            try:
                conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
            except BaseException:
                conn.close()
                raise
        return conn, size


class ImplicitFTP_TLS(TLSSessionReuse):
    """FTPS with TLS from the first byte: the control connection is wrapped on connect."""

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        if source_address is not None:
            self.source_address = source_address
        raw = socket.create_connection(
            (self.host, self.port), self.timeout, source_address=self.source_address
        )
        try:
            self.sock = self.context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


class Connection:
    """One logged-in control connection and what its server can do."""

    def __init__(self, ftp: ftplib.FTP, mlst: bool) -> None:
        self.ftp = ftp
        self.mlst = mlst
        self.binary = True

    def ensure_binary(self) -> None:
        """TYPE I again if a listing switched to ASCII (ftplib's retrlines sends TYPE A)."""
        if not self.binary:
            self.ftp.voidcmd("TYPE I")
            self.binary = True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ftp.close()


def close_data(conn: socket.socket, clean: bool) -> None:
    """Close a data connection; `clean` first ends TLS properly, so the server knows it is complete."""
    try:
        if clean and isinstance(conn, ssl.SSLSocket):
            conn.unwrap()
    finally:
        conn.close()

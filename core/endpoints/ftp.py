"""A folder on a partner's FTP or FTPS server, through ftplib.

TLS, per `tls`:
* ``"explicit"`` (the default): plain connect, then ``AUTH TLS`` before the login is sent.
* ``"implicit"``: TLS from the first byte (port 990 by default).
* ``"none"``: plain FTP, password in clear. Only when asked for.
The certificate is verified against the system CAs, or against `cafile` (a CA bundle, or the
server's own certificate pinned: any certificate in it is trusted as an anchor), and must name
`host` (an IP address needs an IP entry in the certificate). ``verify: false`` turns checking
off and must be set explicitly. Data connections are TLS too (``PROT P``) and resume the
control connection's TLS session, which vsftpd and FileZilla Server insist on.

FTP does one transfer per control connection, so each open stream has its own connection,
taken from a small pool of idle ones and given back when the transfer is over; a connection
found dead when taken from the pool is replaced once.

Writes stream the caller's bytes straight into the data connection of a ``STOR`` to a temporary
name in the target's folder (made with MKD when missing): ``<name>.<hex>.tradelane.part`` by
default, per the endpoint's `temp_name` (core/endpoints/tempname.py). Commit ends the upload,
waits for the server's 226, then RNFR/RNTO onto the target; a server that will not rename over
an existing file gets a DELE of the target first (a short gap without the file). With
``temp_name: none`` the STOR goes to the final name and nothing is renamed.
With `on_conflict` rename or fail, the name is checked (MLST, else SIZE) before RNTO and a taken
one is never renamed onto: FTP has no rename that refuses an existing target, so this is best
effort (a writer that takes the name between the check and RNTO is replaced). With ``temp_name:
none`` the free name is chosen the same way before the STOR.
Listings use MLSD where the server has it, else NLST with SIZE and MDTM per file.
"""

from __future__ import annotations

import builtins
import contextlib
import ftplib
import io
import posixpath
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, ClassVar, Literal, TypeVar
from urllib.parse import quote

from pydantic import field_validator

from core.endpoints.base import (
    CHUNK_SIZE,
    AuthError,
    ConfigError,
    Endpoint,
    EndpointError,
    FileInfo,
    InvalidPath,
    NameTaken,
    NotFound,
    OnConflict,
    PermissionDenied,
    TlsError,
    TransientError,
    Unreachable,
    WriteStream,
    clean_path,
)
from core.endpoints.conflict import candidates, first_free
from core.endpoints.network import network_error
from core.endpoints.remote import Port, ServerSettings
from core.endpoints.settings import EndpointSecrets, EndpointSettings, LocalPath, lowercase, switch
from core.endpoints.tempname import PREFIX, RENAME_REFUSED, is_temp_name, temp_name

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["FtpEndpoint", "TlsError"]

T = TypeVar("T")

TEMP_PREFIX = PREFIX  # one of the reserved temporary-name forms (tempname.py)
MAX_IDLE = 4  # idle control connections kept for reuse
ABORT_TIMEOUT = 5.0  # how long an aborted upload waits for the server's answer
_DENIED_WORDS = ("permission", "privilege", "denied", "not allowed", "forbidden", "access", "read-only")
_EPOCH = datetime.fromtimestamp(0, tz=UTC)


def _empty_if_closed_unopened(ftp: ftplib.FTP, listing: Callable[[], list[FileInfo]]) -> list[FileInfo]:
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


def _reply_code(exc: BaseException) -> str:
    return str(exc)[:3]


def map_ftp_error(exc: BaseException, what: str) -> EndpointError:
    """Translate an ftplib, socket or TLS failure into the endpoint error tree."""
    if isinstance(exc, EndpointError):
        return exc
    text = str(exc).strip()
    if isinstance(exc, ftplib.error_perm):
        code = _reply_code(exc)
        if code in ("530", "532"):
            return AuthError(f"{what}: login refused: {text}")
        if code == "550":
            if any(word in text.lower() for word in _DENIED_WORDS):
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


def _lost_connection(exc: BaseException) -> bool:
    """Whether `exc` says the control connection is gone (worth one retry on a pooled one)."""
    if isinstance(exc, ftplib.error_temp):
        return _reply_code(exc) == "421"
    return isinstance(exc, EOFError | ConnectionError | ssl.SSLEOFError | ssl.SSLZeroReturnError) or (
        isinstance(exc, OSError) and not isinstance(exc, ssl.SSLCertVerificationError | socket.gaierror)
    )


def _parse_time(value: str) -> datetime:
    """An MLSD `modify` fact or an MDTM answer: YYYYMMDDHHMMSS[.sss], in UTC."""
    digits, _, fraction = value.strip().partition(".")
    try:
        stamp = datetime.strptime(digits[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return _EPOCH
    if fraction.isdigit():
        stamp = stamp.replace(microsecond=int((fraction + "000000")[:6]))
    return stamp


def _parse_facts(text: str) -> tuple[dict[str, str], str]:
    """``type=file;size=5;modify=...; name`` -> ({"type": "file", ...}, "name")."""
    facts_text, _, name = text.partition(" ")
    facts: dict[str, str] = {}
    for fact in facts_text.split(";"):
        key, sep, value = fact.partition("=")
        if sep:
            facts[key.lower()] = value
    return facts, name


class _TLSSessionReuse(ftplib.FTP_TLS):
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


class _ImplicitFTP_TLS(_TLSSessionReuse):
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


class _Connection:
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


def _close_data(conn: socket.socket, clean: bool) -> None:
    """Close a data connection; `clean` first ends TLS properly, so the server knows it is complete."""
    try:
        if clean and isinstance(conn, ssl.SSLSocket):
            conn.unwrap()
    finally:
        conn.close()


class FtpReader(io.RawIOBase):
    """The data connection of a RETR, read as a stream; the 226 is collected at the end."""

    def __init__(
        self, endpoint: FtpEndpoint, connection: _Connection, conn: socket.socket, what: str
    ) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._connection: _Connection | None = connection
        self._conn: socket.socket | None = conn
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._conn is None or not view:
            return 0
        try:
            n = self._conn.recv_into(view)
            if n == 0:
                self._finish()
            return n
        except Exception as exc:
            self._fail()
            raise self._endpoint.redact(map_ftp_error(exc, self._what)) from None

    def _finish(self) -> None:
        conn, connection = self._conn, self._connection
        self._conn = self._connection = None
        assert conn is not None and connection is not None
        with contextlib.suppress(OSError):  # the server may close without a TLS goodbye
            _close_data(conn, clean=True)
        try:
            connection.ftp.voidresp()
        except Exception:
            self._endpoint.discard_connection(connection)
            raise
        self._endpoint.release(connection)

    def _fail(self) -> None:
        conn, connection = self._conn, self._connection
        self._conn = self._connection = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        if connection is not None:
            self._endpoint.discard_connection(connection)

    def close(self) -> None:
        if not self.closed:
            # Closed before the end: the control connection is mid-transfer, so it is not reused.
            self._fail()
        super().close()


class FtpWriteStream(WriteStream):
    """STOR to a temporary name, fed by write(); commit waits for 226 and renames."""

    def __init__(
        self,
        endpoint: FtpEndpoint,
        connection: _Connection,
        conn: socket.socket,
        temp: str,
        target: str,
        what: str,
        placement: tuple[str, OnConflict] | None = None,
    ) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._connection: _Connection | None = connection
        self._conn: socket.socket | None = conn
        self.temp = temp
        self.target = target
        self._what = what
        self._placement = placement  # (relative path, rename|fail) when a file there must stay
        self._answered = False  # whether the STOR's final reply has been read

    def _write(self, data: bytes) -> None:
        if self._conn is None:
            raise TransientError(f"{self._what}: the upload connection is gone")
        try:
            self._conn.sendall(data)
        except Exception as exc:
            # The server may have cut the upload short (quota, disk full): its reply says why.
            error = self._server_reason() or map_ftp_error(exc, self._what)
            raise self._endpoint.redact(error) from None

    def _server_reason(self) -> EndpointError | None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        if self._connection is None or self._connection.ftp.sock is None:
            return None
        ftp, sock = self._connection.ftp, self._connection.ftp.sock
        try:
            sock.settimeout(ABORT_TIMEOUT)
            ftp.getresp()
        except ftplib.Error as exc:
            self._answered = True
            return map_ftp_error(exc, self._what)
        except Exception:
            return None
        self._answered = True
        return None

    def _commit(self) -> None:
        conn, connection = self._conn, self._connection
        assert conn is not None and connection is not None
        self._conn = None
        ftp = connection.ftp
        try:
            _close_data(conn, clean=True)
            self._answered = True
            ftp.voidresp()
            if self.temp == self.target:  # temp_name "none" wrote the final (already free) name
                pass
            elif self._placement is not None:
                self.path = self._endpoint.rename_new(connection, self.temp, *self._placement)
            else:
                self._rename_over(ftp)
        except Exception as exc:
            raise self._endpoint.redact(map_ftp_error(exc, self._what)) from None
        self._connection = None
        self._endpoint.release(connection)

    def _rename_over(self, ftp: ftplib.FTP) -> None:
        try:
            ftp.rename(self.temp, self.target)
        except ftplib.error_perm:
            # Some servers refuse to rename onto an existing file: remove it, then rename.
            with contextlib.suppress(ftplib.error_perm):
                ftp.delete(self.target)
            try:
                ftp.rename(self.temp, self.target)
            except ftplib.error_perm as exc:
                raise PermissionDenied(f"{self._what}: {RENAME_REFUSED} ({str(exc).strip()})") from None

    def _abort(self) -> None:
        conn, connection = self._conn, self._connection
        self._conn = self._connection = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()  # no TLS goodbye: the server sees an incomplete upload
        if connection is None:
            return
        ftp = connection.ftp
        try:
            if ftp.sock is not None:
                ftp.sock.settimeout(ABORT_TIMEOUT)
            if not self._answered:
                self._answered = True
                with contextlib.suppress(ftplib.Error):
                    ftp.getresp()  # 226 or 426 for the cut-off STOR
            with contextlib.suppress(ftplib.Error):
                ftp.delete(self.temp)
            if ftp.sock is not None:
                ftp.sock.settimeout(self._endpoint.timeout)
        except Exception:  # the control connection broke too: the temporary file may stay behind
            self._endpoint.discard_connection(connection)
            return
        self._endpoint.release(connection)


class FtpSettings(ServerSettings):
    """A partner's FTP or FTPS server. TLS (explicit, AUTH TLS) is the default."""

    tls: Annotated[Literal["explicit", "implicit", "none"], lowercase] = "explicit"
    """explicit (AUTH TLS on the FTP port), implicit (TLS from the first byte) or none (plain FTP:
    passwords and files in clear text)."""
    port: Port | None = None
    """The server's port (default 21, or 990 with tls implicit)."""
    path: str = ""
    """The remote folder that is the endpoint's root (default: the login folder)."""
    cafile: Annotated[str | None, LocalPath()] = None
    """A CA bundle, or the server's own certificate to pin (PEM)."""
    verify: Annotated[bool, switch("--insecure", False, "Do not verify the server's TLS certificate.")] = True
    """Verify the server's TLS certificate."""
    passive: bool = True
    """Passive mode data connections (the client connects); false: active mode."""

    @field_validator("path")
    @classmethod
    def _no_controls(cls, value: str) -> str:
        if any(ch in value for ch in "\x00\r\n"):
            raise ValueError("contains a control character")
        return value


class FtpSecrets(EndpointSecrets):
    password: str | None = None
    """The login's password."""


class FtpEndpoint(Endpoint):
    """A remote folder over FTP or FTPS; see FtpSettings."""

    scheme: ClassVar[str] = "ftp"
    settings: FtpSettings
    secrets: FtpSecrets
    # A partner's inbox folder: a second file of a name must not replace the first unread.
    default_on_conflict: ClassVar[OnConflict | None] = OnConflict.rename

    def __init__(self, settings: EndpointSettings | Mapping[str, Any], secrets: Any = None) -> None:
        super().__init__(settings, secrets)
        self.host = self.settings.host
        self.tls = self.settings.tls
        self.port = self.settings.port or (990 if self.tls == "implicit" else 21)
        self.user = self.settings.user
        base = self.settings.path
        self.base = base if base == "/" else base.rstrip("/")
        self.cafile = self.settings.cafile
        self.verify = self.settings.verify
        self.passive = self.settings.passive
        self.temp_name = self.settings.temp_name
        self.timeout = self.settings.timeout
        self._context: ssl.SSLContext | None = None
        self._idle: builtins.list[_Connection] = []
        self._lock = threading.Lock()

    # --- connections -------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            if not self.verify:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                try:
                    context = ssl.create_default_context(cafile=self.cafile)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(f"ftp 'cafile' {self.cafile!r} cannot be used: {exc}") from None
                if self.cafile:
                    # A pinned server certificate is a trust anchor by itself, CA or not.
                    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._context = context
        return self._context

    def _connect(self) -> _Connection:
        ftp: ftplib.FTP
        if self.tls == "none":
            ftp = ftplib.FTP(timeout=self.timeout, encoding="utf-8")
        elif self.tls == "explicit":
            ftp = _TLSSessionReuse(context=self.ssl_context(), timeout=self.timeout, encoding="utf-8")
        else:
            ftp = _ImplicitFTP_TLS(context=self.ssl_context(), timeout=self.timeout, encoding="utf-8")
        try:
            ftp.connect(self.host, self.port)
            if isinstance(ftp, _TLSSessionReuse):
                if not isinstance(ftp.sock, ssl.SSLSocket):
                    try:
                        ftp.auth()
                    except ftplib.error_perm as exc:
                        raise TlsError(
                            f"{self.where}: the server does not offer explicit TLS (AUTH TLS: {exc}); "
                            "use tls 'implicit', or 'none' on a trusted network only"
                        ) from None
                ftp.login(self.user, self.secrets.password or "")
                ftp.prot_p()
            else:
                ftp.login(self.user, self.secrets.password or "")
            ftp.set_pasv(self.passive)
            ftp.voidcmd("TYPE I")
            features = self._features(ftp)
            if "UTF8" in features:
                with contextlib.suppress(ftplib.Error):
                    ftp.sendcmd("OPTS UTF8 ON")
        except BaseException as exc:
            with contextlib.suppress(Exception):
                ftp.close()
            if isinstance(exc, Exception):
                raise self.redact(map_ftp_error(exc, self.where)) from None
            raise
        return _Connection(ftp, mlst="MLST" in features)

    @staticmethod
    def _features(ftp: ftplib.FTP) -> set[str]:
        try:
            answer = ftp.sendcmd("FEAT")
        except ftplib.Error:
            return set()
        return {line.split()[0].upper() for line in answer.splitlines()[1:-1] if line.strip()}

    def acquire(self) -> tuple[_Connection, bool]:
        """An idle connection (and True), or a new one (and False)."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def release(self, connection: _Connection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
                return
        connection.close()

    def discard_connection(self, connection: _Connection) -> None:
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                connection.ftp.quit()
            connection.close()

    def _run(self, what: str, operation: Callable[[_Connection], T], *, keep: bool = False) -> T:
        """Run `operation` on a pooled connection; a stale pooled connection is replaced once.

        With `keep`, a connection that worked is not given back: a stream owns it now.
        """
        while True:
            connection, reused = self.acquire()
            try:
                result = operation(connection)
            except (ftplib.error_perm, EndpointError) as exc:
                self.release(connection)  # an answer, not a broken connection
                raise self.redact(map_ftp_error(exc, what)) from None
            except Exception as exc:
                self.discard_connection(connection)
                if reused and _lost_connection(exc):
                    continue
                raise self.redact(map_ftp_error(exc, what)) from None
            if not keep:
                self.release(connection)
            return result

    # --- paths -------------------------------------------------------------------------------

    def _remote(self, rel: str) -> str:
        if any(ch in rel for ch in "\r\n"):
            raise InvalidPath(f"line break in path {rel!r}")
        if any(is_temp_name(part) for part in rel.split("/")):
            raise InvalidPath(f"reserved name in path {rel!r}")
        if not rel:
            return self.base
        return posixpath.join(self.base, rel) if self.base else rel

    def uri(self, path: str) -> str:
        rel = clean_path(path, allow_root=True)
        host = f"[{self.host}]" if ":" in self.host else self.host
        # "/~/" marks a path relative to the login folder, as for sftp.
        base = self.base if self.base.startswith("/") else "/~" + (f"/{self.base}" if self.base else "")
        full = posixpath.join(base, rel) if rel else base
        return f"ftp://{quote(self.user, safe='')}@{host}:{self.port}{quote(full)}"

    # --- operations --------------------------------------------------------------------------

    def list(self, folder: str = "") -> Iterator[FileInfo]:
        rel = clean_path(folder, allow_root=True)
        remote, what = self._remote(rel), self.uri(rel)

        def operation(connection: _Connection) -> builtins.list[FileInfo]:
            connection.binary = False  # retrlines switches to TYPE A
            try:
                if connection.mlst:
                    return _empty_if_closed_unopened(
                        connection.ftp, lambda: self._list_mlsd(connection.ftp, remote, rel)
                    )
                return _empty_if_closed_unopened(
                    connection.ftp, lambda: self._list_nlst(connection, remote, rel)
                )
            except ftplib.error_perm as exc:
                if _reply_code(exc) in ("550", "501") and rel:
                    return []  # no such folder (or a file): nothing in it
                if _reply_code(exc) == "550":
                    raise NotFound(f"folder does not exist: {what}: {exc}") from None
                raise

        infos = self._run(what, operation)
        infos.sort(key=lambda info: info.path)
        return iter(infos)

    def _keep(self, rel: str, name: str) -> str | None:
        """The endpoint path for a listed name, or None for names a listing must not show."""
        name = posixpath.basename(name.rstrip("/"))
        if not name or name in (".", "..") or is_temp_name(name):
            return None
        path = f"{rel}/{name}" if rel else name
        try:
            return path if clean_path(path) == path and "\n" not in path and "\r" not in path else None
        except InvalidPath:
            return None

    def _list_mlsd(self, ftp: ftplib.FTP, remote: str, rel: str) -> builtins.list[FileInfo]:
        infos: builtins.list[FileInfo] = []
        for name, facts in ftp.mlsd(remote, facts=["type", "size", "modify"]):
            path = self._keep(rel, name)
            if path is None or facts.get("type", "file").lower() != "file":
                continue
            infos.append(
                FileInfo(
                    path=path, size=int(facts.get("size") or 0), modified=_parse_time(facts.get("modify", ""))
                )
            )
        return infos

    def _list_nlst(self, connection: _Connection, remote: str, rel: str) -> builtins.list[FileInfo]:
        ftp = connection.ftp
        try:
            names = ftp.nlst(remote) if remote else ftp.nlst()
        except ftplib.error_temp as exc:
            if _reply_code(exc) == "450":  # "no files found" on some servers
                return []
            raise
        connection.ensure_binary()  # SIZE is refused in ASCII mode
        infos: builtins.list[FileInfo] = []
        for name in names:
            path = self._keep(rel, name)
            if path is None:
                continue
            full = self._remote(path)
            try:
                size = ftp.size(full)
            except ftplib.error_perm:
                continue  # a folder, or something else that cannot be fetched
            infos.append(FileInfo(path=path, size=size or 0, modified=self._mdtm(ftp, full)))
        return infos

    @staticmethod
    def _mdtm(ftp: ftplib.FTP, remote: str) -> datetime:
        try:
            return _parse_time(ftp.sendcmd(f"MDTM {remote}")[4:])
        except ftplib.error_perm:
            return _EPOCH

    def stat(self, path: str) -> FileInfo:
        rel = clean_path(path)
        remote, what = self._remote(rel), self.uri(rel)

        def operation(connection: _Connection) -> FileInfo:
            ftp = connection.ftp
            connection.ensure_binary()
            if connection.mlst:
                answer = ftp.sendcmd(f"MLST {remote}")
                lines = [line for line in answer.splitlines() if line.startswith(" ")]
                if not lines:
                    raise EndpointError(f"{what}: MLST answer without facts")
                facts, _ = _parse_facts(lines[0].strip())
                if facts.get("type", "file").lower() != "file":
                    raise NotFound(f"not a file: {what}")
                return FileInfo(
                    path=rel, size=int(facts.get("size") or 0), modified=_parse_time(facts.get("modify", ""))
                )
            size = ftp.size(remote)  # folders answer 550 here
            return FileInfo(path=rel, size=size or 0, modified=self._mdtm(ftp, remote))

        return self._run(what, operation)

    def open_read(self, path: str) -> BinaryIO:
        rel = clean_path(path)
        remote, what = self._remote(rel), self.uri(rel)

        def operation(connection: _Connection) -> tuple[_Connection, socket.socket]:
            connection.ensure_binary()
            return connection, connection.ftp.transfercmd(f"RETR {remote}")

        connection, conn = self._run(what, operation, keep=True)
        return io.BufferedReader(FtpReader(self, connection, conn, what), buffer_size=CHUNK_SIZE)

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        rel = clean_path(path)
        target, what = self._remote(rel), self.uri(rel)
        folder, name = posixpath.split(target)
        placement = None if on_conflict is OnConflict.overwrite else (rel, on_conflict)
        chosen = rel
        temp = posixpath.join(folder, temp_name(name, self.temp_name))

        def operation(connection: _Connection) -> tuple[_Connection, socket.socket]:
            nonlocal chosen, temp, target
            ftp = connection.ftp
            connection.ensure_binary()
            if placement is not None and self.temp_name == "none":
                # No rename to refuse a taken name: take a free one before the STOR.
                chosen = first_free(
                    rel, on_conflict, lambda n: self._exists(connection, self._remote(n)), self.uri
                )
                target = temp = self._remote(chosen)
            try:
                return connection, ftp.transfercmd(f"STOR {temp}")
            except ftplib.error_perm:
                if not folder:
                    raise
            self._makedirs(ftp, folder)
            return connection, ftp.transfercmd(f"STOR {temp}")

        connection, conn = self._run(what, operation, keep=True)
        picked = placement is not None and self.temp_name == "none"  # chosen before the STOR
        stream = FtpWriteStream(
            self, connection, conn, temp, target, self.uri(chosen), None if picked else placement
        )
        stream.path = chosen if picked else None
        return stream

    def rename_new(self, connection: _Connection, temp: str, rel: str, on_conflict: OnConflict) -> str:
        """RNFR/RNTO a finished temporary file to `rel` only if nothing is there (fail), or to the
        first free name of `rel`, `name (2).ext`, … (rename); returns the name taken."""
        names = candidates(rel) if on_conflict is OnConflict.rename else iter([rel])
        for name in names:
            remote = self._remote(name)
            if not self._exists(connection, remote):
                connection.ftp.rename(temp, remote)
                return name
            if on_conflict is OnConflict.fail:
                raise NameTaken(f"{self.uri(name)} exists and on_conflict is fail; not replaced")
        raise NameTaken(f"{self.uri(rel)} and every numbered name after it are taken")

    @staticmethod
    def _exists(connection: _Connection, remote: str) -> bool:
        """Whether a file or folder has this name (MLST where the server has it, else SIZE)."""
        try:
            if connection.mlst:
                connection.ftp.sendcmd(f"MLST {remote}")
            else:
                connection.ftp.size(remote)
        except ftplib.error_perm:
            return False
        return True

    @staticmethod
    def _makedirs(ftp: ftplib.FTP, folder: str) -> None:
        """mkdir -p with MKD; failures are left for the STOR that follows to report."""
        current = "/" if folder.startswith("/") else ""
        for part in folder.split("/"):
            if not part:
                continue
            current = posixpath.join(current, part) if current else part
            with contextlib.suppress(ftplib.error_perm):
                ftp.mkd(current)

    def delete(self, path: str) -> None:
        rel = clean_path(path)
        remote, what = self._remote(rel), self.uri(rel)

        def operation(connection: _Connection) -> None:
            connection.ftp.delete(remote)  # folders answer 550 ("not a file")

        self._run(what, operation)

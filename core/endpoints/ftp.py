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

Settings and secrets: core/endpoints/ftp_settings.py; the streams: ftp_streams.py; what ftplib
leaves out (TLS session reuse, implicit TLS, MLSD facts, error mapping): ftp_wire.py.
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
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, TypeVar
from urllib.parse import quote

from core.endpoints.base import (
    CHUNK_SIZE,
    ConfigError,
    Endpoint,
    EndpointError,
    FileInfo,
    InvalidPath,
    NameTaken,
    NotFound,
    OnConflict,
    TlsError,
    WriteStream,
    clean_path,
)
from core.endpoints.conflict import candidates, first_free
from core.endpoints.ftp_settings import FtpSecrets, FtpSettings
from core.endpoints.ftp_streams import FtpReader, FtpWriteStream
from core.endpoints.ftp_wire import (
    EPOCH,
    Connection,
    ImplicitFTP_TLS,
    TLSSessionReuse,
    empty_if_closed_unopened,
    lost_connection,
    map_ftp_error,
    parse_facts,
    parse_time,
    reply_code,
)
from core.endpoints.settings import EndpointSettings
from core.endpoints.tempname import PREFIX, is_temp_name, temp_name

if TYPE_CHECKING:
    pass

__all__ = ["FtpEndpoint", "TlsError"]

T = TypeVar("T")

TEMP_PREFIX = PREFIX  # one of the reserved temporary-name forms (tempname.py)
MAX_IDLE = 4  # idle control connections kept for reuse


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
        self._idle: builtins.list[Connection] = []
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

    def _connect(self) -> Connection:
        ftp: ftplib.FTP
        if self.tls == "none":
            ftp = ftplib.FTP(timeout=self.timeout, encoding="utf-8")
        elif self.tls == "explicit":
            ftp = TLSSessionReuse(context=self.ssl_context(), timeout=self.timeout, encoding="utf-8")
        else:
            ftp = ImplicitFTP_TLS(context=self.ssl_context(), timeout=self.timeout, encoding="utf-8")
        try:
            ftp.connect(self.host, self.port)
            if isinstance(ftp, TLSSessionReuse):
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
        return Connection(ftp, mlst="MLST" in features)

    @staticmethod
    def _features(ftp: ftplib.FTP) -> set[str]:
        try:
            answer = ftp.sendcmd("FEAT")
        except ftplib.Error:
            return set()
        return {line.split()[0].upper() for line in answer.splitlines()[1:-1] if line.strip()}

    def acquire(self) -> tuple[Connection, bool]:
        """An idle connection (and True), or a new one (and False)."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def release(self, connection: Connection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
                return
        connection.close()

    def discard_connection(self, connection: Connection) -> None:
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                connection.ftp.quit()
            connection.close()

    def _run(self, what: str, operation: Callable[[Connection], T], *, keep: bool = False) -> T:
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
                if reused and lost_connection(exc):
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

        def operation(connection: Connection) -> builtins.list[FileInfo]:
            connection.binary = False  # retrlines switches to TYPE A
            try:
                if connection.mlst:
                    return empty_if_closed_unopened(
                        connection.ftp, lambda: self._list_mlsd(connection.ftp, remote, rel)
                    )
                return empty_if_closed_unopened(
                    connection.ftp, lambda: self._list_nlst(connection, remote, rel)
                )
            except ftplib.error_perm as exc:
                if reply_code(exc) in ("550", "501") and rel:
                    return []  # no such folder (or a file): nothing in it
                if reply_code(exc) == "550":
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
                    path=path, size=int(facts.get("size") or 0), modified=parse_time(facts.get("modify", ""))
                )
            )
        return infos

    def _list_nlst(self, connection: Connection, remote: str, rel: str) -> builtins.list[FileInfo]:
        ftp = connection.ftp
        try:
            names = ftp.nlst(remote) if remote else ftp.nlst()
        except ftplib.error_temp as exc:
            if reply_code(exc) == "450":  # "no files found" on some servers
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
            return parse_time(ftp.sendcmd(f"MDTM {remote}")[4:])
        except ftplib.error_perm:
            return EPOCH

    def stat(self, path: str) -> FileInfo:
        rel = clean_path(path)
        remote, what = self._remote(rel), self.uri(rel)

        def operation(connection: Connection) -> FileInfo:
            ftp = connection.ftp
            connection.ensure_binary()
            if connection.mlst:
                answer = ftp.sendcmd(f"MLST {remote}")
                lines = [line for line in answer.splitlines() if line.startswith(" ")]
                if not lines:
                    raise EndpointError(f"{what}: MLST answer without facts")
                facts, _ = parse_facts(lines[0].strip())
                if facts.get("type", "file").lower() != "file":
                    raise NotFound(f"not a file: {what}")
                return FileInfo(
                    path=rel, size=int(facts.get("size") or 0), modified=parse_time(facts.get("modify", ""))
                )
            size = ftp.size(remote)  # folders answer 550 here
            return FileInfo(path=rel, size=size or 0, modified=self._mdtm(ftp, remote))

        return self._run(what, operation)

    def exists_dir(self, path: str) -> bool | None:
        rel = clean_path(path, allow_root=True)
        remote, what = self._remote(rel), self.uri(rel)
        if not remote:
            return True  # the login's own folder

        def operation(connection: Connection) -> bool:
            ftp = connection.ftp
            if connection.mlst:
                try:
                    answer = ftp.sendcmd(f"MLST {remote}")
                except ftplib.error_perm as exc:
                    if str(exc).startswith("550"):
                        return False
                    raise
                lines = [line for line in answer.splitlines() if line.startswith(" ")]
                facts, _ = parse_facts(lines[0].strip()) if lines else ({}, "")
                return facts.get("type", "").lower() in ("dir", "cdir", "pdir")
            start = ftp.pwd()  # CWD moves the pooled connection: go back after
            try:
                ftp.cwd(remote)
            except ftplib.error_perm as exc:
                if str(exc).startswith("550"):
                    return False
                raise
            ftp.cwd(start)
            return True

        return self._run(what, operation)

    def open_read(self, path: str) -> BinaryIO:
        rel = clean_path(path)
        remote, what = self._remote(rel), self.uri(rel)

        def operation(connection: Connection) -> tuple[Connection, socket.socket]:
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

        def operation(connection: Connection) -> tuple[Connection, socket.socket]:
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

    def rename_new(self, connection: Connection, temp: str, rel: str, on_conflict: OnConflict) -> str:
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
    def _exists(connection: Connection, remote: str) -> bool:
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

        def operation(connection: Connection) -> None:
            connection.ftp.delete(remote)  # folders answer 550 ("not a file")

        self._run(what, operation)

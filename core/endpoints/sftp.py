"""A folder on a partner's SFTP server, through paramiko, with the server's host key pinned.

Connection: one SSH connection and one SFTP session per endpoint, opened on first use and
again after it dropped. `core.endpoints.hostkeys.open_transport` checks the pinned host key
before any credential is sent; then a private key and/or a password authenticates us.

Transfers keep `IN_FLIGHT` bytes of read or write requests outstanding on the file's handle
(what OpenSSH's own client does), so speed does not hinge on the round-trip time and memory
stays at about IN_FLIGHT per stream. Requests are 32 KiB, or as large as the server says it
accepts (``limits@openssh.com``, capped at MAX_REQUEST_SIZE). Every response is
collected by its stream, so a failed write is never lost when another operation happens to
read the answer off the wire. Paramiko's own pipelining and prefetch do not give that: the
prefetch thread asks for the whole file up front, and pipelined write errors are dropped.
This uses `SFTPClient`'s underscore methods `_async_request`, `_read_response`, `_request`
and `_convert_status`, stable since paramiko 1.x.

Writes go to a temporary name in the target's folder (created as needed): ``<name>.<hex>.tradelane
.part`` by default, per the endpoint's `temp_name` (core/endpoints/tempname.py), and are renamed
over the target on commit with ``posix-rename@openssh.com``, which replaces it atomically.
Servers without that extension get remove-then-rename, which leaves a short gap where the name
is missing. A process killed mid-write can leave a temporary file behind; listings never show
them. With ``temp_name: none`` the final name is written directly and nothing is renamed.

With `on_conflict` rename or fail, commit uses the plain SFTP rename instead, which OpenSSH refuses
when the target exists (so two writers never replace each other's file), after a stat of the name
for servers whose rename would replace it. With ``temp_name: none`` the free name is chosen by a
stat before the first byte (best effort: nothing is renamed that could refuse).

Settings and secrets: core/endpoints/sftp_settings.py; the streams: sftp_streams.py; reading a
private key: sftp_keys.py; the host key check: hostkeys.py.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import posixpath
import stat as stat_mod
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar
from urllib.parse import quote

import paramiko
from paramiko.sftp import (
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
)

from core.endpoints.base import (
    CHUNK_SIZE,
    AuthError,
    Endpoint,
    EndpointError,
    FileInfo,
    InvalidPath,
    NameTaken,
    NotFound,
    OnConflict,
    PermissionDenied,
    TransientError,
    Unreachable,
    WriteStream,
    clean_path,
)
from core.endpoints.conflict import candidates, first_free
from core.endpoints.hostkeys import HostKey, HostKeyMismatch, open_transport, parse_host_keys
from core.endpoints.settings import EndpointSettings
from core.endpoints.sftp_keys import load_private_key
from core.endpoints.sftp_settings import SftpSecrets, SftpSettings
from core.endpoints.sftp_streams import MAX_REQUEST_SIZE, REQUEST_SIZE, Responses, SftpReader, SftpWriteStream
from core.endpoints.tempname import PREFIX, RENAME_REFUSED, is_temp_name, temp_name

if TYPE_CHECKING:
    pass

__all__ = ["HostKeyMismatch", "SftpEndpoint"]

TEMP_PREFIX = PREFIX  # one of the reserved temporary-name forms (tempname.py)


def _utc(timestamp: int | float | None) -> datetime:
    return datetime.fromtimestamp(timestamp or 0, tz=UTC)


class SftpEndpoint(Endpoint):
    """A remote folder over SFTP; see SftpSettings and SftpSecrets."""

    scheme: ClassVar[str] = "sftp"
    settings: SftpSettings
    secrets: SftpSecrets
    # A partner's inbox folder: a second file of a name must not replace the first unread.
    default_on_conflict: ClassVar[OnConflict | None] = OnConflict.rename

    def __init__(self, settings: EndpointSettings | Mapping[str, Any], secrets: Any = None) -> None:
        super().__init__(settings, secrets)
        self.host = self.settings.host
        self.port = self.settings.port
        self.user = self.settings.user
        base = self.settings.path
        self.base = base if base == "/" else base.rstrip("/") or "."
        self.host_keys: builtins.list[HostKey] = parse_host_keys(self.settings.host_key)
        self.timeout = self.settings.timeout
        self.temp_name = self.settings.temp_name
        self._pkey: paramiko.PKey | None = None
        self.read_size = self.write_size = REQUEST_SIZE
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        # One SFTP session serves every stream; whoever holds the lock reads answers off the wire.
        self._lock = threading.RLock()

    # --- connection --------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def client(self) -> paramiko.SFTPClient:
        """The SFTP session, (re)connected when needed. Call with the lock held."""
        if self._sftp is not None and self._transport is not None and self._transport.is_active():
            return self._sftp
        self._drop()
        transport = open_transport(self.host, self.port, self.timeout, self.host_keys)
        try:
            self._authenticate(transport)
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:
                raise EndpointError(f"{self.where}: the server would not open a session")
        except paramiko.SSHException as exc:
            transport.close()
            if not transport.is_authenticated():
                raise Unreachable(f"{self.where}: connection lost while logging in: {exc}") from None
            raise EndpointError(f"{self.where}: the server refused the sftp subsystem: {exc}") from None
        except BaseException:
            transport.close()
            raise
        sftp.get_channel().settimeout(self.timeout)
        self._transport, self._sftp = transport, sftp
        self.read_size, self.write_size = self._request_sizes(sftp)
        return sftp

    def _request_sizes(self, sftp: paramiko.SFTPClient) -> tuple[int, int]:
        """Read and write sizes the server accepts, from limits@openssh.com when it has that."""
        try:
            kind, msg = sftp._request(CMD_EXTENDED, "limits@openssh.com")
        except (OSError, paramiko.SFTPError):
            return REQUEST_SIZE, REQUEST_SIZE  # not supported: the size every server must take
        if kind != CMD_EXTENDED_REPLY:
            return REQUEST_SIZE, REQUEST_SIZE
        msg.get_int64()  # max packet length
        max_read, max_write = msg.get_int64(), msg.get_int64()

        def size(limit: int) -> int:
            return min(MAX_REQUEST_SIZE, limit) if limit >= REQUEST_SIZE else REQUEST_SIZE

        return size(max_read), size(max_write)

    def _authenticate(self, transport: paramiko.Transport) -> None:
        password = self.secrets.password or None
        failure: paramiko.AuthenticationException | None = None
        try:
            if self.secrets.private_key:
                if self._pkey is None:
                    self._pkey = load_private_key(self.secrets.private_key, self.secrets.passphrase or None)
                try:
                    transport.auth_publickey(self.user, self._pkey)
                except paramiko.AuthenticationException as exc:
                    failure = exc  # try the password, if there is one, like OpenSSH's client
            if password and not transport.is_authenticated():
                # Also the second step when the server wants a key *and* a password.
                transport.auth_password(self.user, password)
        except paramiko.BadAuthenticationType as exc:
            allowed = ", ".join(exc.allowed_types) or "nothing"
            raise AuthError(
                f"{self.where}: the server does not accept this kind of login (it allows: {allowed})"
            ) from None
        except paramiko.AuthenticationException:
            raise AuthError(f"{self.where}: authentication failed (user or credentials rejected)") from None
        if not transport.is_authenticated():
            if failure is not None:
                raise AuthError(f"{self.where}: authentication failed (key rejected)")
            raise AuthError(f"{self.where}: the server wants more authentication steps than we have")

    def _drop(self, session: paramiko.SFTPClient | None = None) -> None:
        """Close the current session (only if it is `session`, when given)."""
        if session is not None and session is not self._sftp:
            with contextlib.suppress(Exception):
                session.get_channel().get_transport().close()
            return
        sftp, transport = self._sftp, self._transport
        self._sftp = self._transport = None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    @contextlib.contextmanager
    def errors(self, what: str, session: paramiko.SFTPClient | None = None) -> Iterator[None]:
        """Hold the session lock; map SFTP and SSH failures raised inside to endpoint errors.

        `session` is the SFTP session a stream works on: when it fails, only that one is dropped,
        not a newer one other streams may be using.
        """
        with self._lock:
            try:
                yield
            except EndpointError as exc:
                raise self.redact(exc) from None
            except (TimeoutError, EOFError, paramiko.SSHException, paramiko.SFTPError) as exc:
                self._drop(session)  # its state is unknown now; the next call reconnects
                reason = "timed out" if isinstance(exc, TimeoutError) else f"connection lost ({exc})"
                raise self.redact(TransientError(f"{what}: {reason}")) from None
            except OSError as exc:
                raise self.redact(self._map_os_error(exc, what, session)) from None

    def _map_os_error(
        self, exc: OSError, what: str, session: paramiko.SFTPClient | None = None
    ) -> EndpointError:
        if exc.errno == errno.ENOENT:
            return NotFound(f"no such file: {what}")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return PermissionDenied(f"permission denied: {what}")
        sftp = session or self._sftp
        channel = sftp.get_channel() if sftp is not None else None
        if channel is None or not channel.get_transport().is_active():
            self._drop(session)
            return Unreachable(f"{what}: connection lost ({exc})")
        return EndpointError(f"{what}: {exc.strerror or exc}")

    # --- paths -------------------------------------------------------------------------------

    def _remote(self, rel: str) -> str:
        if any(is_temp_name(part) for part in rel.split("/")):
            raise InvalidPath(f"reserved name in path {rel!r}")
        if not rel:
            return self.base
        if self.base == ".":
            return rel
        return posixpath.join(self.base, rel)

    def uri(self, path: str) -> str:
        rel = clean_path(path, allow_root=True)
        host = f"[{self.host}]" if ":" in self.host else self.host
        # As in the SFTP URI draft, "/~/" marks a path relative to the login folder.
        base = (
            self.base if self.base.startswith("/") else "/~" + ("" if self.base == "." else "/" + self.base)
        )
        full = posixpath.join(base, rel) if rel else base
        return f"sftp://{quote(self.user, safe='')}@{host}:{self.port}{quote(full)}"

    # --- operations --------------------------------------------------------------------------

    def list(self, folder: str = "") -> Iterator[FileInfo]:
        rel = clean_path(folder, allow_root=True)
        remote, what = self._remote(rel), self.uri(rel)
        with self.errors(what):
            sftp = self.client()
            try:
                entries = sftp.listdir_attr(remote)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    if rel:
                        return iter(())
                    raise NotFound(f"folder does not exist: {what}") from None
                raise
            infos: builtins.list[FileInfo] = []
            for entry in entries:
                name = entry.filename
                path = f"{rel}/{name}" if rel else name
                try:
                    if is_temp_name(name) or clean_path(path) != path:
                        continue
                except InvalidPath:
                    continue
                attrs = entry
                if attrs.st_mode is not None and stat_mod.S_ISLNK(attrs.st_mode):
                    try:
                        attrs = sftp.stat(posixpath.join(remote, name))
                    except OSError:
                        continue  # a dangling link
                if attrs.st_mode is not None and not stat_mod.S_ISREG(attrs.st_mode):
                    continue
                infos.append(FileInfo(path=path, size=attrs.st_size or 0, modified=_utc(attrs.st_mtime)))
        infos.sort(key=lambda info: info.path)
        return iter(infos)

    def stat(self, path: str) -> FileInfo:
        rel = clean_path(path)
        remote, what = self._remote(rel), self.uri(rel)
        with self.errors(what):
            attrs = self.client().stat(remote)
        if attrs.st_mode is not None and not stat_mod.S_ISREG(attrs.st_mode):
            raise NotFound(f"not a file: {what}")
        return FileInfo(path=rel, size=attrs.st_size or 0, modified=_utc(attrs.st_mtime))

    def exists_dir(self, path: str) -> bool | None:
        rel = clean_path(path, allow_root=True)
        remote, what = self._remote(rel), self.uri(rel)
        try:
            with self.errors(what):
                attrs = self.client().stat(remote)
        except NotFound:
            return False
        return attrs.st_mode is not None and stat_mod.S_ISDIR(attrs.st_mode)

    def open_read(self, path: str) -> BinaryIO:
        rel = clean_path(path)
        remote, what = self._remote(rel), self.uri(rel)
        with self.errors(what):
            handle = self.client().open(remote, "rb")
            try:
                attrs = handle.stat()
            except BaseException:
                handle.close()
                raise
            if attrs.st_mode is not None and not stat_mod.S_ISREG(attrs.st_mode):
                handle.close()
                raise NotFound(f"not a file: {what}")
        return io.BufferedReader(SftpReader(self, handle, attrs.st_size or 0, what), buffer_size=CHUNK_SIZE)

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        rel = clean_path(path)
        target, what = self._remote(rel), self.uri(rel)
        folder, name = posixpath.split(target)
        placement = None if on_conflict is OnConflict.overwrite else (rel, on_conflict)
        picked = placement is not None and self.temp_name == "none"
        with self.errors(what):
            sftp = self.client()
            if picked:
                # No rename to refuse a taken name: take a free one before the first byte.
                rel = first_free(rel, on_conflict, lambda n: self._exists(sftp, self._remote(n)), self.uri)
                target, what, placement = self._remote(rel), self.uri(rel), None
            temp = (
                posixpath.join(folder, temp_name(name, self.temp_name))
                if self.temp_name != "none"
                else target
            )
            try:
                handle = sftp.open(temp, "wb")
            except FileNotFoundError:
                self._makedirs(sftp, folder, what)
                handle = sftp.open(temp, "wb")
        stream = SftpWriteStream(self, handle, temp, target, what, placement)
        stream.path = rel if picked else None
        return stream

    def _makedirs(self, sftp: paramiko.SFTPClient, folder: str, what: str) -> None:
        """mkdir -p: create each missing folder on the way to `folder`."""
        current = "/" if folder.startswith("/") else ""
        for part in folder.split("/"):
            if part in ("", "."):
                continue
            current = posixpath.join(current, part) if current else part
            try:
                attrs = sftp.stat(current)
            except FileNotFoundError:
                try:
                    sftp.mkdir(current)
                except OSError:
                    attrs = sftp.stat(current)  # made meanwhile by someone else? else this raises
                else:
                    continue
            if attrs.st_mode is not None and not stat_mod.S_ISDIR(attrs.st_mode):
                raise EndpointError(f"a file is in the way of a folder in {what}")

    def rename_over(self, temp: str, target: str, what: str) -> None:
        """Move a finished temporary file onto its target, replacing what is there."""
        with self.errors(what):
            sftp = self.client()
            try:
                sftp.posix_rename(temp, target)
                return
            except OSError as exc:
                if exc.errno is not None or "unsupported" not in str(exc).lower():
                    if self._is_folder(sftp, target):
                        raise EndpointError(f"a folder is in the way: {what}") from None
                    if exc.errno in (errno.EACCES, errno.EPERM):
                        raise PermissionDenied(f"{what}: {RENAME_REFUSED}") from None
                    raise
            # No posix-rename extension: plain SFTP rename refuses to replace, so remove first.
            with contextlib.suppress(FileNotFoundError):
                sftp.remove(target)
            try:
                sftp.rename(temp, target)
            except PermissionError:
                raise PermissionDenied(f"{what}: {RENAME_REFUSED}") from None

    def rename_new(self, temp: str, rel: str, on_conflict: OnConflict, what: str) -> str:
        """Move a finished temporary file to `rel` only if nothing is there (fail), or to the first
        free name of `rel`, `name (2).ext`, … (rename); returns the name taken.

        Plain SSH_FXP_RENAME: OpenSSH refuses it when the target exists, so a writer that slips in
        between the stat and the rename is never replaced; the stat covers servers whose plain
        rename replaces (best effort there).
        """
        names = candidates(rel) if on_conflict is OnConflict.rename else iter([rel])
        with self.errors(what):
            sftp = self.client()
            for name in names:
                remote = self._remote(name)
                if not self._exists(sftp, remote):
                    try:
                        sftp.rename(temp, remote)
                        return name
                    except OSError:
                        if not self._exists(sftp, remote):
                            raise  # refused for another reason than the name
                if on_conflict is OnConflict.fail:
                    raise NameTaken(f"{self.uri(name)} exists and on_conflict is fail; not replaced")
        raise NameTaken(f"{self.uri(rel)} and every numbered name after it are taken")

    @staticmethod
    def _exists(sftp: paramiko.SFTPClient, remote: str) -> bool:
        try:
            sftp.stat(remote)
        except FileNotFoundError:
            return False
        return True

    def _is_folder(self, sftp: paramiko.SFTPClient, remote: str) -> bool:
        try:
            mode = sftp.stat(remote).st_mode
        except OSError:
            return False
        return mode is not None and stat_mod.S_ISDIR(mode)

    def close_handle(self, handle: paramiko.SFTPFile, wait_for: Responses) -> None:
        """Close a remote handle, best effort: used on abort and early close."""
        with self._lock:
            if self._sftp is not handle.sftp:
                return  # that session is gone, and its handles with it
            try:
                handle.close()  # answers still in flight land in `wait_for` meanwhile
            except Exception:
                self._drop()
            wait_for.answers.clear()

    def discard(self, remote: str) -> None:
        """Remove a temporary file, best effort."""
        with self._lock, contextlib.suppress(Exception):
            if self._sftp is not None:
                self._sftp.remove(remote)

    def delete(self, path: str) -> None:
        rel = clean_path(path)
        remote, what = self._remote(rel), self.uri(rel)
        with self.errors(what):
            sftp = self.client()
            try:
                sftp.remove(remote)
            except OSError as exc:
                if exc.errno is None and self._is_folder(sftp, remote):
                    raise NotFound(f"not a file: {what}") from None
                raise

"""The partner mailbox over FTP and explicit FTPS (AUTH TLS), on pyftpdlib.

pyftpdlib is built from three pluggable pieces and so is this module:

* `MailboxAuthorizer` — logins through the shared `MailboxAuth` (the login policy of
  `core.login`: address bans, account locks, IP allow-list; per-partner session limit, audit). A
  wrong password, an unknown name, a locked account and an address outside the allow-list all read
  "530 Login incorrect.", so nobody learns which names exist; a banned address and the session
  limit say what they are.
* `MailboxFS` — an `AbstractedFS` whose "filesystem paths" are the partner's virtual paths
  ("/", "/upload/x", "/download/y"), served by `MailboxView`. Nothing here touches a real path, so
  `..`, absolute paths and other partners' names can only ever resolve inside the partner's home.
* `MailboxFTPHandler` — a `TLS_FTPHandler`: explicit FTPS (AUTH TLS) on one port, required unless
  plain FTP is allowed (`TRADELANE_FTP_REQUIRE_TLS=false`), passive port range, idle timeout, a
  login grace time, REST/APPE. STOR streams into a `MailboxView` upload handle; RETR streams from
  `MailboxView.open_read`.

Uploads go through intake exactly once, and only when complete. pyftpdlib treats any end of the
data connection as a finished upload and replies "226" *before* calling `on_file_received`, so the
decision is taken in the data channel (`_UploadFinishingDTP`) before the reply is sent:

* a clean end of data while the client is still connected → `complete()` (intake: rename, receipt,
  transfers, dispatch), then "226 ... sha256 ..."; if intake refuses, the client gets a 4xx/5xx;
* a reset data connection, ABOR, a timeout, a refused write, or a client whose control connection
  has gone too (a killed client closes both) → `abandon()`: nothing visible, nothing triggered.

While an upload streams, the session thread only receives; a writer thread per upload does the
view's disk write and SHA-256 and starts the kernel's writeback early (`UploadFile`), so the
fsync at completion is short. Downloads use sendfile(2) on plain connections and 256 KiB reads
on TLS ones.

`FTPServer` runs pyftpdlib's threaded server (one thread per session, so a password hash or an
fsync in one session never stalls another) on an IOLoop of its own, in a background thread. Since
every connection costs a thread from the moment it is accepted, connections are capped in all and
per address (pyftpdlib's `max_cons`, `max_cons_per_ip`: "421 Too many connections ...") and one that
has not logged in within the login grace time is closed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import logging
import os
import queue
import select
import socket
import stat as stat_mod
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from OpenSSL import SSL

from core.config import Settings
from core.intake import IntakeError
from core.sessions import LiveSession
from mailboxes.auth import LoginRefused, MailboxAuth, MailboxUser
from mailboxes.view import (
    AlreadyExists,
    Busy,
    DownloadFile,
    Entry,
    Forbidden,
    InvalidName,
    MailboxError,
    MailboxView,
    NoSuchFile,
    QuotaExceeded,
)

with warnings.catch_warnings():
    # pyftpdlib is built on asyncore/asynchat, which Python 3.11 deprecates on import.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import AuthenticationFailed
    from pyftpdlib.exceptions import FilesystemError
    from pyftpdlib.filesystems import AbstractedFS
    from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
    from pyftpdlib.handlers.ftp.data import DTPHandler
    from pyftpdlib.handlers.ftp.producers import FileProducer
    from pyftpdlib.ioloop import _ERRNOS_DISCONNECTED, _ERRNOS_RETRY, IOLoop
    from pyftpdlib.servers import ThreadedFTPServer

log = logging.getLogger(__name__)

PROTOCOL = "ftp"
CERT_FILE = "ftp_cert.pem"
KEY_FILE = "ftp_key.pem"
CERT_VALIDITY = timedelta(days=3650)
# Bytes per recv() on an upload and per read() on a download. pyftpdlib's 64 KiB costs one trip
# through the event loop per 64 KiB; larger chunks keep the per-byte Python overhead small.
CHUNK = 256 * 1024


# --- certificate ----------------------------------------------------------------------------


def ensure_certificate(settings: Settings) -> tuple[Path, Path]:
    """The certificate and key FTPS presents: from settings, else self-signed into TRADELANE_HOME.

    The self-signed pair (EC P-256, CN=localhost, SAN localhost + 127.0.0.1 + the configured host)
    is generated once, under a lock so two processes starting together agree on one pair, and kept
    across restarts (regenerated only if missing, unreadable, mismatched or expired).
    """
    if settings.tls_cert_file is not None:
        cert = settings.tls_cert_file.expanduser()
        key = (settings.tls_key_file or settings.tls_cert_file).expanduser()
        for path in (cert, key):
            if not path.is_file():
                raise FileNotFoundError(f"FTPS certificate file not found: {path}")
        return cert, key
    home = settings.home_dir
    home.mkdir(parents=True, exist_ok=True)
    cert, key = home / CERT_FILE, home / KEY_FILE
    with open(home / ".ftp_cert.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _usable_pair(cert, key):
            _write_self_signed(cert, key, settings.host)
    return cert, key


def _usable_pair(cert: Path, key: Path) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
        private_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    if certificate.not_valid_after_utc <= datetime.now(UTC) + timedelta(days=1):
        return False
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    return certificate.public_key().public_bytes(encoding, public) == private_key.public_key().public_bytes(
        encoding, public
    )


def _write_self_signed(cert: Path, key: Path, host: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    private_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    if host and host not in ("localhost", "127.0.0.1", "0.0.0.0", "::"):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tradelane (self-signed)"),
        ]
    )
    now = datetime.now(UTC)
    public_key = private_key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(private_key, hashes.SHA256())
    )
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomic(key, key_pem, 0o600)
    _write_atomic(cert, certificate.public_bytes(serialization.Encoding.PEM), 0o600)  # the home is private
    log.info("generated a self-signed FTPS certificate in %s", cert)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen (or narrow) what we asked for
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def make_ssl_context(cert: Path, key: Path) -> SSL.Context:
    """A server context: TLS 1.2+, no compression, session resumption for data connections."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    context.use_certificate_chain_file(str(cert))
    context.use_privatekey_file(str(key))
    context.check_privatekey()
    # Clients that insist the data connection resume the control connection's TLS session need
    # a session id context and a server-side session cache.
    context.set_session_id(b"tradelane-ftp")
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    return context


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


# --- errors → replies -----------------------------------------------------------------------


def reply_for(exc: BaseException) -> str:
    """The FTP reply line for a refused operation; the message is safe to show the partner."""
    message = str(exc).rstrip(".") or type(exc).__name__
    if isinstance(exc, QuotaExceeded):
        return f"552 {message}."
    if isinstance(exc, InvalidName):
        return f"553 {message}."
    if isinstance(exc, Busy):
        return f"450 {message}."
    if isinstance(exc, Forbidden | NoSuchFile | AlreadyExists):
        return f"550 {message}."
    if isinstance(exc, MailboxError | IntakeError):
        return f"550 {message}."
    return "451 Local error; the file was not received."


def _fs_error(exc: MailboxError) -> FilesystemError:
    """pyftpdlib answers `550 <message>.` to a FilesystemError from any filesystem call."""
    return FilesystemError(str(exc).rstrip(".") or type(exc).__name__)


# --- the authorizer -------------------------------------------------------------------------

LOGIN_INCORRECT = "Login incorrect."
LOCKED_OUT = "Too many failed logins from your address; try again later."
TOO_MANY_SESSIONS = "Too many sessions for this login; close one and try again."


def client_address(handler: Any) -> str | None:
    ip = str(getattr(handler, "remote_ip", "") or "")
    return ip.removeprefix("::ffff:") or None


class MailboxAuthorizer:
    """pyftpdlib's authorizer interface over `MailboxAuth`.

    Permissions are not decided here: the partner's home has per-folder rules that `MailboxView`
    enforces with a clear message, so every path command is let through to the filesystem except
    the two that make no sense for a mailbox (SITE CHMOD, MFMT).
    """

    def __init__(self, auth: MailboxAuth) -> None:
        self.auth = auth

    def validate_authentication(self, username: str, password: str, handler: MailboxFTPHandler) -> None:
        remote_addr = client_address(handler)
        try:
            user = self.auth.login_password(username, password, remote_addr, PROTOCOL)
        except LoginRefused as exc:
            log.info("FTP login refused for %r from %s: %s", username, remote_addr, exc)
            # Only a banned address is told apart: it says nothing about any user.
            raise AuthenticationFailed(LOCKED_OUT if exc.banned_for else LOGIN_INCORRECT) from None
        try:
            live = self.auth.open_session(user, remote_addr, PROTOCOL, end=handler.end_session)
        except LoginRefused:
            raise AuthenticationFailed(TOO_MANY_SESSIONS) from None
        handler.attach(user, live)

    def get_home_dir(self, username: str) -> str:
        return "/"

    def has_user(self, username: str) -> bool:
        return False  # never asked by the handler; nothing may learn which names exist

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        return perm not in "MT"

    def get_perms(self, username: str) -> str:
        return "elradfw"

    def get_msg_login(self, username: str) -> str:
        return "Logged in. Put files in /upload; fetch files from /download."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass


# --- the filesystem -------------------------------------------------------------------------


def _mtime(entry: Entry) -> float:
    value: Any = entry.mtime
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value or 0)


def _stat_result(entry: Entry, path: str) -> os.stat_result:
    mode = int(entry.mode or 0)
    if stat_mod.S_IFMT(mode) == 0:
        mode |= stat_mod.S_IFDIR if entry.is_dir else stat_mod.S_IFREG
    mtime = _mtime(entry)
    ino = zlib.crc32(path.encode())  # a stable "unique" fact for MLSD, without real inode numbers
    return os.stat_result((mode, ino, 0, 1, 0, 0, int(entry.size or 0), mtime, mtime, mtime))


class MailboxFS(AbstractedFS):
    """The partner's home as pyftpdlib sees it. "Filesystem paths" are virtual, absolute paths.

    pyftpdlib maps a client's path with `ftp2fs` and checks it with `validpath` before any
    command; here `ftp2fs` is `MailboxView.normalize` (cwd-relative, `..` clamped at the home),
    so there is no real path to escape to, and the view checks every path again.
    """

    def __init__(self, root: str, cmd_channel: MailboxFTPHandler) -> None:
        super().__init__("/", cmd_channel)
        view = cmd_channel.view
        assert view is not None, "the filesystem is made after login"
        self.view: MailboxView = view
        self.partner = cmd_channel.username

    # --- paths

    def ftpnorm(self, ftppath: str) -> str:
        try:
            return self.view.normalize(ftppath, self.cwd)
        except MailboxError:
            # Unusable (a NUL, say): keep a lexical form; the view refuses it when it is used.
            return super().ftpnorm(ftppath)

    def ftp2fs(self, ftppath: str) -> str:
        return self.ftpnorm(ftppath)

    def fs2ftp(self, fspath: str) -> str:
        return fspath if fspath.startswith("/") else "/"

    def validpath(self, path: str) -> bool:
        return path.startswith("/")

    def realpath(self, path: str) -> str:
        return path

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except MailboxError as exc:
            raise _fs_error(exc) from None

    # --- queries

    def entry(self, path: str) -> Entry:
        return self._call(self.view.stat, path)  # type: ignore[no-any-return]

    def stat(self, path: str) -> os.stat_result:
        return _stat_result(self.entry(path), path)

    lstat = stat

    def isdir(self, path: str) -> bool:
        try:
            return bool(self.view.stat(path).is_dir)
        except MailboxError:
            return False

    def isfile(self, path: str) -> bool:
        try:
            return not self.view.stat(path).is_dir
        except MailboxError:
            return False

    def islink(self, path: str) -> bool:
        return False

    def lexists(self, path: str) -> bool:
        try:
            self.view.stat(path)
        except MailboxError:
            return False
        return True

    def getsize(self, path: str) -> int:
        return int(self.entry(path).size or 0)

    def getmtime(self, path: str) -> float:
        return _mtime(self.entry(path))

    def listdir(self, path: str) -> list[str]:
        entries: list[Entry] = self._call(self.view.listdir, path)
        return [e.name for e in entries]

    listdirinfo = listdir

    def chdir(self, path: str) -> None:
        if not self.entry(path).is_dir:
            raise FilesystemError(f"{path} is a file, not a folder")
        self.cwd = path

    def get_user_by_uid(self, uid: int) -> str:
        return str(self.partner or "partner")

    def get_group_by_gid(self, gid: int) -> str:
        return "tradelane"

    def format_mlsx(
        self, basedir: str, listing: list[str], perms: str, facts: list[str], ignore_err: bool = True
    ) -> Iterator[bytes]:
        # The "perm" fact says what this partner may do with each entry, not one set for all.
        for name in listing:
            path = f"{basedir.rstrip('/')}/{name}"
            for line in super().format_mlsx(basedir, [name], "", facts, ignore_err):
                yield line.replace(b"perm=;", f"perm={self.perm_fact(path)};".encode(), 1)

    def perm_fact(self, path: str) -> str:
        """RFC 3659 permission letters for one entry, as the view allows."""
        folder, _, name = path.strip("/").partition("/")
        user = self.cmd_channel.mailbox_user
        can_delete = bool(user and user.can_delete_downloads)
        if folder == "upload":
            return "aw" if name else "elc"  # a file here is an unfinished upload: resume it
        if folder == "download":
            if name:
                return "rd" if can_delete else "r"
            return "elp" if can_delete else "el"
        return "el"

    # --- changes (pyftpdlib answers 550 with the view's message when these raise)

    def mkdir(self, path: str) -> None:
        self._refusable("mkdir", path, self.view.mkdir, path)

    def rmdir(self, path: str) -> None:
        self._refusable("rmdir", path, self.view.rmdir, path)

    def remove(self, path: str) -> None:
        self._refusable("delete", path, self.view.remove, path)

    def rename(self, src: str, dst: str) -> None:
        self._refusable("rename", src, self.view.rename, src, dst, to=dst)

    def _refusable(self, action: str, target: str, fn: Any, *args: Any, **detail: Any) -> None:
        """Run a change; the view audits what it did, a refusal is audited here."""
        try:
            fn(*args)
        except MailboxError as exc:
            self.cmd_channel.audit(f"{action}.failed", target, reason=str(exc), **detail)
            raise _fs_error(exc) from None

    def chmod(self, path: str, mode: int) -> None:
        raise FilesystemError("changing permissions is not supported")

    def utime(self, path: str, timeval: float) -> None:
        raise FilesystemError("changing times is not supported")

    def readlink(self, path: str) -> str:
        raise FilesystemError("there are no links here")

    def open(self, filename: str, mode: str) -> BinaryIO:
        # RETR, STOR and APPE go through the handler (offsets, intake); nothing else opens files.
        raise FilesystemError("not supported")

    def mkstemp(self, *args: Any, **kwargs: Any) -> Any:
        raise FilesystemError("STOU is not supported; use STOR with a file name")


# --- uploads ----------------------------------------------------------------------------------


class _UploadRefused(OSError):
    """Raised through pyftpdlib's data channel when the view refuses a chunk (size limit, ...)."""


class UploadFile:
    """What pyftpdlib's data channel writes an upload into: a `MailboxView` upload handle.

    The session thread only receives: chunks go through a short queue to a writer thread that
    does the disk write and the SHA-256 (both release the GIL), so receiving, writing and hashing
    overlap, and the writer asks the kernel to start writing back what it wrote so the fsync at
    completion has little left to do.

    Exactly one of `complete()` (intake) or `abandon()` happens; `close()` abandons unless the
    upload was completed, so every way out of pyftpdlib (closed session, queued STOR that never got
    a data connection, errors) leaves nothing visible and triggers nothing.
    """

    pipelined = True
    queue_chunks = 32
    writeback_every = 32 * 1024 * 1024

    def __init__(self, handle: Any, path: str, offset: int) -> None:
        self.handle = handle
        self.name = path
        self.offset = offset
        self.received = 0
        self.error: MailboxError | IntakeError | None = None
        self.reason: str | None = None
        self.receipt: Any = None
        self.finished = False
        self._queue: queue.Queue[bytes | None] = queue.Queue(self.queue_chunks)
        self._writer: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def closed(self) -> bool:
        return self.finished

    def write(self, data: bytes) -> int:
        if self._failure is not None:
            self._raise_refused()
        if not self.pipelined:
            self._write_now(data)
            self.received += len(data)
            return len(data)
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="ftp-upload-writer", daemon=True)
            self._writer.start()
        self._queue.put(data)
        self.received += len(data)
        return len(data)

    def _write_now(self, data: bytes) -> None:
        try:
            self.handle.write(data)
        except BaseException as exc:
            self._failure = exc
            self._raise_refused()

    def _raise_refused(self) -> None:
        exc = self._failure
        if isinstance(exc, MailboxError | IntakeError):
            self.error = exc
            code = errno.EFBIG if isinstance(exc, QuotaExceeded) else errno.EIO
            raise _UploadRefused(code, str(exc)) from exc
        raise _UploadRefused(errno.EIO, f"write failed: {exc}") from exc

    def _write_loop(self) -> None:
        hint = _writeback_hint(self.handle)
        written = flushed = 0
        try:
            while (chunk := self._queue.get()) is not None:
                if self._failure is not None:
                    continue  # drain, so the receiving side never blocks on a full queue
                try:
                    self.handle.write(chunk)
                except BaseException as exc:
                    self._failure = exc
                    continue
                written += len(chunk)
                if hint is not None and written - flushed >= self.writeback_every:
                    hint(flushed, written - flushed)
                    flushed = written
        finally:
            if hint is not None:
                hint.close()

    def _drain(self) -> None:
        """Wait until everything received is written (or refused)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join()

    def complete(self) -> Any:
        """Hand the finished file to intake: receipt, pending transfers, dispatch."""
        self._drain()
        if self._failure is not None:
            failure = self._failure
            self.abandon(str(failure))
            if isinstance(failure, MailboxError | IntakeError):
                self.error = failure
            raise failure
        self.finished = True
        self.receipt = self.handle.complete()
        return self.receipt

    def abandon(self, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.reason = reason
        self._drain()  # what arrived is kept for a resume
        try:
            self.handle.abandon()
        except Exception:
            log.exception("abandoning FTP upload %s failed", self.name)

    def close(self) -> None:
        self.abandon(self.reason or "the session ended before the upload finished")


class _WritebackHint:
    """`sync_file_range(SYNC_FILE_RANGE_WRITE)` on the staged file: start writeback, don't wait."""

    _libc: Any = None

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def __call__(self, offset: int, length: int) -> None:
        self._libc.sync_file_range(self.fd, ctypes.c_int64(offset), ctypes.c_int64(length), 2)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _writeback_hint(handle: Any) -> _WritebackHint | None:
    staged = getattr(handle, "staged", None)
    if staged is None or not sys.platform.startswith("linux"):
        return None
    try:
        if _WritebackHint._libc is None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _WritebackHint._libc = libc
        return _WritebackHint(Path(staged))
    except (OSError, AttributeError):
        return None


def _client_gone(channel: Any, grace: float) -> bool:
    """Whether the client behind a control connection has hung up (EOF or reset pending).

    A killed client closes its control and data connections together, and a clean end of the data
    stream looks exactly like a finished upload. Waiting `grace` seconds for the control
    connection to show its end tells the two apart; a live client is just waiting for the reply.
    """
    if channel is None or getattr(channel, "_closed", True) or not channel.connected:
        return True
    try:
        fd = channel.socket.fileno()
        if fd < 0:
            return True
        readable, _, _ = select.select([fd], [], [], grace)
        if not readable:
            return False
        with socket.socket(fileno=os.dup(fd)) as probe:
            return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


class _UploadFinishingDTP(DTPHandler):
    """Decides an upload's fate before pyftpdlib replies, and tells a reset from a clean end.

    Sits between the TLS mixin and `DTPHandler` in the MRO, so it runs however the channel closes
    (including after a TLS shutdown completes).
    """

    ac_in_buffer_size = CHUNK
    ac_out_buffer_size = CHUNK
    eof_grace_seconds = 0.01
    reset = False

    _deferred: BaseException | None = None

    def recv(self, buffer_size: int) -> bytes:
        if self._deferred is not None:
            exc, self._deferred = self._deferred, None
            return self._recv_failed(exc)
        try:
            data: bytes = self.socket.recv(buffer_size)
        except (SSL.Error, OSError) as exc:
            return self._recv_failed(exc)
        if not data:
            self.handle_close()
        elif isinstance(self.socket, SSL.Connection) and len(data) < buffer_size:
            data = self._more_records(data, buffer_size)
        return data

    def _more_records(self, data: bytes, buffer_size: int) -> bytes:
        """TLS hands over one record (16 KiB) per read: gather what is already here into one chunk.

        One trip through pyftpdlib's event loop per 16 KiB would cost more than the decryption.
        A failure after the first record is kept for the next call, so no byte is lost.
        """
        buffer = bytearray(data)
        while len(buffer) < buffer_size:
            try:
                more = self.socket.recv(buffer_size - len(buffer))
            except SSL.WantReadError:
                break
            except (SSL.Error, OSError) as exc:
                # Handled on the next read, which must come even if the socket stays quiet.
                self._deferred = exc
                self.ioloop.call_later(0, self._read_deferred, _errback=self.handle_error)
                break
            if not more:
                break
            buffer += more
        return buffer if len(buffer) > len(data) else data  # type: ignore[return-value]

    def _read_deferred(self) -> None:
        if self._deferred is not None and not self._closed:
            self.handle_read_event()

    def _recv_failed(self, exc: BaseException) -> bytes:
        from pyftpdlib.exceptions import _RetryError

        if isinstance(exc, SSL.SysCallError):
            if exc.args and exc.args[0] in _ERRNOS_DISCONNECTED:
                self.reset = True
            raise exc  # the TLS mixin turns it into a close
        if isinstance(exc, OSError) and not isinstance(exc, SSL.Error):
            if exc.errno in _ERRNOS_DISCONNECTED:
                self.reset = True
                self.handle_close()
                return b""
            if exc.errno in _ERRNOS_RETRY:
                raise _RetryError from exc
        raise exc

    def handle_close(self) -> None:
        if self.receive and self.reset and not self._closed:
            self.transfer_finished = False
            self._resp = ("426 Connection reset during the upload; nothing was received.", logging.info)
            self.close()
            return
        super().handle_close()

    def close(self) -> None:
        if not self._closed:
            if self.receive and isinstance(self.file_obj, UploadFile):
                self._finish_upload(self.file_obj)
            elif isinstance(self.file_obj, DownloadFile) and "initiate_send" in self.__dict__:
                # sendfile(2) moved the bytes without read(): tell the file, which audits on close.
                self.file_obj.sent += self.tot_bytes_sent
        super().close()

    def _finish_upload(self, upload: UploadFile) -> None:
        if upload.finished:
            return
        if upload.error is not None:
            self.transfer_finished = False
            upload.abandon(str(upload.error))
            self._resp = (reply_for(upload.error).replace(".", "; nothing was received.", 1), logging.info)
            return
        if not self.transfer_finished:
            upload.abandon("the upload was broken off")
            if self._resp:
                self._resp = (
                    f"426 Upload broken off after {upload.received} bytes; nothing was received.",
                    logging.info,
                )
            return
        if _client_gone(self.cmd_channel, self.eof_grace_seconds):
            self.transfer_finished = False
            upload.abandon("the client went away before the upload was confirmed")
            return
        try:
            receipt = upload.complete()
        except (MailboxError, IntakeError) as exc:
            self.transfer_finished = False
            upload.reason = str(exc)
            self._resp = (reply_for(exc), logging.info)
            return
        except Exception:
            log.exception("FTP upload of %s could not be taken in", upload.name)
            self.transfer_finished = False
            upload.reason = "internal error"
            self._resp = ("451 Local error; the file was not received.", logging.warning)
            return
        if receipt is not None:
            self._resp = (
                f"226 Transfer complete: {receipt.size} bytes, sha256 {receipt.sha256}.",
                logging.debug,
            )


class MailboxDTPHandler(TLS_DTPHandler, _UploadFinishingDTP):
    """Data channel: TLS when PROT P, uploads finished by `_UploadFinishingDTP`."""

    def handle_error(self) -> None:
        upload = self.file_obj
        if self.receive and isinstance(upload, UploadFile) and upload.error is not None:
            # An expected refusal (size limit, ...): no traceback; the reply says why.
            self._error = True
            _UploadFinishingDTP.close(self)
            return
        super().handle_error()


class _ChunkProducer(FileProducer):
    buffer_size = CHUNK


# --- the protocol handler -------------------------------------------------------------------


class MailboxFTPHandler(TLS_FTPHandler):
    """One FTP session of one partner. `FTPServer` makes a subclass per server with its settings."""

    abstracted_fs = MailboxFS
    dtp_handler = MailboxDTPHandler
    banner = "tradelane FTP/FTPS mailbox ready."
    auth: MailboxAuth
    proto_cmds: ClassVar[dict[str, Any]] = {k: v for k, v in TLS_FTPHandler.proto_cmds.items() if k != "STOU"}

    login_grace: float = 120.0

    def __init__(self, conn: socket.socket, server: Any, ioloop: Any = None) -> None:
        self.mailbox_user: MailboxUser | None = None
        self.live: LiveSession | None = None
        self.view: MailboxView | None = None
        self._upload: UploadFile | None = None
        self._download: tuple[str, int] | None = None
        self._login_deadline = time.monotonic() + self.login_grace
        self._grace_timer: Any = None
        super().__init__(conn, server, ioloop)

    # --- login grace time (OpenSSH's LoginGraceTime): an absolute deadline, unlike the idle timeout
    # that every command resets, so a client cannot hold a connection (and its thread) by chatting.

    def add_channel(self, map: Any = None, events: Any = None) -> None:
        # Called on the accepting IOLoop, then again on the session thread's own: the timer runs there.
        super().add_channel(map, events)
        self._cancel_grace_timer()
        if not self.authenticated:
            remaining = max(0.0, self._login_deadline - time.monotonic())
            self._grace_timer = self.ioloop.call_later(
                remaining, self._login_grace_expired, _errback=self.handle_error
            )

    def _cancel_grace_timer(self) -> None:
        timer, self._grace_timer = self._grace_timer, None
        if timer is not None and not timer.cancelled:
            timer.cancel()

    def _login_grace_expired(self) -> None:
        self._grace_timer = None
        if self.authenticated or self._closed:
            return
        self.respond(f"421 Not logged in within {self.login_grace:g} seconds; closing.", logfun=log.info)
        self.close_when_done()

    def on_login(self, username: str) -> None:
        self._cancel_grace_timer()

    # --- session

    def attach(self, user: MailboxUser, live: LiveSession) -> None:
        """Called by the authorizer once the login is accepted and the session counted."""
        self.mailbox_user = user
        self.live = live
        self.view = MailboxView(user, self.auth, client_address(self), PROTOCOL)

    def end_session(self, _why: str) -> None:
        """End this session from another thread (the partner was removed, disabled or locked).

        The sockets are shut down under the session's feet; its own thread sees them end, abandons
        an upload in progress (nothing is taken in) and closes, as when a client vanishes.
        """
        for channel in (self, self.data_channel):
            sock = getattr(channel, "socket", None)
            with contextlib.suppress(OSError, ValueError, AttributeError):
                if sock is not None:
                    with socket.socket(fileno=os.dup(sock.fileno())) as dup:
                        dup.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        upload, self._upload = self._upload, None
        if upload is not None:
            upload.close()
            if upload.receipt is None:
                self.audit("upload.failed", upload.name, reason=upload.reason, bytes=upload.received)
        live, self.live = self.live, None
        self.mailbox_user = None
        self.view = None
        if live is not None:
            self.auth.close_session(live)

    def flush_account(self) -> None:
        super().flush_account()
        self._release()

    def close(self) -> None:
        self._cancel_grace_timer()
        try:
            super().close()
        finally:
            self._release()

    def audit(self, action: str, target: str, **detail: Any) -> None:
        if self.mailbox_user is None:
            return
        target = target.lstrip("/")  # "upload/x.csv", as the view and intake write it
        try:
            self.auth.record(
                self.mailbox_user, action, target, client_address(self), protocol=PROTOCOL, **detail
            )
        except Exception:
            log.exception("could not record audit event %s", action)

    # --- transfers

    def ftp_RETR(self, file: str) -> str | None:
        rest_pos, self._restart_position = self._restart_position, 0
        assert self.view is not None
        try:
            if rest_pos:
                size = int(self.view.stat(file).size or 0)
                if rest_pos > size:
                    self.respond(f"554 REST position ({rest_pos}) is past the end of the file ({size}).")
                    return None
            fd = self.view.open_read(file, rest_pos)
        except MailboxError as exc:
            self.audit("download.failed", file, reason=str(exc))
            self.respond(reply_for(exc))
            return None
        self._download = (file, rest_pos)
        try:
            producer = _ChunkProducer(fd, self._current_type)
            self.push_dtp_data(producer, isproducer=True, file=fd, cmd="RETR")
        except Exception:
            fd.close()
            raise
        return file

    def ftp_STOR(self, file: str, mode: str = "w") -> str | None:
        cmd = "APPE" if "a" in mode else "STOR"
        rest_pos, self._restart_position = self._restart_position, 0
        assert self.view is not None
        previous = self._upload
        if previous is not None and not previous.finished:
            if self.data_channel is not None and self.data_channel.receive:
                self.respond("450 An upload is already in progress on this session.")
                return None
            # A STOR that never got its data connection (PASV given up, ABOR): let it go.
            self._upload = self._in_dtp_queue = None
            previous.close()
            self.audit("upload.failed", previous.name, reason="replaced by another upload", bytes=0)
        try:
            handle = self.view.open_upload(file, offset=rest_pos, append=cmd == "APPE")
        except (MailboxError, IntakeError) as exc:
            self.audit("upload.failed", file, reason=str(exc), command=cmd)
            self.respond(reply_for(exc))
            return None
        upload = self._upload = UploadFile(handle, file, rest_pos)
        if self.data_channel is not None:
            self.respond("125 Data connection already open. Transfer starting.")
            self.data_channel.file_obj = upload
            self.data_channel.enable_receiving(self._current_type, cmd)
        else:
            self.respond("150 File status okay. About to open data connection.")
            self._in_dtp_queue = (upload, cmd)
        return file

    def log_transfer(
        self, cmd: str, filename: str, receive: bool, completed: bool, elapsed: float, bytes: int
    ) -> None:
        super().log_transfer(cmd, filename, receive, completed, elapsed, bytes)
        if receive:
            upload, self._upload = self._upload, None
            if upload is not None and not completed:
                self.audit(
                    "upload.failed", upload.name, reason=upload.reason, bytes=upload.received, command=cmd
                )
            # a completed upload was recorded by intake ("upload", with its receipt)
            return
        # The view's file audited the download ("download", bytes sent) when it was closed.
        path, offset = self._download or (filename, 0)
        self._download = None
        if not completed:
            self.audit(
                "download.failed", path, sent=bytes, offset=offset, reason="the transfer was broken off"
            )


# --- the server -------------------------------------------------------------------------------


class _ThreadedServer(ThreadedFTPServer):
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
                "timeout": timeout,
                "login_grace": settings.login_grace_seconds,
            },
        )
        self._server: _ThreadedServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the FTP server is already running")
        self._stopping.clear()
        # An IOLoop of its own: pyftpdlib's default is one per process, shared by every server.
        server = _ThreadedServer((self.host, self.port), self.handler, ioloop=IOLoop())
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

    def _serve(self, server: _ThreadedServer) -> None:
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

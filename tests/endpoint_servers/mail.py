"""Mail servers for the email endpoint's tests: aiosmtpd (SMTP) and Dovecot (IMAP) on loopback ports.

Both serve one mail root of Maildirs, `<root>/<user>/`, so a message sent over SMTP can be pulled
over IMAP: the SMTP server delivers each accepted message into its recipient's Maildir (`new/`),
which is the INBOX Dovecot serves that user. A user (and their Maildir) is made per test with
`MailRoot.create` (SMTP only) or `ImapServer.add_user` (also an IMAP login), so tests never share
a mailbox. Recipients without a Maildir are refused with 550; the local part "deferred" with 451.

* `smtp_server`: one child process (`python -m tests.endpoint_servers.mail`, so the big messages
  it buffers never count against the test process's memory) running three aiosmtpd controllers:
  STARTTLS (AUTH only after STARTTLS), implicit TLS, and plain. All require AUTH PLAIN/LOGIN as
  `SmtpServer.user`. Each delivered message gets an `X-Test-Authenticated-As` header and a
  `Return-Path`.
* `imap_server`: Dovecot in the foreground (`dovecot -F -c <cfg>`) with a minimal config in a temp
  dir: IMAP with STARTTLS on one port, IMAPS on another, passwd-file logins, a static userdb, no
  auth failure delay. As root, mail processes run as `nobody` and the login/internal processes as
  the package's `dovenull`/`dovecot` users; as any other user, everything runs as that user.
* `mail_tls`: a throwaway CA and a server certificate for 127.0.0.1 / localhost signed by it; the
  CA file is what endpoints get as `cafile`. Without it the certificate does not verify.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import grp
import imaplib
import json
import os
import pwd
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port

__all__ = [
    "DEFERRED_LOCAL_PART",
    "ImapServer",
    "MailRoot",
    "MailTLS",
    "MailUser",
    "SmtpServer",
    "imap_server",
    "mail_root",
    "mail_tls",
    "smtp_env",
    "smtp_server",
]

MAIL_DOMAIN = "tradelane.test"
DEFERRED_LOCAL_PART = "deferred"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0


# --- TLS -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MailTLS:
    ca: Path  # trust this (cafile) and the servers' certificate verifies
    cert: Path
    key: Path


def make_tls(directory: Path) -> MailTLS:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tradelane test mail CA")])
    usage = dict.fromkeys(
        [
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ],
        False,
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(**usage | {"key_cert_sign": True, "crl_sign": True}), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**usage | {"digital_signature": True}), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = MailTLS(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    tls.key.chmod(0o600)
    return tls


@pytest.fixture(scope="session")
def mail_tls(tmp_path_factory: pytest.TempPathFactory) -> MailTLS:
    return make_tls(tmp_path_factory.mktemp("mail-tls"))


# --- the Maildirs ----------------------------------------------------------------------------


def _mail_owner() -> tuple[int, int]:
    """Who owns the Maildirs: as root, nobody (Dovecot refuses root for mail); else ourselves."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


@dataclass(frozen=True)
class MailRoot:
    path: Path
    uid: int
    gid: int

    def maildir(self, user: str, folder: str | None = None) -> Path:
        base = self.path / user
        return base / f".{folder}" if folder else base

    def create(self, user: str | None = None) -> str:
        """A new, empty Maildir (and so a recipient the SMTP server accepts); returns the user name."""
        user = user or f"u{secrets.token_hex(5)}"
        base = self.maildir(user)
        for path in (base, base / "cur", base / "new", base / "tmp"):
            path.mkdir(mode=0o700)
            if os.geteuid() == 0:
                os.chown(path, self.uid, self.gid)
        return user

    def files(self, user: str, folder: str | None = None) -> list[Path]:
        base = self.maildir(user, folder)
        return sorted(p for sub in ("new", "cur") if (base / sub).is_dir() for p in (base / sub).iterdir())

    def messages(self, user: str, folder: str | None = None) -> list[EmailMessage]:
        parsed = []
        for path in self.files(user, folder):
            with path.open("rb") as file:
                message = email.message_from_binary_file(file, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed


@pytest.fixture(scope="session")
def mail_root() -> Iterator[MailRoot]:
    path = Path(tempfile.mkdtemp(prefix="tradelane-mail-"))
    path.chmod(0o755)  # Dovecot's mail processes (nobody, as root) must reach the Maildirs
    uid, gid = _mail_owner()
    try:
        yield MailRoot(path, uid, gid)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, greeting: bytes | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if greeting is None or sock.recv(1024).startswith(greeting):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(
        f"nothing answered on port {port} within {START_TIMEOUT}s:\n{log.read_text(errors='replace')}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- SMTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpServer:
    host: str
    starttls_port: int
    ssl_port: int
    plain_port: int
    user: str
    password: str = field(repr=False)
    cafile: Path
    root: MailRoot

    def address(self, user: str) -> str:
        return f"{user}@{MAIL_DOMAIN}"


@pytest.fixture(scope="session")
def smtp_server(mail_tls: MailTLS, mail_root: MailRoot) -> Iterator[SmtpServer]:
    ports = [free_port() for _ in range(3)]
    server = SmtpServer(
        "127.0.0.1", *ports, f"sender@{MAIL_DOMAIN}", secrets.token_urlsafe(12), mail_tls.ca, mail_root
    )
    settings = {
        "ports": ports,
        "cert": str(mail_tls.cert),
        "key": str(mail_tls.key),
        "root": str(mail_root.path),
        "user": server.user,
        "password": server.password,
    }
    with tempfile.TemporaryDirectory(prefix="tradelane-smtp-") as tmp:
        log = Path(tmp) / "smtp.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.endpoint_servers.mail"],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(settings).encode())  # the password stays off the command line
            proc.stdin.close()
            try:
                _wait_for_port(ports[0], proc, log, b"220")
                _wait_for_port(ports[1], proc, log, None)
                _wait_for_port(ports[2], proc, log, b"220")
                yield server
            finally:
                _stop(proc)


@pytest.fixture
def smtp_env(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """The instance's TRADELANE_SMTP_* settings pointed at the session's SMTP server (implicit TLS,
    its own CA) for one test."""
    from tests.isolation import clear_caches

    monkeypatch.setenv("TRADELANE_SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("TRADELANE_SMTP_PORT", str(smtp_server.ssl_port))
    monkeypatch.setenv("TRADELANE_SMTP_TLS", "ssl")
    monkeypatch.setenv("TRADELANE_SMTP_USER", smtp_server.user)
    monkeypatch.setenv("TRADELANE_SMTP_PASSWORD", smtp_server.password)
    monkeypatch.setenv("TRADELANE_SMTP_CAFILE", str(smtp_server.cafile))
    clear_caches()
    yield smtp_server
    monkeypatch.undo()  # before the caches are cleared, so they are rebuilt from the old settings
    clear_caches()


def _serve_smtp(settings: dict[str, Any]) -> None:
    """The SMTP server process: three aiosmtpd controllers delivering into Maildirs."""
    import asyncio

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

    root = Path(settings["root"])
    user, password = settings["user"].encode(), settings["password"].encode()
    counter = iter(range(1 << 62))

    class MaildirHandler:
        async def handle_RCPT(
            self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
        ) -> str:
            local = address.rpartition("@")[0]
            if local == DEFERRED_LOCAL_PART:
                return "451 4.3.0 mailbox busy, try again later"
            if not local or "/" in local or local.startswith(".") or not (root / local / "new").is_dir():
                return "550 5.1.1 no such mailbox here"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            content = envelope.original_content or b""
            head = f"Return-Path: <{envelope.mail_from}>\r\n"
            head += f"X-Test-Authenticated-As: {session.auth_data!s}\r\n"
            message = (head.encode() + content).replace(b"\r\n", b"\n")
            for rcpt in envelope.rcpt_tos:
                maildir = root / rcpt.rpartition("@")[0]
                name = f"{time.time_ns()}.P{os.getpid()}Q{next(counter)}.tradelane-test"
                temp = maildir / "tmp" / name
                temp.write_bytes(message)
                if os.geteuid() == 0:
                    owner = maildir.stat()
                    os.chown(temp, owner.st_uid, owner.st_gid)
                temp.rename(maildir / "new" / name)
            return "250 2.0.0 delivered"

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == user and data.password == password
        # handled=False: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=data.login.decode() if ok else None)

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(settings["cert"], settings["key"])
    common: dict[str, Any] = {
        "hostname": "127.0.0.1",
        "server_hostname": "localhost",
        "authenticator": authenticator,
        "auth_required": True,
        "data_size_limit": 64 * 1024 * 1024,
    }
    starttls_port, ssl_port, plain_port = settings["ports"]
    controllers = [
        Controller(MaildirHandler(), port=starttls_port, tls_context=tls, auth_require_tls=True, **common),
        Controller(MaildirHandler(), port=ssl_port, ssl_context=tls, auth_require_tls=False, **common),
        Controller(MaildirHandler(), port=plain_port, auth_require_tls=False, **common),
    ]
    for controller in controllers:
        controller.start()
    print("smtp ready on", settings["ports"], flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(asyncio.Event().wait())


# --- IMAP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MailUser:
    name: str
    password: str = field(repr=False)
    address: str


@dataclass(frozen=True)
class ImapServer:
    host: str
    port: int  # IMAP with STARTTLS
    ssl_port: int  # IMAPS
    cafile: Path
    root: MailRoot
    users: Path = field(repr=False)  # one passwd-file per user
    log: Path = field(repr=False)

    def add_user(self, name: str | None = None) -> MailUser:
        """A new IMAP login with an empty INBOX (also an SMTP recipient)."""
        name = self.root.create(name)
        password = secrets.token_urlsafe(12)
        # One passwd-file per user: Dovecot checks a changed passwd-file at most once a second,
        # so users added to one file in quick succession would not log in yet.
        path = self.users / name
        path.write_text(f"{name}:{{PLAIN}}{password}\n")
        path.chmod(0o644)  # throwaway test passwords; Dovecot's auth process must read them
        return MailUser(name, password, f"{name}@{MAIL_DOMAIN}")

    @contextlib.contextmanager
    def client(self, user: MailUser) -> Iterator[imaplib.IMAP4_SSL]:
        """A logged-in IMAPS connection, for arranging and inspecting mailboxes."""
        context = ssl.create_default_context(cafile=str(self.cafile))
        conn = imaplib.IMAP4_SSL(self.host, self.ssl_port, ssl_context=context, timeout=30)
        try:
            conn.login(user.name, user.password)
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def append(self, user: MailUser, message: bytes, mailbox: str = "INBOX", flags: str = "") -> int:
        """APPEND a message; returns its UID."""
        with self.client(user) as conn:
            typ, data = conn.append(mailbox, f"({flags})" if flags else None, None, message)
            assert typ == "OK", data
            text = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
            return int(text.split("APPENDUID", 1)[1].split()[1].rstrip("]"))

    def flags(self, user: MailUser, mailbox: str = "INBOX") -> dict[int, set[str]]:
        """UID -> flags of every message in `mailbox` (empty if it does not exist)."""
        with self.client(user) as conn:
            typ, _ = conn.select(mailbox, readonly=True)
            if typ != "OK":
                return {}
            typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS)")
            result: dict[int, set[str]] = {}
            for item in data:
                if not isinstance(item, bytes):
                    continue
                text = item.decode()
                uid = int(text.split("UID ", 1)[1].split()[0].rstrip(")"))
                flags = text.split("FLAGS (", 1)[1].split(")", 1)[0].split()
                result[uid] = set(flags)
            return result


def dovecot_config(tmp: Path, root: MailRoot, tls: MailTLS, port: int, ssl_port: int) -> str:
    if os.geteuid() == 0:
        login_user = "dovenull" if _user_exists("dovenull") else "nobody"
        internal_user = "dovecot" if _user_exists("dovecot") else "nobody"
        internal_group = internal_user if _group_exists(internal_user) else "nogroup"
    else:  # everything runs as us; Dovecot's own users and groups are not ours to switch to
        login_user = internal_user = pwd.getpwuid(os.getuid()).pw_name
        internal_group = grp.getgrgid(os.getgid()).gr_name
    return f"""
protocols = imap
listen = 127.0.0.1
base_dir = {tmp}/run
state_dir = {tmp}/state
instance_name = tradelane-test-{port}
log_path = {tmp}/dovecot.log
ssl = yes
ssl_cert = <{tls.cert}
ssl_key = <{tls.key}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = {root.uid}
first_valid_gid = {root.gid}
mail_location = maildir:{root.path}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {tmp}/users/%u
}}
userdb {{
  driver = static
  args = uid={root.uid} gid={root.gid} home={root.path}/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ssl_port}
    ssl = yes
  }}
}}
"""


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def imap_server(mail_tls: MailTLS, mail_root: MailRoot) -> Iterator[ImapServer]:
    if not os.path.exists(DOVECOT):
        pytest.fail("Dovecot is not installed: run scripts/install-test-servers.sh")
    port, ssl_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="tradelane-dovecot-"))
    # Dovecot's auth process runs as its internal user and must read the passwd-file.
    tmp.chmod(0o755)
    try:
        (tmp / "users").mkdir(mode=0o755)
        config = tmp / "dovecot.conf"
        config.write_text(dovecot_config(tmp, mail_root, mail_tls, port, ssl_port))
        log = tmp / "dovecot.log"
        with (tmp / "stdout.log").open("wb") as out:
            proc = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_for_port(port, proc, tmp / "stdout.log", b"* OK")
            _wait_for_port(ssl_port, proc, tmp / "stdout.log", None)
            yield ImapServer("127.0.0.1", port, ssl_port, mail_tls.ca, mail_root, tmp / "users", log)
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    _serve_smtp(json.loads(sys.stdin.read()))

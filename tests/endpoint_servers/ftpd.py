"""pyftpdlib FTP/FTPS servers in a background thread, for the FTP client endpoint's tests.

One I/O loop thread per test session serves several listeners on loopback ports, all sharing
one user and home folder:
* `port`: FTP with explicit TLS offered (``AUTH TLS``) but not required, so it also serves
  plain FTP;
* `implicit_port`: implicit FTPS. pyftpdlib has no implicit mode, so `ImplicitTLSHandler`
  starts the TLS handshake as the connection opens and sends the 220 greeting once it is done;
* `plain_port`: FTP without TLS at all (``AUTH TLS`` is refused);
* `no_mlsd_port`: explicit TLS, but no MLSD/MLST, like old servers (clients fall back to NLST);
* `wrong_name_port`: explicit TLS with a certificate for another host name.
The certificates are self-signed, made here with `cryptography`: `cafile` names localhost and
127.0.0.1; `wrong_name_cafile` names only wrong-name.example. A read-only user exists too.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import shutil
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.servers import free_port

with warnings.catch_warnings():
    # pyftpdlib is built on asyncore/asynchat, which Python 3.11 deprecates on import.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

__all__ = ["FtpTestServer", "ftp_server", "run_ftpd"]

FTP_USER = "partner"
FTP_PASSWORD = "ftp-s3cret-never-shown"
FTP_READER = "reader"
FTP_READER_PASSWORD = "reader-s3cret"
# Everything but rename ("f"): a server that refuses RNFR/RNTO, for `temp_name: none`.
FTP_NO_RENAME = "norename"
FTP_NO_RENAME_PASSWORD = "norename-s3cret"


class ImplicitTLSHandler(TLS_FTPHandler):
    """Implicit FTPS: TLS from the first byte, the greeting only once the handshake is done."""

    def handle(self) -> None:
        self.secure_connection(self.ssl_context)

    def handle_ssl_established(self) -> None:
        TLS_FTPHandler.handle(self)  # the usual 220 greeting, now over TLS


class NoMlsdHandler(TLS_FTPHandler):
    """A server without MLSD/MLST (FEAT no longer lists MLST either)."""

    proto_cmds: ClassVar[dict[str, Any]] = {
        k: v for k, v in TLS_FTPHandler.proto_cmds.items() if k not in ("MLSD", "MLST")
    }


@dataclass(frozen=True)
class FtpTestServer:
    host: str
    port: int
    implicit_port: int
    plain_port: int
    no_mlsd_port: int
    wrong_name_port: int
    user: str
    password: str
    reader: str
    reader_password: str
    no_rename_user: str
    no_rename_password: str
    cafile: Path  # the server certificate (self-signed): pin it as the CA
    wrong_name_cafile: Path
    home: Path

    def new_folder(self) -> tuple[Path, str]:
        """A fresh, empty folder: its path on disk and the FTP path to it."""
        name = f"t-{uuid.uuid4().hex[:12]}"
        (self.home / name).mkdir()
        return self.home / name, f"/{name}"


def make_certificate(directory: Path, stem: str, names: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate for `names` (DNS names or IP addresses); returns (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _handler(base: type[FTPHandler], authorizer: DummyAuthorizer, **attrs: Any) -> type[FTPHandler]:
    """A handler class of its own per listener: pyftpdlib keeps its settings on the class."""
    first = free_port()
    attrs = {
        "authorizer": authorizer,
        "passive_ports": range(first, first + 50),  # busy ports fall back to a kernel-chosen one
        "banner": "tradelane test ftpd",
        "auth_failed_timeout": 0.05,  # pyftpdlib waits 3 s after a wrong password by default
        "ssl_context": None,  # each TLS handler class builds (and caches) its own context
        **attrs,
    }
    return type(f"Test{base.__name__}", (base,), attrs)


@contextlib.contextmanager
def looping(ioloop: IOLoop, name: str) -> Iterator[None]:
    """Run pyftpdlib's `ioloop` in a thread of its own until the block ends."""
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            ioloop.loop(timeout=0.05, blocking=False)

    thread = threading.Thread(target=serve, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


@contextlib.contextmanager
def serve_handler(handler: type[FTPHandler], home: Path, user: str, password: str) -> Iterator[int]:
    """A plain-FTP server of `handler` (a test's own subclass, e.g. one that counts renames) on a
    loopback port of its own, `user` with every right in `home`; yields the port."""
    handler.authorizer = DummyAuthorizer()
    handler.authorizer.add_user(user, password, str(home), perm="elradfmwMT")
    ioloop = IOLoop()
    server = FTPServer(("127.0.0.1", 0), handler, ioloop=ioloop)
    try:
        with looping(ioloop, f"ftpd-{handler.__name__}"):
            yield server.address[1]
    finally:
        server.close_all()


@contextlib.contextmanager
def run_ftpd() -> Iterator[FtpTestServer]:
    tmp = Path(tempfile.mkdtemp(prefix="tradelane-ftpd-"))
    home = tmp / "home"
    home.mkdir()
    cert, key = make_certificate(tmp, "localhost", ["localhost", "127.0.0.1"])
    wrong_cert, wrong_key = make_certificate(tmp, "wrong-name", ["wrong-name.example"])
    authorizer = DummyAuthorizer()
    authorizer.add_user(FTP_USER, FTP_PASSWORD, str(home), perm="elradfmwMT")
    authorizer.add_user(FTP_READER, FTP_READER_PASSWORD, str(home), perm="elr")
    authorizer.add_user(FTP_NO_RENAME, FTP_NO_RENAME_PASSWORD, str(home), perm="elradmwMT")
    tls = {"certfile": str(cert), "keyfile": str(key)}
    handlers = {
        "port": _handler(TLS_FTPHandler, authorizer, **tls),
        "implicit_port": _handler(ImplicitTLSHandler, authorizer, **tls),
        "plain_port": _handler(FTPHandler, authorizer),
        "no_mlsd_port": _handler(NoMlsdHandler, authorizer, **tls),
        "wrong_name_port": _handler(
            TLS_FTPHandler, authorizer, certfile=str(wrong_cert), keyfile=str(wrong_key)
        ),
    }
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    ioloop = IOLoop()
    servers = {
        name: FTPServer(("127.0.0.1", 0), handler, ioloop=ioloop) for name, handler in handlers.items()
    }
    try:
        with looping(ioloop, "ftpd"):
            yield FtpTestServer(
                host="127.0.0.1",
                user=FTP_USER,
                password=FTP_PASSWORD,
                reader=FTP_READER,
                reader_password=FTP_READER_PASSWORD,
                no_rename_user=FTP_NO_RENAME,
                no_rename_password=FTP_NO_RENAME_PASSWORD,
                cafile=cert,
                wrong_name_cafile=wrong_cert,
                home=home,
                **{name: server.address[1] for name, server in servers.items()},
            )
    finally:
        ioloop.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def ftp_server() -> Iterator[FtpTestServer]:
    """pyftpdlib serving FTP, explicit and implicit FTPS on loopback ports, for the whole session."""
    with run_ftpd() as server:
        yield server

"""The certificate FTPS presents: the operator's, else a self-signed pair kept in TRADELANE_HOME.

The self-signed builder is the FTPS copy of what `core/as2/identity.py` also does; one shared
certificate module in core is to replace both (issue 11): this module is the FTPS side's one place.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from OpenSSL import SSL

from core.config import Settings

log = logging.getLogger(__name__)

CERT_FILE = "ftp_cert.pem"
KEY_FILE = "ftp_key.pem"
CERT_VALIDITY = timedelta(days=3650)


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

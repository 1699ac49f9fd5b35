"""Certificates and private keys, in one place: self-signed pairs made, PEM/DER/PKCS#12 read, key
files written privately, fingerprints and expiry told.

Two kinds of self-signed certificate are made here, each from its `Profile`: `SIGN_AND_ENCRYPT`
(RSA 2048, for S/MIME signing and encryption: our AS2 identity, `core/as2/identity.py`) and
`TLS_SERVER` (EC P-256 with the server's names: `self_signed_server`, what FTPS presents when the
operator gives no certificate, kept in the home by `keep_self_signed`). Key files are written 0600
through a temporary file and a rename, so a reader never sees half a key, whatever the umask (the
home is private since issue 10, see `core/permissions.py`). Anything that cannot be read is a
`CertificateError` saying why.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyPair = tuple[str, str]  # (private key PEM, certificate PEM)

_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


class CertificateError(ValueError):
    """A certificate, key or PKCS#12 file that cannot be read or used; the message says why."""


# ---- what a certificate says ------------------------------------------------------------------


@dataclass(frozen=True)
class CertInfo:
    subject: str
    issuer: str
    serial: int
    not_before: datetime
    not_after: datetime
    sha256_fingerprint: str  # "AB:CD:..."
    warning_days: int = 30  # fewer days left than this is "expiring soon"

    @property
    def days_left(self) -> int:
        return (self.not_after - datetime.now(UTC)).days

    @property
    def expired(self) -> bool:
        return self.not_after <= datetime.now(UTC)

    @property
    def expiring_soon(self) -> bool:
        return self.days_left < self.warning_days

    def expiry_note(self) -> str:
        """ "expires 2027-01-01 (in 400 days)", with a warning when it is close or past."""
        day = self.not_after.strftime("%Y-%m-%d")
        if self.expired:
            return f"EXPIRED on {day}"
        if self.expiring_soon:
            return f"expires {day}: only {self.days_left} days left, renew it"
        return f"expires {day} (in {self.days_left} days)"


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(f"not an X.509 certificate (PEM or DER): {exc}") from exc


def cert_info(cert: x509.Certificate | str | bytes, warning_days: int = 30) -> CertInfo:
    if isinstance(cert, str | bytes):
        cert = load_certificate(cert.encode() if isinstance(cert, str) else cert)
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256_fingerprint=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        warning_days=warning_days,
    )


def certificate_pem(cert: x509.Certificate | bytes) -> str:
    """A certificate (or PEM/DER bytes of one) as PEM text."""
    if isinstance(cert, bytes):
        cert = load_certificate(cert)
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# ---- private keys -----------------------------------------------------------------------------


def load_private_key(data: bytes, password: str | None = None) -> PrivateKeyTypes:
    """A private key from PEM or DER bytes, decrypted with `password` if it is encrypted."""
    secret = password.encode() if password else None
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, secret)
        return serialization.load_der_private_key(data, secret)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"cannot read the private key (password?): {exc}") from exc


def load_pkcs12(data: bytes, password: str | None) -> tuple[PrivateKeyTypes, x509.Certificate]:
    """The private key and its certificate from a PKCS#12 file."""
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError as exc:
        raise CertificateError(f"cannot open the PKCS#12 file (wrong password?): {exc}") from exc
    if key is None or cert is None:
        raise CertificateError("the PKCS#12 file must hold a private key and its certificate")
    return key, cert


def private_key_pem(key: PrivateKeyTypes) -> str:
    """An unencrypted PKCS#8 PEM (it is stored encrypted, or in a 0600 file, by the caller)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def key_matches(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    """Whether `cert` certifies the public half of `key`."""
    encoding, public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(encoding, public) == cert.public_key().public_bytes(encoding, public)


# ---- self-signed certificates -----------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """What a certificate is for: its kind of key and the extensions that say so."""

    key: Literal["rsa", "ec"]  # RSA 2048 or EC P-256
    key_usage: frozenset[str]  # the KeyUsage flags that are set
    key_usage_critical: bool
    tls_server: bool  # ExtendedKeyUsage serverAuth, and a SubjectKeyIdentifier


SIGN_AND_ENCRYPT = Profile(
    key="rsa",
    key_usage=frozenset({"digital_signature", "content_commitment", "key_encipherment"}),
    key_usage_critical=False,
    tls_server=False,
)
TLS_SERVER = Profile(
    key="ec", key_usage=frozenset({"digital_signature"}), key_usage_critical=True, tls_server=True
)


def self_signed(
    common_name: str,
    profile: Profile,
    *,
    days: int,
    organization: str | None = None,
    hosts: Sequence[str] = (),
) -> KeyPair:
    """A new key and a self-signed certificate for it, valid from five minutes ago for `days`.

    `hosts` (IP addresses or DNS names) become the subject alternative names, in order.
    """
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if profile.key == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attributes)
    now = datetime.now(UTC)
    usage = x509.KeyUsage(**{flag: flag in profile.key_usage for flag in _KEY_USAGES})
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(hosts)), critical=False)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    builder = builder.add_extension(usage, critical=profile.key_usage_critical)
    if profile.tls_server:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return private_key_pem(key), certificate_pem(cert)


SERVER_DAYS = 3650


def self_signed_server(host: str) -> KeyPair:
    """The certificate a tradelane server presents when the operator gives none: EC P-256,
    CN=localhost, names localhost, 127.0.0.1 and `host` (the address it binds, unless a wildcard
    or one of those), ten years."""
    hosts = ["localhost", "127.0.0.1"]
    if host and host not in ("localhost", "127.0.0.1", "0.0.0.0", "::"):
        hosts.append(host)
    return self_signed(
        "localhost", TLS_SERVER, days=SERVER_DAYS, organization="tradelane (self-signed)", hosts=hosts
    )


def _general_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


# ---- files ------------------------------------------------------------------------------------


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, mode 0600 whatever the umask, never visible half-written."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(fd, 0o600)  # the umask must not widen (or narrow) it, nor an old temp's mode
            out.write(data)
            out.flush()
            os.fsync(fd)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def usable_pair(cert: Path, key: Path, *, min_days_left: int = 1) -> bool:
    """Whether cert and key are PEM files that belong together and stay valid `min_days_left` more."""
    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
        private_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    if certificate.not_valid_after_utc <= datetime.now(UTC) + timedelta(days=min_days_left):
        return False
    return key_matches(private_key, certificate)


def keep_self_signed(cert: Path, key: Path, make: Callable[[], KeyPair], *, lock: Path) -> bool:
    """Write `make()`'s pair to cert and key unless a usable pair is there; True if it wrote one.

    Under an exclusive lock on `lock`, so processes starting together agree on one pair; a pair
    is kept across restarts and made again only if missing, unreadable, mismatched or expiring.
    """
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if usable_pair(cert, key):
            return False
        key_pem, cert_pem = make()
        write_private(key, key_pem.encode())
        write_private(cert, cert_pem.encode())  # public, but the home is private
        return True

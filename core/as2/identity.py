"""Our AS2 identity: an AS2 ID with an RSA key pair and certificate, created here or imported.

The private key is stored only as a Fernet token (core.crypto, the same key as endpoint secrets);
the certificate is public and is what `tradelane as2 org cert` prints for partners.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from sqlmodel import Session, col, select

from core import audit
from core.as2.settings import as2_settings
from core.crypto import decrypt_json, encrypt_json
from core.db import home_account_id
from core.models import As2Organization, utcnow


class As2ConfigError(ValueError):
    """An AS2 identity or partner profile cannot be created, found or used as asked."""


def check_as2_id(as2_id: str) -> str:
    """AS2 IDs (RFC 4130 §6.2): 1-128 printable ASCII characters."""
    if not as2_id or len(as2_id) > 128 or not all(32 < ord(c) < 127 for c in as2_id):
        raise As2ConfigError(f"invalid AS2 ID {as2_id!r}: 1-128 printable ASCII characters, no spaces")
    return as2_id


# ---- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CertInfo:
    subject: str
    issuer: str
    serial: int
    not_before: datetime
    not_after: datetime
    sha256_fingerprint: str

    @property
    def days_left(self) -> int:
        return (self.not_after - datetime.now(UTC)).days

    @property
    def expired(self) -> bool:
        return self.not_after <= datetime.now(UTC)

    @property
    def expiring_soon(self) -> bool:
        return self.days_left < as2_settings().cert_warning_days

    def expiry_note(self) -> str:
        """ "expires 2027-01-01 (in 400 days)", with a warning when it is close or past."""
        day = self.not_after.strftime("%Y-%m-%d")
        if self.expired:
            return f"EXPIRED on {day}"
        if self.expiring_soon:
            return f"expires {day}: only {self.days_left} days left, renew it"
        return f"expires {day} (in {self.days_left} days)"


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes; As2ConfigError if it is neither."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise As2ConfigError(f"not an X.509 certificate (PEM or DER): {exc}") from exc


def cert_info(cert: x509.Certificate | str | bytes) -> CertInfo:
    if isinstance(cert, str | bytes):
        cert = load_certificate(cert.encode() if isinstance(cert, str) else cert)
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256_fingerprint=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
    )


def certificate_pem(data: bytes) -> str:
    """Any PEM/DER certificate as PEM text (what we store and hand to pyas2lib)."""
    return load_certificate(data).public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def self_signed(as2_id: str, days: int = 730) -> tuple[str, str]:
    """A new RSA 2048 key and a self-signed certificate for `as2_id`: (key PEM, cert PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, as2_id)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM).decode()


def _matching(key: Any, cert: x509.Certificate) -> str:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise As2ConfigError("AS2 needs an RSA private key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise As2ConfigError("the private key does not belong to the certificate")
    return _key_pem(key)


def from_p12(data: bytes, password: str | None) -> tuple[str, str]:
    """(key PEM, cert PEM) from a PKCS#12 file."""
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError as exc:
        raise As2ConfigError(f"cannot open the PKCS#12 file (wrong password?): {exc}") from exc
    if key is None or cert is None:
        raise As2ConfigError("the PKCS#12 file must hold a private key and its certificate")
    return _matching(key, cert), cert.public_bytes(serialization.Encoding.PEM).decode()


def from_pem(key_data: bytes, cert_data: bytes, password: str | None = None) -> tuple[str, str]:
    """(key PEM, cert PEM) from a PEM/DER private key and certificate."""
    try:
        if b"-----BEGIN" in key_data:
            key = serialization.load_pem_private_key(key_data, password.encode() if password else None)
        else:
            key = serialization.load_der_private_key(key_data, password.encode() if password else None)
    except (ValueError, TypeError) as exc:
        raise As2ConfigError(f"cannot read the private key (password?): {exc}") from exc
    cert = load_certificate(cert_data)
    return _matching(key, cert), cert.public_bytes(serialization.Encoding.PEM).decode()


# ---- stored organizations ---------------------------------------------------------------------


def get(session: Session, as2_id: str) -> As2Organization | None:
    return session.exec(
        select(As2Organization).where(
            As2Organization.account_id == home_account_id(session), As2Organization.as2_id == as2_id
        )
    ).first()


def list_all(session: Session) -> list[As2Organization]:
    return list(
        session.exec(
            select(As2Organization)
            .where(As2Organization.account_id == home_account_id(session))
            .order_by(col(As2Organization.id))
        )
    )


def require(session: Session, as2_id: str | None = None) -> As2Organization:
    """The organization named `as2_id`, or the account's only (first) one when None."""
    if as2_id is not None:
        org = get(session, as2_id)
        if org is None:
            raise As2ConfigError(f"no AS2 organization {as2_id!r}: create it with `tradelane as2 org create`")
        return org
    orgs = list_all(session)
    if not orgs:
        raise As2ConfigError(
            "no AS2 organization yet: create one with `tradelane as2 org create --as2-id ID`"
        )
    return orgs[0]


def create(
    session: Session,
    as2_id: str,
    key_pem: str,
    cert_pem: str,
    *,
    replace: bool = False,
    actor: str = "cli",
) -> As2Organization:
    """Store an identity; the key is encrypted at rest. `replace` renews an existing one's key pair."""
    check_as2_id(as2_id)
    info = cert_info(cert_pem)
    org = get(session, as2_id)
    if org is not None and not replace:
        raise As2ConfigError(f"AS2 organization {as2_id!r} already exists (use --replace to renew its keys)")
    if org is None:
        org = As2Organization(
            account_id=home_account_id(session),
            as2_id=as2_id,
            private_key="",
            certificate="",
            cert_not_after=info.not_after,
        )
    org.private_key = encrypt_json({"key_pem": key_pem})
    org.certificate = cert_pem
    org.cert_not_after = info.not_after
    org.updated_at = utcnow()
    session.add(org)
    session.flush()
    audit.record(
        session,
        "as2.org.create",
        actor=actor,
        account_id=org.account_id,
        target=as2_id,
        fingerprint=info.sha256_fingerprint,
        not_after=info.not_after.isoformat(),
    )
    return org


def private_key_pem(org: As2Organization) -> str:
    key: str = decrypt_json(org.private_key)["key_pem"]
    return key


_cache: dict[tuple[int, str], Any] = {}
_cache_lock = threading.Lock()


@lru_cache
def _message_id_domain() -> str:
    """The right side of the Message-IDs we make: this host's name (looked up once)."""
    import socket

    name = socket.gethostname() or "tradelane"
    return "".join(c for c in name if c.isalnum() or c in "-.") or "tradelane"


def pyas2lib_organization(org: As2Organization, mdn_url: str | None = None) -> Any:
    """The pyas2lib Organization for a stored identity (keys parsed once per process and version)."""
    import pyas2lib

    assert org.id is not None
    key = (org.id, f"{org.updated_at.isoformat()}|{org.private_key[-16:]}")
    with _cache_lock:
        loaded = _cache.get(key)
    if loaded is None:
        pem = (private_key_pem(org) + org.certificate).encode()
        loaded = pyas2lib.Organization(
            as2_name=org.as2_id, sign_key=pem, decrypt_key=pem, domain=_message_id_domain()
        )
        with _cache_lock:
            _cache[key] = loaded
    # A shallow copy per use: the MDN URL differs per partner, the parsed keys are shared.
    import copy

    copied = copy.copy(loaded)
    copied.mdn_url = mdn_url
    return copied

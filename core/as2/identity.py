"""Our AS2 identity: an AS2 ID with an RSA key pair and certificate, created here or imported.

The private key is stored only as a Fernet token (core.crypto, the same key as endpoint secrets);
the certificate is public and is what `tradelane as2 org cert` prints for partners.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from sqlmodel import Session, col, select

from core import audit, certificates
from core.as2.settings import as2_settings
from core.certificates import CertificateError, CertInfo
from core.crypto import decrypt_json, encrypt_json
from core.models import As2Organization, utcnow
from core.tenancy import Scope


class As2ConfigError(ValueError):
    """An AS2 identity or partner profile cannot be created, found or used as asked."""


def check_as2_id(as2_id: str) -> str:
    """AS2 IDs (RFC 4130 §6.2): 1-128 printable ASCII characters."""
    if not as2_id or len(as2_id) > 128 or not all(32 < ord(c) < 127 for c in as2_id):
        raise As2ConfigError(f"invalid AS2 ID {as2_id!r}: 1-128 printable ASCII characters, no spaces")
    return as2_id


# ---- certificates (core/certificates.py, with this module's error) ----------------------------


@contextlib.contextmanager
def _as2_errors() -> Iterator[None]:
    try:
        yield
    except CertificateError as exc:
        raise As2ConfigError(str(exc)) from exc


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes; As2ConfigError if it is neither."""
    with _as2_errors():
        return certificates.load_certificate(data)


def cert_info(cert: x509.Certificate | str | bytes) -> CertInfo:
    """What a certificate says; "expiring soon" is within TRADELANE_AS2_CERT_WARNING_DAYS."""
    with _as2_errors():
        return certificates.cert_info(cert, warning_days=as2_settings().cert_warning_days)


def certificate_pem(data: bytes) -> str:
    """Any PEM/DER certificate as PEM text (what we store and hand to pyas2lib)."""
    with _as2_errors():
        return certificates.certificate_pem(data)


def self_signed(as2_id: str, days: int = 730) -> tuple[str, str]:
    """A new RSA 2048 key and a self-signed certificate for `as2_id`: (key PEM, cert PEM)."""
    return certificates.self_signed(as2_id, certificates.SIGN_AND_ENCRYPT, days=days)


def _matching(key: PrivateKeyTypes, cert: x509.Certificate) -> str:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise As2ConfigError("AS2 needs an RSA private key")
    if not certificates.key_matches(key, cert):
        raise As2ConfigError("the private key does not belong to the certificate")
    return certificates.private_key_pem(key)


def from_p12(data: bytes, password: str | None) -> tuple[str, str]:
    """(key PEM, cert PEM) from a PKCS#12 file."""
    with _as2_errors():
        key, cert = certificates.load_pkcs12(data, password)
    return _matching(key, cert), certificates.certificate_pem(cert)


def from_pem(key_data: bytes, cert_data: bytes, password: str | None = None) -> tuple[str, str]:
    """(key PEM, cert PEM) from a PEM/DER private key and certificate."""
    with _as2_errors():
        key = certificates.load_private_key(key_data, password)
        cert = certificates.load_certificate(cert_data)
    return _matching(key, cert), certificates.certificate_pem(cert)


# ---- stored organizations ---------------------------------------------------------------------


def get(session: Session, scope: Scope, as2_id: str) -> As2Organization | None:
    return session.exec(
        select(As2Organization).where(
            As2Organization.account_id == scope.account_id, As2Organization.as2_id == as2_id
        )
    ).first()


def addressed(session: Session, as2_id: str) -> As2Organization | None:
    """The organization a message's AS2-To names, whichever account has it: AS2 IDs of
    organizations are unique on the instance, so the AS2-To header alone finds the account."""
    return session.exec(select(As2Organization).where(As2Organization.as2_id == as2_id)).first()


def list_all(session: Session, scope: Scope) -> list[As2Organization]:
    return list(
        session.exec(
            select(As2Organization)
            .where(As2Organization.account_id == scope.account_id)
            .order_by(col(As2Organization.id))
        )
    )


def require(session: Session, scope: Scope, as2_id: str | None = None) -> As2Organization:
    """The organization named `as2_id`, or the account's only (first) one when None."""
    if as2_id is not None:
        org = get(session, scope, as2_id)
        if org is None:
            raise As2ConfigError(f"no AS2 organization {as2_id!r}: create it with `tradelane as2 org create`")
        return org
    orgs = list_all(session, scope)
    if not orgs:
        raise As2ConfigError(
            "no AS2 organization yet: create one with `tradelane as2 org create --as2-id ID`"
        )
    return orgs[0]


def create(
    session: Session,
    scope: Scope,
    as2_id: str,
    key_pem: str,
    cert_pem: str,
    *,
    replace: bool = False,
) -> As2Organization:
    """Store an identity; the key is encrypted at rest. `replace` renews an existing one's key pair."""
    actor = scope.actor
    check_as2_id(as2_id)
    info = cert_info(cert_pem)
    org = get(session, scope, as2_id)
    if org is not None and not replace:
        raise As2ConfigError(f"AS2 organization {as2_id!r} already exists (use --replace to renew its keys)")
    if org is None and addressed(session, as2_id) is not None:
        raise As2ConfigError(
            f"409: the AS2 ID {as2_id!r} is taken on this instance (messages are routed by AS2-To alone)"
        )
    if org is None:
        org = As2Organization(
            account_id=scope.account_id,
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

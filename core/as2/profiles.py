"""AS2 partner profiles: a partner's AS2 ID, URL and certificate, and the security both ways.

One profile says how we send to a partner and what we require from it: `sign` and `encrypt`
set both the algorithms of what we send and that what it sends must be signed / encrypted
(pyas2lib's and most AS2 products' convention). What it sends must be signed even without `sign`
unless `allow_unsigned`: an unsigned message proves nothing about who sent it. Our async MDNs go
to `mdn_return_url`, or to the URL the sender names if `allow_mdn_urls` (default: the origin of
the profile's `url`) allows it. What the partner sends lands in `upload/` of the
tradelane partner (mailbox) the profile names, through core.intake, so the usual data flows
(`--source mailbox:PARTNER`) carry it on.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from sqlmodel import Session, col, select

from core import audit
from core import partners as mailbox_partners
from core.as2 import identity
from core.as2.identity import As2ConfigError, cert_info, certificate_pem, check_as2_id
from core.login import Standing, standing
from core.models import As2Organization, As2Partner, Partner, utcnow
from core.tenancy import Scope, instance_account_id, system_scope

# CLI names → pyas2lib names.
DIGESTS = {"sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}
CIPHERS = {
    "3des": "tripledes_192_cbc",
    "aes128": "aes_128_cbc",
    "aes192": "aes_192_cbc",
    "aes256": "aes_256_cbc",
}
MDN_MODES = ("none", "sync", "async")
CONFIRM_TEXT = "The AS2 message has been received and processed by tradelane."


def _choice(value: str | None, allowed: dict[str, str], what: str) -> str | None:
    if value is None or value == "" or value == "none":
        return None
    value = value.lower().replace("-", "")
    if value not in allowed:
        raise As2ConfigError(f"unknown {what} {value!r}; use one of: {', '.join(allowed)}")
    return value


def check_url(url: str, what: str = "--url") -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise As2ConfigError(f"{what} must be an http:// or https:// URL, not {url!r}")
    return url


def check_url_prefix(prefix: str) -> str:
    """An --allow-mdn-url prefix: an http(s) URL with a host; the path, if any, is a prefix."""
    check_url(prefix, "--allow-mdn-url")
    if urlsplit(prefix).query or urlsplit(prefix).fragment:
        raise As2ConfigError(
            f"--allow-mdn-url takes a URL prefix without ?query or #fragment, not {prefix!r}"
        )
    return prefix


def _origin_key(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


def url_matches_prefix(url: str, prefix: str) -> bool:
    """`url` has the prefix's scheme, host and port, and its path at or under the prefix's path.

    Compared by parts, not as strings: https://as2.globex.example must not let
    https://as2.globex.example.evil.test/ or https://as2.globex.example@evil.test/ through.
    """
    try:
        if _origin_key(url) != _origin_key(prefix):
            return False
        path, base = urlsplit(url).path or "/", urlsplit(prefix).path or "/"
    except ValueError:  # a malformed port
        return False
    if urlsplit(url).username is not None or urlsplit(url).password is not None:
        return False
    if any(unquote(segment) in (".", "..") for segment in path.split("/")):
        return False  # /allowed/../elsewhere is not under /allowed/
    return path == base or path.startswith(base if base.endswith("/") else base + "/")


def allowed_mdn_prefixes(profile: As2Partner) -> list[str]:
    """Where a sender-named Receipt-Delivery-Option may point: the allow-list, else the origin of `url`."""
    if profile.allow_mdn_urls:
        return list(profile.allow_mdn_urls)
    parts = urlsplit(profile.url)
    return [f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/"]


def get(session: Session, scope: Scope, as2_id: str) -> As2Partner | None:
    return session.exec(
        select(As2Partner).where(As2Partner.account_id == scope.account_id, As2Partner.as2_id == as2_id)
    ).first()


def require(session: Session, scope: Scope, as2_id: str) -> As2Partner:
    profile = get(session, scope, as2_id)
    if profile is None or not profile.enabled:
        raise As2ConfigError(f"no AS2 partner {as2_id!r}: add it with `tradelane as2 partner add`")
    return profile


def list_all(session: Session, scope: Scope) -> list[As2Partner]:
    return list(
        session.exec(
            select(As2Partner)
            .where(As2Partner.account_id == scope.account_id)
            .order_by(col(As2Partner.as2_id))
        )
    )


def add(
    session: Session,
    scope: Scope,
    as2_id: str,
    *,
    mailbox: str,
    url: str,
    certificate: bytes,
    sign: str | None = None,
    encrypt: str | None = None,
    compress: bool = False,
    mdn: str = "sync",
    mdn_sign: str | None = None,
    mdn_url: str | None = None,
    mdn_timeout_seconds: float = 600.0,
    max_resends: int = 3,
    allow_unsigned: bool = False,
    mdn_return_url: str | None = None,
    allow_mdn_urls: list[str] | None = None,
    org: str | None = None,
    replace: bool = False,
) -> As2Partner:
    """Store (or with `replace`, update) a partner's profile."""
    actor = scope.actor
    check_as2_id(as2_id)
    partner = mailbox_partners.require(session, scope, mailbox)
    organization = identity.require(session, scope, org) if org else None
    mdn = (mdn or "none").lower()
    if mdn not in MDN_MODES:
        raise As2ConfigError(f"--mdn must be one of {', '.join(MDN_MODES)}")
    if mdn_timeout_seconds <= 0 or max_resends < 0:
        raise As2ConfigError("--mdn-timeout must be positive and --max-resends at least 0")
    cert_pem = certificate_pem(certificate)
    info = cert_info(cert_pem)
    profile = get(session, scope, as2_id)
    if profile is not None and not replace:
        raise As2ConfigError(f"AS2 partner {as2_id!r} already exists (use --replace to change it)")
    values: dict[str, Any] = {
        "organization_id": organization.id if organization else None,
        "partner_id": partner.id,
        "url": check_url(url),
        "certificate": cert_pem,
        "cert_not_after": info.not_after,
        "sign": _choice(sign, DIGESTS, "signing digest"),
        "encrypt": _choice(encrypt, CIPHERS, "cipher"),
        "compress": compress,
        "mdn_mode": mdn,
        "mdn_sign": _choice(mdn_sign, DIGESTS, "MDN signing digest"),
        "mdn_url": check_url(mdn_url, "--mdn-url") if mdn_url else None,
        "mdn_timeout_seconds": mdn_timeout_seconds,
        "max_resends": max_resends,
        "allow_unsigned": allow_unsigned,
        "mdn_return_url": check_url(mdn_return_url, "--mdn-return-url") if mdn_return_url else None,
        "allow_mdn_urls": [check_url_prefix(p) for p in allow_mdn_urls or []],
        "enabled": True,
        "updated_at": utcnow(),
    }
    if profile is None:
        profile = As2Partner(account_id=scope.account_id, as2_id=as2_id, **values)
    else:
        for key, value in values.items():
            setattr(profile, key, value)
    session.add(profile)
    session.flush()
    audit.record(
        session,
        "as2.partner.add",
        actor=actor,
        account_id=profile.account_id,
        target=as2_id,
        mailbox=mailbox,
        url=url,
        fingerprint=info.sha256_fingerprint,
        allow_unsigned=allow_unsigned,
    )
    return profile


def set_options(
    session: Session,
    scope: Scope,
    as2_id: str,
    *,
    allow_unsigned: bool | None = None,
    mdn_return_url: str | None = None,
    allow_mdn_urls: list[str] | None = None,
) -> As2Partner:
    """Change a profile's inbound security settings; None leaves one as it is.

    `mdn_return_url=""` clears the return URL; `allow_mdn_urls=[]` clears the allow-list.
    """
    actor = scope.actor
    profile = get(session, scope, as2_id)
    if profile is None:
        raise As2ConfigError(f"no AS2 partner {as2_id!r}: add it with `tradelane as2 partner add`")
    changed: dict[str, Any] = {}
    if allow_unsigned is not None:
        changed["allow_unsigned"] = allow_unsigned
    if mdn_return_url is not None:
        changed["mdn_return_url"] = check_url(mdn_return_url, "--mdn-return-url") if mdn_return_url else None
    if allow_mdn_urls is not None:
        changed["allow_mdn_urls"] = [check_url_prefix(p) for p in allow_mdn_urls]
    for key, value in changed.items():
        setattr(profile, key, value)
    profile.updated_at = utcnow()
    session.add(profile)
    session.flush()
    audit.record(
        session, "as2.partner.set", actor=actor, account_id=profile.account_id, target=as2_id, **changed
    )
    return profile


def remove(session: Session, scope: Scope, as2_id: str) -> None:
    actor = scope.actor
    profile = get(session, scope, as2_id)
    if profile is None:
        raise As2ConfigError(f"no AS2 partner {as2_id!r}")
    # Messages keep their history by AS2 ID; the profile itself can go.
    session.delete(profile)
    audit.record(session, "as2.partner.remove", actor=actor, account_id=profile.account_id, target=as2_id)


def sending_scope(session: Session, account_id: int | None) -> Scope:
    """Whose profiles an AS2 endpoint sends with: the account of the endpoint's row. An endpoint
    built without a row (tests, `endpoint check` of unsaved settings) uses the instance's own."""
    return system_scope(
        session, account_id if account_id is not None else instance_account_id(session), "flow"
    )


def organization_for(session: Session, profile: As2Partner) -> As2Organization:
    if profile.organization_id is not None:
        org = session.get(As2Organization, profile.organization_id)
        if org is not None:
            return org
    return identity.require(session, system_scope(session, profile.account_id))


def mailbox_of(session: Session, profile: As2Partner, loaded: Partner | None = None) -> Partner:
    """The mailbox partner a profile delivers to, unless removed or disabled (`loaded`: that
    partner's row as loaded with the profile, checked instead of being read again)."""
    if loaded is not None and loaded.id == profile.partner_id:
        partner: Partner | None = loaded
    else:
        partner = session.get(Partner, profile.partner_id)
    if partner is None or standing(partner) in (Standing.REMOVED, Standing.DISABLED):
        raise As2ConfigError(f"the mailbox of AS2 partner {profile.as2_id!r} no longer exists")
    return partner


def pyas2lib_partner(profile: As2Partner, *, receiving: bool = False) -> Any:
    """The pyas2lib Partner for a profile (`receiving`: to check a message it sent us).

    Receiving, pyas2lib's `sign` means "must be signed": on unless the profile allows unsigned.

    Certificates are not chain-validated by pyas2lib (`validate_certs=False`): partners commonly
    use self-signed or privately issued certificates, and the certificate is pinned in the
    profile anyway. Expiry is checked by us instead (refused on send, warned about everywhere).
    """
    import pyas2lib

    cert = profile.certificate.encode()
    return pyas2lib.Partner(
        as2_name=profile.as2_id,
        verify_cert=cert,
        encrypt_cert=cert,
        validate_certs=False,
        compress=profile.compress,
        sign=profile.sign is not None or (receiving and not profile.allow_unsigned),
        digest_alg=DIGESTS[profile.sign] if profile.sign else "sha256",
        encrypt=profile.encrypt is not None,
        enc_alg=CIPHERS[profile.encrypt] if profile.encrypt else "tripledes_192_cbc",
        mdn_mode={"sync": "SYNC", "async": "ASYNC"}.get(profile.mdn_mode),
        mdn_digest_alg=DIGESTS[profile.mdn_sign] if profile.mdn_sign else None,
        mdn_confirm_text=CONFIRM_TEXT,
    )

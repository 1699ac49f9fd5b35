"""Partners: the mailbox logins an account gives its trading partners."""

from __future__ import annotations

import ipaddress

from sqlmodel import Session, select

from core import audit
from core.crypto import hash_password, verify_password
from core.db import home_account_id
from core.models import Partner

FOLDERS = ("upload", "download")
# A hash to verify against when the user does not exist, so timing does not reveal which names exist.
_DUMMY_HASH = hash_password("tradelane-no-such-user")


class PartnerError(ValueError):
    """A partner cannot be created, found or changed as asked."""


def validate_name(name: str) -> str:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name) or name[0] == ".":
        raise PartnerError(f"invalid partner name {name!r}: use letters, digits, '-', '_' or '.'")
    return name


def get(session: Session, name: str, account_id: int | None = None) -> Partner | None:
    account_id = account_id or home_account_id(session)
    return session.exec(select(Partner).where(Partner.account_id == account_id, Partner.name == name)).first()


def require(session: Session, name: str, account_id: int | None = None) -> Partner:
    partner = get(session, name, account_id)
    if partner is None:
        raise PartnerError(f"no partner named {name!r}")
    return partner


def add(
    session: Session,
    name: str,
    *,
    password: str | None = None,
    ssh_public_keys: list[str] | None = None,
    actor: str = "cli",
) -> Partner:
    account_id = home_account_id(session)
    validate_name(name)
    if name.startswith("_"):
        raise PartnerError(f"partner names starting with '_' are reserved: {name!r}")
    if get(session, name, account_id) is not None:
        raise PartnerError(f"partner {name!r} already exists")
    partner = Partner(
        account_id=account_id,
        name=name,
        password_hash=hash_password(password) if password else None,
        ssh_public_keys=[check_public_key(k) for k in ssh_public_keys or []],
    )
    session.add(partner)
    session.flush()
    _make_home(name)
    audit.record(session, "partner.add", actor=actor, account_id=account_id, target=name)
    return partner


def set_password(session: Session, partner: Partner, password: str, actor: str = "cli") -> None:
    partner.password_hash = hash_password(password)
    session.add(partner)
    audit.record(session, "partner.password", actor=actor, account_id=partner.account_id, target=partner.name)


def remove(session: Session, name: str, actor: str = "cli") -> None:
    partner = require(session, name)
    partner.enabled = False
    # Keep the row (receipts and transfers point at it) but free the name and the login.
    partner.name = f"{partner.name}.removed.{partner.id}"
    partner.password_hash = None
    partner.ssh_public_keys = []
    session.add(partner)
    audit.record(session, "partner.remove", actor=actor, account_id=partner.account_id, target=name)


def list_all(session: Session) -> list[Partner]:
    account_id = home_account_id(session)
    return list(
        session.exec(
            select(Partner)
            .where(Partner.account_id == account_id, Partner.enabled == True)  # noqa: E712
            .order_by(Partner.name)
        )
    )


def authenticate(session: Session, name: str, password: str) -> Partner | None:
    """The partner if the password is right and the login enabled; None otherwise."""
    partner = get(session, name)
    if partner is None or not partner.enabled:
        verify_password(_DUMMY_HASH, password)
        return None
    return partner if verify_password(partner.password_hash, password) else None


KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)


def check_public_key(line: str) -> str:
    """A normalised OpenSSH public key line ("TYPE BASE64 [comment]"), or PartnerError."""
    import base64
    import binascii

    parts = line.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise PartnerError(f"not an OpenSSH public key of a known type ({', '.join(KEY_TYPES)})")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PartnerError("the public key's base64 does not decode") from exc
    # The blob starts with its own type name; a mismatch means a pasted or corrupted key.
    if blob[4 : 4 + len(parts[0])] != parts[0].encode():
        raise PartnerError("the public key's type does not match its contents")
    return " ".join(parts)


def add_key(session: Session, name: str, line: str, actor: str = "cli") -> Partner:
    partner = require(session, name)
    key = check_public_key(line)
    blobs = {k.split()[1] for k in partner.ssh_public_keys}
    if key.split()[1] in blobs:
        raise PartnerError("that key is already on this partner")
    partner.ssh_public_keys = [*partner.ssh_public_keys, key]
    session.add(partner)
    audit.record(
        session,
        "partner.key.add",
        actor=actor,
        account_id=partner.account_id,
        target=name,
        key_type=key.split()[0],
    )
    return partner


def remove_key(session: Session, name: str, index: int, actor: str = "cli") -> None:
    partner = require(session, name)
    keys = list(partner.ssh_public_keys)
    if not 1 <= index <= len(keys):
        raise PartnerError(f"{name} has {len(keys)} keys; give a number from `partner key list`")
    keys.pop(index - 1)
    partner.ssh_public_keys = keys
    session.add(partner)
    audit.record(session, "partner.key.remove", actor=actor, account_id=partner.account_id, target=name)


def network_allowed(allowed: list[str], remote_addr: str | None) -> bool:
    """Whether a login from remote_addr passes the partner's allow-list (empty list: anywhere)."""
    if not allowed:
        return True
    if not remote_addr:
        return False
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in allowed)


def _make_home(name: str) -> None:
    from core.db import HOME_ACCOUNT
    from core.endpoints.mailbox import mailbox_root_for

    root = mailbox_root_for(HOME_ACCOUNT, name)
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)

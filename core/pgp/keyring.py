"""The PGP keyring: an account's OpenPGP keys, kept in the database.

Keys are imported (`pgp key import`), generated (`pgp key generate`), listed, exported (public part
only) and removed here. A key is named after its email unless given a name; it is found again by
that name, its email or its fingerprint (`find`). Private parts are stored as Fernet tokens
(core/crypto.py, the key that protects every secret) holding the key, its passphrase if it has one,
and its keygrips.

Encryption and decryption (core/pgp/streams.py) work from a `Keyring`: a detached snapshot of the
rows, read once before a long stream starts so that no database session stays open during it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from sqlmodel import Session, col, select

from core import audit
from core.crypto import decrypt_json, encrypt_json
from core.models import PgpKey
from core.pgp import keys
from core.pgp.errors import PgpKeyError
from core.tenancy import Scope


@dataclass(frozen=True)
class StoredKey:
    """One key of a keyring snapshot; the private part stays a token until an operation opens it."""

    name: str
    email: str | None
    fingerprint: str
    public: str
    private_token: str | None
    can_encrypt: bool
    can_sign: bool
    expires_at: datetime | None

    @property
    def has_private(self) -> bool:
        return self.private_token is not None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= datetime.now(UTC)

    def private(self) -> PrivatePart:
        if self.private_token is None:
            raise PgpKeyError(f"key {self.name!r} has no private part (it is a public key)")
        stored = decrypt_json(self.private_token)
        return PrivatePart(
            data=base64.b64decode(stored["key"]),
            passphrase=stored.get("passphrase"),
            keygrips=tuple(stored.get("keygrips", ())),
        )


@dataclass(frozen=True)
class PrivatePart:
    data: bytes  # OpenPGP private key (armored or binary)
    passphrase: str | None
    keygrips: tuple[str, ...]


@dataclass(frozen=True)
class Keyring:
    """A snapshot of an account's keys, for one or many operations."""

    keys: tuple[StoredKey, ...]

    def find(self, ident: str) -> StoredKey:
        """The key named `ident`, else the one whose email or fingerprint it is; PgpKeyError otherwise."""
        return _find(self.keys, ident)

    def by_fingerprint(self, fingerprint: str) -> StoredKey | None:
        fingerprint = fingerprint.upper()
        return next((k for k in self.keys if k.fingerprint == fingerprint), None)

    def with_private(self) -> list[StoredKey]:
        return [k for k in self.keys if k.has_private]


def load(session: Session, scope: Scope) -> Keyring:
    """The keyring of the scope's account, read in one query."""
    rows = session.exec(select(PgpKey).where(PgpKey.account_id == scope.account_id)).all()
    return Keyring(tuple(_snapshot(row) for row in rows))


# ---- managing keys ----------------------------------------------------------------------------


def import_key(
    session: Session,
    scope: Scope,
    data: bytes,
    *,
    name: str | None = None,
    passphrase: str | None = None,
) -> PgpKey:
    """Add the one key in `data` (public or private, armored or binary) under `name`, else its email.

    Importing the private part of a key whose public part is already here adds it to that key.
    """
    account, actor = scope.account_id, scope.actor
    material = keys.read_key_file(data, passphrase)
    existing = session.exec(
        select(PgpKey).where(PgpKey.account_id == account, PgpKey.fingerprint == material.fingerprint)
    ).first()
    if existing is not None:
        if material.secret is None or existing.private_key is not None:
            raise PgpKeyError(f"key {material.fingerprint} is already in the keyring as {existing.name!r}")
        if name and name != existing.name:
            raise PgpKeyError(f"key {material.fingerprint} is already in the keyring as {existing.name!r}")
        existing.private_key = _seal(material, passphrase)
        session.add(existing)
        session.flush()
        _audit(session, "pgp.key.import", existing, actor, private=True)
        return existing
    key_name = _check_name(name or material.email or "")
    _ensure_name_free(session, account, key_name)
    row = _row(account, key_name, material, passphrase)
    session.add(row)
    session.flush()
    _audit(session, "pgp.key.import", row, actor, private=material.secret is not None)
    return row


def generate_key(
    session: Session,
    scope: Scope,
    name: str,
    email: str,
    *,
    algorithm: str = keys.DEFAULT_ALGORITHM,
    expires: str = keys.DEFAULT_EXPIRES,
) -> PgpKey:
    """A new key pair of ours, named `name`, with the user ID `name <email>`."""
    account, actor = scope.account_id, scope.actor
    _check_name(name)
    _ensure_name_free(session, account, name)
    material = keys.generate(name, email, algorithm, expires)
    row = _row(account, name, material, None)
    session.add(row)
    session.flush()
    _audit(session, "pgp.key.generate", row, actor, private=True)
    return row


def list_keys(session: Session, scope: Scope) -> list[PgpKey]:
    query = select(PgpKey).where(PgpKey.account_id == scope.account_id).order_by(col(PgpKey.name))
    return list(session.exec(query))


def get_key(session: Session, scope: Scope, ident: str) -> PgpKey:
    """The row `ident` names (name, email or fingerprint), as `Keyring.find` resolves it."""
    return _find(list_keys(session, scope), ident)


def export_public(session: Session, scope: Scope, ident: str) -> str:
    """The ASCII-armored public key: never the private part."""
    return get_key(session, scope, ident).public_key


def remove_key(session: Session, scope: Scope, ident: str) -> PgpKey:
    row = get_key(session, scope, ident)
    session.delete(row)
    session.flush()
    _audit(session, "pgp.key.remove", row, scope.actor, private=row.private_key is not None)
    return row


# ---- helpers ----------------------------------------------------------------------------------


class _Identified(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def fingerprint(self) -> str: ...


K = TypeVar("K", bound=_Identified)


def _find(items: Sequence[K], ident: str) -> K:
    """By name first, then by fingerprint (spaces and case ignored), then by email if only one has it."""
    wanted = ident.strip()
    by_name = [k for k in items if k.name == wanted]
    if by_name:
        return by_name[0]
    compact = wanted.replace(" ", "").upper().removeprefix("0X")
    by_fingerprint = [k for k in items if k.fingerprint == compact]
    if by_fingerprint:
        return by_fingerprint[0]
    by_email = [k for k in items if (k.email or "").lower() == wanted.lower()]
    if len(by_email) == 1:
        return by_email[0]
    if len(by_email) > 1:
        names = ", ".join(sorted(k.name for k in by_email))
        raise PgpKeyError(f"{ident!r} is the email of several keys ({names}): use a name or a fingerprint")
    raise PgpKeyError(f"no key {ident!r} in the PGP keyring (see `tradelane pgp key list`)")


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise PgpKeyError("the key has no email in its user IDs: give it a name with --name")
    if len(name) > 200 or any(not ch.isprintable() for ch in name):
        raise PgpKeyError(f"bad key name {name!r}: up to 200 printable characters")
    return name


def _ensure_name_free(session: Session, account: int, name: str) -> None:
    taken = session.exec(select(PgpKey).where(PgpKey.account_id == account, PgpKey.name == name)).first()
    if taken is not None:
        raise PgpKeyError(f"a key named {name!r} is already in the keyring ({taken.fingerprint})")


def _seal(material: keys.KeyMaterial, passphrase: str | None) -> str | None:
    if material.secret is None:
        return None
    return encrypt_json(
        {
            "key": base64.b64encode(material.secret).decode(),
            "passphrase": passphrase or None,
            "keygrips": list(material.keygrips),
        }
    )


def _row(account: int, name: str, material: keys.KeyMaterial, passphrase: str | None) -> PgpKey:
    return PgpKey(
        account_id=account,
        name=name,
        email=material.email,
        fingerprint=material.fingerprint,
        user_ids=list(material.user_ids),
        algorithm=material.algorithm,
        can_encrypt=material.can_encrypt,
        can_sign=material.can_sign,
        public_key=material.public,
        private_key=_seal(material, passphrase),
        key_created_at=material.created_at,
        expires_at=material.expires_at,
    )


def _snapshot(row: PgpKey) -> StoredKey:
    return StoredKey(
        name=row.name,
        email=row.email,
        fingerprint=row.fingerprint,
        public=row.public_key,
        private_token=row.private_key,
        can_encrypt=row.can_encrypt,
        can_sign=row.can_sign,
        expires_at=_utc(row.expires_at),
    )


def _utc(when: datetime | None) -> datetime | None:
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when


def _audit(session: Session, action: str, row: PgpKey, actor: str, *, private: bool) -> None:
    audit.record(
        session,
        action,
        actor=actor,
        account_id=row.account_id,
        target=row.name,
        fingerprint=row.fingerprint,
        private=private,
    )

"""OpenPGP key material: what a key file holds, and new key pairs, read and made by GnuPG.

Both work in a throwaway home (core/pgp/gnupg_home.py) and return a `KeyMaterial`: the facts the
keyring lists (fingerprint, user IDs, expiry, what the key can do) with the ASCII-armored public key
and, when there is one, the armored private key as gpg exports it (still under its passphrase if it
had one; the keyring stores it encrypted at rest as well).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from core.pgp.errors import PgpKeyError
from core.pgp.gnupg_home import GnupgHome, Status, error_lines

# What `pgp key generate --algorithm` offers: RSA for partners on older OpenPGP software (the default),
# Curve25519 for small, fast keys.
ALGORITHMS: dict[str, dict[str, Any]] = {
    "rsa3072": {"key_type": "RSA", "key_length": 3072, "subkey_type": "RSA", "subkey_length": 3072},
    "rsa4096": {"key_type": "RSA", "key_length": 4096, "subkey_type": "RSA", "subkey_length": 4096},
    "ed25519": {
        "key_type": "EDDSA",
        "key_curve": "ed25519",
        "subkey_type": "ECDH",
        "subkey_curve": "cv25519",
    },
}
DEFAULT_ALGORITHM = "rsa3072"
DEFAULT_EXPIRES = "2y"
# gpg's expiry syntax: 0 (never), a count of days/weeks/months/years, or an ISO date.
_EXPIRES = re.compile(r"^(0|[1-9][0-9]{0,3}[dwmy]?|\d{4}-\d{2}-\d{2})$")
# Public-key algorithm numbers (RFC 4880 §9.1, RFC 9580 §9.1) as people name them.
_ALGO_NAMES = {"1": "rsa", "2": "rsa", "3": "rsa", "16": "elgamal", "17": "dsa", "18": "ecdh", "19": "ecdsa"}
_ALGO_NAMES |= {"22": "eddsa", "25": "x25519", "27": "ed25519"}


@dataclass(frozen=True)
class KeyMaterial:
    fingerprint: str
    user_ids: tuple[str, ...]
    email: str | None  # the first user ID's address, if any has one
    algorithm: str  # "rsa3072", "ed25519", ...
    created_at: datetime
    expires_at: datetime | None
    can_encrypt: bool
    can_sign: bool
    public: str  # ASCII-armored public key
    secret: bytes | None  # the private key as OpenPGP data (armored or binary), None for a public key
    keygrips: tuple[str, ...]  # the agent's names for the key and its subkeys (for passphrases)


def read_key_file(data: bytes, passphrase: str | None = None) -> KeyMaterial:
    """The one key in `data` (armored or binary, public or private); PgpKeyError if it holds none,
    several, or a private key that its passphrase (given or not) does not open."""
    with GnupgHome() as home:
        home.uses_agent()  # importing a private key hands it to the agent
        result = home.gpg.import_keys(data)
        public = home.gpg.list_keys()
        if not public:
            said = error_lines(getattr(result, "stderr", "") or "")
            raise PgpKeyError(f"the file holds no OpenPGP key{f' ({said})' if said else ''}")
        if len(public) > 1:
            fingerprints = ", ".join(k["fingerprint"] for k in public)
            raise PgpKeyError(f"the file holds {len(public)} keys ({fingerprints}): import one key per file")
        key = public[0]
        if not home.gpg.list_keys(secret=True):
            return _material(home, key, secret=None)
        if passphrase:
            home.preset_passphrase(passphrase, _keygrips(key))
        if key.get("trust") not in ("e", "r"):  # an expired or revoked key can do nothing to prove
            _prove_private_part(home, key, passphrase)
        # Stored as given: gpg exports a passphrase-protected key only after a prompt.
        return _material(home, key, secret=data)


def generate(
    name: str, email: str, algorithm: str = DEFAULT_ALGORITHM, expires: str = DEFAULT_EXPIRES
) -> KeyMaterial:
    """A new key pair (a certifying/signing primary key and an encryption subkey), no passphrase: it
    is protected at rest by the keyring's encryption, like every secret."""
    if algorithm not in ALGORITHMS:
        raise PgpKeyError(f"unknown algorithm {algorithm!r}: one of {', '.join(ALGORITHMS)}")
    if not _EXPIRES.match(expires):
        raise PgpKeyError(f"bad expiry {expires!r}: 0 (never), a number of days, 2w, 6m, 2y, or YYYY-MM-DD")
    address = parseaddr(email)[1]
    if not address or "@" not in address or address != email.strip():
        raise PgpKeyError(f"not an email address: {email!r}")
    with GnupgHome() as home:
        home.uses_agent()
        params = home.gpg.gen_key_input(
            name_real=name,
            name_email=address,
            expire_date=expires,
            no_protection=True,
            **ALGORITHMS[algorithm],
        )
        made = home.gpg.gen_key(params)
        if not made.fingerprint:
            raise PgpKeyError(f"gpg could not generate the key: {error_lines(made.stderr) or made.status}")
        keys = home.gpg.list_keys(keys=[made.fingerprint])
        secret = home.gpg.export_keys(made.fingerprint, secret=True, armor=True, expect_passphrase=False)
        if "PRIVATE KEY BLOCK" not in secret:
            raise PgpKeyError(f"gpg could not export the new private key ({error_lines(made.stderr)})")
        return _material(home, keys[0], secret=secret.encode())


def _material(home: GnupgHome, key: dict[str, Any], secret: bytes | None) -> KeyMaterial:
    fingerprint: str = key["fingerprint"]
    public = home.gpg.export_keys(fingerprint, armor=True)
    user_ids = tuple(key["uids"])
    emails = [parseaddr(uid)[1] for uid in user_ids]
    caps = key.get("cap", "")
    return KeyMaterial(
        fingerprint=fingerprint,
        user_ids=user_ids,
        email=next((e for e in emails if "@" in e), None),
        algorithm=_algorithm(key),
        created_at=_when(key["date"]) or datetime.now(UTC),
        expires_at=_when(key.get("expires", "")),
        can_encrypt="E" in caps,
        can_sign="S" in caps,
        public=public,
        secret=secret,
        keygrips=_keygrips(key),
    )


def _prove_private_part(home: GnupgHome, key: dict[str, Any], passphrase: str | None) -> None:
    """Use the private key once (sign, decrypt) so a wrong or missing passphrase fails the import,
    not the first file months later."""
    fingerprint = key["fingerprint"]
    caps = key.get("cap", "")
    hint = "give it with --passphrase" if not passphrase else "the passphrase is wrong"
    if "S" in caps:
        signed = home.gpg.sign("probe", keyid=fingerprint, binary=True, clearsign=False, detach=True)
        if not Status.parse(signed.stderr).has("SIG_CREATED"):
            raise PgpKeyError(f"the private key cannot sign: {hint} ({error_lines(signed.stderr)})")
    if "E" in caps:
        sealed = home.gpg.encrypt("probe", [fingerprint], armor=False, always_trust=True)
        opened = home.gpg.decrypt(sealed.data)
        if not opened.ok:
            raise PgpKeyError(f"the private key cannot decrypt: {hint} ({error_lines(opened.stderr)})")


def _keygrips(key: dict[str, Any]) -> tuple[str, ...]:
    grips = [key.get("keygrip")] + [sub[3] for sub in key.get("subkeys", [])]
    return tuple(g for g in grips if g)


def _algorithm(key: dict[str, Any]) -> str:
    curve = key.get("curve") or ""
    if curve:
        return curve
    return f"{_ALGO_NAMES.get(key.get('algo', ''), 'algo' + key.get('algo', '?'))}{key.get('length', '')}"


def _when(epoch: str) -> datetime | None:
    return datetime.fromtimestamp(int(epoch), UTC) if epoch and epoch.isdigit() else None

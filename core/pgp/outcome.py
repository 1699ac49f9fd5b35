"""What gpg's status lines mean for a file: the refusal it deserves (one error type each), or,
for a message that opened, whether its signature counts.

gpg reports in machine-readable status lines (`Status`, doc/DETAILS in GnuPG); these functions read
them, never gpg's human messages, which only go into the error text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from core.pgp.errors import (
    PgpBadSignatureError,
    PgpCorruptError,
    PgpError,
    PgpKeyError,
    PgpMissingSignatureError,
    PgpNoKeyError,
)
from core.pgp.gnupg_home import GnupgHome, Status, error_lines
from core.pgp.keyring import Keyring, StoredKey

Verify = Literal["optional", "required"]


def encrypt_error(status: Status, stderr: str, targets: Sequence[StoredKey]) -> PgpError:
    """The error for an encryption gpg did not finish: a key it refused, or what it said."""
    said = error_lines(stderr)
    refused = status.args("INV_RECP") + status.args("INV_SGNR")
    if refused:
        who = refused[0][1] if len(refused[0]) > 1 else "?"
        name = next((k.name for k in targets if k.fingerprint == who), who)
        return PgpKeyError(f"gpg refused key {name}: {said or 'unusable key'}")
    return PgpError(f"gpg could not encrypt: {said or 'unknown error'}")


def decrypt_failure(status: Status, stderr: str, home: GnupgHome, ring: Keyring) -> PgpError | None:
    """The error for a message gpg could not open, None if it opened."""
    said = error_lines(stderr)
    encrypted = status.has("BEGIN_DECRYPTION") or status.has("ENC_TO")
    damaged = status.has("BADMDC") or status.has("DECRYPTION_FAILED")
    if status.has("BADSIG") and not damaged:
        return None  # opened; the signature check below refuses it
    if encrypted and status.has("DECRYPTION_OKAY") and not status.has("DECRYPTION_FAILED"):
        return _corrupt(said) if status.has("BADMDC") else None
    if status.has("NEED_PASSPHRASE_SYM") or (status.has("BEGIN_DECRYPTION") and not status.has("ENC_TO")):
        return PgpNoKeyError("the file is encrypted with a passphrase, not to a key: ask for key encryption")
    recipients = [a[0] for a in status.args("ENC_TO")]
    missing = {a[0] for a in status.args("NO_SECKEY")}
    if recipients and set(recipients) <= missing:
        return PgpNoKeyError(
            f"the file is encrypted to {_describe_key_ids(recipients, home, ring)}, "
            "and the PGP keyring holds the private part of none of them"
        )
    if encrypted:
        return _corrupt(said)
    if status.has("PLAINTEXT") and not status.has("NODATA") and not _fatal(status):
        return None  # signed (or plain literal data), not encrypted: verified below
    return _corrupt(said)


def _fatal(status: Status) -> bool:
    """Whether gpg reported an error other than its exit code (a missing signer key sets that too)."""
    harmless = ("gpg-exit", "decrypt.keyusage")
    return any(a and a[0] not in harmless for a in status.args("FAILURE") + status.args("ERROR"))


def _corrupt(said: str) -> PgpCorruptError:
    return PgpCorruptError(f"the OpenPGP data is damaged or truncated: {said or 'gpg could not read it'}")


def _describe_key_ids(key_ids: Sequence[str], home: GnupgHome, ring: Keyring) -> str:
    """'key ID 1A2B… (public key "acme")' for each key ID, naming keys we know the public part of."""
    owners: dict[str, str] = {}
    for listed in home.gpg.list_keys():
        known = ring.by_fingerprint(listed["fingerprint"])
        for key_id in [listed["keyid"]] + [sub[0] for sub in listed.get("subkeys", [])]:
            if known is not None:
                owners[key_id] = known.name
    parts = []
    for key_id in key_ids:
        owner = owners.get(key_id)
        parts.append(
            f"key ID {key_id}" + (f" (public key {owner!r}: its private part is not here)" if owner else "")
        )
    return ", ".join(parts)


def check_signature(
    status: Status, ring: Keyring, accepted: set[str], verify: Verify
) -> tuple[bool, bool, str | None]:
    """(signed, verified by an accepted signer, signer) or the error this message deserves."""
    for args in status.args("BADSIG"):
        raise PgpBadSignatureError(
            f"bad signature by key {args[0]}: the file was changed after it was signed"
        )
    for keyword, why in (("REVKEYSIG", "a revoked key"), ("EXPKEYSIG", "an expired key"), ("EXPSIG", "")):
        for args in status.args(keyword):
            if verify == "required":
                reason = f"made by {why}" if why else "expired"
                raise PgpBadSignatureError(f"the signature by key {args[0]} is {reason}")
    good = [a[9] if len(a) > 9 else a[0] for a in status.args("VALIDSIG")]
    unknown = [a[0] for a in status.args("ERRSIG")]
    signed = bool(good or unknown or status.has("NEWSIG"))
    trusted = [fpr for fpr in good if fpr in accepted and status.has("GOODSIG")]
    if trusted:
        return True, True, trusted[0]
    signer = good[0] if good else (unknown[0] if unknown else None)
    if verify == "required":
        if not signed:
            raise PgpMissingSignatureError("a signature is required and the file is not signed")
        if good:
            known = ring.by_fingerprint(good[0])
            who = f"{known.name!r} ({good[0]})" if known else good[0]
            raise PgpBadSignatureError(f"signed by {who}, which is not one of the accepted signers")
        raise PgpBadSignatureError(
            f"signed by key ID {signer}, which is not in the PGP keyring: the signature cannot be verified"
        )
    return signed, False, signer

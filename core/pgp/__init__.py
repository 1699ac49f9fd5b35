"""OpenPGP for tradelane: a keyring in the database and streaming encrypt/decrypt through GnuPG.

- `core.pgp.keyring`: import, generate, list, export and remove keys (`tradelane pgp key …`);
- `core.pgp.streams`: `encrypt(source, sink, recipients, sign=None, armor=False)` and
  `decrypt(source, sink, verify="optional", signers=None)`, with `core.pgp.plumbing` (the bytes in
  and out) and `core.pgp.outcome` (what gpg's status lines mean);
- `core.pgp.errors`: one error type per refusal, all `PgpError`.

Why GnuPG through python-gnupg, and not a pure-Python library: README, "PGP".
"""

from __future__ import annotations

from core.pgp.errors import (
    PgpBadSignatureError,
    PgpCorruptError,
    PgpError,
    PgpKeyError,
    PgpMissingSignatureError,
    PgpNoKeyError,
    PgpNotPgpError,
    PgpTooLargeError,
    PgpUnavailableError,
)
from core.pgp.keyring import Keyring, StoredKey, load
from core.pgp.streams import DecryptResult, EncryptResult, decrypt, encrypt

__all__ = [
    "DecryptResult",
    "EncryptResult",
    "Keyring",
    "PgpBadSignatureError",
    "PgpCorruptError",
    "PgpError",
    "PgpKeyError",
    "PgpMissingSignatureError",
    "PgpNoKeyError",
    "PgpNotPgpError",
    "PgpTooLargeError",
    "PgpUnavailableError",
    "StoredKey",
    "decrypt",
    "encrypt",
    "load",
]

"""What can go wrong with OpenPGP here, one error type per refusal, all under `PgpError`.

A caller (a template's task, the CLI) decides by type: `PgpKeyError` is a keyring problem the
operator fixes (unknown name, bad key file); the rest are about the file itself and are never worth
a retry.
"""

from __future__ import annotations


class PgpError(ValueError):
    """Anything OpenPGP refused; the message says what and why."""


class PgpUnavailableError(PgpError):
    """The `gpg` program is missing or unusable on this machine."""


class PgpKeyError(PgpError):
    """A key cannot be imported, generated, found or used as asked (unknown name, bad file, expired)."""


class PgpNoKeyError(PgpError):
    """The file is encrypted to keys none of which has its private part in our keyring."""


class PgpBadSignatureError(PgpError):
    """The file carries a signature that does not verify, or is not from an accepted signer."""


class PgpMissingSignatureError(PgpError):
    """A signature is required and the file carries none."""


class PgpNotPgpError(PgpError):
    """The input is not OpenPGP data at all."""


class PgpCorruptError(PgpError):
    """The input is OpenPGP data that is damaged or truncated (failed integrity check, bad packets)."""


class PgpTooLargeError(PgpError):
    """The plaintext grew past the limit the caller set (a compressed message can inflate without end)."""

"""Encrypt and decrypt OpenPGP streams: binary stream in, binary stream out, never a whole file held.

`encrypt` and `decrypt` read `source` (anything with `read(n)`) and write `sink` (anything with
`write(b)`) through `gpg` in a throwaway home filled from the keyring (core/pgp/gnupg_home.py), and
return what they learnt: sizes, the SHA-256 of what they wrote, the keys used, the signer and
whether its signature verified. Each refusal is one error type (core/pgp/errors.py).

gpg writes plaintext as it decrypts and checks integrity and signatures at the end, so when
`decrypt` raises, `sink` may hold part of the output: the caller writes to staging and discards it
on error (never to a destination directly).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from core.pgp.errors import PgpError, PgpKeyError, PgpTooLargeError
from core.pgp.gnupg_home import GnupgHome, Status, dies_with_caller
from core.pgp.keyring import Keyring, StoredKey
from core.pgp.outcome import Verify, check_signature, decrypt_failure, encrypt_error
from core.pgp.plumbing import (
    CountingReader,
    DescriptorSink,
    HashingWriter,
    Readable,
    Writable,
    file_on_disk,
    sniff,
)
from core.transforms.growing import GrowingFile

VERIFY_MODES: tuple[Verify, ...] = ("optional", "required")


@dataclass(frozen=True)
class EncryptResult:
    bytes_in: int
    bytes_out: int
    sha256: str  # of what was written to the sink (the OpenPGP message)
    input_sha256: str
    recipients: tuple[str, ...]  # fingerprints
    signer: str | None  # fingerprint of the signing key, if signed
    armor: bool


@dataclass(frozen=True)
class DecryptResult:
    bytes_in: int
    bytes_out: int
    sha256: str  # of the plaintext written to the sink
    encrypted: bool  # False for a message that was only signed
    decrypted_with: str | None  # fingerprint of our key that opened it
    signed: bool
    signature_verified: bool  # a good signature by an accepted signer
    signer_fingerprint: str | None  # primary key fingerprint (or long key ID when the key is unknown)
    signer_name: str | None  # its name in the keyring
    literal_name: str | None  # the file name stored inside the message, if any


# ---- encrypt ----------------------------------------------------------------------------------


def encrypt(
    source: Readable,
    sink: Writable,
    recipients: Sequence[str],
    sign: str | None = None,
    armor: bool = False,
    *,
    filename: str | None = None,
    keyring: Keyring,
) -> EncryptResult:
    """Encrypt `source` to `recipients` (key names, emails or fingerprints) into `sink`; sign it with
    our key `sign` if given; ASCII-armored if `armor`, else binary OpenPGP. `filename` is the file
    name stored inside the message (what `gpg --use-embedded-filename` restores)."""
    if not recipients:
        raise PgpKeyError("no recipients: name at least one key to encrypt to")
    ring = keyring
    targets = [_usable(ring.find(r), "encrypt") for r in recipients]
    signer = _usable(ring.find(sign), "sign") if sign else None
    if signer is not None and not signer.has_private:
        raise PgpKeyError(f"cannot sign with {signer.name!r}: the keyring has only its public part")
    reader = CountingReader(source)
    writer = HashingWriter(sink)
    with GnupgHome() as home:
        home.import_public([k.public for k in targets])
        if signer is not None:
            _import_private(home, signer)
        writer.stop = home.stop
        home.gpg.on_data = writer
        result = home.crypt(
            lambda gpg: gpg.encrypt_file(
                reader,
                [k.fingerprint for k in targets],
                sign=signer.fingerprint if signer else None,
                always_trust=True,
                armor=armor,
                extra_args=["--set-filename", filename] if filename else None,
            )
        )
    writer.raise_failure(result)
    reader.raise_failure()
    status = Status.parse(result.stderr)
    if not status.has("END_ENCRYPTION") or result.returncode != 0:
        raise encrypt_error(status, result.stderr, targets)
    return EncryptResult(
        bytes_in=reader.size,
        bytes_out=writer.size,
        sha256=writer.hexdigest(),
        input_sha256=reader.hexdigest(),
        recipients=tuple(k.fingerprint for k in targets),
        signer=signer.fingerprint if signer else None,
        armor=armor,
    )


def _usable(key: StoredKey, purpose: Literal["encrypt", "sign"]) -> StoredKey:
    if key.expired and key.expires_at is not None:
        raise PgpKeyError(f"key {key.name!r} expired on {key.expires_at:%Y-%m-%d}: import its renewal")
    able = key.can_encrypt if purpose == "encrypt" else key.can_sign
    if not able:
        raise PgpKeyError(f"key {key.name!r} cannot {purpose} (no usable subkey for it)")
    return key


# ---- decrypt ----------------------------------------------------------------------------------


def decrypt(
    source: Readable,
    sink: Writable | GrowingFile,
    verify: Verify = "optional",
    signers: Sequence[str] | None = None,
    *,
    max_bytes: int | None = None,
    keyring: Keyring,
) -> DecryptResult:
    """Decrypt the OpenPGP message in `source` into `sink` with our private keys, checking its
    signature.

    `verify="optional"`: an unsigned message passes; a signature that does not verify is refused.
    `verify="required"`: the message must carry a good signature by one of `signers` (key names,
    emails or fingerprints; default: every key in the keyring).
    `max_bytes`: the most plaintext to write (OpenPGP messages may be compressed); past it,
    PgpTooLargeError.
    `sink` may be a `GrowingFile` (a staged file's `create_for_program`): gpg then writes it by
    name, and it is hashed as it grows.
    """
    if verify not in VERIFY_MODES:
        raise PgpError(f"verify must be one of {', '.join(VERIFY_MODES)}, not {verify!r}")
    ring = keyring
    accepted = {ring.find(s).fingerprint for s in signers} if signers else {k.fingerprint for k in ring.keys}
    path = file_on_disk(source)
    head = sniff(source)
    if path is not None:
        # A whole file on disk: gpg reads it by name, one copy less of every byte than through a pipe.
        reader = CountingReader(io.BytesIO(), hashing=False)
        reader.size = os.path.getsize(path)
        extra = ["--", path]
    else:
        reader = CountingReader(source, head, hashing=False)  # the message's own hash is the caller's
        extra = []
    # A staged file for a program: gpg writes it by name (no pipe, no copy through Python) where it
    # dies with its caller; elsewhere its output comes through the pipe and is written here.
    # Either way the file is hashed, and its size watched, as it grows.
    growing, by_name, writer = None, False, None
    if not isinstance(sink, GrowingFile):
        writer = HashingWriter(sink, max_bytes)
    else:
        growing, by_name = sink, bool(dies_with_caller())
        if not by_name:
            writer = HashingWriter(DescriptorSink(sink.fd), max_bytes)
    with GnupgHome() as home:
        home.import_public([k.public for k in ring.keys])
        for key in ring.with_private():
            _import_private(home, key)
        if growing is not None:
            growing.follow(max_bytes, on_limit=home.stop)
        if writer is not None:
            writer.stop = home.stop
            home.gpg.on_data = writer
        output = str(growing.path) if growing is not None and by_name else None
        result = home.crypt(
            lambda gpg: gpg.decrypt_file(reader, always_trust=True, output=output, extra_args=extra)
        )
        home.gpg.on_data = None  # what gpg prints from here on is not the file's
        status = Status.parse(result.stderr)
        failure = decrypt_failure(status, result.stderr, home, ring)
    if writer is not None:
        writer.raise_failure(result)
    if growing is not None:
        written = growing.finish()
        if growing.over_limit:
            raise PgpTooLargeError(
                f"the decrypted file is larger than the limit of {max_bytes} bytes: stopped there"
            )
    else:
        assert writer is not None
        written = (writer.size, writer.hexdigest())
    reader.raise_failure()
    if failure is not None:
        raise failure
    return _decrypted(status, ring, accepted, verify, reader, written)


def _decrypted(
    status: Status,
    ring: Keyring,
    accepted: set[str],
    verify: Verify,
    reader: CountingReader,
    written: tuple[int, str],
) -> DecryptResult:
    encrypted = status.has("BEGIN_DECRYPTION")
    used = status.first("DECRYPTION_KEY")
    decrypted_with = (used[1] if len(used) > 1 else used[0]) if used else None
    plaintext = status.first("PLAINTEXT")
    literal_name = unquote(plaintext[2]) if plaintext and len(plaintext) > 2 and plaintext[2] else None
    signed, verified, signer = check_signature(status, ring, accepted, verify)
    known = ring.by_fingerprint(signer) if signer else None
    return DecryptResult(
        bytes_in=reader.size,
        bytes_out=written[0],
        sha256=written[1],
        encrypted=encrypted,
        decrypted_with=decrypted_with,
        signed=signed,
        signature_verified=verified,
        signer_fingerprint=signer,
        signer_name=known.name if known else None,
        literal_name=literal_name,
    )


def _import_private(home: GnupgHome, key: StoredKey) -> None:
    part = key.private()
    home.import_secret(part.data, part.passphrase, part.keygrips)

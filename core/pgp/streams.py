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

import hashlib
import io
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import unquote

from core.pgp import keyring as keyring_mod
from core.pgp.errors import (
    PgpBadSignatureError,
    PgpCorruptError,
    PgpError,
    PgpKeyError,
    PgpMissingSignatureError,
    PgpNoKeyError,
    PgpNotPgpError,
    PgpTooLargeError,
)
from core.pgp.gnupg_home import GnupgHome, Status, error_lines
from core.pgp.keyring import Keyring, StoredKey

Verify = Literal["optional", "required"]
VERIFY_MODES: tuple[Verify, ...] = ("optional", "required")


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> Any: ...


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
    keyring: Keyring | None = None,
) -> EncryptResult:
    """Encrypt `source` to `recipients` (key names, emails or fingerprints) into `sink`; sign it with
    our key `sign` if given; ASCII-armored if `armor`, else binary OpenPGP. `filename` is the file
    name stored inside the message (what `gpg --use-embedded-filename` restores)."""
    if not recipients:
        raise PgpKeyError("no recipients: name at least one key to encrypt to")
    ring = keyring if keyring is not None else keyring_mod.load()
    targets = [_usable(ring.find(r), "encrypt") for r in recipients]
    signer = _usable(ring.find(sign), "sign") if sign else None
    if signer is not None and not signer.has_private:
        raise PgpKeyError(f"cannot sign with {signer.name!r}: the keyring has only its public part")
    reader = _CountingReader(source)
    writer = _HashingWriter(sink)
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
        raise _encrypt_error(status, result.stderr, targets)
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


def _encrypt_error(status: Status, stderr: str, targets: Sequence[StoredKey]) -> PgpError:
    said = error_lines(stderr)
    for args in status.args("INV_RECP") + status.args("INV_SGNR"):
        who = args[1] if len(args) > 1 else "?"
        name = next((k.name for k in targets if k.fingerprint == who), who)
        return PgpKeyError(f"gpg refused key {name}: {said or 'unusable key'}")
    return PgpError(f"gpg could not encrypt: {said or 'unknown error'}")


# ---- decrypt ----------------------------------------------------------------------------------


def decrypt(
    source: Readable,
    sink: Writable,
    verify: Verify = "optional",
    signers: Sequence[str] | None = None,
    *,
    max_bytes: int | None = None,
    keyring: Keyring | None = None,
) -> DecryptResult:
    """Decrypt the OpenPGP message in `source` into `sink` with our private keys, checking its
    signature.

    `verify="optional"`: an unsigned message passes; a signature that does not verify is refused.
    `verify="required"`: the message must carry a good signature by one of `signers` (key names,
    emails or fingerprints; default: every key in the keyring).
    `max_bytes`: the most plaintext to write (OpenPGP messages may be compressed); past it,
    PgpTooLargeError.
    """
    if verify not in VERIFY_MODES:
        raise PgpError(f"verify must be one of {', '.join(VERIFY_MODES)}, not {verify!r}")
    ring = keyring if keyring is not None else keyring_mod.load()
    accepted = {ring.find(s).fingerprint for s in signers} if signers else {k.fingerprint for k in ring.keys}
    path = _file_on_disk(source)
    head = _sniff(source)
    if path is not None:
        # A whole file on disk: gpg reads it by name, one copy less of every byte than through a pipe.
        reader = _CountingReader(io.BytesIO(), hashing=False)
        reader.size = os.path.getsize(path)
        extra = ["--", path]
    else:
        reader = _CountingReader(source, head, hashing=False)  # the message's own hash is the caller's
        extra = []
    writer = _HashingWriter(sink, max_bytes)
    with GnupgHome() as home:
        home.import_public([k.public for k in ring.keys])
        for key in ring.with_private():
            _import_private(home, key)
        writer.stop = home.stop
        home.gpg.on_data = writer
        result = home.crypt(lambda gpg: gpg.decrypt_file(reader, always_trust=True, extra_args=extra))
        home.gpg.on_data = None  # what gpg prints from here on is not the file's
        status = Status.parse(result.stderr)
        failure = _decrypt_failure(status, result.stderr, home, ring)
    writer.raise_failure(result)
    reader.raise_failure()
    if failure is not None:
        raise failure
    return _decrypted(status, ring, accepted, verify, reader, writer)


def _decrypt_failure(status: Status, stderr: str, home: GnupgHome, ring: Keyring) -> PgpError | None:
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


def _decrypted(
    status: Status,
    ring: Keyring,
    accepted: set[str],
    verify: Verify,
    reader: _CountingReader,
    writer: _HashingWriter,
) -> DecryptResult:
    encrypted = status.has("BEGIN_DECRYPTION")
    used = status.first("DECRYPTION_KEY")
    decrypted_with = (used[1] if len(used) > 1 else used[0]) if used else None
    plaintext = status.first("PLAINTEXT")
    literal_name = unquote(plaintext[2]) if plaintext and len(plaintext) > 2 and plaintext[2] else None
    signed, verified, signer = _check_signature(status, ring, accepted, verify)
    known = ring.by_fingerprint(signer) if signer else None
    return DecryptResult(
        bytes_in=reader.size,
        bytes_out=writer.size,
        sha256=writer.hexdigest(),
        encrypted=encrypted,
        decrypted_with=decrypted_with,
        signed=signed,
        signature_verified=verified,
        signer_fingerprint=signer,
        signer_name=known.name if known else None,
        literal_name=literal_name,
    )


def _check_signature(
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


# ---- shared -----------------------------------------------------------------------------------


def _import_private(home: GnupgHome, key: StoredKey) -> None:
    part = key.private()
    home.import_secret(part.data, part.passphrase, part.keygrips)


# Packet tags an OpenPGP message can start with (RFC 9580 §5): PKESK, signature, SKESK, one-pass
# signature, compressed, (SE)data, marker, literal, SEIPD, AEAD.
_MESSAGE_TAGS = frozenset({1, 2, 3, 4, 8, 9, 10, 11, 18, 20})
_SNIFF_BYTES = 1024


def _file_on_disk(source: Readable) -> str | None:
    """The path of `source` if it is a regular file read from its start, opened under that name."""
    name = getattr(source, "name", None)
    fileno, tell = getattr(source, "fileno", None), getattr(source, "tell", None)
    if not isinstance(name, str) or fileno is None or tell is None:
        return None
    try:
        opened = os.fstat(fileno())
        named = os.stat(name)
        at_start = tell() == 0
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    same = (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)
    return os.path.abspath(name) if same and at_start and stat.S_ISREG(opened.st_mode) else None


def _sniff(source: Readable) -> bytes:
    """The first bytes of `source`, if they start an OpenPGP message; PgpNotPgpError if not."""
    head = b""
    while len(head) < _SNIFF_BYTES:
        chunk = source.read(_SNIFF_BYTES - len(head))
        if not chunk:
            break
        head += chunk
    if not head:
        raise PgpNotPgpError("the file is empty, not an OpenPGP message")
    text = head.lstrip()
    if text.startswith(b"-----BEGIN PGP "):
        if text.startswith((b"-----BEGIN PGP MESSAGE-----", b"-----BEGIN PGP SIGNED MESSAGE-----")):
            return head
        kind = text[15 : text.find(b"-----", 15)].decode("ascii", "replace")
        raise PgpNotPgpError(f"the file is an armored PGP {kind}, not a message")
    first = head[0]
    if first & 0x80:
        tag = first & 0x3F if first & 0x40 else (first >> 2) & 0x0F
        if tag in _MESSAGE_TAGS:
            return head
    raise PgpNotPgpError("the file is not OpenPGP data (neither an armored nor a binary PGP message)")


class _CountingReader:
    """`source` (after the bytes already read from it) with its size, and its SHA-256 if `hashing`."""

    def __init__(self, source: Readable, head: bytes = b"", *, hashing: bool = True) -> None:
        self._source = source
        self._head = head
        self.size = 0
        self._hash = hashlib.sha256() if hashing else None
        self.failure: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            if self._head:
                data, self._head = self._head, b""
            else:
                data = self._source.read(size)
        except BaseException as exc:  # gpg's writer thread swallows it: keep it to raise later
            self.failure = exc
            raise
        self.size += len(data)
        if self._hash is not None:
            self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        assert self._hash is not None
        return self._hash.hexdigest()

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure


class _HashingWriter:
    """python-gnupg's `on_data`: every chunk gpg writes goes to `sink`, hashed, none kept in memory.

    Past `limit` bytes, or when the sink fails, gpg is stopped (`stop`) and the error kept for
    python-gnupg to hand back: a small message that inflates without end costs neither disk nor time.
    """

    def __init__(self, sink: Writable, limit: int | None = None) -> None:
        self._sink = sink
        self._limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        self.stop: Callable[[], None] = lambda: None
        self._failed = False

    def __call__(self, chunk: bytes) -> bool:
        if not chunk or self._failed:
            return False
        try:
            if self._limit is not None and self.size + len(chunk) > self._limit:
                raise PgpTooLargeError(
                    f"the decrypted file is larger than the limit of {self._limit} bytes: stopped there"
                )
            self._sink.write(chunk)
        except BaseException:
            self._failed = True
            self.stop()
            raise
        self._hash.update(chunk)
        self.size += len(chunk)
        return False  # tells python-gnupg not to keep the chunk

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    @staticmethod
    def raise_failure(result: Any) -> None:
        failure = getattr(result, "on_data_failure", None)
        if failure is not None:
            raise failure

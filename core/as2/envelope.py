"""Decrypting a large AS2 envelope (CMS EnvelopedData, AES-CBC) with one copy of its content.

pyas2lib's decrypt_message (asn1crypto + oscrypto) holds the encrypted content about six times
at its peak: asn1crypto copies the content at each level of nesting it parses, oscrypto
decrypts into a buffer, copies it out, and appends the last block by concatenation. Here the
DER is walked with a memoryview (no copies), only the small parts (recipient info, algorithm)
go through asn1crypto, the key is unwrapped with the same oscrypto calls, and the content is
decrypted by `cryptography` into one bytearray whose padding is cut off in place.

`decrypt()` returns None for anything it does not take on (BER indefinite lengths, chunked
content, ciphers other than AES-CBC, several recipients), and the caller falls back to
pyas2lib; its errors are pyas2lib's DecryptionError with pyas2lib's messages, so dispositions
stay the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_ENVELOPED_DATA_OID = bytes.fromhex("06092A864886F70D010703")


class _NotMine(Exception):
    """Not the plain shape this module handles: leave it to pyas2lib."""


def _tlv(data: memoryview, at: int, tag: int, total: int | None = None) -> tuple[int, int]:
    """(content start, content end) of the DER element at `at`, which must have `tag`; `total`
    is the length of the whole encoding when `data` is only its beginning (a file's prefix)."""
    if at + 2 > len(data) or data[at] != tag:
        raise _NotMine
    first = data[at + 1]
    if first < 0x80:
        return at + 2, at + 2 + first
    count = first & 0x7F
    if count == 0 or count > 8 or at + 2 + count > len(data):  # indefinite length (BER) or absurd
        raise _NotMine
    length = int.from_bytes(data[at + 2 : at + 2 + count], "big")
    start = at + 2 + count
    if start + length > (len(data) if total is None else total):
        raise _NotMine
    return start, start + length


def _skip(data: memoryview, at: int) -> int:
    """Where the element at `at` (any tag) ends."""
    return _tlv(data, at, data[at])[1]


def decrypt(encrypted: bytes, decrypt_key: Any) -> tuple[str | None, bytearray] | None:
    """(cipher name as pyas2lib reports it, plaintext) of an AES-CBC EnvelopedData for one
    key-transport recipient, or None to let pyas2lib decrypt it."""
    try:
        return _decrypt(memoryview(encrypted), decrypt_key)
    except _NotMine:
        return None


@dataclass(frozen=True)
class Header:
    """What decrypting an envelope needs: the content key and IV, and where the content is."""

    key: bytes
    iv: bytes
    content_start: int
    content_end: int


def header(data: memoryview, decrypt_key: Any, total: int | None = None) -> Header:
    """Walk the EnvelopedData in `data` (or the first bytes of one `total` bytes long) up to its
    encrypted content and unwrap the content key. Raises _NotMine or pyas2lib's DecryptionError."""
    from asn1crypto import algos, cms
    from oscrypto import asymmetric
    from pyas2lib.exceptions import DecryptionError

    start, _ = _tlv(data, 0, 0x30, total)  # ContentInfo
    if bytes(data[start : start + len(_ENVELOPED_DATA_OID)]) != _ENVELOPED_DATA_OID:
        raise _NotMine
    at, _ = _tlv(data, start + len(_ENVELOPED_DATA_OID), 0xA0, total)  # [0] EXPLICIT content
    at, _ = _tlv(data, at, 0x30, total)  # EnvelopedData
    at = _tlv(data, at, 0x02)[1]  # version
    if data[at] == 0xA0:  # originatorInfo
        at = _skip(data, at)
    recipients_end = _tlv(data, at, 0x31)[1]
    recipients = cms.RecipientInfos.load(bytes(data[at:recipients_end]))
    at, _ = _tlv(data, recipients_end, 0x30, total)  # EncryptedContentInfo
    at = _tlv(data, at, 0x06)[1]  # contentType
    algorithm_end = _tlv(data, at, 0x30)[1]
    algorithm = algos.EncryptionAlgorithm.load(bytes(data[at:algorithm_end]))
    content_start, content_end = _tlv(data, algorithm_end, 0x80, total)  # [0] IMPLICIT, primitive

    if len(recipients) != 1 or recipients[0].name != "ktri":
        raise _NotMine
    try:
        if algorithm.encryption_cipher != "aes" or algorithm.encryption_mode != "cbc":
            raise _NotMine
        iv = algorithm.encryption_iv
    except ValueError:
        raise _NotMine from None
    recipient = recipients[0].chosen
    key_algorithm = recipient["key_encryption_algorithm"]["algorithm"].native
    encrypted_key = recipient["encrypted_key"].native
    try:
        if key_algorithm == "rsaes_pkcs1v15":
            key = asymmetric.rsa_pkcs1v15_decrypt(decrypt_key[0], encrypted_key)
        elif key_algorithm == "rsaes_oaep":
            key = asymmetric.rsa_oaep_decrypt(decrypt_key[0], encrypted_key)
        else:
            raise _NotMine
    except _NotMine:
        raise
    except Exception as exc:
        raise DecryptionError("Failed to decrypt the payload: Could not extract decryption key.") from exc
    if len(key) != algorithm.key_length:
        raise DecryptionError("Failed to decrypt the payload: the content key has the wrong length")
    return Header(key, iv, content_start, content_end)


def _decrypt(data: memoryview, decrypt_key: Any) -> tuple[str | None, bytearray]:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from pyas2lib.exceptions import DecryptionError

    found = header(data, decrypt_key)
    key, iv = found.key, found.iv
    content = data[found.content_start : found.content_end]
    try:
        if len(content) % 16 or not content:
            raise ValueError("the encrypted content is not a whole number of AES blocks")
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        plain = bytearray(len(content) + 16)
        size = decryptor.update_into(content, plain)
        decryptor.finalize()
        pad = plain[size - 1]
        if not 1 <= pad <= 16 or plain[size - pad : size] != bytes([pad]) * pad:
            raise ValueError("invalid padding")
        del plain[size - pad :]
    except ValueError as exc:
        raise DecryptionError(f"Failed to decrypt the payload: {exc}") from exc
    return None, plain  # pyas2lib reports no cipher name for AES either

"""CMS (S/MIME) for large AS2 messages, through files, in bounded memory.

pyas2lib's sign/verify take the signed bytes whole (they hash them themselves) and its
encrypt/decrypt build or parse the whole structure in memory. Here the content is hashed by the
caller as it streams, and only the small parts are ASN.1 (asn1crypto, as pyas2lib builds them):

* `sign_digest` / `verify_digest`: a detached SignedData over a digest computed elsewhere, with
  the same signed attributes pyas2lib puts in (so the MIC is the signed content's digest);
* `encrypt` / `decrypt`: an AES-CBC EnvelopedData with definite DER lengths, the content
  encrypted or decrypted chunk by chunk between two files (`cryptography`, i.e. OpenSSL).

Errors are pyas2lib's (IntegrityError, DecryptionError), so dispositions stay the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import IO, Any

from core.as2 import envelope, signing

CHUNK = 1024 * 1024
_DATA_OID = bytes.fromhex("06092A864886F70D010701")
_ENVELOPED_OID = bytes.fromhex("06092A864886F70D010703")
_AES_OIDS = {16: "2.16.840.1.101.3.4.1.2", 24: "2.16.840.1.101.3.4.1.22", 32: "2.16.840.1.101.3.4.1.42"}


class NotStreamable(Exception):
    """A shape these functions do not take on (cipher, BER encoding, ...)."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, length: int) -> bytes:
    return bytes([tag]) + _length(length)


def _hash(name: str) -> Any:
    from cryptography.hazmat.primitives import hashes

    known: dict[str, Callable[[], hashes.HashAlgorithm]] = {
        "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
        "sha384": hashes.SHA384, "sha512": hashes.SHA512,
    }  # fmt: skip
    if name not in known:
        raise NotStreamable(f"digest {name}")
    return known[name]()


def normalized_digest(name: str) -> str:
    from pyas2lib.utils import normalize_digest_alg

    return str(normalize_digest_alg(str(name)))


# ---- signatures --------------------------------------------------------------------------------


def sign_digest(message_digest: bytes, digest_alg: str, sign_key: Any) -> bytes:
    """DER detached SignedData whose messageDigest attribute is `message_digest` (pyas2lib's
    sign_message, RSA PKCS#1 v1.5, with the digest computed by the caller)."""
    from asn1crypto import algos, cms, core
    from cryptography.hazmat.primitives.asymmetric import padding
    from pyas2lib.cms import SMIMECapabilityIdentifier

    digest_alg = normalized_digest(digest_alg)
    capabilities = [
        SMIMECapabilityIdentifier({"capability_id": "2.16.840.1.101.3.4.1.42"}),
        SMIMECapabilityIdentifier({"capability_id": "2.16.840.1.101.3.4.1.2"}),
        SMIMECapabilityIdentifier({"capability_id": "1.2.840.113549.3.7"}),
    ]
    attributes = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": [cms.ContentType("data")]}),
            cms.CMSAttribute(
                {"type": "signing_time", "values": [cms.Time({"utc_time": core.UTCTime(datetime.now(UTC))})]}
            ),
            cms.CMSAttribute({"type": "message_digest", "values": [core.OctetString(message_digest)]}),
            cms.CMSAttribute(
                {"type": "1.2.840.113549.1.9.15", "values": cms.SetOfSMIMECapabilites([capabilities])}
            ),
        ]
    )
    key, _certificate = signing._converted(sign_key)
    signature = key.sign(attributes.dump(), padding.PKCS1v15(), _hash(digest_alg))
    certificate = sign_key[1].asn1
    issuer_serial = cms.IssuerAndSerialNumber(
        {
            "issuer": certificate["tbs_certificate"]["issuer"],
            "serial_number": certificate["tbs_certificate"]["serial_number"],
        }
    )
    signer = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": issuer_serial}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest_alg}),
            "signed_attrs": attributes,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}),
            "signature": core.OctetString(signature),
        }
    )
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest_alg})],
            "encap_content_info": cms.ContentInfo({"content_type": "data"}),
            "certificates": [cms.CertificateChoices({"certificate": certificate})],
            "signer_infos": [signer],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


def signature_digest_algs(signature: bytes) -> list[str]:
    """The digest algorithms the signers of a SignedData used (what the content must be hashed with)."""
    from asn1crypto import cms
    from pyas2lib.exceptions import IntegrityError

    try:
        info = cms.ContentInfo.load(signature)
        if info["content_type"].native != "signed_data":
            raise IntegrityError("Signed data not found in ASN.1 ")
        return [
            normalized_digest(s["digest_algorithm"]["algorithm"].native)
            for s in info["content"]["signer_infos"]
        ]
    except IntegrityError:
        raise
    except Exception as exc:
        raise IntegrityError(f"Failed to verify message signature: {exc}") from exc


def verify_digest(digests: dict[str, bytes], signature: bytes, verify_cert: Any) -> str:
    """pyas2lib's verify_message with the content's digests given ({algorithm: digest}, one for
    each of `signature_digest_algs`). Returns the digest algorithm; raises IntegrityError."""
    from asn1crypto import cms
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
    from pyas2lib.exceptions import IntegrityError

    info = cms.ContentInfo.load(signature)
    if info["content_type"].native != "signed_data":
        raise IntegrityError("Signed data not found in ASN.1 ")
    public_key = x509.load_der_x509_certificate(verify_cert.asn1.dump()).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise IntegrityError("Failed to verify message signature: not an RSA certificate")
    digest_alg = None
    for signer in info["content"]["signer_infos"]:
        digest_alg = normalized_digest(signer["digest_algorithm"]["algorithm"].native)
        algorithm = _hash(digest_alg)
        content_digest = digests[digest_alg]
        signature_algo = signer["signature_algorithm"].signature_algo
        if signer["signed_attrs"]:
            declared = b""
            for attr in signer["signed_attrs"]:
                try:
                    if attr["type"].native == "message_digest":
                        declared += b"".join(attr["values"].native)
                except (ValueError, KeyError):
                    continue
            if declared != content_digest:
                raise IntegrityError("Failed to verify message signature: Message Digest does not match.")
            signed: bytes = signer["signed_attrs"].untag().dump()
            hashed = algorithm
        else:
            signed, hashed = content_digest, utils.Prehashed(algorithm)
        try:
            if signature_algo == "rsassa_pkcs1v15":
                public_key.verify(signer["signature"].native, signed, padding.PKCS1v15(), hashed)
            elif signature_algo == "rsassa_pss":
                pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
                public_key.verify(signer["signature"].native, signed, pss, hashed)
            else:
                raise IntegrityError("Unsupported Signature Algorithm")
        except IntegrityError:
            raise
        except Exception as exc:
            raise IntegrityError(f"Failed to verify message signature: {exc!r}") from exc
    if digest_alg is None:
        raise IntegrityError("Failed to verify message signature: no signer")
    from core.as2 import replay

    replay.note_verified(signature)
    return digest_alg


def digests_of(chunks: Iterable[bytes], algorithms: Iterable[str]) -> dict[str, bytes]:
    hashers = {name: hashlib.new(name) for name in set(algorithms)}
    for chunk in chunks:
        for h in hashers.values():
            h.update(chunk)
    return {name: h.digest() for name, h in hashers.items()}


# ---- envelopes ---------------------------------------------------------------------------------


def encrypt(chunks: Iterable[bytes], size: int, enc_alg: str, encrypt_cert: Any, key_enc_alg: str,
            out: IO[bytes]) -> None:  # fmt: skip
    """Write to `out` an AES-CBC EnvelopedData of the `size` bytes `chunks` yields."""
    import os

    from asn1crypto import algos, cms
    from cryptography.hazmat.primitives import padding as symmetric_padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from oscrypto import asymmetric

    parts = str(enc_alg).split("_")
    if len(parts) != 3 or parts[0] != "aes" or parts[2] != "cbc" or parts[1] not in ("128", "192", "256"):
        raise NotStreamable(f"cipher {enc_alg}")
    key, iv = os.urandom(int(parts[1]) // 8), os.urandom(16)
    if key_enc_alg == "rsaes_oaep":
        encrypted_key = asymmetric.rsa_oaep_encrypt(encrypt_cert, key)
    else:
        key_enc_alg = "rsaes_pkcs1v15"
        encrypted_key = asymmetric.rsa_pkcs1v15_encrypt(encrypt_cert, key)
    tbs = encrypt_cert.asn1["tbs_certificate"]
    recipient = cms.RecipientInfo(
        {
            "ktri": cms.KeyTransRecipientInfo(
                {
                    "version": "v0",
                    "rid": cms.RecipientIdentifier(
                        {
                            "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                                {"issuer": tbs["issuer"], "serial_number": tbs["serial_number"]}
                            )
                        }
                    ),
                    "key_encryption_algorithm": {"algorithm": key_enc_alg},
                    "encrypted_key": encrypted_key,
                }
            )
        }
    )
    algorithm = algos.EncryptionAlgorithm({"algorithm": _AES_OIDS[len(key)], "parameters": iv}).dump()
    recipients = recipient.dump()
    recipients = _tlv(0x31, len(recipients)) + recipients
    encrypted_size = (size // 16 + 1) * 16
    content_head = _tlv(0x80, encrypted_size)
    info_size = len(_DATA_OID) + len(algorithm) + len(content_head) + encrypted_size
    info_head = _tlv(0x30, info_size)
    version = b"\x02\x01\x00"
    enveloped_size = len(version) + len(recipients) + len(info_head) + info_size
    enveloped_head = _tlv(0x30, enveloped_size)
    explicit = _tlv(0xA0, len(enveloped_head) + enveloped_size)
    outer_size = len(_ENVELOPED_OID) + len(explicit) + len(enveloped_head) + enveloped_size
    out.write(_tlv(0x30, outer_size) + _ENVELOPED_OID + explicit + enveloped_head + version + recipients)
    out.write(info_head + _DATA_OID + algorithm + content_head)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    padder = symmetric_padding.PKCS7(128).padder()
    written = 0
    for chunk in chunks:
        written += len(chunk)
        out.write(encryptor.update(padder.update(chunk)))
    if written != size:
        raise ValueError(f"encrypt: {written} bytes given, {size} announced")
    out.write(encryptor.update(padder.finalize()) + encryptor.finalize())


def decrypt(source: IO[bytes], size: int, decrypt_key: Any, out: IO[bytes]) -> None:
    """Decrypt the AES-CBC EnvelopedData of `size` bytes read from `source` (at its start) into
    `out`. Raises NotStreamable for what it does not take on, DecryptionError when it fails."""
    from cryptography.hazmat.primitives import padding as symmetric_padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from pyas2lib.exceptions import DecryptionError

    source.seek(0)
    prefix = source.read(min(size, CHUNK))
    try:
        found = envelope.header(memoryview(prefix), decrypt_key, total=size)
    except envelope._NotMine:
        raise NotStreamable("envelope") from None
    length = found.content_end - found.content_start
    if found.content_end != size:
        raise NotStreamable("data after the envelope's content")  # unauthenticated extras: not ours
    try:
        if length % 16 or not length:
            raise ValueError("the encrypted content is not a whole number of AES blocks")
        decryptor = Cipher(algorithms.AES(found.key), modes.CBC(found.iv)).decryptor()
        unpadder = symmetric_padding.PKCS7(128).unpadder()
        source.seek(found.content_start)
        left = length
        while left:
            chunk = source.read(min(CHUNK, left))
            if not chunk:
                raise ValueError("the message ends inside its encrypted content")
            left -= len(chunk)
            out.write(unpadder.update(decryptor.update(chunk)))
        out.write(unpadder.update(decryptor.finalize()) + unpadder.finalize())
    except ValueError as exc:
        raise DecryptionError(f"Failed to decrypt the payload: {exc}") from exc

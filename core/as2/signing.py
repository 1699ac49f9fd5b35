"""Detached CMS signatures made by `cryptography` (OpenSSL) instead of pyas2lib's asn1crypto.

pyas2lib's `sign_message` builds the SignedData structure in pure Python: for a sync MDN that
was ~70% of its signing time (py-spy), the RSA signature itself the rest. `cryptography`'s
PKCS7SignatureBuilder makes the same structure (signed attributes content type, signing time,
message digest and S/MIME capabilities; the signer's certificate; detached, binary content) in
C. Used for our MDNs (core.as2.mdn); anything it does not take on returns None and pyas2lib
signs as before.
"""

from __future__ import annotations

import threading
from typing import Any

_HASHES = ("sha224", "sha256", "sha384", "sha512")
_keys: dict[int, tuple[Any, Any, Any]] = {}  # id(sign_key) -> (sign_key, key, certificate)
_keys_lock = threading.Lock()


def _converted(sign_key: Any) -> tuple[Any, Any]:
    """pyas2lib's (oscrypto key, oscrypto certificate) as cryptography objects, once per key."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    with _keys_lock:
        known = _keys.get(id(sign_key))
    if known is not None and known[0] is sign_key:
        return known[1], known[2]
    key = load_der_private_key(sign_key[0].asn1.dump(), password=None)
    certificate = x509.load_der_x509_certificate(sign_key[1].asn1.dump())
    with _keys_lock:
        if len(_keys) > 64:  # organizations are few; a renewed key is a new tuple
            _keys.clear()
        _keys[id(sign_key)] = (sign_key, key, certificate)  # the tuple kept, so its id stays its own
    return key, certificate


def sign_detached(data: bytes, digest_alg: str, sign_key: Any, sign_alg: str) -> bytes | None:
    """A DER detached signature of `data` like pyas2lib's sign_message makes, or None."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

    digest = str(digest_alg).lower().replace("-", "")
    if sign_alg != "rsassa_pkcs1v15" or digest not in _HASHES:
        return None
    key, certificate = _converted(sign_key)
    if not isinstance(key, rsa.RSAPrivateKey):
        return None
    algorithm: hashes.SHA224 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512
    if digest == "sha224":
        algorithm = hashes.SHA224()
    elif digest == "sha256":
        algorithm = hashes.SHA256()
    elif digest == "sha384":
        algorithm = hashes.SHA384()
    else:
        algorithm = hashes.SHA512()
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(certificate, key, algorithm)
    return builder.sign(Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])

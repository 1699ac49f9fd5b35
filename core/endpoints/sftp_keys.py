"""Reading a private key for an SFTP login, in any common format (OpenSSH, PKCS#1/#8, SEC1), without
ever quoting it in an error."""

from __future__ import annotations

import io
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from core.endpoints.base import (
    AuthError,
    ConfigError,
    EndpointError,
)


def load_private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    """A paramiko key from private key text in any common format (OpenSSH, PKCS#1/#8, SEC1).

    Errors never quote the key. Going through `cryptography` first lets paramiko, which only
    reads the OpenSSH and legacy PEM formats, use PKCS#8 keys too.
    """
    data = text.encode() if isinstance(text, str) else bytes(text)
    password = passphrase.encode() if passphrase else None
    try:
        try:
            loaded = _load_key(data, password)
        except TypeError:
            if password is None:
                raise ConfigError("the private key is encrypted: give its 'passphrase'") from None
            loaded = _load_key(data, None)  # a passphrase for a key that has none: not needed
    except ValueError:
        if password is not None and _is_encrypted(data):
            raise AuthError("cannot decrypt the private key: wrong passphrase") from None
        raise ConfigError("'private_key' is not a private key this endpoint can read") from None
    except EndpointError:
        raise
    except Exception as exc:  # cryptography's UnsupportedAlgorithm and friends
        raise ConfigError(f"cannot read the private key: {type(exc).__name__}") from None
    key_class: type[paramiko.PKey]
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    elif isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    else:
        raise ConfigError(f"unsupported private key type {type(loaded).__name__}")
    openssh = loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return key_class.from_private_key(io.StringIO(openssh.decode()))


def _load_key(data: bytes, password: bytes | None) -> Any:
    try:
        return serialization.load_ssh_private_key(data, password=password)
    except ValueError:
        if b"OPENSSH PRIVATE KEY" in data:
            raise
    return serialization.load_pem_private_key(data, password=password)


def _is_encrypted(data: bytes) -> bool:
    try:
        _load_key(data, None)
    except TypeError:
        return True  # "password-protected, but password was not provided"
    except Exception:
        return False
    return False

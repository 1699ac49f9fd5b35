"""Secrets at rest (Fernet) and password hashing (argon2)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

from core.config import get_settings

_hasher = PasswordHasher()


class SecretKeyError(RuntimeError):
    """The secret key is missing, malformed, or does not open a stored secret."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def home_secret(name: str, generate: Callable[[], bytes]) -> bytes:
    """A secret generated once into the home (mode 0600) and shared by every process using it.

    Written whole under a temporary name, then hard-linked into place: two processes starting at
    once keep one secret, and none ever reads a half-written file.
    """
    path = get_settings().home_dir / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(generate())
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
        finally:
            temp.unlink()
    return path.read_bytes().strip()


@lru_cache
def secret_key() -> bytes:
    """The master key: TRADELANE_SECRET_KEY, else a key file generated once into TRADELANE_HOME."""
    settings = get_settings()
    if settings.secret_key:
        return settings.secret_key.encode()
    return home_secret("secret.key", Fernet.generate_key)


def _fernet() -> Fernet:
    try:
        return Fernet(secret_key())
    except ValueError as exc:
        raise SecretKeyError("TRADELANE_SECRET_KEY must be a urlsafe-base64 32-byte Fernet key") from exc


def encrypt_json(value: dict[str, Any]) -> str:
    return _fernet().encrypt(json.dumps(value).encode()).decode()


def decrypt_json(token: str | None) -> dict[str, Any]:
    if not token:
        return {}
    try:
        data: dict[str, Any] = json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise SecretKeyError("stored secret does not open with this secret key") from exc
    return data


def signing_key() -> bytes:
    """Key for API tokens, derived from the master key so one secret rotates both."""
    import hashlib
    import hmac

    return hmac.new(secret_key(), b"tradelane-api-token", hashlib.sha256).digest()

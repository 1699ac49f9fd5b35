"""Secrets at rest (Fernet) and password hashing (argon2)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
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
    """A secret generated once into the home (mode 0600) and shared by every process using it."""
    path = get_settings().home_dir / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_once(path, generate())
    return path.read_bytes().strip()


def _create_once(path: Path, data: bytes) -> None:
    """Write `data` to `path` unless it exists, so that two processes starting at once keep one.

    Written whole under a temporary name, then hard-linked into place, so no process ever reads a
    half-written file; where hard links are not supported, created exclusively instead.
    """
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    _write_new(temp, data)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    except OSError:
        with contextlib.suppress(FileExistsError):
            _write_new(path, data)
    finally:
        temp.unlink()


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


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

"""The server's SSH host keys (Ed25519 and RSA): generated once into TRADELANE_HOME, kept across restarts."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

HOST_KEY_FILES = {"ssh_host_ed25519_key": "ed25519", "ssh_host_rsa_key": "rsa"}


def load_host_keys(home: Path) -> list[paramiko.PKey]:
    """The server's host keys, generated into `home` on first use (0600) and kept across restarts."""
    home.mkdir(parents=True, exist_ok=True)
    keys: list[paramiko.PKey] = []
    for filename, kind in HOST_KEY_FILES.items():
        path = home / filename
        if not path.exists():
            _generate_host_key(path, kind)
        if kind == "ed25519":
            keys.append(paramiko.Ed25519Key(filename=str(path)))
        else:
            keys.append(paramiko.RSAKey(filename=str(path)))
    return keys


def _generate_host_key(path: Path, kind: str) -> None:
    private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    encoding, public_format = serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    public = private.public_key().public_bytes(encoding, public_format)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(temp, path)  # never replaces a key another process made meanwhile
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    with contextlib.suppress(OSError):
        path.with_name(path.name + ".pub").write_bytes(public + b" tradelane\n")

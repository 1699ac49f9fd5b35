"""SSH host keys pinned as one-line strings, and the SSH connection that checks them.

A pinned key is written the way OpenSSH prints public keys: ``"TYPE BASE64 [comment]"``
(``ssh-keyscan`` lines, ``"HOST TYPE BASE64"``, are accepted too). Several lines may be pinned
at once, for a server in the middle of a key rotation. `open_transport` offers the server only
the host-key algorithms of the pinned types, so a server holding several keys proves the one
we know instead of its favourite, and it compares the key before any credential is sent.

First contact: `fetch_host_key` returns the server's key as such a line and `fingerprint`
turns it into ``SHA256:...`` exactly as ``ssh-keygen -lf`` prints it, so an operator can
confirm it out of band before it is pinned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import socket
import struct
from dataclasses import dataclass

import paramiko

from core.endpoints.base import AuthError, ConfigError, EndpointError, TransientError, Unreachable
from core.endpoints.network import network_error

__all__ = [
    "HostKey",
    "HostKeyMismatch",
    "fetch_host_key",
    "fingerprint",
    "open_transport",
    "parse_host_keys",
]

# The signature algorithms a server may use to prove a key of each type. RSA keys sign with
# SHA-2 (rsa-sha2-*); paramiko 5 no longer accepts SHA-1 "ssh-rsa" signatures at all.
_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}

# SSH wants big windows to go fast over long links; memory stays bounded by how many
# requests the SFTP layer keeps in flight, not by the window.
WINDOW_SIZE = 8 * 1024 * 1024
MAX_PACKET_SIZE = 32768


class HostKeyMismatch(AuthError):
    """The server did not prove the pinned host key: refused before any credential was sent."""


@dataclass(frozen=True)
class HostKey:
    """One public host key: its type ("ssh-ed25519") and its wire-format bytes."""

    type: str
    blob: bytes

    @property
    def line(self) -> str:
        return f"{self.type} {base64.b64encode(self.blob).decode()}"

    @property
    def fingerprint(self) -> str:
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    @classmethod
    def from_pkey(cls, key: paramiko.PKey) -> HostKey:
        return cls(key.get_name(), key.asbytes())


def _blob_type(blob: bytes) -> str:
    """The key type named inside a public key blob (its first SSH string)."""
    if len(blob) < 4:
        raise ValueError("key too short")
    (length,) = struct.unpack(">I", blob[:4])
    if length > len(blob) - 4:
        raise ValueError("key truncated")
    return blob[4 : 4 + length].decode("ascii")


def parse_host_keys(text: str) -> list[HostKey]:
    """Parse one or more pinned keys, one per line; raises ConfigError for anything else."""
    keys: list[HostKey] = []
    for raw in str(text).splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] not in _ALGORITHMS and len(fields) >= 3 and fields[1] in _ALGORITHMS:
            fields = fields[1:]  # an ssh-keyscan / known_hosts line: "HOST TYPE BASE64"
        if len(fields) < 2:
            raise ConfigError(f"host key must look like 'TYPE BASE64', got {raw.strip()[:40]!r}")
        key_type, data = fields[0], fields[1]
        if key_type not in _ALGORITHMS:
            known = ", ".join(sorted(_ALGORITHMS))
            raise ConfigError(f"unsupported host key type {key_type!r} (known: {known})")
        try:
            blob = base64.b64decode(data, validate=True)
            inner = _blob_type(blob)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise ConfigError(f"host key for {key_type} is not valid base64 key data") from None
        if inner != key_type:
            raise ConfigError(f"host key says {key_type!r} but its data holds a {inner!r} key")
        keys.append(HostKey(key_type, blob))
    if not keys:
        raise ConfigError("no host key given")
    return keys


def fingerprint(key_line: str) -> str:
    """``SHA256:...`` of the (first) key in `key_line`, as ``ssh-keygen -lf`` prints it."""
    return parse_host_keys(key_line)[0].fingerprint


def connect_error(exc: BaseException, host: str, port: int) -> EndpointError:
    """Map a failure to reach an SSH server to the endpoint error tree."""
    where = f"{host}:{port}"
    if found := network_error(exc, where):
        return found
    if isinstance(exc, OSError):
        return Unreachable(f"{where}: cannot reach the server: {exc.strerror or exc}")
    if isinstance(exc, EOFError):
        return Unreachable(f"{where}: the server closed the connection")
    # Banner and handshake errors, or a connection dropped during key exchange.
    return TransientError(f"SSH handshake with {where} failed: {exc}")


def open_transport(
    host: str,
    port: int,
    timeout: float,
    pinned: list[HostKey] | None,
    *,
    key_types: list[str] | None = None,
) -> paramiko.Transport:
    """Connect and run the key exchange; with `pinned`, refuse any other host key.

    Returns an unauthenticated transport. With `pinned` None the server's key is not checked:
    only `fetch_host_key` does that, to show the key to a person. `key_types` limits the
    host-key types offered (default: the pinned keys' types, else paramiko's preference).
    """
    types = key_types or [key.type for key in pinned or ()]
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise connect_error(exc, host, port) from None
    try:
        transport = paramiko.Transport(
            sock, default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET_SIZE
        )
    except BaseException:
        sock.close()
        raise
    transport.banner_timeout = transport.handshake_timeout = timeout
    transport.auth_timeout = timeout
    try:
        options = transport.get_security_options()
        # AES-GCM first: no separate MAC to compute, clearly the fastest in paramiko.
        options.ciphers = sorted(options.ciphers, key=lambda name: "-gcm@" not in name)
        if types:
            options.key_types = list(
                dict.fromkeys(algorithm for key_type in types for algorithm in _ALGORITHMS[key_type])
            )
        transport.start_client(timeout=timeout)
        offered = HostKey.from_pkey(transport.get_remote_server_key())
    except paramiko.IncompatiblePeer as exc:
        transport.close()
        if types and "host key" in str(exc):
            expected = f"; expected {' or '.join(k.fingerprint for k in pinned)}" if pinned else ""
            raise HostKeyMismatch(
                f"host key mismatch for {host}:{port}: the server offers no "
                f"{' or '.join(sorted(set(types)))} key{expected}"
            ) from None
        raise EndpointError(f"no common SSH algorithms with {host}:{port}: {exc}") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise connect_error(exc, host, port) from None
    except BaseException:
        transport.close()
        raise
    if pinned is not None and offered not in pinned:
        transport.close()
        raise HostKeyMismatch(
            f"host key mismatch for {host}:{port}: expected "
            f"{' or '.join(key.fingerprint for key in pinned)}, the server offered "
            f"{offered.type} {offered.fingerprint}. If the partner really changed its key, "
            "confirm the new fingerprint with them and pin it again."
        )
    return transport


def fetch_host_key(host: str, port: int = 22, timeout: float = 10.0, key_type: str | None = None) -> str:
    """The server's host key as ``"TYPE BASE64"``, for an operator to confirm and pin.

    Nothing is trusted here: show `fingerprint(line)` and let a person compare it with the
    one the partner sent. `key_type` asks for a key of that type instead of the server's choice.
    """
    if key_type and key_type not in _ALGORITHMS:
        raise ConfigError(f"unsupported host key type {key_type!r}")
    transport = open_transport(host, port, timeout, None, key_types=[key_type] if key_type else None)
    try:
        return HostKey.from_pkey(transport.get_remote_server_key()).line
    finally:
        transport.close()

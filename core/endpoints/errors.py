"""The endpoint error tree: what can go wrong talking to an endpoint, in words tasks can act on
(`retryable` says whether trying again may help). Re-exported by core/endpoints/base.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class EndpointError(Exception):
    """Something went wrong talking to an endpoint. `retryable` says whether trying again may help."""

    retryable: ClassVar[bool] = False


class AuthError(EndpointError):
    """The endpoint refused our credentials. Not retried: the same credentials fail again."""


class PermissionDenied(EndpointError):
    """Logged in, but not allowed to do this here."""


class NotFound(EndpointError):
    """No file (or folder, bucket, container) at that path."""


class InvalidPath(EndpointError):
    """A path that could escape its root or cannot name a file."""


class ConfigError(EndpointError):
    """The endpoint is configured wrongly (missing bucket, bad URL, unknown type)."""


class TransientError(EndpointError):
    """Connection refused, timeout, 5xx, throttling: trying again later may work."""

    retryable: ClassVar[bool] = True


class Unreachable(TransientError):
    """The server could not be reached: connection refused, timed out, reset or dropped."""


class Deferrable(TransientError):
    """The destination cannot take files now; keep the file and try much later."""


class DnsError(EndpointError):
    """The host name does not resolve. Not retried: a wrong name stays wrong."""


class TemporaryDnsError(TransientError, DnsError):
    """The resolver failed for now (EAI_AGAIN): retried."""


class TlsError(EndpointError):
    """TLS could not be set up: a certificate that does not verify, a failed handshake, or no TLS
    offered. Not retried: the same certificate fails the same way next time."""


class NameTaken(EndpointError):
    """The name is taken at the destination and the data flow says `on_conflict: fail`, or every
    name `rename` may use is taken. Not retried: the file there stays until someone moves it."""


class NameTakenMeanwhile(TransientError):
    """Another writer took the name chosen for a write that cannot change its name at commit
    (an S3 multipart upload, an Azure block list): the next try picks a free name again."""


@dataclass(frozen=True)
class ErrorCodes:
    """A storage service's error codes by what they mean, for mapping its answers: auth →
    `AuthError`, config → `ConfigError` (the endpoint points at nothing, or is set wrong), denied →
    `PermissionDenied`, not found (or a 404) → `NotFound`, transient (or a 5xx, or one of
    `transient_statuses`) → `TransientError`."""

    auth: frozenset[str]
    config: frozenset[str]
    denied: frozenset[str]
    not_found: frozenset[str]
    transient: frozenset[str]
    transient_statuses: frozenset[int] = frozenset({429})

    def error(self, code: str, status: int, text: str) -> EndpointError | None:
        """The error `code` (else `status`) names, with `text` as its message; None if neither says."""
        kinds: tuple[tuple[frozenset[str], type[EndpointError]], ...] = (
            (self.auth, AuthError),
            (self.config, ConfigError),
            (self.denied, PermissionDenied),
        )
        for codes, kind in kinds:
            if code in codes:
                return kind(text)
        if code in self.not_found or status == 404:
            return NotFound(text)
        if code in self.transient or status >= 500 or status in self.transient_statuses:
            return TransientError(text)
        return None

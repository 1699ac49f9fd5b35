"""Socket-level failures (DNS, TLS, refused, timed out) found anywhere in an exception chain,
as typed endpoint errors, so `tradelane endpoint test` and the retry policy can tell them apart
whatever library raised them (httpx, botocore, azure-core, ftplib, smtplib, imaplib, paramiko).

Libraries wrap the socket error they met (botocore's EndpointConnectionError around urllib3's
NewConnectionError around ConnectionRefusedError), so the whole chain is searched, and a DNS
or TLS cause wins over the connection failure it led to.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator

from core.endpoints.base import (
    DnsError,
    EndpointError,
    TemporaryDnsError,
    TlsError,
    Unreachable,
)

_UNREACHABLE_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH}
)
_TLS_CLOSED = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (causes, contexts, azure-core's inner_exception)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = getattr(current, "inner_exception", None)
        todo += [current.__cause__, current.__context__, inner if isinstance(inner, BaseException) else None]


def network_error(exc: BaseException, what: str, host: str = "") -> EndpointError | None:
    """The DNS, TLS or connection failure behind `exc`, if there is one; None otherwise."""
    of_host = f" of {host}" if host else ""
    chain = list(exception_chain(exc))
    for inner in chain:
        if isinstance(inner, socket.gaierror):
            reason = inner.strerror or str(inner)
            if inner.errno == socket.EAI_AGAIN:
                return TemporaryDnsError(f"{what}: DNS lookup{of_host} failed temporarily: {reason}")
            return DnsError(f"{what}: DNS lookup{of_host} failed: {reason}")
        if isinstance(inner, ssl.SSLCertVerificationError):
            reason = inner.verify_message or inner.reason or "certificate rejected"
            return TlsError(f"{what}: TLS certificate verify failed: {reason}")
        if isinstance(inner, _TLS_CLOSED):
            return Unreachable(f"{what}: TLS connection closed unexpectedly")
        if isinstance(inner, ssl.SSLError):
            reason = inner.reason or str(inner)
            return TlsError(f"{what}: TLS error: {reason} (check the port and the TLS setting)")
    for inner in chain:
        if isinstance(inner, ConnectionRefusedError) or getattr(inner, "errno", None) == errno.ECONNREFUSED:
            return Unreachable(f"{what}: connection refused")
        if isinstance(inner, TimeoutError):
            return Unreachable(f"{what}: timed out")
        if isinstance(inner, ConnectionError) or getattr(inner, "errno", None) in _UNREACHABLE_ERRNOS:
            reason = getattr(inner, "strerror", None) or type(inner).__name__
            return Unreachable(f"{what}: connection failed: {reason}")
    return None

"""smtplib, imaplib and socket failures, in the endpoint error tree (see the package docstring)."""

from __future__ import annotations

import smtplib

from core.endpoints.base import (
    AuthError,
    ConfigError,
    EndpointError,
    PermissionDenied,
    TransientError,
    Unreachable,
)
from core.endpoints.network import network_error


def map_network_error(exc: BaseException, what: str, host: str) -> EndpointError:
    """Socket, DNS and TLS failures, in the endpoint error tree."""
    if found := network_error(exc, what, host):
        return found
    if isinstance(exc, OSError):
        return Unreachable(f"{what}: network error: {exc.strerror or exc}")
    return EndpointError(f"{what}: {type(exc).__name__}: {exc}")


def _smtp_text(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return " ".join(text.split())


def map_smtp_error(exc: BaseException, what: str, host: str) -> EndpointError:
    """smtplib failures, in the endpoint error tree."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = exc.recipients
        codes = [code for code, _ in refused.values()]
        detail = "; ".join(f"{addr}: {code} {_smtp_text(resp)}" for addr, (code, resp) in refused.items())
        if codes and all(400 <= code < 500 for code in codes):
            return TransientError(f"{what}: recipient deferred: {detail}")
        return PermissionDenied(f"{what}: recipient refused: {detail}")
    if isinstance(exc, smtplib.SMTPResponseException):
        code, text = exc.smtp_code, _smtp_text(exc.smtp_error)
        if isinstance(exc, smtplib.SMTPAuthenticationError) or code in (534, 535, 538):
            return AuthError(f"{what}: login refused: {code} {text}")
        if code == 530:
            return AuthError(f"{what}: server requires authentication: {code} {text}")
        if 400 <= code < 500 or code == -1:
            return TransientError(f"{what}: server answered {code} {text}")
        return EndpointError(f"{what}: server answered {code} {text}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ConfigError(f"{what}: {exc} (check smtp_tls and the port)")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientError(f"{what}: server closed the connection ({exc})")
    if isinstance(exc, smtplib.SMTPException):
        return ConfigError(f"{what}: {exc}")
    return map_network_error(exc, what, host)


def imap_error_text(exc: BaseException) -> str:
    """The server's words in an imaplib error, on one line."""
    arg = exc.args[0] if exc.args else exc
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return " ".join(text.split())

"""Errors that carry an HTTP-like status: one message source for the CLI and the REST API.

`str(error)` is `"<status>: <message>"`, which the CLI prints after `error:` (exit 1); the API
answers `status` with `{"message": message}`.
"""

from __future__ import annotations


class StatusError(ValueError):
    """A refusal with a status and a message safe to show whoever asked."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


def said(exc: BaseException) -> str:
    """An error's words without its status, to carry inside another message."""
    return exc.message if isinstance(exc, StatusError) else str(exc)


class Invalid(StatusError):
    status = 400


class Forbidden(StatusError):
    status = 403


class NotFound(StatusError):
    status = 404


class Conflict(StatusError):
    status = 409


class Gone(StatusError):
    status = 410


class TooLarge(StatusError):
    status = 413


class Unavailable(StatusError):
    status = 503

"""Refusals of the mailbox (`core.mailbox.errors`) and of intake, in FTP's reply codes."""

from __future__ import annotations

from core.intake import IntakeError
from core.mailbox import errors
from mailboxes.ftp.pyftpd import FilesystemError

# The first kind a refusal is decides its code; every other refusal is a 550.
_CODES: tuple[tuple[type[Exception], str], ...] = (
    (errors.QuotaExceeded, "552"),
    (errors.InvalidName, "553"),
    (errors.Busy, "450"),
    (errors.MailboxError, "550"),
    (IntakeError, "550"),
)


def reply_for(exc: BaseException) -> str:
    """The FTP reply line for a refused operation; the message is safe to show the partner."""
    message = str(exc).rstrip(".") or type(exc).__name__
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return f"{code} {message}."
    return "451 Local error; the file was not received."


def fs_error(exc: errors.MailboxError) -> FilesystemError:
    """pyftpdlib answers `550 <message>.` to a FilesystemError from any filesystem call."""
    return FilesystemError(str(exc).rstrip(".") or type(exc).__name__)

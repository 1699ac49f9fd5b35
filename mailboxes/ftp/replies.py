"""Refusals of the mailbox (`core.mailbox.errors`) and of intake, in FTP's reply codes."""

from __future__ import annotations

from core.intake import IntakeError
from core.mailbox.errors import (
    AlreadyExists,
    Busy,
    Forbidden,
    InvalidName,
    MailboxError,
    NoSuchFile,
    QuotaExceeded,
)
from mailboxes.ftp.pyftpd import FilesystemError


def reply_for(exc: BaseException) -> str:
    """The FTP reply line for a refused operation; the message is safe to show the partner."""
    message = str(exc).rstrip(".") or type(exc).__name__
    if isinstance(exc, QuotaExceeded):
        return f"552 {message}."
    if isinstance(exc, InvalidName):
        return f"553 {message}."
    if isinstance(exc, Busy):
        return f"450 {message}."
    if isinstance(exc, Forbidden | NoSuchFile | AlreadyExists):
        return f"550 {message}."
    if isinstance(exc, MailboxError | IntakeError):
        return f"550 {message}."
    return "451 Local error; the file was not received."


def fs_error(exc: MailboxError) -> FilesystemError:
    """pyftpdlib answers `550 <message>.` to a FilesystemError from any filesystem call."""
    return FilesystemError(str(exc).rstrip(".") or type(exc).__name__)

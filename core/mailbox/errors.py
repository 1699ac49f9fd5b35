"""What a mailbox refuses, by kind, so each door can answer in its own protocol's words."""

from __future__ import annotations


class MailboxError(Exception):
    """An operation the mailbox refuses; the message is safe to show the client."""


class Forbidden(MailboxError):
    """Not allowed here (wrong folder, no permission, not supported)."""


class NoSuchFile(MailboxError):
    """No file or folder at that path (or one the login may not know about)."""


class AlreadyExists(MailboxError):
    pass


class QuotaExceeded(MailboxError):
    """The file is larger than the login's size limit."""


class InvalidName(MailboxError):
    """A path or file name that cannot be used (NUL, control characters, hidden, too long)."""


class Busy(MailboxError):
    """Another session is uploading the same file right now."""


class TooManyOpenFiles(Busy):
    """The partner (or every partner together) holds as many open files as allowed."""


class OffsetMismatch(MailboxError):
    """An exact resume (`Staging.resume_at`) named another offset than the staged size: nothing was
    written and nothing truncated; `have` is the staged size to resume from."""

    def __init__(self, message: str, have: int) -> None:
        super().__init__(message)
        self.have = have

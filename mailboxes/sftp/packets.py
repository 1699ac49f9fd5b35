"""The SFTP wire format the request loop needs: sizes, headers, replies."""

from __future__ import annotations

import struct

import paramiko
from paramiko.sftp import CMD_STATUS, SFTP_FAILURE, SFTP_NO_SUCH_FILE, SFTP_PERMISSION_DENIED

from core.mailbox.view import Entry, Forbidden, MailboxError, NoSuchFile

# What `limits@openssh.com` announces (OpenSSH's sftp-server announces the same).
MAX_MESSAGE = 256 * 1024
MAX_READ = MAX_WRITE = MAX_MESSAGE - 1024

U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
HEAD = struct.Struct(">IBI")  # length, type, request id
STATUS = struct.Struct(">IBIII")  # length, type, request id, code, message length


def attrs_of(entry: Entry) -> paramiko.SFTPAttributes:
    attrs = paramiko.SFTPAttributes()
    attrs.filename = entry.name
    attrs.st_size = entry.size
    attrs.st_uid = attrs.st_gid = 0
    attrs.st_mode = entry.mode
    attrs.st_atime = attrs.st_mtime = int(entry.mtime)
    return attrs


def status(request_id: int, code: int, message: str = "") -> bytes:
    text = message.encode()
    head = STATUS.pack(1 + 4 + 4 + 4 + len(text) + 4, CMD_STATUS, request_id, code, len(text))
    return head + text + b"\0\0\0\0"  # empty language tag


def packet(kind: int, body: bytes) -> bytes:
    return U32.pack(len(body) + 1) + bytes((kind,)) + body


_CODES: dict[type[MailboxError], int] = {NoSuchFile: SFTP_NO_SUCH_FILE, Forbidden: SFTP_PERMISSION_DENIED}


def error_code(exc: MailboxError) -> int:
    """The SFTP status code for a refusal."""
    return next((code for kind, code in _CODES.items() if isinstance(exc, kind)), SFTP_FAILURE)

"""The data channel: uploads finished (or abandoned) before pyftpdlib replies; downloads in big chunks."""

from __future__ import annotations

import logging
import os
import select
import socket
from typing import Any

from OpenSSL import SSL

from core.intake import IntakeError
from core.mailbox.view import DownloadFile, MailboxError
from mailboxes.ftp.pyftpd import (
    ERRNOS_DISCONNECTED,
    ERRNOS_RETRY,
    DTPHandler,
    FileProducer,
    RetryError,
    TLS_DTPHandler,
)
from mailboxes.ftp.replies import reply_for
from mailboxes.ftp.upload import UploadFile

log = logging.getLogger(__name__)

# Bytes per recv() on an upload and per read() on a download. pyftpdlib's 64 KiB costs one trip
# through the event loop per 64 KiB; larger chunks keep the per-byte Python overhead small.
CHUNK = 256 * 1024


def client_gone(channel: Any, grace: float) -> bool:
    """Whether the client behind a control connection has hung up (EOF or reset pending).

    A killed client closes its control and data connections together, and a clean end of the data
    stream looks exactly like a finished upload. Waiting `grace` seconds for the control
    connection to show its end tells the two apart; a live client is just waiting for the reply.
    """
    if channel is None or getattr(channel, "_closed", True) or not channel.connected:
        return True
    try:
        fd = channel.socket.fileno()
        if fd < 0:
            return True
        readable, _, _ = select.select([fd], [], [], grace)
        if not readable:
            return False
        with socket.socket(fileno=os.dup(fd)) as probe:
            return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


class UploadFinishingDTP(DTPHandler):  # type: ignore[misc]  # pyftpdlib ships no type hints
    """Decides an upload's fate before pyftpdlib replies, and tells a reset from a clean end.

    Sits between the TLS mixin and `DTPHandler` in the MRO, so it runs however the channel closes
    (including after a TLS shutdown completes).
    """

    ac_in_buffer_size = CHUNK
    ac_out_buffer_size = CHUNK
    eof_grace_seconds = 0.01
    reset = False

    _deferred: BaseException | None = None

    def recv(self, buffer_size: int) -> bytes:
        if self._deferred is not None:
            exc, self._deferred = self._deferred, None
            return self._recv_failed(exc)
        try:
            data: bytes = self.socket.recv(buffer_size)
        except (SSL.Error, OSError) as exc:
            return self._recv_failed(exc)
        if not data:
            self.handle_close()
        elif isinstance(self.socket, SSL.Connection) and len(data) < buffer_size:
            data = self._more_records(data, buffer_size)
        return data

    def _more_records(self, data: bytes, buffer_size: int) -> bytes:
        """TLS hands over one record (16 KiB) per read: gather what is already here into one chunk.

        One trip through pyftpdlib's event loop per 16 KiB would cost more than the decryption.
        A failure after the first record is kept for the next call, so no byte is lost.
        """
        buffer = bytearray(data)
        while len(buffer) < buffer_size:
            try:
                more = self.socket.recv(buffer_size - len(buffer))
            except SSL.WantReadError:
                break
            except (SSL.Error, OSError) as exc:
                # Handled on the next read, which must come even if the socket stays quiet.
                self._deferred = exc
                self.ioloop.call_later(0, self._read_deferred, _errback=self.handle_error)
                break
            if not more:
                break
            buffer += more
        return buffer if len(buffer) > len(data) else data  # type: ignore[return-value]

    def _read_deferred(self) -> None:
        if self._deferred is not None and not self._closed:
            self.handle_read_event()

    def _recv_failed(self, exc: BaseException) -> bytes:
        if isinstance(exc, SSL.SysCallError):
            if exc.args and exc.args[0] in ERRNOS_DISCONNECTED:
                self.reset = True
            raise exc  # the TLS mixin turns it into a close
        if isinstance(exc, OSError) and not isinstance(exc, SSL.Error):
            if exc.errno in ERRNOS_DISCONNECTED:
                self.reset = True
                self.handle_close()
                return b""
            if exc.errno in ERRNOS_RETRY:
                raise RetryError from exc
        raise exc

    def handle_close(self) -> None:
        if self.receive and self.reset and not self._closed:
            self.transfer_finished = False
            self._resp = ("426 Connection reset during the upload; nothing was received.", logging.info)
            self.close()
            return
        super().handle_close()

    def close(self) -> None:
        if not self._closed:
            if self.receive and isinstance(self.file_obj, UploadFile):
                self._finish_upload(self.file_obj)
            elif isinstance(self.file_obj, DownloadFile) and "initiate_send" in self.__dict__:
                # sendfile(2) moved the bytes without read(): tell the file, which audits on close.
                self.file_obj.sent += self.tot_bytes_sent
        super().close()

    def _finish_upload(self, upload: UploadFile) -> None:
        if upload.finished:
            return
        if upload.error is not None:
            self.transfer_finished = False
            upload.abandon(str(upload.error))
            self._resp = (reply_for(upload.error).replace(".", "; nothing was received.", 1), logging.info)
            return
        if not self.transfer_finished:
            upload.abandon("the upload was broken off")
            if self._resp:
                self._resp = (
                    f"426 Upload broken off after {upload.received} bytes; nothing was received.",
                    logging.info,
                )
            return
        if client_gone(self.cmd_channel, self.eof_grace_seconds):
            self.transfer_finished = False
            upload.abandon("the client went away before the upload was confirmed")
            return
        try:
            receipt = upload.complete()
        except (MailboxError, IntakeError) as exc:
            self.transfer_finished = False
            upload.reason = str(exc)
            self._resp = (reply_for(exc), logging.info)
            return
        except Exception:
            log.exception("FTP upload of %s could not be taken in", upload.name)
            self.transfer_finished = False
            upload.reason = "internal error"
            self._resp = ("451 Local error; the file was not received.", logging.warning)
            return
        if receipt is not None:
            self._resp = (
                f"226 Transfer complete: {receipt.size} bytes, sha256 {receipt.sha256}.",
                logging.debug,
            )


class MailboxDTPHandler(TLS_DTPHandler, UploadFinishingDTP):  # type: ignore[misc]  # pyftpdlib ships no type hints
    """Data channel: TLS when PROT P, uploads finished by `UploadFinishingDTP`."""

    def handle_error(self) -> None:
        upload = self.file_obj
        if self.receive and isinstance(upload, UploadFile) and upload.error is not None:
            # An expected refusal (size limit, ...): no traceback; the reply says why.
            self._error = True
            UploadFinishingDTP.close(self)
            return
        super().handle_error()


class ChunkProducer(FileProducer):  # type: ignore[misc]  # pyftpdlib ships no type hints
    buffer_size = CHUNK

"""Reading and writing one file over an FTP data connection. A read is the data connection of a
RETR; the server's 226 is collected when it ends. A write goes to a temporary name (see
core/endpoints/tempname.py) and is renamed when complete (or, for on_conflict rename/fail, to a
name chosen then); an aborted or failed write deletes what it left, and a refusal mid-upload
(a quota, a full disk) is reported in the server's words."""

from __future__ import annotations

import contextlib
import ftplib
import io
import socket
from typing import TYPE_CHECKING

from core.endpoints.base import (
    EndpointError,
    OnConflict,
    PermissionDenied,
    TransientError,
    WriteStream,
)
from core.endpoints.ftp_wire import (
    Connection,
    close_data,
    map_ftp_error,
)
from core.endpoints.tempname import RENAME_REFUSED

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from core.endpoints.ftp import FtpEndpoint

ABORT_TIMEOUT = 5.0  # how long an aborted upload waits for the server's answer


class FtpReader(io.RawIOBase):
    """The data connection of a RETR, read as a stream; the 226 is collected at the end."""

    def __init__(self, endpoint: FtpEndpoint, connection: Connection, conn: socket.socket, what: str) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._connection: Connection | None = connection
        self._conn: socket.socket | None = conn
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._conn is None or not view:
            return 0
        try:
            n = self._conn.recv_into(view)
            if n == 0:
                self._finish()
            return n
        except Exception as exc:
            self._fail()
            raise self._endpoint.redact(map_ftp_error(exc, self._what)) from None

    def _finish(self) -> None:
        conn, connection = self._conn, self._connection
        self._conn = self._connection = None
        assert conn is not None and connection is not None
        with contextlib.suppress(OSError):  # the server may close without a TLS goodbye
            close_data(conn, clean=True)
        try:
            connection.ftp.voidresp()
        except Exception:
            self._endpoint.discard_connection(connection)
            raise
        self._endpoint.release(connection)

    def _fail(self) -> None:
        conn, connection = self._conn, self._connection
        self._conn = self._connection = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        if connection is not None:
            self._endpoint.discard_connection(connection)

    def close(self) -> None:
        if not self.closed:
            # Closed before the end: the control connection is mid-transfer, so it is not reused.
            self._fail()
        super().close()


class FtpWriteStream(WriteStream):
    """STOR to a temporary name, fed by write(); commit waits for 226 and renames."""

    def __init__(
        self,
        endpoint: FtpEndpoint,
        connection: Connection,
        conn: socket.socket,
        temp: str,
        target: str,
        what: str,
        placement: tuple[str, OnConflict] | None = None,
    ) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._connection: Connection | None = connection
        self._conn: socket.socket | None = conn
        self.temp = temp
        self.target = target
        self._what = what
        self._placement = placement  # (relative path, rename|fail) when a file there must stay
        self._answered = False  # whether the STOR's final reply has been read

    def _write(self, data: bytes) -> None:
        if self._conn is None:
            raise TransientError(f"{self._what}: the upload connection is gone")
        try:
            self._conn.sendall(data)
        except Exception as exc:
            # The server may have cut the upload short (quota, disk full): its reply says why.
            error = self._server_reason() or map_ftp_error(exc, self._what)
            raise self._endpoint.redact(error) from None

    def _server_reason(self) -> EndpointError | None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        if self._connection is None or self._connection.ftp.sock is None:
            return None
        ftp, sock = self._connection.ftp, self._connection.ftp.sock
        try:
            sock.settimeout(ABORT_TIMEOUT)
            ftp.getresp()
        except ftplib.Error as exc:
            self._answered = True
            return map_ftp_error(exc, self._what)
        except Exception:
            return None
        self._answered = True
        return None

    def _commit(self) -> None:
        conn, connection = self._conn, self._connection
        assert conn is not None and connection is not None
        self._conn = None
        ftp = connection.ftp
        try:
            close_data(conn, clean=True)
            self._answered = True
            ftp.voidresp()
            if self.temp == self.target:  # temp_name "none" wrote the final (already free) name
                pass
            elif self._placement is not None:
                self.path = self._endpoint.rename_new(connection, self.temp, *self._placement)
            else:
                self._rename_over(ftp)
        except Exception as exc:
            raise self._endpoint.redact(map_ftp_error(exc, self._what)) from None
        self._connection = None
        self._endpoint.release(connection)

    def _rename_over(self, ftp: ftplib.FTP) -> None:
        try:
            ftp.rename(self.temp, self.target)
        except ftplib.error_perm:
            # Some servers refuse to rename onto an existing file: remove it, then rename.
            with contextlib.suppress(ftplib.error_perm):
                ftp.delete(self.target)
            try:
                ftp.rename(self.temp, self.target)
            except ftplib.error_perm as exc:
                raise PermissionDenied(f"{self._what}: {RENAME_REFUSED} ({str(exc).strip()})") from None

    def _abort(self) -> None:
        conn, connection = self._conn, self._connection
        self._conn = self._connection = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()  # no TLS goodbye: the server sees an incomplete upload
        if connection is None:
            return
        ftp = connection.ftp
        try:
            if ftp.sock is not None:
                ftp.sock.settimeout(ABORT_TIMEOUT)
            if not self._answered:
                self._answered = True
                with contextlib.suppress(ftplib.Error):
                    ftp.getresp()  # 226 or 426 for the cut-off STOR
            with contextlib.suppress(ftplib.Error):
                ftp.delete(self.temp)
            if ftp.sock is not None:
                ftp.sock.settimeout(self._endpoint.timeout)
        except Exception:  # the control connection broke too: the temporary file may stay behind
            self._endpoint.discard_connection(connection)
            return
        self._endpoint.release(connection)

"""pyftpdlib's pieces, imported once here with the DeprecationWarning its asyncore base raises on import.

(pyftpdlib 2 is built on asyncore/asynchat, which Python 3.11 deprecates on import.)
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import AuthenticationFailed
    from pyftpdlib.exceptions import FilesystemError, _RetryError
    from pyftpdlib.filesystems import AbstractedFS
    from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
    from pyftpdlib.handlers.ftp.data import DTPHandler
    from pyftpdlib.handlers.ftp.producers import FileProducer
    from pyftpdlib.ioloop import _ERRNOS_DISCONNECTED, _ERRNOS_RETRY, IOLoop
    from pyftpdlib.servers import ThreadedFTPServer

ERRNOS_DISCONNECTED = _ERRNOS_DISCONNECTED
ERRNOS_RETRY = _ERRNOS_RETRY
RetryError = _RetryError

__all__ = [
    "ERRNOS_DISCONNECTED",
    "ERRNOS_RETRY",
    "AbstractedFS",
    "AuthenticationFailed",
    "DTPHandler",
    "FileProducer",
    "FilesystemError",
    "IOLoop",
    "RetryError",
    "TLS_DTPHandler",
    "TLS_FTPHandler",
    "ThreadedFTPServer",
]

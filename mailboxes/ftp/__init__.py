"""The partner mailbox over FTP and explicit FTPS (AUTH TLS), on pyftpdlib.

pyftpdlib is built from pluggable pieces (authorizer, filesystem, control and data handlers,
server), and so is this package, one module each:

* `authorizer.MailboxAuthorizer` — logins through the shared `MailboxAuth` (the login policy of
  `core.login`: address bans, account locks, IP allow-list; per-partner session limit, audit).
* `filesystem.MailboxFS` — an `AbstractedFS` whose "filesystem paths" are the partner's virtual
  paths ("/", "/upload/x", "/download/y"), served by `MailboxView`. Nothing there touches a real
  path, so `..`, absolute paths and other partners' names only ever resolve inside the home; its
  MLSD `perm` facts come from the mailbox model's access table (`core.mailbox.access`).
* `control.MailboxFTPHandler` — a `TLS_FTPHandler`: explicit FTPS (AUTH TLS) on one port, required
  unless plain FTP is allowed (`TRADELANE_FTP_REQUIRE_TLS=false`), passive port range, idle
  timeout, a login grace time, REST/APPE. STOR streams into a staged upload; RETR streams from
  `MailboxView.open_read`.
* `data.MailboxDTPHandler` and `upload.UploadFile` — the data channel, see below.
* `server.FTPServer` — pyftpdlib's threaded server (one thread per session, so a password hash or
  an fsync in one session never stalls another) on an IOLoop of its own, in a background thread.
  Since every connection costs a thread from the moment it is accepted, connections are capped in
  all and per address (pyftpdlib's `max_cons`, `max_cons_per_ip`: "421 Too many connections ...")
  and one that has not logged in within the login grace time is closed.
* `certificate` — the certificate FTPS presents; `replies` — refusals in FTP reply codes;
  `pyftpd` — pyftpdlib's classes, imported once.

Uploads go through intake exactly once, and only when complete. pyftpdlib treats any end of the
data connection as a finished upload and replies "226" *before* calling `on_file_received`, so the
decision is taken in the data channel (`data.UploadFinishingDTP`) before the reply is sent:

* a clean end of data while the client is still connected → `complete()` (intake: rename, receipt,
  transfers, dispatch), then "226 ... sha256 ..."; if intake refuses, the client gets a 4xx/5xx;
* a reset data connection, ABOR, a timeout, a refused write, or a client whose control connection
  has gone too (a killed client closes both) → `abandon()`: nothing visible, nothing triggered.

While an upload streams, the session thread only receives; a writer thread per upload does the
disk write and SHA-256 and starts the kernel's writeback early (`UploadFile`), so the fsync at
completion is short. Downloads use sendfile(2) on plain connections and 256 KiB reads on TLS ones.
"""

from mailboxes.ftp.authorizer import PROTOCOL, MailboxAuthorizer
from mailboxes.ftp.certificate import CERT_FILE, KEY_FILE, ensure_certificate, make_ssl_context
from mailboxes.ftp.control import MailboxFTPHandler
from mailboxes.ftp.data import CHUNK, MailboxDTPHandler
from mailboxes.ftp.filesystem import MailboxFS
from mailboxes.ftp.replies import reply_for
from mailboxes.ftp.server import FTPServer, parse_port_range
from mailboxes.ftp.upload import UploadFile

__all__ = [
    "CERT_FILE",
    "CHUNK",
    "KEY_FILE",
    "PROTOCOL",
    "FTPServer",
    "MailboxAuthorizer",
    "MailboxDTPHandler",
    "MailboxFS",
    "MailboxFTPHandler",
    "UploadFile",
    "ensure_certificate",
    "make_ssl_context",
    "parse_port_range",
    "reply_for",
]

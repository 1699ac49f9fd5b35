"""The partner mailbox over SFTP: paramiko's SSH transport, our own SFTP request loop over `MailboxView`.

`SFTPServer(settings, auth).start()` listens on `settings.host:settings.sftp_port` (port 0 picks a
free one; `server.port` says which) and serves every partner its own home: `/upload` (write,
list), `/download` (read, delete if allowed). Logins are password or SSH public key, through
`MailboxAuth`, so lockouts, allow-lists, session limits and audit events are the ones every other
door uses. Host keys (Ed25519 and RSA) are generated once into TRADELANE_HOME and kept.

An SFTP CLOSE of a written file is the end of an upload: the file goes through `core.intake`.
A connection that drops with a file still open leaves the bytes staged for a resume (`reput`,
`put -a`) and triggers nothing.

One module per job: `server` (accept, limits, idle reaper), `limits` (connections turned away before
they cost a thread), `connection` (what one SSH connection knows), `auth` (logins and channel
policy), `channels` (window enforcement and growth), `sockets` (buffered reads), `fastpath` (the
packet reader, packet writer and channel buffer without copies), `hostkeys`, `packets` (the SFTP
wire format) and `subsystem` (the request loop).

Speed. paramiko's own SFTP server answers one request at a time with several copies and a few
Python calls per 32 KiB, which is 2-4x slower than OpenSSH. Here:

* the server answers `limits@openssh.com`, so OpenSSH's `sftp` (and other clients that ask) send
  and fetch ~255 KiB per request instead of 32 KiB, as they do against OpenSSH's sftp-server;
* the SSH channel offers a large window (16 MiB: 64 such requests in flight) and a large
  maximum packet, so the client is never held back by us (OpenSSH's client still cuts its data
  into ~50 KiB SSH packets) -- once the channel runs the sftp subsystem; before that it offers
  64 KiB (`OPEN_WINDOW`), so a channel nobody reads cannot be made to hold more;
* the request loop reads everything the channel has buffered at once into one reused buffer,
  parses WRITE and READ with `struct` on memoryviews (the data is written with `os.pwrite`
  straight from that buffer and hashed in the same pass; READ replies are read with `preadv`
  into reused packet buffers), and sends all replies for what it has read in one channel write;
* paramiko reads the socket through a small buffer (`BufferedSocket`), so the client's many
  small packets (READ requests, window updates) cost one system call per burst, not two each;
* uploaded bytes are copied about three times, not nine (`fastpath`): with encrypt-then-MAC or
  AES-GCM each SSH packet is read into one buffer, MAC'd and decrypted once, and its channel data
  handed to the request loop as a view of the decrypted packet (paramiko's own reader for other
  MACs and before the first key exchange); uploads went from 267-285 to 326-343 MB/s;
* downloaded bytes are copied once, not eight times (`fastpath.send_all`): a READ reply is
  encrypted from its buffer straight into a reused output buffer, several SSH packets at a time
  (each within the client's maximum packet and window), MAC'd there and written with one `send`;
  the server's CPU per downloaded GB went from 3.2-3.5 s to 1.6-1.8 s;
* no store access, stat or allocation per request beyond that;
* `tradelane up` lowers the process's GIL switch interval (`cli.supervisor.tune_interpreter`);
  the server itself never changes interpreter-wide state.

Limits (each a setting, see `core.config`): connections in all and per address, and those not
logged in yet (OpenSSH's MaxStartups and PerSourceMaxStartups), are checked before a connection
gets a thread; a connection must log in within the login grace time (OpenSSH's LoginGraceTime); a
client that sends more than the channel window it was offered is disconnected (paramiko buffers
whatever arrives); exec, shell and every subsystem but sftp are refused and their channel closed;
handles are capped per SFTP session, and open files per partner (`MailboxAuth.open_files`).
"""

from mailboxes.sftp.channels import MAX_PACKET_SIZE, OPEN_WINDOW, WINDOW_SIZE
from mailboxes.sftp.connection import PROTOCOL
from mailboxes.sftp.hostkeys import HOST_KEY_FILES, load_host_keys
from mailboxes.sftp.packets import MAX_MESSAGE, MAX_READ, MAX_WRITE
from mailboxes.sftp.server import SERVER_VERSION, SFTPServer

__all__ = [
    "HOST_KEY_FILES",
    "MAX_MESSAGE",
    "MAX_PACKET_SIZE",
    "MAX_READ",
    "MAX_WRITE",
    "OPEN_WINDOW",
    "PROTOCOL",
    "SERVER_VERSION",
    "WINDOW_SIZE",
    "SFTPServer",
    "load_host_keys",
]

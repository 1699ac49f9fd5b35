"""Email: push a file as a message attachment over SMTP; pull attachments out of an IMAP mailbox.

One endpoint may do either or both: configure `smtp_host` to send, `imap_host` to receive.

The package, by job: `settings` (the settings and secrets models, and the two halves they
describe), `smtp` (the push half), `imap` (the pull half), `imap_wire` (IMAP responses parsed),
`mime` (the message built, BODYSTRUCTURE read), `decoders` (base64 / quoted-printable decoded window
by window), `errors` (failures in the endpoint error tree), `connection` (timeout, TLS context and
redaction, shared by the halves) and `endpoint` (`EmailEndpoint`, composing the halves).

Settings and secrets (what each means, defaults, checks): `settings`, one pydantic model each.

Push (`open_write(path)`): the bytes are spooled to an anonymous temporary file (SHA-256 computed
on the way). On commit the message is generated on the fly, never whole in memory: headers and a
short text part (with the size and SHA-256) from the `email` package, then the attachment base64
encoded from the spool in blocks of whole 76-character lines. smtplib's `sendmail` wants the whole
message as one bytes object, so the DATA phase is driven by hand: MAIL FROM (with SIZE when offered,
refusing early if over the server's limit), RCPT TO for each recipient - any refusal aborts the
transaction, so a message reaches all recipients or none - then DATA, the dot-stuffed CRLF lines,
and ".". The Message-ID is kept in `last_message_id` (and the stream's `message_id`). An abort
just closes the spool. The attachment filename is the path's last segment. Certificates are
verified (hostname included) unless `verify` is false.

Pull: a file is one attachment of one message, at path "<UID>/<filename>". `list("")` lists the
attachments of every message in `mailbox` matching `search` (one level deeper than other endpoints'
roots); `list("<UID>")` lists one message. An attachment is any non-multipart part with a filename
(Content-Disposition filename or Content-Type name, RFC 2231 and RFC 2047 decoded) or with
disposition "attachment"; the name is sanitised to one clean path segment ("attachment-<part>.bin"
when empty) and made unique within its message. Messages without attachments are left alone.
Sizes: exact for 7bit/8bit/binary; for base64 they are computed exactly from the encoded size and
two small partial fetches (first line length, last line and padding), falling back to an estimate
for irregular line lengths; for quoted-printable the encoded size is reported (an upper bound).
`modified` is the message's INTERNALDATE; `etag` is "<UIDVALIDITY>.<UID>.<part>".
`open_read` streams the part with `UID FETCH BODY.PEEK[part]<offset.length>` in 1 MiB windows and
decodes base64 / quoted-printable incrementally, so neither reading nor listing marks a message
\\Seen and no attachment is ever held whole. UIDs are only meaningful within one UIDVALIDITY; a path
whose message or attachment name no longer matches is `NotFound`.

Taken once: `delete(path)` marks that attachment taken with the IMAP keyword
"TradelaneTaken.<part>"; once every attachment of a message is taken, `after_pull` applies to the
message: "seen" sets \\Seen, "move:<folder>" sets \\Seen and moves it (UID MOVE, or COPY + \\Deleted +
EXPUNGE; the folder is created on first use), "delete" sets \\Deleted and expunges it. The message
also gets the keyword "TradelaneTaken", and listings search `(<search>) NOT KEYWORD TradelaneTaken`,
so a message is taken once even with `search` "ALL" or after a crash between attachments. Servers
that do not allow custom keywords (no "\\*" in PERMANENTFLAGS) fall back to remembering taken
attachments in this endpoint object. Without UIDPLUS, expunging also removes any other message
already flagged \\Deleted in that mailbox (as any IMAP client's expunge would).

Errors: SMTP 530/534/535 and IMAP login failures ([AUTHENTICATIONFAILED] and other NO) are
`AuthError`; certificate problems ("... TLS certificate verify failed ...") and other TLS
handshake failures ("... TLS error ...") are `TlsError`, not retryable; connection refused,
resets, timeouts and dropped connections are `Unreachable` and SMTP 4xx `TransientError`;
a 5xx recipient refusal is `PermissionDenied`; other 5xx answers `EndpointError`; DNS failures are
`DnsError` (`TemporaryDnsError`, retried, for a temporary resolver failure); a missing
STARTTLS/AUTH extension, a missing mailbox or a bad setting is `ConfigError`. Messages and `uri()`
("email:smtp://host:port/<path> → to", "email:imap://user@host:port/INBOX/<path>") never contain a
secret. A dropped IMAP connection is reopened once for idempotent commands (list, stat, reads).
A push whose final "." reply is lost may have been delivered; retrying it sends a second message.
"""

from core.endpoints.email.decoders import base64_decoded_size, base64_length
from core.endpoints.email.endpoint import EmailEndpoint
from core.endpoints.email.errors import map_network_error, map_smtp_error
from core.endpoints.email.imap import TAKEN, EmailReadStream, ImapReceiver
from core.endpoints.email.imap_wire import mutf7, parse_fetch, parse_internaldate
from core.endpoints.email.mime import Attachment, attachments_of, decode_filename, safe_filename
from core.endpoints.email.settings import EmailSettings, ImapSettings, SmtpSettings
from core.endpoints.email.smtp import EmailWriteStream, SmtpSender

__all__ = [
    "TAKEN",
    "Attachment",
    "EmailEndpoint",
    "EmailReadStream",
    "EmailSettings",
    "EmailWriteStream",
    "ImapReceiver",
    "ImapSettings",
    "SmtpSender",
    "SmtpSettings",
    "attachments_of",
    "base64_decoded_size",
    "base64_length",
    "decode_filename",
    "map_network_error",
    "map_smtp_error",
    "mutf7",
    "parse_fetch",
    "parse_internaldate",
    "safe_filename",
]

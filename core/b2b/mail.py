"""The invitation e-mail: one message, sent at once over SMTP by the inviting process, never queued.

Queueing would mean storing the clear token, which exists only in the inviting process's memory,
this e-mail and the inviter's output. So the message is composed and sent here, in-process, and a
failure is an answer (`MailOutcome(sent=False, error=...)`): the connection stays pending and the
inviter passes the link on. Nothing here logs the message, the link or the token, and nothing is
written to disk.

Settings (`TRADELANE_SMTP_*`, core/config.py): when `smtp_user` is set the session always logs in,
also with `smtp_tls=none` (the operator's explicit choice); a server that offers no AUTH then fails
the send with a clear error instead of sending unauthenticated.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid
from typing import Literal
from urllib.parse import quote, urlsplit

from core.b2b import tokens
from core.config import Settings, get_settings
from core.endpoints.email.errors import map_smtp_error
from core.endpoints.email.smtp import NoAuthOffered, open_smtp

Direction = Literal["send", "receive"]  # what the inviter does
SMTP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Invitation:
    """What the e-mail says. Every text is a validated name or address (checked again: no line breaks)."""

    inviter_account: str
    inviter_email: str | None  # the inviting user's address, when a user (not the CLI) invited
    connection_name: str
    direction: Direction
    recipient: str
    expires_at: datetime
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        texts = (self.inviter_account, self.inviter_email or "", self.connection_name, self.recipient)
        if any(c in text for text in texts for c in "\r\n\x00"):
            raise ValueError("invitation texts may not contain line breaks")
        # One bare address: the message goes to it alone (no display name, no list).
        local, at, domain = self.recipient.rpartition("@")
        if not (local and at and domain) or any(c in self.recipient for c in ' ,;<>()"'):
            raise ValueError(f"not one e-mail address: {self.recipient!r}")
        if self.direction not in ("send", "receive"):
            raise ValueError(f"direction must be 'send' or 'receive', not {self.direction!r}")


@dataclass(frozen=True)
class MailOutcome:
    """Whether the invitation went out; `error` says why not (never containing the token)."""

    sent: bool
    error: str | None = None

    def fields(self) -> dict[str, bool | str]:
        """What `--json` and the REST answer carry: `email_sent`, and `email_error` when not sent."""
        return {"email_sent": self.sent} | ({"email_error": self.error} if self.error else {})

    def sentence(self, recipient: str) -> str:
        """What the inviter is told, after the link."""
        if self.sent:
            return f"email sent to {recipient}"
        return f"no email sent ({self.error}): pass the link on yourself"


def accept_link(token: str, settings: Settings | None = None) -> str:
    """PUBLIC_URL/connect/accept?token=..., the link the e-mail and the inviter's output carry."""
    return tokens.link((settings or get_settings()).public_base_url, quote(token, safe=""))


def direction_sentence(invitation: Invitation) -> str:
    who = invitation.inviter_account
    if invitation.direction == "send":
        return f"{who} wants to send files to you"
    return f"{who} wants to receive files from you"


def compose(invitation: Invitation, settings: Settings | None = None) -> EmailMessage:
    """The message: who invites, the connection, the direction, the expiry, the link, the CLI line."""
    settings = settings or get_settings()
    link = accept_link(invitation.token, settings)
    inviter = invitation.inviter_account
    if invitation.inviter_email:
        inviter += f" ({invitation.inviter_email})"
    # What the invitee chooses on accepting: where files land, or the outbox it will put them in.
    choice = "--dest ENDPOINT[:DIR]" if invitation.direction == "send" else "--outbox OUTBOX"
    expires = invitation.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = f"""\
{inviter} invites you to a B2B connection on tradelane: {invitation.connection_name}.

{direction_sentence(invitation)}.

Open this link to accept or decline (it works once, until {expires}):

{link}

If your company runs its own tradelane, accept there instead:

  tradelane connect accept '{link}' --account YOURS --name NAME {choice}

Keep this link to yourself: whoever holds it can accept the connection.
"""
    message = EmailMessage(policy=SMTP_POLICY)
    subject = f"{invitation.inviter_account} invites you to a B2B connection: {invitation.connection_name}"
    message["Subject"] = subject
    message["From"] = settings.smtp_from_address
    message["To"] = invitation.recipient
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=urlsplit(settings.public_base_url).hostname)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.smtp_tls == "none":
        return None
    cafile = str(settings.smtp_cafile) if settings.smtp_cafile else None
    return ssl.create_default_context(cafile=cafile)


def _why(exc: BaseException, settings: Settings) -> str:
    """A failure in words for the inviter (the server's, or the network's), without the message."""
    tls = settings.smtp_tls
    if isinstance(exc, NoAuthOffered):
        advice = "; use starttls or ssl" if tls == "none" else "; check the port and TRADELANE_SMTP_TLS"
        return f"the SMTP server offers no AUTH on this connection (TRADELANE_SMTP_TLS={tls}){advice}"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        said = exc.smtp_error
        text = " ".join((said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)).split())
        return f"the SMTP server refused the login as {settings.smtp_user!r}: {exc.smtp_code} {text}"
    why = str(map_smtp_error(exc, _where(settings), settings.smtp_host or ""))
    if "CERTIFICATE_VERIFY_FAILED" in str(exc) and not settings.smtp_cafile:
        why += " (a private CA? set TRADELANE_SMTP_CAFILE)"
    return why


def _where(settings: Settings) -> str:
    return f"SMTP {settings.smtp_host}:{settings.smtp_port_or_default} ({settings.smtp_tls})"


def send_invitation(invitation: Invitation, settings: Settings | None = None) -> MailOutcome:
    """Send the invitation now; never raises for SMTP trouble (the outcome says what went wrong)."""
    settings = settings or get_settings()
    if not settings.smtp_host:
        return MailOutcome(False, "TRADELANE_SMTP_HOST is not set")
    message = compose(invitation, settings)
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
    try:
        conn = open_smtp(
            settings.smtp_host,
            settings.smtp_port_or_default,
            settings.smtp_tls,
            context=_tls_context(settings),
            timeout=SMTP_TIMEOUT_SECONDS,
            login=(settings.smtp_user, password) if settings.smtp_user else None,
        )
        try:
            conn.send_message(message, from_addr=settings.smtp_from_address, to_addrs=[invitation.recipient])
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                conn.quit()
            conn.close()
    except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
        return MailOutcome(False, _why(exc, settings))
    return MailOutcome(True)


def clear_password_warning(settings: Settings | None = None) -> str | None:
    """The line `up` logs when AUTH is used over plain SMTP (the password crosses the network in clear)."""
    settings = settings or get_settings()
    if settings.smtp_host and settings.smtp_user and settings.smtp_tls == "none":
        return (
            f"TRADELANE_SMTP_TLS=none with TRADELANE_SMTP_USER set: the SMTP password crosses the network "
            f"to {settings.smtp_host} in clear"
        )
    return None

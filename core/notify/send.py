"""Send a notice through a channel: e-mail over the instance's SMTP settings, or a signed webhook.

E-mail uses `TRADELANE_SMTP_*` (the same settings, and the same `open_smtp`, as B2B invitations).
A webhook gets a POST of the raw JSON body with `X-Tradelane-Signature: sha256=<hex HMAC-SHA256 of
the body keyed with the channel's secret>` when it has one. `deliver` tries a few times with
exponential backoff (a webhook that is down or slow) and records the outcome on the channel; it
runs in a notify flow run of its own (flows/notify.py), never in a transfer's, so a channel in
trouble never holds a file back.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import smtplib
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid
from urllib.parse import urlsplit

import httpx

from core.config import Settings, get_settings
from core.db import session_scope
from core.endpoints.email.smtp import open_smtp
from core.models import NotifyChannel
from core.notify import channels, messages
from core.notify.notices import Notice
from core.redact import scrub_known

log = logging.getLogger("tradelane.notify")

SIGNATURE_HEADER = "X-Tradelane-Signature"
WEBHOOK_TIMEOUT_SECONDS = 10.0
SMTP_TIMEOUT_SECONDS = 30.0
# Tries of one notice, and the first wait between them (doubling: 2, 4, 8, 16 s).
TRIES = 5
FIRST_DELAY_SECONDS = 2.0


class SendError(Exception):
    """A channel did not take the notice; the message says why (never a secret)."""


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(channel: NotifyChannel, notice: Notice, settings: Settings | None = None) -> None:
    """One try; raises SendError."""
    settings = settings or get_settings()
    if channel.kind == "email":
        _send_email(channel, notice, settings)
    else:
        _send_webhook(channel, notice)


def _send_webhook(channel: NotifyChannel, notice: Notice) -> None:
    body = messages.webhook_body(notice, channel.format)
    headers = {"Content-Type": "application/json", "User-Agent": "tradelane-notify"}
    secret = channels.secret_of(channel)
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    try:
        answer = httpx.post(channel.target, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise SendError(f"webhook {_host(channel.target)}: {type(exc).__name__}: {exc}") from None
    if not answer.is_success:
        raise SendError(f"webhook {_host(channel.target)} answered {answer.status_code}")


def _host(url: str) -> str:
    return urlsplit(url).netloc  # not the path or query, which may hold a token


def _send_email(channel: NotifyChannel, notice: Notice, settings: Settings) -> None:
    mail(channels.check_addresses(channel.target), messages.subject(notice), messages.text(notice), settings)


def mail(recipients: list[str], subject: str, body: str, settings: Settings | None = None) -> None:
    """One e-mail through the instance's SMTP settings (one try); raises SendError."""
    settings = settings or get_settings()
    if not settings.smtp_host:
        raise SendError("TRADELANE_SMTP_HOST is not set: e-mail channels cannot send")
    message = EmailMessage(policy=SMTP_POLICY)
    message["Subject"] = subject
    message["From"] = settings.smtp_from_address
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=urlsplit(settings.public_base_url).hostname)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
    context = None
    if settings.smtp_tls != "none":
        context = ssl.create_default_context(
            cafile=str(settings.smtp_cafile) if settings.smtp_cafile else None
        )
    try:
        conn = open_smtp(
            settings.smtp_host,
            settings.smtp_port_or_default,
            settings.smtp_tls,
            context=context,
            timeout=SMTP_TIMEOUT_SECONDS,
            login=(settings.smtp_user, password) if settings.smtp_user else None,
        )
        try:
            conn.send_message(message, from_addr=settings.smtp_from_address, to_addrs=recipients)
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                conn.quit()
            conn.close()
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"SMTP {settings.smtp_host}: {type(exc).__name__}: {exc}") from None


def deliver(
    channel_id: int,
    notice: Notice,
    *,
    tries: int = TRIES,
    first_delay: float = FIRST_DELAY_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Send with retries and backoff; record the outcome on the channel. Raises SendError after
    the last try (the notify run then ends Failed, visible in the Prefect UI)."""
    with session_scope() as session:
        channel = session.get(NotifyChannel, channel_id)
    if channel is None:
        raise SendError(f"notification channel {channel_id} was removed")
    delay = first_delay
    for attempt in range(1, tries + 1):
        try:
            send(channel, notice)
        except SendError as exc:
            why = str(scrub_known(str(exc)))
            log.warning("channel %s: try %d of %d failed: %s", channel.name, attempt, tries, why)
            channels.record_failed(channel_id, why)
            if attempt == tries:
                raise SendError(f"channel {channel.name!r}: {why} (after {tries} tries)") from None
            sleep(delay)
            delay *= 2
        else:
            channels.record_sent(channel_id)
            return

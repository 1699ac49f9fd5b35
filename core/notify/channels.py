"""Notification channels: an account's e-mail addresses or webhook, stored with its secret encrypted.

`add` checks everything before storing: each e-mail address is one bare address (no display name,
no line break: nothing that could add a mail header), a webhook URL is http(s) with a host, and
its format one of `FORMATS`. A webhook's secret (the HMAC key of `X-Tradelane-Signature`) is
encrypted at rest with the instance's secret key (core/crypto.py), as endpoints' secrets are; it
is shown nowhere after `add`. Sends record their outcome on the row (`record_sent`, `record_failed`),
so `notify channel list` shows a channel that keeps failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from core import crypto
from core.db import session_scope
from core.errors import Conflict, Invalid, NotFound
from core.models import NotifyChannel, NotifyRule, Sla, utcnow
from core.object_names import InvalidName, validate_name
from core.tenancy import Scope

KINDS = ("email", "webhook")
FORMATS = ("json", "slack", "teams")
# Consecutive failed sends after which `notify channel list` calls a channel failing.
FAILING_AFTER = 1
# A failure's text is kept this long (the list shows it; the rest is in the run's log).
ERROR_CHARS = 300


class NoSuchChannel(NotFound):
    pass


@dataclass(frozen=True)
class ChannelView:
    """What `notify channel list` shows: never the secret."""

    id: int
    name: str
    kind: str
    target: str
    format: str
    has_secret: bool
    last_sent_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    failures: int

    @property
    def failing(self) -> bool:
        return self.failures >= FAILING_AFTER

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "target": self.target,
            "format": self.format if self.kind == "webhook" else None,
            "has_secret": self.has_secret,
            "state": "failing" if self.failing else "ok",
            "failures": self.failures,
            "last_sent_at": self.last_sent_at.isoformat() if self.last_sent_at else None,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
        }


def check_addresses(text: str) -> list[str]:
    """Comma-separated bare e-mail addresses; anything that could be a header or a list is refused."""
    addresses = [part.strip() for part in text.split(",") if part.strip()]
    if not addresses:
        raise Invalid("--email needs at least one address")
    for address in addresses:
        local, at, domain = address.rpartition("@")
        bad = any(c in address for c in ' ,;<>()"\\\r\n\t\x00') or any(ord(c) < 32 for c in address)
        if not (local and at and domain) or bad or "." not in domain:
            raise Invalid(f"not one e-mail address: {address!r}")
    return addresses


def check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"a webhook URL is http:// or https:// with a host, not {url!r}")
    if any(ord(c) < 33 for c in url):
        raise Invalid("a webhook URL may not contain spaces or control characters")
    return url


def add(
    session: Session,
    scope: Scope,
    name: str,
    *,
    email: str | None = None,
    webhook: str | None = None,
    secret: str | None = None,
    format: str = "json",
) -> NotifyChannel:
    """A new channel: `email` (addresses) or `webhook` (URL, optional HMAC secret and format)."""
    scope.require_to("endpoints.change")
    try:
        validate_name(name)
    except InvalidName as exc:
        raise Invalid(str(exc)) from None
    if (email is None) == (webhook is None):
        raise Invalid("give either --email ADDRESSES or --webhook URL")
    if get(session, scope, name) is not None:
        raise Conflict(f"a channel named {name!r} exists")
    if email is not None:
        if secret is not None or format != "json":
            raise Invalid("--secret and --format are for webhooks")
        row = NotifyChannel(
            account_id=scope.account_id, name=name, kind="email", target=", ".join(check_addresses(email))
        )
    else:
        assert webhook is not None
        if format not in FORMATS:
            raise Invalid(f"--format is one of {', '.join(FORMATS)}, not {format!r}")
        if secret is not None and not secret:
            raise Invalid("--secret may not be empty")
        row = NotifyChannel(
            account_id=scope.account_id,
            name=name,
            kind="webhook",
            target=check_webhook_url(webhook),
            format=format,
            secrets=crypto.encrypt_json({"secret": secret}) if secret else None,
        )
    session.add(row)
    session.flush()
    return row


def get(session: Session, scope: Scope, name: str) -> NotifyChannel | None:
    return session.exec(
        select(NotifyChannel).where(NotifyChannel.account_id == scope.account_id, NotifyChannel.name == name)
    ).first()


def require(session: Session, scope: Scope, name: str) -> NotifyChannel:
    channel = get(session, scope, name)
    if channel is None:
        raise NoSuchChannel(f"no notification channel named {name!r}")
    return channel


def remove(session: Session, scope: Scope, name: str) -> None:
    """Remove a channel, its rules (their automations go with the next reconcile) and SLAs."""
    scope.require_to("endpoints.change")
    channel = require(session, scope, name)
    for sla in session.exec(select(Sla).where(Sla.channel_id == channel.id)):
        session.delete(sla)
    for rule in session.exec(select(NotifyRule).where(NotifyRule.channel_id == channel.id)):
        session.delete(rule)
    session.flush()
    session.delete(channel)


def view(channel: NotifyChannel) -> ChannelView:
    assert channel.id is not None
    return ChannelView(
        channel.id,
        channel.name,
        channel.kind,
        channel.target,
        channel.format,
        bool(channel.secrets),
        channel.last_sent_at,
        channel.last_error,
        channel.last_error_at,
        channel.failures,
    )


def listed(session: Session, scope: Scope) -> list[ChannelView]:
    rows = session.exec(
        select(NotifyChannel)
        .where(NotifyChannel.account_id == scope.account_id)
        .order_by(col(NotifyChannel.name))
    )
    return [view(row) for row in rows]


def secret_of(channel: NotifyChannel) -> str | None:
    """The webhook's HMAC key, decrypted (only the sender asks)."""
    value = crypto.decrypt_json(channel.secrets).get("secret")
    return str(value) if value else None


def record_sent(channel_id: int) -> None:
    with session_scope() as session:
        channel = session.get(NotifyChannel, channel_id)
        if channel is not None:
            channel.last_sent_at, channel.failures = utcnow(), 0
            session.add(channel)


def record_failed(channel_id: int, error: str) -> None:
    with session_scope() as session:
        channel = session.get(NotifyChannel, channel_id)
        if channel is not None:
            channel.last_error, channel.last_error_at = error[:ERROR_CHARS], utcnow()
            channel.failures += 1
            session.add(channel)

"""The email endpoint's settings: every config and secrets key it reads, checked and typed here alone.

`parse_settings(config, secrets)` is the one place a stored endpoint's dicts become settings; the
SMTP and IMAP halves only ever see the typed result. A bad value is a `ConfigError` naming the key.
"""

from __future__ import annotations

import builtins
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import formataddr, getaddresses
from typing import Any

from core.endpoints.base import ConfigError

# Every key the type reads: `apply -f` refuses any other.
CONFIG_KEYS = frozenset(
    {
        "smtp_host",
        "smtp_port",
        "smtp_tls",
        "from",
        "to",
        "subject",
        "body",
        "helo",
        "imap_host",
        "imap_port",
        "imap_tls",
        "mailbox",
        "search",
        "after_pull",
        "timeout",
        "verify",
        "cafile",
        "spool_dir",
    }
)
SECRET_KEYS = frozenset({"user", "password", "smtp_user", "smtp_password", "imap_user", "imap_password"})

DEFAULT_TIMEOUT = 60.0
TEMPLATE_FIELDS = ("name", "path", "size", "sha256")
DEFAULT_BODY = "Attached: {name} ({size} bytes, SHA-256 {sha256})."
SMTP_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
IMAP_PORTS = {"ssl": 993, "starttls": 143, "none": 143}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    tls: str
    sender: str  # the From header
    envelope_from: str
    to: tuple[str, ...]  # header forms
    recipients: tuple[str, ...]  # envelope addresses
    subject: str
    body: str
    helo: str | None
    user: str | None
    password: str | None = field(repr=False)


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    tls: str
    mailbox: str
    search: str
    after_pull: str  # "seen" | "move" | "delete"
    move_to: str | None
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class EmailSettings:
    timeout: float
    verify: bool
    cafile: str | None
    spool_dir: str | None
    smtp: SmtpSettings | None  # None: this endpoint does not send
    imap: ImapSettings | None  # None: this endpoint does not receive


def parse_settings(config: dict[str, Any], secrets: dict[str, Any]) -> EmailSettings:
    """The endpoint's settings from its stored config and secrets; ConfigError for a bad value."""
    try:
        timeout = float(config.get("timeout") or DEFAULT_TIMEOUT)
    except (TypeError, ValueError):
        raise ConfigError("email setting 'timeout' must be a number of seconds") from None
    if timeout <= 0:
        raise ConfigError("email setting 'timeout' must be positive")
    verify = _flag(config.get("verify", True))
    cafile = _text_setting(config, "cafile") or None
    spool_dir = _text_setting(config, "spool_dir") or None
    smtp = _smtp_settings(config, secrets)
    imap = _imap_settings(config, secrets)
    if smtp is None and imap is None:
        raise ConfigError("email endpoint needs 'smtp_host' (to send), 'imap_host' (to receive), or both")
    return EmailSettings(
        timeout=timeout, verify=verify, cafile=cafile, spool_dir=spool_dir, smtp=smtp, imap=imap
    )


def _smtp_settings(config: dict[str, Any], secrets: dict[str, Any]) -> SmtpSettings | None:
    host = _text_setting(config, "smtp_host")
    if not host:
        return None
    tls = _choice(config, "smtp_tls", SMTP_PORTS, "starttls")
    sender_headers, sender = _addresses(config.get("from"), "from")
    if len(sender) != 1:
        raise ConfigError("email setting 'from' must be exactly one address")
    to, recipients = _addresses(config.get("to"), "to")
    user, password = _credentials(secrets, "smtp")
    if user and not password:
        raise ConfigError("email smtp credentials need a password with the user")
    return SmtpSettings(
        host=host,
        port=_port(config, "smtp_port", SMTP_PORTS[tls]),
        tls=tls,
        sender=sender_headers[0],
        envelope_from=sender[0],
        to=to,
        recipients=recipients,
        subject=_template(config, "subject", "{name}"),
        body=_template(config, "body", DEFAULT_BODY),
        helo=_text_setting(config, "helo") or None,
        user=user,
        password=password,
    )


def _imap_settings(config: dict[str, Any], secrets: dict[str, Any]) -> ImapSettings | None:
    host = _text_setting(config, "imap_host")
    if not host:
        return None
    tls = _choice(config, "imap_tls", IMAP_PORTS, "ssl")
    after = _text_setting(config, "after_pull", "seen") or "seen"
    action, _, folder = after.partition(":")
    action = action.strip().lower()
    if action not in ("seen", "move", "delete") or (action == "move") != bool(folder.strip()):
        raise ConfigError(f"email after_pull must be 'seen', 'delete' or 'move:<folder>'; got {after!r}")
    search = _text_setting(config, "search", "UNSEEN") or "UNSEEN"
    if not search.isascii():
        raise ConfigError("email search criteria must be ASCII (use CHARSET-free IMAP SEARCH keys)")
    user, password = _credentials(secrets, "imap")
    if not user or not password:
        raise ConfigError("email imap needs secrets 'user' and 'password' (or imap_user/imap_password)")
    return ImapSettings(
        host=host,
        port=_port(config, "imap_port", IMAP_PORTS[tls]),
        tls=tls,
        mailbox=_text_setting(config, "mailbox", "INBOX") or "INBOX",
        search=search,
        after_pull=action,
        move_to=folder.strip() or None,
        user=user,
        password=password,
    )


def _text_setting(config: dict[str, Any], key: str, default: str = "") -> str:
    value = config.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, str):
        raise ConfigError(f"email setting {key!r} must be a string")
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ConfigError(f"email setting {key!r} may not contain line breaks")
    return value.strip()


def _choice(config: dict[str, Any], key: str, choices: Iterable[str], default: str) -> str:
    value = _text_setting(config, key, default).lower() or default
    if value not in choices:
        raise ConfigError(f"email setting {key!r} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _port(config: dict[str, Any], key: str, default: int) -> int:
    value = config.get(key)
    if value in (None, ""):
        return default
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"email setting {key!r} must be a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"email setting {key!r} must be between 1 and 65535")
    return port


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


def _addresses(value: Any, key: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Header forms and bare addresses of a list or comma-separated string of addresses."""
    items = [value] if isinstance(value, str) else builtins.list(value or [])
    if not all(isinstance(item, str) for item in items):
        raise ConfigError(f"email setting {key!r} must be an address or a list of addresses")
    if any("\r" in item or "\n" in item or "\x00" in item for item in items):
        raise ConfigError(f"email setting {key!r} may not contain line breaks")
    parsed = [(name, addr) for name, addr in getaddresses(items) if name or addr]
    if not parsed:
        raise ConfigError(f"email endpoint needs {key!r}")
    for _, addr in parsed:
        local, at, domain = addr.rpartition("@")
        if not at or not local or not domain or " " in addr:
            raise ConfigError(f"email setting {key!r}: not an address: {addr!r}")
    headers = tuple(formataddr((name, addr)) if name else addr for name, addr in parsed)
    return headers, tuple(addr for _, addr in parsed)


def _template(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get(key)
    template = default if value in (None, "") else value
    if not isinstance(template, str):
        raise ConfigError(f"email setting {key!r} must be a string")
    try:
        for _, name, spec, _ in string.Formatter().parse(template):
            if name is None:
                continue
            if name not in TEMPLATE_FIELDS or (spec and "{" in spec):
                allowed = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
                raise ConfigError(f"email {key} template: unknown field {{{name}}}; use {allowed}")
        template.format_map({"name": "file.txt", "path": "file.txt", "size": 1, "sha256": "0" * 64})
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ConfigError(f"email {key} template is not valid: {exc}") from None
    return template


def _credentials(secrets: dict[str, Any], prefix: str) -> tuple[str | None, str | None]:
    user = secrets.get(f"{prefix}_user") or secrets.get("user") or None
    password = secrets.get(f"{prefix}_password") or secrets.get("password") or None
    for value in (user, password):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"email {prefix} credentials must be strings")
    return user, password

"""An email endpoint's settings and secrets, and the SMTP and IMAP halves they describe.

One endpoint may send (SMTP, `smtp_host`), receive (IMAP, `imap_host`), or both. Secrets: `user`
and `password` serve both protocols; `smtp_user`/`smtp_password` and `imap_user`/`imap_password`
override them per protocol. SMTP without a user sends without AUTH; IMAP always logs in.
"""

from __future__ import annotations

import builtins
import string
from dataclasses import dataclass, field
from email.utils import formataddr, getaddresses
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from core.config import SMTP_DEFAULT_PORTS
from core.endpoints.remote import Port
from core.endpoints.settings import (
    EndpointSecrets,
    EndpointSettings,
    Flag,
    KeepBlank,
    LocalPath,
    NotScrubbed,
    lowercase,
    multiline,
    switch,
)

DEFAULT_TIMEOUT = 60.0
TEMPLATE_FIELDS = ("name", "path", "size", "sha256")
DEFAULT_BODY = "Attached: {name} ({size} bytes, SHA-256 {sha256})."
IMAP_PORTS = {"ssl": 993, "starttls": 143, "none": 143}


def _one_line(value: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError("may not contain line breaks")
    return value.strip()


def _flag(value: Any) -> Any:
    """Any string but 0/false/no/off/"" is true, as stored rows have always been read."""
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return value


def addresses(value: str | builtins.list[str], key: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Header forms and bare addresses of a list or comma-separated string of addresses."""
    items = [value] if isinstance(value, str) else builtins.list(value)
    if any("\r" in item or "\n" in item or "\x00" in item for item in items):
        raise ValueError("may not contain line breaks")
    parsed = [(name, addr) for name, addr in getaddresses(items) if name or addr]
    if not parsed:
        raise ValueError(f"email endpoint needs {key!r}")
    for _, addr in parsed:
        local, at, domain = addr.rpartition("@")
        if not at or not local or not domain or " " in addr:
            raise ValueError(f"not an address: {addr!r}")
    headers = tuple(formataddr((name, addr)) if name else addr for name, addr in parsed)
    return headers, tuple(addr for _, addr in parsed)


def _template(template: str) -> str:
    try:
        parsed = builtins.list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"not a valid template: {exc}") from None
    for _, name, spec, _ in parsed:
        if name is not None and (name not in TEMPLATE_FIELDS or (spec and "{" in spec)):
            allowed = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            raise ValueError(f"unknown field {{{name}}}; use {allowed}")
    try:
        template.format_map({"name": "file.txt", "path": "file.txt", "size": 1, "sha256": "0" * 64})
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"not a valid template: {exc}") from None
    return template


def _default_sender(config: dict[str, Any], secrets: dict[str, Any]) -> str | None:
    """`endpoint add --type email --smtp-host ...` without --from: the login, else tradelane@localhost."""
    return str(secrets.get("user") or "tradelane@localhost") if config.get("smtp_host") else None


Line = Annotated[str, AfterValidator(_one_line)]
Template = Annotated[str, AfterValidator(_template)]
Addresses = str | builtins.list[str]


class EmailSettings(EndpointSettings):
    """Email: each file sent as an attachment over SMTP, and/or attachments taken from an IMAP
    mailbox (`<UID>/<filename>` paths). Give smtp_host to send, imap_host to receive, or both."""

    smtp_host: Line | None = None
    """The SMTP server, to send."""
    smtp_port: Port | None = None
    """The SMTP port (default 587 for starttls, 465 for ssl, 25 for none)."""
    smtp_tls: Annotated[Literal["starttls", "ssl", "none"], lowercase, Flag("--tls")] = "starttls"
    """starttls, ssl (TLS from the first byte) or none."""
    sender: Annotated[str | None, Field(alias="from"), Flag("--from", cli_default=_default_sender)] = None
    """The From address (may be "Name <addr>"); the CLI's default is the user, else
    tradelane@localhost."""
    to: Annotated[Addresses | None, Flag("--to", help="A recipient (repeatable).")] = None
    """Recipients: a list, or one comma-separated string."""
    subject: Template = "{name}"
    """The Subject: a template with {name} {path} {size} {sha256}."""
    body: Annotated[Template, multiline()] = DEFAULT_BODY
    """The text part: a template with the same fields."""
    helo: Line | None = None
    """The EHLO name (default: this host's name)."""
    spool_dir: Line | None = None
    """Where a file is spooled before it is sent (default: the system's temp folder)."""
    imap_host: Line | None = None
    """The IMAP server, to receive."""
    imap_port: Port | None = None
    """The IMAP port (default 993 for ssl, 143 otherwise)."""
    imap_tls: Annotated[Literal["ssl", "starttls", "none"], lowercase] = "ssl"
    """ssl (TLS from the first byte), starttls or none."""
    mailbox: Line = "INBOX"
    """The IMAP folder to take attachments from."""
    search: Line = "UNSEEN"
    """IMAP SEARCH criteria choosing the messages (ASCII)."""
    after_pull: Annotated[Line, Flag("--taken")] = "seen"
    """What a message whose attachments were all taken becomes: seen, move:FOLDER or delete."""
    timeout: Annotated[float, Field(gt=0)] = DEFAULT_TIMEOUT
    """Seconds to wait for a server."""
    verify: Annotated[
        bool,
        BeforeValidator(_flag),
        KeepBlank(),
        switch("--insecure", False, "Do not verify the server's TLS certificate."),
    ] = True
    """Verify the servers' TLS certificates (host names included)."""
    cafile: Annotated[Line | None, LocalPath()] = None
    """A PEM bundle to trust instead of the system's."""

    @field_validator("after_pull")
    @classmethod
    def _after_pull(cls, value: str) -> str:
        action, _, folder = value.partition(":")
        action = action.strip().lower()
        if action not in ("seen", "move", "delete") or (action == "move") != bool(folder.strip()):
            raise ValueError(f"must be 'seen', 'delete' or 'move:<folder>'; got {value!r}")
        return value

    @field_validator("search")
    @classmethod
    def _ascii(cls, value: str) -> str:
        if not value.isascii():
            raise ValueError("must be ASCII (use CHARSET-free IMAP SEARCH keys)")
        return value

    @model_validator(mode="after")
    def _sends_or_receives(self) -> Self:
        if not self.smtp_host and not self.imap_host:
            raise ValueError("email endpoint needs 'smtp_host' (to send), 'imap_host' (to receive), or both")
        if self.smtp_host:  # the addresses are read to send (rows stored for IMAP alone may carry a From)
            if not self.sender:
                raise ValueError("email endpoint needs 'from' to send")
            if not self.to:
                raise ValueError("email endpoint needs 'to' to send")
            try:
                if len(addresses(self.sender, "from")[1]) != 1:
                    raise ValueError("must be exactly one address")
            except ValueError as exc:
                raise ValueError(f"email endpoint 'from': {exc}") from None
            try:
                addresses(self.to, "to")
            except ValueError as exc:
                raise ValueError(f"email endpoint 'to': {exc}") from None
        return self


Login = Annotated[str | None, NotScrubbed()]


class EmailSecrets(EndpointSecrets):
    user: Login = None
    """The login, for both protocols."""
    password: str | None = None
    """The password, for both protocols."""
    smtp_user: Login = None
    """The SMTP login, when not `user`."""
    smtp_password: str | None = None
    """The SMTP password, when not `password`."""
    imap_user: Login = None
    """The IMAP login, when not `user`."""
    imap_password: str | None = None
    """The IMAP password, when not `password`."""

    def login(self, protocol: str) -> tuple[str | None, str | None]:
        """(user, password) for "smtp" or "imap": the protocol's own, else the shared ones."""
        user = getattr(self, f"{protocol}_user") or self.user or None
        password = getattr(self, f"{protocol}_password") or self.password or None
        return user, password

    def check_with(self, settings: EndpointSettings) -> None:
        assert isinstance(settings, EmailSettings)
        if settings.smtp_host:
            user, password = self.login("smtp")
            if user and not password:
                raise ValueError("email smtp credentials need a password with the user")
        if settings.imap_host:
            user, password = self.login("imap")
            if not user or not password:
                raise ValueError(
                    "email imap needs secrets 'user' and 'password' (or imap_user/imap_password)"
                )


# --- the two halves, as the endpoint uses them ----------------------------------------------------


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


def smtp_half(settings: EmailSettings, secrets: EmailSecrets) -> SmtpSettings | None:
    if not settings.smtp_host or not settings.sender or not settings.to:
        return None
    sender_headers, sender = addresses(settings.sender, "from")
    to, recipients = addresses(settings.to, "to")
    user, password = secrets.login("smtp")
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port or SMTP_DEFAULT_PORTS[settings.smtp_tls],
        tls=settings.smtp_tls,
        sender=sender_headers[0],
        envelope_from=sender[0],
        to=to,
        recipients=recipients,
        subject=settings.subject,
        body=settings.body,
        helo=settings.helo,
        user=user,
        password=password,
    )


def imap_half(settings: EmailSettings, secrets: EmailSecrets) -> ImapSettings | None:
    user, password = secrets.login("imap")
    if not settings.imap_host or not user or not password:
        return None
    action, _, folder = settings.after_pull.partition(":")
    return ImapSettings(
        host=settings.imap_host,
        port=settings.imap_port or IMAP_PORTS[settings.imap_tls],
        tls=settings.imap_tls,
        mailbox=settings.mailbox,
        search=settings.search,
        after_pull=action.strip().lower(),
        move_to=folder.strip() or None,
        user=user,
        password=password,
    )

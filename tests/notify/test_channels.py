"""Notification channels against real servers: aiosmtpd (tests/endpoint_servers/mail.py) and a
local HTTP receiver. In-process CLI against a throwaway home (no `up` needed to add or test a
channel); the messages themselves are checked for header injection, broken JSON and secrets."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.notify import send
from core.notify.notices import Item, Notice
from tests.endpoint_servers.mail import SmtpServer
from tests.isolation import run_cli
from tests.notify.receiver import Receiver, http_receiver

SECRET = "whsec-" + "x7Yq2" * 6
HOSTILE = 'evil.edi\r\nBcc: victim@example.com\r\n\r\n<!channel> "quote" \u202e'


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as running:
        yield running


run = run_cli


def hostile_notice() -> Notice:
    item = Item(
        what="failed",
        file=HOSTILE,
        size=3,
        sha256="0" * 64,
        partner="acme\nX-Injected: 1",
        flow="acme-archive",
        transfer_id=7,
        receipt_id=5,
        error=f"destination said no; key {SECRET}",
    )
    return Notice(what="failed", account="home", items=[item], total=1)


def test_a_webhook_channel_is_signed_with_its_secret_which_is_stored_encrypted(
    home: Path, receiver: Receiver
) -> None:
    run("notify", "channel", "add", "ops-hook", "--webhook", receiver.url, "--secret", SECRET)
    assert SECRET.encode() not in (home / "tradelane.db").read_bytes()
    assert "test notification sent" in run("notify", "channel", "test", "ops-hook")
    [request] = receiver.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-tradelane-signature"] == expected
    body = json.loads(request.body)
    assert body["what"] == "test" and SECRET not in request.body.decode()
    listed = json.loads(run("notify", "channel", "list", "--json"))
    assert listed[0]["state"] == "ok" and listed[0]["has_secret"] is True
    assert SECRET not in json.dumps(listed)


def test_an_email_channel_sends_through_the_instance_smtp_settings(home: Path, smtp_env: SmtpServer) -> None:
    mailbox = smtp_env.root.create()
    run("notify", "channel", "add", "ops-mail", "--email", smtp_env.address(mailbox))
    run("notify", "channel", "test", "ops-mail")
    [message] = smtp_env.root.messages(mailbox)
    assert message["Subject"] == "[tradelane] test of notification channel ops-mail"
    assert "a test of the channel" in message.get_content()

    from core.db import session_scope
    from core.notify import channels
    from core.tenancy import scope_for_cli

    with session_scope() as session:
        channel_id = channels.require(session, scope_for_cli(session, "home"), "ops-mail").id or 0
    send.deliver(channel_id, hostile_notice(), tries=1)
    [hostile] = [m for m in smtp_env.root.messages(mailbox) if "evil" in m["Subject"]]
    assert hostile["Bcc"] is None and hostile["X-Injected"] is None
    assert hostile["Subject"].startswith("[tradelane] evil.edi??Bcc: victim@example.com")
    assert "tradelane replay 7" in hostile.get_content()


def test_a_failing_webhook_is_retried_with_backoff_then_listed_as_failing(
    home: Path, receiver: Receiver
) -> None:
    run("notify", "channel", "add", "down", "--webhook", receiver.url)
    receiver.status = 503
    from core.db import session_scope
    from core.notify import channels
    from core.tenancy import scope_for_cli

    with session_scope() as session:
        channel_id = channels.require(session, scope_for_cli(session, "home"), "down").id or 0
    waits: list[float] = []
    with pytest.raises(send.SendError, match="answered 503"):
        send.deliver(channel_id, hostile_notice(), tries=4, first_delay=1.0, sleep=waits.append)
    assert waits == [1.0, 2.0, 4.0] and len(receiver.requests) == 4
    listed = json.loads(run("notify", "channel", "list", "--json"))
    assert listed[0]["state"] == "failing" and "answered 503" in listed[0]["last_error"]
    assert "failing (4)" in run("notify", "channel", "list")
    receiver.status = 200
    send.deliver(channel_id, hostile_notice(), tries=1)
    assert json.loads(run("notify", "channel", "list", "--json"))[0]["state"] == "ok"


def test_bad_channels_are_refused(home: Path) -> None:
    assert "not one e-mail address" in run(
        "notify", "channel", "add", "x", "--email", "a@b.example\r\nBcc: c@d", ok=False
    )
    assert "not one e-mail address" in run(
        "notify", "channel", "add", "x", "--email", "Ann <a@b.example>", ok=False
    )
    assert "http:// or https://" in run(
        "notify", "channel", "add", "x", "--webhook", "file:///etc/passwd", ok=False
    )
    assert "--format is one of" in run(
        "notify", "channel", "add", "x", "--webhook", "https://h.example/", "--format", "xml", ok=False
    )
    assert "either --email" in run("notify", "channel", "add", "x", ok=False)

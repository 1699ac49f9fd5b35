"""The invitation e-mail against a real SMTP server (aiosmtpd, tests/endpoint_servers/mail.py).

The server has three doors, all requiring AUTH: STARTTLS (AUTH offered only after STARTTLS),
implicit TLS, and plain. It delivers into Maildirs, where these tests read what was sent.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import ValidationError

from core.b2b.mail import (
    Invitation,
    MailOutcome,
    accept_link,
    clear_password_warning,
    compose,
    send_invitation,
)
from core.config import Settings
from tests.b2b.accept_fake import new_token
from tests.endpoint_servers.mail import SmtpServer
from tests.isolation import isolated_home
from tests.servers import free_port

PUBLIC_URL = "https://hub.acme.test:8443"
EXPIRES = datetime(2026, 12, 12, 14, 0, tzinfo=UTC)


def settings(**values: Any) -> Settings:
    return Settings(public_url=PUBLIC_URL, **values)


def smtp_settings(server: SmtpServer, tls: str, **values: Any) -> Settings:
    port = {"starttls": server.starttls_port, "ssl": server.ssl_port, "none": server.plain_port}[tls]
    base: dict[str, Any] = {
        "smtp_host": server.host,
        "smtp_port": port,
        "smtp_tls": tls,
        "smtp_user": server.user,
        "smtp_password": server.password,
        "smtp_cafile": server.cafile,
    }
    return settings(**(base | values))


def invitation(recipient: str, direction: str = "send", token: str | None = None) -> Invitation:
    return Invitation(
        inviter_account="acme",
        inviter_email="ann@acme.test",
        connection_name="to-globex",
        direction="send" if direction == "send" else "receive",
        recipient=recipient,
        expires_at=EXPIRES,
        token=token or new_token(),
    )


def only_message(server: SmtpServer, user: str) -> EmailMessage:
    messages = server.root.messages(user)
    assert len(messages) == 1, f"{len(messages)} messages for {user}"
    return messages[0]


def body_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return " ".join(content.split())


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_the_invitation_goes_out_over_tls_with_auth(smtp_server: SmtpServer, tls: str) -> None:
    user = smtp_server.root.create()
    to = smtp_server.address(user)
    token = new_token()
    outcome = send_invitation(invitation(to, "send", token), smtp_settings(smtp_server, tls))
    assert outcome == MailOutcome(True, None)
    message = only_message(smtp_server, user)
    assert message["X-Test-Authenticated-As"] == smtp_server.user
    assert message["Subject"] == "acme invites you to a B2B connection: to-globex"
    assert message["To"] == to and message["From"] == "tradelane@hub.acme.test"
    body = body_of(message)
    link = f"{PUBLIC_URL}/connect/accept?token={token}"
    assert "acme (ann@acme.test) invites you to a B2B connection on tradelane: to-globex." in body
    assert "acme wants to send files to you." in body
    assert "until 2026-12-12 14:00 UTC" in body
    assert link in body
    assert f"tradelane connect accept '{link}' --account YOURS --name NAME --dest ENDPOINT[:DIR]" in body


def test_an_invitation_to_receive_says_so_and_asks_for_an_outbox(smtp_server: SmtpServer) -> None:
    user = smtp_server.root.create()
    outcome = send_invitation(
        invitation(smtp_server.address(user), "receive"), smtp_settings(smtp_server, "ssl")
    )
    assert outcome.sent, outcome.error
    body = body_of(only_message(smtp_server, user))
    assert "acme wants to receive files from you." in body
    assert "--outbox OUTBOX" in body and "--dest" not in body


def test_auth_is_used_with_tls_none_when_a_user_is_set(smtp_server: SmtpServer) -> None:
    user = smtp_server.root.create()
    outcome = send_invitation(invitation(smtp_server.address(user)), smtp_settings(smtp_server, "none"))
    assert outcome.sent, outcome.error
    assert only_message(smtp_server, user)["X-Test-Authenticated-As"] == smtp_server.user


def test_a_server_that_offers_no_auth_is_never_sent_to_unauthenticated(smtp_server: SmtpServer) -> None:
    # tls none against the STARTTLS door: it offers AUTH only after STARTTLS.
    user = smtp_server.root.create()
    config = smtp_settings(smtp_server, "none", smtp_port=smtp_server.starttls_port)
    outcome = send_invitation(invitation(smtp_server.address(user)), config)
    assert outcome == MailOutcome(
        False,
        "the SMTP server offers no AUTH on this connection (TRADELANE_SMTP_TLS=none); use starttls or ssl",
    )
    assert smtp_server.root.messages(user) == []


def test_a_wrong_password_is_reported(smtp_server: SmtpServer) -> None:
    user = smtp_server.root.create()
    config = smtp_settings(smtp_server, "starttls", smtp_password="not the password")
    outcome = send_invitation(invitation(smtp_server.address(user)), config)
    assert not outcome.sent and outcome.error is not None
    assert outcome.error.startswith(f"the SMTP server refused the login as '{smtp_server.user}': 535")
    assert "not the password" not in outcome.error
    assert smtp_server.root.messages(user) == []


def test_a_server_that_is_down_is_reported() -> None:
    port = free_port()
    config = settings(smtp_host="127.0.0.1", smtp_port=port, smtp_tls="starttls")
    outcome = send_invitation(invitation("bob@globex.test"), config)
    assert not outcome.sent and outcome.error is not None
    assert f"SMTP 127.0.0.1:{port} (starttls)" in outcome.error and "refused" in outcome.error


def test_an_untrusted_certificate_is_reported_with_the_cafile_setting(smtp_server: SmtpServer) -> None:
    user = smtp_server.root.create()
    config = smtp_settings(smtp_server, "ssl", smtp_cafile=None)
    outcome = send_invitation(invitation(smtp_server.address(user)), config)
    assert not outcome.sent and outcome.error is not None
    assert "certificate" in outcome.error and "TRADELANE_SMTP_CAFILE" in outcome.error


def test_a_refused_recipient_is_reported(smtp_server: SmtpServer) -> None:
    outcome = send_invitation(
        invitation(smtp_server.address("nobody-here")), smtp_settings(smtp_server, "ssl")
    )
    assert not outcome.sent and outcome.error is not None and "recipient refused" in outcome.error


def test_no_smtp_host_means_no_email_and_says_why() -> None:
    outcome = send_invitation(invitation("bob@globex.test"), settings())
    assert outcome == MailOutcome(False, "TRADELANE_SMTP_HOST is not set")
    assert outcome.fields() == {"email_sent": False, "email_error": "TRADELANE_SMTP_HOST is not set"}
    assert outcome.sentence("bob@globex.test") == (
        "no email sent (TRADELANE_SMTP_HOST is not set): pass the link on yourself"
    )
    assert MailOutcome(True).fields() == {"email_sent": True}
    assert MailOutcome(True).sentence("bob@globex.test") == "email sent to bob@globex.test"


def test_the_token_is_never_logged_nor_written_under_the_home(
    smtp_server: SmtpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = new_token()
    user = smtp_server.root.create()
    caplog.set_level(logging.DEBUG)
    with isolated_home(tmp_path / "home") as home:
        home.mkdir()
        sent = send_invitation(
            invitation(smtp_server.address(user), token=token), smtp_settings(smtp_server, "ssl")
        )
        failed = send_invitation(
            invitation(smtp_server.address(user), token=token),
            smtp_settings(smtp_server, "starttls", smtp_password="wrong"),
        )
    assert sent.sent and not failed.sent
    secret_forms = (token, quote(token, safe=""), token.removeprefix("tlc1_"))
    for record in caplog.records:
        assert not any(form in record.getMessage() for form in secret_forms)
    assert not any(form in (failed.error or "") for form in secret_forms)
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(form.encode() in data for form in secret_forms), path


def test_line_breaks_never_reach_a_header_and_one_address_gets_it() -> None:
    with pytest.raises(ValueError, match="line breaks"):
        Invitation("acme", None, "x\r\nBcc: eve@evil.test", "send", "bob@globex.test", EXPIRES, new_token())
    for recipients in ("bob@globex.test, eve@evil.test", "Bob <bob@globex.test>", "bob", "bob@"):
        with pytest.raises(ValueError, match="not one e-mail address"):
            Invitation("acme", None, "to-globex", "send", recipients, EXPIRES, new_token())
    with pytest.raises(ValidationError, match="line breaks"):
        Settings(smtp_from="a@b.test\r\nBcc: eve@evil.test")


def test_settings_defaults_follow_tls_and_the_public_url() -> None:
    assert settings(smtp_tls="starttls").smtp_port_or_default == 587
    assert settings(smtp_tls="ssl").smtp_port_or_default == 465
    assert settings(smtp_tls="none").smtp_port_or_default == 25
    assert settings().smtp_from_address == "tradelane@hub.acme.test"
    assert settings(smtp_from="noreply@acme.test").smtp_from_address == "noreply@acme.test"
    assert Settings(public_url="http://192.0.2.1:8080").smtp_from_address == "tradelane@[192.0.2.1]"
    assert settings().public_origin == "https://hub.acme.test:8443"
    assert Settings(public_url="https://hub.acme.test:443/").public_origin == "https://hub.acme.test"
    assert Settings(host="127.0.0.1", api_port=9000).public_base_url == "http://127.0.0.1:9000"
    assert Settings(host="0.0.0.0", api_port=9000).public_base_url == "http://127.0.0.1:9000"
    assert Settings(host="::", api_port=9000).public_origin == "http://[::1]:9000"
    token = new_token()
    assert accept_link(token, settings()) == f"{PUBLIC_URL}/connect/accept?token={token}"
    bad_urls = ("ftp://hub.acme.test", "hub.acme.test", "https://hub.acme.test/?x=1", "https://u:p@hub.test")
    for bad in (*bad_urls, "https://hub.acme.test:99999", "https://hub.acme.test:port"):
        with pytest.raises(ValidationError):
            Settings(public_url=bad)


def test_up_warns_when_the_smtp_password_would_cross_in_clear() -> None:
    clear = settings(smtp_host="mail.acme.test", smtp_tls="none", smtp_user="hub", smtp_password="pw")
    assert clear_password_warning(clear) == (
        "TRADELANE_SMTP_TLS=none with TRADELANE_SMTP_USER set: the SMTP password crosses the network "
        "to mail.acme.test in clear"
    )
    assert clear_password_warning(settings(smtp_host="mail.acme.test", smtp_tls="none")) is None
    assert clear_password_warning(settings(smtp_host="mail.acme.test", smtp_user="hub")) is None


def test_the_expiry_is_given_in_utc_whatever_the_zone() -> None:
    paris = timezone(timedelta(hours=1))
    message = compose(
        replace(invitation("bob@globex.test"), expires_at=datetime(2026, 12, 12, 15, 0, tzinfo=paris))
    )
    assert "until 2026-12-12 14:00 UTC" in body_of(message)

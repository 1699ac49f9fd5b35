"""Hostile names and errors in partner notices (core/notify/partner_notices.py), sent through the
instance's SMTP settings to a real aiosmtpd: a file name, a delivered path or an error that tries
to add a header (CR LF, a blank line, a Bcc:) stays inside the one line it was put in, and no
secret this process has held is in the mail. Both notices: an upload rejected, files waiting in
download/. The names are written straight into the store: every door refuses them at intake."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from core.db import session_scope
from core.models import TransferState
from core.notify import partner_notices, send
from tests.endpoint_servers.mail import SmtpServer
from tests.notify.partner_rows import carried, flow, partner
from tests.notify.test_channels import HOSTILE, SECRET

AT = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
# What tradelane writes, and what the test SMTP server adds on delivery.
HEADERS = {"Subject", "From", "To", "Date", "Message-ID", "Auto-Submitted", "MIME-Version",
           "Content-Type", "Content-Transfer-Encoding", "Return-Path", "X-Test-Authenticated-As"}  # fmt: skip


def test_hostile_names_cannot_add_headers_to_partner_notices(home: Path, smtp_env: SmtpServer) -> None:
    from core.redact import remember

    remember([SECRET])  # a secret this process held (an endpoint's): never in a notice
    mailbox = smtp_env.root.create()
    contact = smtp_env.address(mailbox)
    partner("sender", "--contact-email", contact, "--tell-rejected")
    partner("buyer", "--contact-email", contact, "--tell-downloads")
    to_buyer = flow("to-buyer", "sender", "mailbox:buyer")
    rejected = carried(
        to_buyer, HOSTILE, TransferState.rejected, AT, error=f"bad\r\nBcc: x@evil.test {SECRET}"
    )
    waiting = carried(
        to_buyer, HOSTILE, TransferState.delivered, AT, destination=f"mailbox://buyer/download/{HOSTILE}"
    )
    with session_scope() as session:
        notices = [partner_notices.rejected(session, rejected), partner_notices.downloads(session, waiting)]
    for notice in notices:
        assert notice is not None
        send.mail(notice.recipients, notice.subject, notice.body)
    messages = smtp_env.root.messages(mailbox)
    assert len(messages) == 2
    for message in messages:
        assert set(message.keys()) <= HEADERS, message.keys()
        assert message["Bcc"] is None and message["To"] == contact
        assert "\n" not in message["Subject"] and "\u202e" not in message["Subject"]
        assert "evil.edi??Bcc: victim@example.com" in message["Subject"]
        body = message.get_content()
        assert SECRET not in body and SECRET not in message["Subject"]
        assert "\nBcc:" not in body and "\n\n<!channel>" not in body
    rejected_body, waiting_body = sorted((m.get_content() for m in messages), key=lambda b: "Reason" not in b)
    assert "Reason: bad??Bcc: x@evil.test" in rejected_body
    assert "* download/evil.edi??Bcc: victim@example.com????<!channel>" in waiting_body

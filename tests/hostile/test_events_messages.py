"""Hostile names and errors in notifications: no mail header, no broken JSON, no Slack mention,
no secret (core/notify/messages.py)."""

from __future__ import annotations

import json
from typing import Any

from core.notify import messages
from tests.notify.test_channels import HOSTILE, SECRET, hostile_notice


def test_names_cannot_add_mail_headers_or_break_the_json_and_secrets_are_hidden() -> None:
    from core.redact import remember

    remember([SECRET])  # a secret this process held (an endpoint's): never in a message
    notice = hostile_notice()
    subject = messages.subject(notice)
    assert "\r" not in subject and "\n" not in subject and "\u202e" not in subject
    body = messages.text(notice)
    assert "\nBcc:" not in body and "\nX-Injected" not in body and SECRET not in body
    for format in ("json", "slack", "teams"):
        raw = messages.webhook_body(notice, format)
        value: Any = json.loads(raw)
        assert SECRET not in raw.decode()
        if format == "slack":
            assert "<!channel>" not in value["text"] and "&lt;!channel&gt;" in value["text"]
    files = json.loads(messages.webhook_body(notice, "json"))["files"]
    assert files[0]["file"] == HOSTILE  # the name kept exactly, as a JSON string
    assert files[0]["next"] == "fix the cause, then carry it again: tradelane replay 7"

"""A notice in words: an e-mail's subject and body, and a webhook's JSON (generic, Slack, Teams).

Every text from outside (file, partner and flow names, errors) is made one safe line first: control
and invisible format characters become `?`, so a name cannot start a new mail header or line; JSON
is written by `json.dumps` (names cannot break out of a string), and Slack's `<`, `>` and `&` are
escaped so a name cannot mention `@channel` or make a link. Every text passes `scrub_known` (no
secret this process has held). Each file says what to do next: the replay command, the Prefect
run and the console page.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from core.notify.notices import Item, Notice
from core.redact import scrub_known

SUBJECT_CHARS = 200
VERBS = {
    "failed": "failed",
    "rejected": "was rejected",
    "received": "was received",
    "delivered": "was delivered",
}


def one_line(text: str | None, limit: int = 1000) -> str:
    """`text` with every control, format or separator character (Cc, Cf, Zl, Zp) replaced by '?'."""
    if not text:
        return ""
    clean = "".join("?" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def test_notice(account: str, channel: str) -> Notice:
    """What `notify channel test NAME` sends."""
    return Notice(what="test", account=account, items=[], total=0, filters={"channel": channel})


def subject(notice: Notice) -> str:
    if notice.what == "test":
        return one_line(f"[tradelane] test of notification channel {notice.filters.get('channel', '')}")
    if notice.what == "sla-missed":
        return scrub_known(one_line(_sla_summary(notice), SUBJECT_CHARS))  # type: ignore[no-any-return]
    where = ", ".join(f"{key} {one_line(value)}" for key, value in notice.filters.items())
    if notice.total == 1 and notice.items:
        item = notice.items[0]
        who = f" from {one_line(item.partner)}" if item.partner else ""
        text = f"[tradelane] {one_line(item.file)}{who} {VERBS[notice.what]}"
    else:
        text = f"[tradelane] {notice.total} files {notice.what}" + (f" ({where})" if where else "")
    return scrub_known(one_line(text, SUBJECT_CHARS))  # type: ignore[no-any-return]


def _item_lines(item: Item) -> list[str]:
    lines = [f"* {one_line(item.file)} ({item.size} bytes, SHA-256 {item.sha256})"]
    if item.partner:
        lines.append(f"  partner: {one_line(item.partner)}")
    if item.flow:
        lines.append(f"  data flow: {one_line(item.flow)}")
    if item.transfer_id is not None:
        lines.append(f"  transfer: {item.transfer_id}")
    if item.destination:
        lines.append(f"  destination: {one_line(item.destination)}")
    if item.error:
        lines.append(f"  error: {one_line(item.error)}")
    if item.next_step:
        lines.append(f"  next: {item.next_step}")
    if item.run_url:
        lines.append(f"  Prefect run: {item.run_url}")
    if item.console_url:
        lines.append(f"  console: {item.console_url}")
    return lines


def text(notice: Notice) -> str:
    """The plain-text body: one paragraph per file, what to do next in each."""
    head = f"account {one_line(notice.account)}: "
    if notice.what == "test":
        return head + "this is a test of the channel; notifications will arrive like this one.\n"
    if notice.what == "sla-missed":
        return str(scrub_known(_sla_text(notice)))
    if notice.digest_seconds:
        head += f"{notice.total} files {notice.what} within {notice.digest_seconds} s"
    else:
        head += f"{notice.total} file{'s' if notice.total != 1 else ''} {notice.what}"
    if notice.filters:
        head += " (" + ", ".join(f"{k} {one_line(v)}" for k, v in notice.filters.items()) + ")"
    lines = [head + ".", ""]
    for item in notice.items:
        lines += _item_lines(item)
    if notice.total > len(notice.items):
        lines.append(
            f"… and {notice.total - len(notice.items)} more: tradelane transfers --state {notice.what}"
        )
    return str(scrub_known("\n".join(lines) + "\n"))


def _sla_summary(notice: Notice) -> str:
    f = notice.filters
    return (
        f"[tradelane] SLA {f['sla']} missed: {f['received']} of {f['expected']} file(s) "
        f"from {f['partner']} by {f['deadline']}"
    )


def _sla_text(notice: Notice) -> str:
    """An SLA's missed deadline in words, and what to do next."""
    f = {key: one_line(value) for key, value in notice.filters.items()}
    return (
        f"account {one_line(notice.account)}: SLA {f['sla']} was missed.\n\n"
        f"* expected: at least {f['expected']} file(s) matching {f['pattern']} from partner "
        f"{f['partner']} by {f['deadline']}\n"
        f"* received since the previous deadline: {f['received']}\n"
        f"  next: ask {f['partner']} to send the missing files (they count towards the next "
        f"deadline); see what did arrive: tradelane transfers --partner {f['partner']}; "
        f"this SLA's last outcomes: tradelane sla list\n"
    )


def _item_json(item: Item) -> dict[str, Any]:
    return {
        "event": f"tradelane.file.{item.what}",
        "file": item.file,
        "size": item.size,
        "sha256": item.sha256,
        "partner": item.partner,
        "flow": item.flow,
        "receipt": item.receipt_id,
        "transfer": item.transfer_id,
        "destination": item.destination,
        "error": item.error,
        "next": item.next_step,
        "prefect_run": item.run_url,
        "console": item.console_url,
        "at": item.at.isoformat() if item.at else None,
    }


def webhook_body(notice: Notice, format: str) -> bytes:
    """The webhook's raw body (what the HMAC signs) in `format`: json, slack or teams."""
    if format == "json":
        value: dict[str, Any] = {
            "what": notice.what,
            "account": notice.account,
            "count": notice.total,
            "digest_seconds": notice.digest_seconds,
            "filters": notice.filters,
            "files": [_item_json(item) for item in notice.items],
            "summary": subject(notice),
        }
    elif format == "slack":
        value = {"text": _slack_escape(subject(notice)) + "\n" + _slack_escape(text(notice))}
    elif format == "teams":
        value = {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": subject(notice),
            "title": subject(notice),
            "text": text(notice).replace("\n", "\n\n"),
        }
    else:
        raise ValueError(f"unknown webhook format {format!r}")
    return json.dumps(scrub_known(value), ensure_ascii=False).encode()


def _slack_escape(value: str) -> str:
    """Slack's three control characters (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

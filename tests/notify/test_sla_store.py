"""An SLA's checks against the store (in-process, a throwaway home): each deadline is checked once
whoever checks, files are counted between the previous deadline and this one by the SLA's glob, a
removed channel takes its SLAs, and the alert's words are one-line safe and say what to do next."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from core.db import session_scope
from core.models import Receipt, Sla
from core.notify import messages, slas
from tests.isolation import run_cli

# A Monday; the SLA's deadline is 09:00 UTC on weekdays.
MONDAY = datetime(2026, 3, 30, 9, 0, tzinfo=UTC)


run = run_cli


def receipt(sla: Sla, name: str, at: datetime) -> Receipt:
    return Receipt(
        account_id=sla.account_id, partner_id=sla.partner_id, protocol="rest", folder="upload",
        name=name, size=1, sha256="0" * 64, storage_path=f".store/x/{name}", received_at=at,
    )  # fmt: skip


@pytest.fixture
def sla(home: Path) -> Sla:
    run("notify", "channel", "add", "ops", "--webhook", "http://127.0.0.1:9/hook")
    run("partner", "add", "acme", "--password", "Sla_store_P@ssw0rd!")
    run("sla", "add", "acme-850", "--partner", "acme", "--pattern", "*.850", "--by", "09:00",
        "--days", "mon-fri", "--timezone", "UTC", "--min-files", "2", "--to", "ops")  # fmt: skip
    with session_scope() as session:
        row = session.exec(select(Sla)).one()
        row.created_at = MONDAY - timedelta(days=7)
        session.add(row)
        session.flush()
        session.expunge(row)
        return row


def test_each_deadline_is_checked_once_counting_since_the_previous_one(sla: Sla) -> None:
    friday = MONDAY - timedelta(days=3)
    with session_scope() as session:
        session.add(receipt(sla, "before-friday.850", friday - timedelta(minutes=1)))  # the last window
        session.add(receipt(sla, "weekend.850", friday + timedelta(days=1)))
        session.add(receipt(sla, "weekend.txt", friday + timedelta(days=1)))  # not the glob
        session.add(receipt(sla, "late.850", MONDAY + timedelta(seconds=1)))  # the next window
    with session_scope() as session:
        [miss] = slas.check_due(session, MONDAY + timedelta(seconds=5))
    assert (miss.outcome, miss.count, miss.deadline) == ("missed", 1, MONDAY)
    assert miss.notice is not None
    assert miss.notice.filters["received"] == "1" and miss.notice.filters["expected"] == "2"
    # A second checker (another dispatcher), or the same one again: nothing left to tell.
    with session_scope() as session:
        assert slas.check_due(session, MONDAY + timedelta(seconds=7)) == []
    [listed] = json.loads(run("sla", "list", "--json"))
    assert (listed["last_outcome"], listed["last_count"]) == ("missed", 1)
    assert listed["last_deadline"] == MONDAY.isoformat()
    assert listed["next_deadline"] is not None
    with session_scope() as session:
        session.add(receipt(sla, "tuesday.850", MONDAY + timedelta(hours=1)))
    with session_scope() as session:  # Tuesday's deadline: two files since Monday's
        [met] = slas.check_due(session, MONDAY + timedelta(days=1, seconds=1))
    assert (met.outcome, met.count, met.notice) == ("met", 2, None)
    [listed] = json.loads(run("sla", "list", "--json"))
    assert (listed["last_outcome"], listed["last_count"]) == ("met", 2)


def test_the_alert_is_one_line_safe_and_says_what_to_do(sla: Sla) -> None:
    with session_scope() as session:
        [miss] = slas.check_due(session, MONDAY + timedelta(seconds=5))
    assert miss.notice is not None
    subject = messages.subject(miss.notice)
    assert subject == "[tradelane] SLA acme-850 missed: 0 of 2 file(s) from acme by 2026-03-30 09:00:00 UTC"
    text = messages.text(miss.notice)
    assert "tradelane transfers --partner acme" in text and "tradelane sla list" in text
    assert json.loads(messages.webhook_body(miss.notice, "json"))["what"] == "sla-missed"


def test_a_removed_channel_takes_its_slas_and_remove_says_what_is_missing(sla: Sla) -> None:
    assert "no SLA named 'nope'" in run("sla", "remove", "nope", ok=False)
    run("notify", "channel", "remove", "ops")
    assert json.loads(run("sla", "list", "--json")) == []

"""A partner's contact e-mails (in-process, a throwaway home): bare addresses only (nothing that
could add a mail header), and --tell-rejected and --tell-downloads need someone to tell."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from core.db import session_scope
from core.models import Partner
from tests.isolation import run_cli

run = run_cli


def contacts() -> tuple[str | None, bool]:
    with session_scope() as session:
        partner = session.exec(select(Partner).where(Partner.name == "acme")).one()
        return partner.contact_emails, partner.tell_rejected


def told_of_downloads() -> bool:
    with session_scope() as session:
        return session.exec(select(Partner.tell_downloads).where(Partner.name == "acme")).one()


def test_contacts_are_bare_addresses_and_telling_needs_one(home: Path) -> None:
    run("partner", "add", "acme", "--password", "Partner_contacts_P@ssw0rd!")
    assert "needs a --contact-email" in run("partner", "set", "acme", "--tell-rejected", ok=False)
    assert "needs a --contact-email" in run("partner", "set", "acme", "--tell-downloads", ok=False)
    for hostile in ("ops@acme.test\r\nBcc: victim@evil.test", "Ops <ops@acme.test>", "not-an-address"):
        run("partner", "set", "acme", "--contact-email", hostile, ok=False)
    assert contacts() == (None, False)
    said = run("partner", "set", "acme", "--contact-email", "ops@acme.test, edi@acme.test", "--tell-rejected")
    assert "contact e-mails: ops@acme.test,edi@acme.test" in said
    assert contacts() == ("ops@acme.test,edi@acme.test", True)
    run("partner", "set", "acme", "--no-tell-rejected")
    assert contacts() == ("ops@acme.test,edi@acme.test", False)
    assert "contacts told of files waiting in download/" in run("partner", "set", "acme", "--tell-downloads")
    assert told_of_downloads() is True
    run("partner", "set", "acme", "--no-tell-downloads")
    assert told_of_downloads() is False

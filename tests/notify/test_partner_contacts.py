"""A partner's contact e-mails (in-process, a throwaway home): bare addresses only (nothing that
could add a mail header), and --tell-rejected and --tell-downloads need someone to tell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


def test_clearing_the_contacts_of_a_partner_that_is_told_is_refused(home: Path) -> None:
    run("partner", "add", "acme", "--password", "Partner_contacts_P@ssw0rd!")
    run("partner", "set", "acme", "--contact-email", "ops@acme.test", "--tell-downloads")
    assert "turn --no-tell-rejected/--no-tell-downloads first" in run(
        "partner", "set", "acme", "--contact-email", "", ok=False
    )
    assert told_of_downloads() is True and contacts() == ("ops@acme.test", False)
    run("partner", "set", "acme", "--contact-email", "", "--no-tell-downloads")
    assert contacts() == (None, False)


def test_partner_list_shows_who_is_told_of_what(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("partner", "add", "acme", "--password", "Partner_contacts_P@ssw0rd!")
    run("partner", "set", "acme", "--contact-email", "ops@acme.test,edi@acme.test", "--tell-rejected")
    [row] = json.loads(run("partner", "list", "--json"))
    assert (row["contact_emails"], row["tell_rejected"], row["tell_downloads"]) == (
        ["ops@acme.test", "edi@acme.test"],
        True,
        False,
    )
    monkeypatch.setenv("COLUMNS", "250")  # the table's widest column, whole
    assert "rejected → ops@acme.test, edi@acme.test" in run("partner", "list")


def test_apply_declares_contacts_and_notices(home: Path, tmp_path: Path) -> None:
    declared = tmp_path / "tradelane.yaml"

    def apply(settings: str, ok: bool = True) -> str:
        declared.write_text(
            f"partners:\n  - name: acme\n    password: Partner_contacts_P@ssw0rd!\n{settings}"
        )
        return run("apply", "-f", str(declared), ok=ok)

    told = "    contact_emails: [ops@acme.test]\n    tell_rejected: true\n    tell_downloads: true\n"
    assert "partner acme: created" in apply(told)
    assert contacts() == ("ops@acme.test", True) and told_of_downloads() is True
    assert "partner acme: unchanged" in apply(told)
    assert "partners[0].contact_emails[0]" in apply(
        "    contact_emails: ['ops@acme.test\\r\\nBcc: victim@evil.test']\n", ok=False
    )
    assert "partners[0].tell_rejected" in apply("    tell_rejected: yes please\n", ok=False)
    assert "partner acme: updated" in apply("    tell_rejected: false\n")
    assert contacts() == ("ops@acme.test", False)

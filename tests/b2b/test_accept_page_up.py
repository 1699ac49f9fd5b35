"""The invitation, end to end through a real `tradelane up` with a real SMTP server (aiosmtpd):
`connect invite` e-mails the link, the link is read out of the delivered message and opened with
httpx following the accept page's forms (log in as an existing account's admin; or create a new
account on the page), and the connection becomes active. Then a grep of every file under
TRADELANE_HOME (the store, the logs, Prefect's database, `up.log`) for the clear tokens.
"""

from __future__ import annotations

import re
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.b2b.peers_pair import Pair
from tests.b2b.test_one_instance import cli_json, new_account
from tests.b2b.web_server import forms_of, submit, text_of
from tests.endpoint_servers.mail import SmtpServer
from tests.system import System
from tests.waiting import wait_for

ADMIN_PASSWORD = "connect-Owner-Pass-41"  # new_account's
NEW_PASSWORD = "a new partner's long password"
LINK = re.compile(r"(http://\S+/connect/accept\?token=\S+)")


@pytest.fixture
def up(peer_pair: Pair) -> System:
    """Instance A of the session's pair: it sends its invitations through the tests' SMTP server
    (STARTTLS with AUTH), and its public URL is its own API's. Each test makes its own accounts."""
    return peer_pair.a.system


@pytest.fixture(scope="module")
def tokens_seen() -> list[str]:
    """Every clear token the tests of this module handled (the grep looks for all of them)."""
    return []


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def invite(system: System, account: str, to: str, *flags: str) -> dict[str, Any]:
    answer: dict[str, Any] = cli_json(
        system, "connect", "invite", "--account", account, "--email", to, "--name", "to-partner", *flags
    )
    return answer


def delivered(smtp_server: SmtpServer, user: str) -> EmailMessage:
    found = wait_for(lambda: smtp_server.root.messages(user), f"a message for {user}", timeout=30)
    assert len(found) == 1
    message: EmailMessage = found[0]
    return message


def link_in(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    match = LINK.search(part.get_content())
    assert match, part.get_content()
    return match.group(1)


def browser(system: System) -> httpx.Client:
    """A browser on the page: keeps cookies and sends the page's own Origin with its forms."""
    return httpx.Client(base_url=system.api, headers={"Origin": system.api}, timeout=60)


def connection(system: System, account: str, name: str) -> dict[str, Any]:
    shown: dict[str, Any] = cli_json(system, "connect", "show", name, "--account", account)
    return shown


def test_the_emailed_link_is_accepted_on_the_page_by_an_existing_admin(
    up: System, smtp_server: SmtpServer, tmp_path: Path, tokens_seen: list[str]
) -> None:
    sender, receiver = unique("acme"), unique("globex")
    new_account(up, sender)
    new_account(up, receiver)
    lake = tmp_path / "lake"
    (lake / "in").mkdir(parents=True)
    up.cli("endpoint", "add", "lake", "--account", receiver, "--type", "file", "--path", str(lake))
    mailbox = smtp_server.root.create()

    invited = invite(up, sender, smtp_server.address(mailbox), "--send", "--outbox", "orders")
    assert invited["email_sent"] is True and "email_error" not in invited

    message = delivered(smtp_server, mailbox)
    assert message["Subject"] == f"{sender} invites you to a B2B connection: to-partner"
    link = link_in(message)
    assert link == invited["link"] and link.startswith(f"{up.api}/connect/accept?token=tlc1_")
    tokens_seen.append(link.split("token=", 1)[1])

    with browser(up) as web:
        page = web.get(link)
        assert page.status_code == 200, page.text
        assert f"{sender} wants to send files to you" in text_of(page)
        page = submit(web, page, "/connect/login", email=f"admin@{receiver}.example", password=ADMIN_PASSWORD)
        assert page.status_code == 200, page.text
        assert forms_of(page)["/connect/accept"]["endpoint"] == "lake"  # the account's endpoint, by name
        assert "lake (file)" in text_of(page)  # and type
        done = submit(web, page, "/connect/accept", name=f"from-{sender}", dir="in")
    assert done.status_code == 200, done.text
    assert f"active: files from {sender} will land in lake:in" in text_of(done)

    assert connection(up, receiver, f"from-{sender}")["state"] == "active"
    assert connection(up, sender, "to-partner")["state"] == "active"
    with browser(up) as web:  # the link is used up: a second visit says so
        again = web.get(link)
    assert again.status_code == 409 and "already accepted" in text_of(again)


def test_a_new_account_is_created_on_the_page_and_accepts(
    up: System, smtp_server: SmtpServer, tmp_path: Path, tokens_seen: list[str]
) -> None:
    receiver, newcomer = unique("hooli"), unique("initech")
    new_account(up, receiver)
    vault = tmp_path / "vault"
    vault.mkdir()
    up.cli("endpoint", "add", "vault", "--account", receiver, "--type", "file", "--path", str(vault))
    mailbox = smtp_server.root.create()

    invited = invite(up, receiver, smtp_server.address(mailbox), "--receive", "--dest", "vault")
    assert invited["email_sent"] is True
    link = link_in(delivered(smtp_server, mailbox))
    tokens_seen.append(link.split("token=", 1)[1])

    with browser(up) as web:
        page = web.get(link)
        assert f"{receiver} wants to receive files from you" in text_of(page)
        page = submit(
            web,
            page,
            "/connect/signup",
            account=newcomer,
            email=f"peter@{newcomer}.example",
            password=NEW_PASSWORD,
        )
        assert page.status_code == 200, page.text
        assert "/connect/accept" in forms_of(page)  # logged in as the new account's admin
        done = submit(web, page, "/connect/accept", name=f"to-{receiver}", outbox="invoices")
    assert done.status_code == 200, done.text
    assert "active: put files into b2b/invoices/" in text_of(done)

    accounts = cli_json(up, "account", "list")
    assert newcomer in [row["name"] for row in accounts]
    assert connection(up, newcomer, f"to-{receiver}")["state"] == "active"
    assert connection(up, receiver, "to-partner")["state"] == "active"


def test_the_rest_invitation_is_emailed_and_declined_on_the_page(
    up: System, smtp_server: SmtpServer, tokens_seen: list[str]
) -> None:
    sender = unique("umbrella")
    new_account(up, sender)
    mailbox = smtp_server.root.create()
    with httpx.Client(base_url=up.api, timeout=60) as api:
        login = api.post(
            "/api/authentication",
            data={
                "grant_type": "password",
                "username": f"admin@{sender}.example",
                "password": ADMIN_PASSWORD,
            },
        )
        assert login.status_code == 200, login.text
        answer = api.post(
            "/api/connections",
            json={
                "email": smtp_server.address(mailbox),
                "name": "to-partner",
                "direction": "send",
                "outbox": "o",
            },
            headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        )
    assert answer.status_code == 201, answer.text
    assert answer.json()["email_sent"] is True and "email_error" not in answer.json()
    link = link_in(delivered(smtp_server, mailbox))
    assert link == answer.json()["link"]
    tokens_seen.append(link.split("token=", 1)[1])

    with browser(up) as web:
        page = web.get(link)
        done = submit(web, page, "/connect/decline")
    assert done.status_code == 200, done.text
    assert f"{sender} will see it declined" in text_of(done)
    assert connection(up, sender, "to-partner")["state"] == "declined"
    with browser(up) as web:
        again = web.get(link)
    assert again.status_code == 409 and "this invitation was declined on" in text_of(again)


def test_an_invitation_that_cannot_be_emailed_says_why_and_stays_pending(up: System) -> None:
    sender = unique("stark")
    new_account(up, sender)
    # A recipient the SMTP server refuses (no such mailbox): the connection is made, the link shown.
    args = ["connect", "invite", "--account", sender, "--send", "--outbox", "out", "--name", "to-partner"]
    printed = up.cli(*args, "--email", "nobody@nowhere.invalid").stdout
    assert f"link: {up.api}/connect/accept?token=tlc1_" in printed
    assert "no email sent (" in printed and "): pass the link on yourself" in printed
    assert connection(up, sender, "to-partner")["state"] == "pending"


def test_the_clear_token_is_nowhere_under_the_home(up: System, tokens_seen: list[str]) -> None:
    """After invite, page visit, accept and decline (the tests above; run with them)."""
    assert len(tokens_seen) >= 3, "run this module whole: the tests above make the tokens"
    needles: list[bytes] = []
    for token in tokens_seen:
        needles += [token.encode(), quote(token, safe="").encode(), token.removeprefix("tlc1_").encode()]
    searched = [path for path in up.home.rglob("*") if path.is_file()]
    assert any(path.name == "prefect.db" for path in searched)  # Prefect's database is searched too
    assert any(path.suffix == ".log" for path in searched)
    found = [
        f"{path}: {needle[:12]!r}…" for path in searched for needle in needles if needle in path.read_bytes()
    ]
    assert found == []

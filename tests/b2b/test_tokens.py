"""Invitation tokens: their shape, only a hash kept, links, and single use under two accepts at once."""

from __future__ import annotations

import base64
import hashlib
import threading

import pytest

from core.b2b import invitations, tokens
from core.errors import Invalid, StatusError
from tests.b2b.helpers import Homes, run_json


def test_a_token_is_256_random_bits_behind_a_prefix() -> None:
    seen = {tokens.new_token() for _ in range(200)}
    assert len(seen) == 200
    for token in seen:
        assert token.startswith("tlc1_") and len(token) == 48
        assert len(base64.urlsafe_b64decode(token[5:] + "=")) == 32
        assert tokens.check_shape(token) == token
    token = next(iter(seen))
    assert tokens.token_hash(token) == hashlib.sha256(token.encode()).hexdigest()


def test_links_and_bare_tokens() -> None:
    token = tokens.new_token()
    assert tokens.parse_token_or_link(token) == (token, None)
    assert tokens.parse_token_or_link(f"  {token}\n") == (token, None)
    link = tokens.link("https://files.acme.example/tl/", token)
    assert link == f"https://files.acme.example/tl/connect/accept?token={token}"
    assert tokens.parse_token_or_link(link) == (token, "https://files.acme.example/tl")
    for bad, why in (
        ("ftp://x/connect/accept?token=" + token, "not an invitation token or link"),
        ("https://x/connect/accept", "holds no invitation token"),
        (token[:20], "incomplete (15 of 43 characters after tlc1_)"),
        ("tlc2_" + token[5:], "not an invitation token or link"),
    ):
        with pytest.raises(Invalid, match=None) as caught:
            tokens.parse_token_or_link(bad)
        assert why in str(caught.value) and str(caught.value).startswith("400: ")


def test_two_accepts_at_once_one_wins(b2b: Homes) -> None:
    from core.b2b.caller import cli_caller
    from core.db import session_scope
    from tests.b2b.helpers import add_account

    add_account("globex")
    (b2b.lake / "in" / "globex").mkdir()
    link = run_json(
        "connect",
        "invite",
        "--account",
        "acme",
        "--send",
        "--outbox",
        "o",
        "--email",
        "b@x.example",
        "--name",
        "n",
    )["link"]
    results: list[str] = []
    start = threading.Barrier(2)

    def accept(account: str, dest: str) -> None:
        start.wait()
        try:
            with session_scope() as session:
                invitations.accept(session, cli_caller(session, account), link, name="from-acme", dest=dest)
            results.append("accepted")
        except StatusError as exc:
            results.append(str(exc))

    # globex has no endpoint: both accept as home, into two folders; exactly one may win.
    threads = [threading.Thread(target=accept, args=("home", d)) for d in ("lake:in/acme", "lake:in/globex")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2 and results.count("accepted") == 1, results
    [loser] = [r for r in results if r != "accepted"]
    assert loser.startswith("409: ") and ("already accepted" in loser or "already used" in loser), loser
    with session_scope() as session:
        from sqlmodel import select

        from core.models import Connection, DataFlow

        assert session.exec(select(Connection)).one().state == "active"
        assert len(session.exec(select(DataFlow)).all()) == 1

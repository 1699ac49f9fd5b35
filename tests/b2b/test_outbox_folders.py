"""Which outboxes an account's users see (`core.mailbox.outboxes`) and what they may do in each: the
sending side's pending, active and revoked connections, never a receiving side's, a declined one or
another account's; writes while pending or active and by admins and operators only; listing only
with the receiver's allow-view. Also `account list`'s count of live connections."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.b2b import outbox
from core.b2b.caller import Caller, cli_caller
from core.db import session_scope
from core.errors import Forbidden, NotFound
from core.mailbox import outboxes
from core.mailbox.access import Action
from tests.b2b.helpers import Homes, add_account, run, run_json


def _invite(account: str, box: str, name: str) -> str:
    invited = run_json(
        "connect", "invite", "--account", account, "--send", "--outbox", box,
        "--email", "b@home.example", "--name", name,
    )  # fmt: skip
    return str(invited["link"])


def _scope(account: str, role: str = "admin") -> Caller:
    with session_scope() as session:
        base = cli_caller(session, account)
    return Caller(base.account_id, base.account_name, role, f"user:x@{account}.example")  # type: ignore[arg-type]


def _boxes(account: str, role: str = "admin") -> dict[str, outboxes.Outbox]:
    with session_scope() as session:
        return {o.name: o for o in outboxes.outboxes(session, _scope(account, role))}


def test_the_sending_sides_connections_are_its_outboxes(b2b: Homes, tmp_path: Path) -> None:
    _invite("acme", "pending-box", "to-home-1")
    active = _invite("acme", "active-box", "to-home-2")
    run("connect", "accept", active, "--account", "home", "--name", "from-acme-2", "--dest", "lake")
    revoked = _invite("acme", "revoked-box", "to-home-3")
    run("connect", "accept", revoked, "--account", "home", "--name", "from-acme-3", "--dest", "lake")
    run("connect", "revoke", "to-home-3", "--account", "acme")
    declined = _invite("acme", "declined-box", "to-home-4")
    run("connect", "decline", declined)
    add_account("globex")
    _invite("globex", "globex-box", "to-home")

    boxes = _boxes("acme")
    assert list(boxes) == ["active-box", "pending-box", "revoked-box"]
    assert [o.state for o in boxes.values()] == ["active", "pending", "revoked"]
    with session_scope() as session:
        assert outboxes.outbox_names(session, _scope("acme")) == list(boxes)
        assert outboxes.outbox_names(session, _scope("home")) == []  # the receiving side has none
    scope = _scope("acme")
    assert boxes["active-box"].actions(scope) == {Action.WRITE}  # no view yet
    assert boxes["pending-box"].actions(scope) == {Action.WRITE}
    assert boxes["revoked-box"].actions(scope) == frozenset()
    assert _boxes("acme", "read-only")["active-box"].actions(_scope("acme", "read-only")) == frozenset()
    run("connect", "allow-view", "from-acme-2", "--account", "home")
    assert _boxes("acme")["active-box"].actions(scope) == {Action.WRITE, Action.LIST}

    with session_scope() as session:
        assert outbox.writable(session, scope, "pending-box").state == "pending"
        with pytest.raises(Forbidden, match=r"connection 'to-home-3' was revoked on .*no longer sends"):
            outbox.writable(session, scope, "revoked-box")
        for name in ("declined-box", "globex-box", "nothing"):
            with pytest.raises(NotFound):
                outbox.writable(session, scope, name)
        with pytest.raises(Forbidden, match="needs the role admin or operator"):
            outbox.writable(session, _scope("acme", "read-only"), "active-box")

    counts = {a["name"]: a["connections"] for a in run_json("account", "list")}
    assert counts == {"acme": 2, "globex": 1, "home": 1}  # pending and active, on either side
    assert "connections" in run("account", "list")


def test_a_staged_file_is_taken_in_for_the_connection_with_its_user(b2b: Homes, tmp_path: Path) -> None:
    link = _invite("acme", "orders", "to-home")
    user = Caller(_scope("acme").account_id, "acme", "operator", "user:ops@acme.example", user_id=7)
    staged = b2b.home / "staged-po.json"
    staged.write_bytes(b'{"po": 1}')
    held = outbox.take_staged(user, "orders", "po.json", staged)
    assert (held.protocol, held.folder, held.user_id, held.held) == ("b2b", "b2b/orders", 7, True)
    assert held.visible_path is None and not staged.exists()
    run("connect", "accept", link, "--account", "home", "--name", "from-acme", "--dest", "lake")
    run("connect", "revoke", "to-home", "--account", "acme")
    staged.write_bytes(b"late")
    with pytest.raises(Forbidden, match="was revoked on"):
        outbox.take_staged(user, "orders", "late.json", staged)
    assert staged.read_bytes() == b"late"  # refused before anything was kept

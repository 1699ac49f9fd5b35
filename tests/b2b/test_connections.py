"""Connections on one instance through the `tradelane connect` CLI, in-process: invite, accept, hold and
release, send, land in the receiver's folder, allow-view, revoke, and what each side is shown.

Files are carried by the real delivery steps (tests/b2b/carry.py); the run through `tradelane up`
with Prefect is tests/b2b/test_one_instance.py.
"""

from __future__ import annotations

import io
from pathlib import Path

from sqlmodel import select

from core.b2b import outbox
from core.b2b.caller import Caller, cli_caller
from core.db import session_scope
from core.models import Connection, DataFlow, Receipt, Transfer
from tests.b2b.carry import carry_pending
from tests.b2b.helpers import Homes, dump, run, run_json


def invite_send(name: str = "to-home", outbox_name: str = "orders", *extra: str) -> dict[str, object]:
    answer: dict[str, object] = run_json(
        "connect",
        "invite",
        "--account",
        "acme",
        "--send",
        "--outbox",
        outbox_name,
        "--email",
        "bob@home.example",
        "--name",
        name,
        *extra,
    )
    return answer


def acme() -> Caller:
    with session_scope() as session:
        return cli_caller(session, "acme")


def put(conn: str, name: str, data: bytes) -> outbox.Sent:
    """A file into acme's outbox, the way an outbox write (REST, SFTP) takes it: held while pending."""
    return outbox.write(acme(), conn, name, io.BytesIO(data), require_active=False)


def test_invite_prints_the_link_once_and_stores_only_its_hash(b2b: Homes) -> None:
    before = dump()
    invited = invite_send()
    assert invited["state"] == "pending" and invited["direction"] == "send"
    assert invited["email_sent"] is False and invited["email_error"] == "TRADELANE_SMTP_HOST is not set"
    link = str(invited["link"])
    token = link.split("token=", 1)[1]
    assert link.startswith("http://127.0.0.1:8080/connect/accept?token=tlc1_") and len(token) == 48
    after = dump()
    assert token not in repr(after) and token not in repr(before)
    human = run(
        "connect",
        "invite",
        "--account",
        "acme",
        "--send",
        "--outbox",
        "o2",
        "--email",
        "x@y.example",
        "--name",
        "n2",
    )
    assert "no email sent (TRADELANE_SMTP_HOST is not set): pass the link on yourself" in human
    assert "link: http://" in human


def test_pending_holds_then_accept_releases_and_the_file_lands(b2b: Homes) -> None:
    link = str(invite_send()["link"])
    held = put("to-home", "early.json", b'{"po": 1}')
    assert held.held and held.transfer_id is None
    refused = run(
        "connect", "send", "to-home", str(_file(b2b, "x.json", b"x")), "--account", "acme", ok=False
    )
    assert (
        "409: connection 'to-home' is pending (the receiver has not accepted yet): "
        "files sent from the connection are refused; "
        "put them into the outbox b2b/orders/ to have them held until it is active"
    ) in " ".join(refused.split())
    assert run_json("transfers", "--connection", "to-home", "--account", "acme")[0]["state"] == "held"

    accepted = run_json(
        "connect", "accept", link, "--account", "home", "--name", "from-acme", "--dest", "lake:in/acme"
    )
    assert accepted["state"] == "active" and accepted["role"] == "receive" and accepted["with"] == "acme"
    # The held file was released into the landing flow at once.
    with session_scope() as session:
        conn = session.exec(select(Connection)).one()
        flow = session.exec(select(DataFlow).where(DataFlow.source_connection_id == conn.id)).one()
        assert flow.name == f"b2b:{conn.id}" and flow.dest_path == "in/acme/{name}"
        assert session.exec(select(Receipt).where(Receipt.held == True)).all() == []  # noqa: E712
        assert len(session.exec(select(Transfer)).all()) == 1
    assert carry_pending() == ["delivered"]
    assert (b2b.lake / "in" / "acme" / "early.json").read_bytes() == b'{"po": 1}'

    sent = run("connect", "send", "to-home", str(_file(b2b, "po.json", b'{"po": 2}')), "--account", "acme")
    assert "po.json: received (receipt" in sent and "pending" in sent
    assert carry_pending() == ["delivered"]
    assert (b2b.lake / "in" / "acme" / "po.json").read_bytes() == b'{"po": 2}'

    mine = run_json("transfers", "--connection", "to-home", "--account", "acme")
    assert [(r["file"], r["state"], r["outcome"]) for r in mine] == [
        ("po.json", "delivered", "delivered"),
        ("early.json", "delivered", "delivered"),
    ]
    theirs = run_json("transfers", "--connection", "from-acme", "--account", "home")
    assert theirs[0]["destination_uri"].endswith("in/acme/po.json") and theirs[0]["flow"].startswith("b2b:")

    both = {row["role"]: row for row in run_json("connect", "list", "--account", "acme")}
    assert both["send"]["state"] == "active" and both["send"]["outbox"] == "orders"
    assert run_json("connect", "show", "from-acme", "--account", "home")["dest"] == "lake:in/acme"
    assert "dest" not in run_json("connect", "show", "to-home", "--account", "acme")


def test_allow_view_is_the_receivers_and_lists_names_only(b2b: Homes) -> None:
    link = str(invite_send()["link"])
    run("connect", "accept", link, "--account", "home", "--name", "from-acme", "--dest", "lake:in/acme")
    (b2b.lake / "in" / "acme" / "already.txt").write_text("hello")
    off = run("connect", "files", "to-home", "--account", "acme", ok=False)
    assert "403: home has not allowed viewing its folder for connection 'to-home'" in off
    assert "403: only the receiving side decides" in run(
        "connect", "allow-view", "to-home", "--account", "acme", ok=False
    )
    run("connect", "allow-view", "from-acme", "--account", "home")
    listed = run_json("connect", "files", "to-home", "--account", "acme")
    assert listed == [{"name": "already.txt", "size": 5, "modified": listed[0]["modified"]}]
    run("connect", "allow-view", "from-acme", "--account", "home", "--off")
    assert "403" in run("connect", "files", "to-home", "--account", "acme", ok=False)
    assert run_json("connect", "files", "from-acme", "--account", "home")[0]["name"] == "already.txt"


def test_revoke_stops_the_outbox_and_fails_what_waits(b2b: Homes) -> None:
    link = str(invite_send()["link"])
    run("connect", "accept", link, "--account", "home", "--name", "from-acme", "--dest", "lake:in/acme")
    waiting = put("to-home", "late.json", b"{}")
    assert waiting.transfer_id is not None
    run("connect", "revoke", "to-home", "--account", "acme")
    rows = run_json("transfers", "--connection", "to-home", "--account", "acme")
    assert [(r["state"], r["outcome"]) for r in rows] == [("failed", "revoked before delivery")]
    assert "409: connection 'from-acme' is already revoked" in run(
        "connect", "revoke", "from-acme", "--account", "home", ok=False
    )
    refused = run(
        "connect", "send", "to-home", str(_file(b2b, "a.json", b"1")), "--account", "acme", ok=False
    )
    assert "409: connection 'to-home' was revoked on" in refused
    from core.intake import SenderRefused

    try:
        put("to-home", "b.json", b"2")
    except SenderRefused as exc:
        assert "was revoked on" in str(exc) and "the outbox no longer sends" in str(exc)
    else:
        raise AssertionError("an outbox write into a revoked connection was taken in")
    replayed = run("replay", str(waiting.transfer_id), ok=False)
    assert "409: connection 'from-acme' was revoked" in replayed
    with session_scope() as session:
        flow = session.exec(select(DataFlow).where(DataFlow.name.startswith("b2b:"))).one()  # type: ignore[attr-defined]
        assert flow.enabled is False


def test_the_landing_flow_is_read_only_for_the_receiver(b2b: Homes) -> None:
    link = str(invite_send()["link"])
    accepted = run_json(
        "connect", "accept", link, "--account", "home", "--name", "from-acme", "--dest", "lake"
    )
    flow = f"b2b:{accepted['id']}"
    before = dump()
    for args in (
        ("flow", "disable", flow),
        ("flow", "set", flow, "--pattern", "*.x"),
        ("flow", "remove", flow),
    ):
        out = run(*args, ok=False)
        assert f"data flow {flow} belongs to connection 'from-acme': change it with tradelane connect" in out
    assert dump() == before
    listed = {row["name"]: row for row in run_json("flow", "list")}
    assert listed[flow]["source"] == "connection from-acme" and listed[flow]["dest"] == "lake"


def _file(b2b: Homes, name: str, data: bytes) -> Path:
    path = b2b.home.parent / "send" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def test_an_invitation_to_receive_accepted_by_a_new_account(b2b: Homes) -> None:
    """home invites to receive into lake:in/acme; a new account accepts as the sender."""
    invited = run_json(
        "connect",
        "invite",
        "--account",
        "home",
        "--receive",
        "--dest",
        "lake:in/acme",
        "--email",
        "ops@newco.example",
        "--name",
        "from-newco",
        "--expires",
        "48h",
    )
    assert invited["direction"] == "receive"
    assert run_json("connect", "show", "from-newco")["dest"] == "lake:in/acme"
    link = str(invited["link"])
    refused = run(
        "connect",
        "accept",
        link,
        "--new-account",
        "newco",
        "--email",
        "boss@newco.example",
        "--password",
        "Tr4de-lane-Pass",
        "--name",
        "to-home",
        "--dest",
        "lake",
        ok=False,
    )
    assert "400: a new account has no endpoints yet" in refused
    assert "400: this invitation asks you to send files: give --outbox NAME, not --dest" in run(
        "connect", "accept", link, "--account", "acme", "--name", "to-home", "--dest", "lake", ok=False
    )
    weak = run(
        "connect",
        "accept",
        link,
        "--new-account",
        "newco",
        "--email",
        "boss@newco.example",
        "--password",
        "short",
        "--name",
        "to-home",
        "--outbox",
        "out",
        ok=False,
    )
    assert "the password is too short" in weak
    accepted = run_json(
        "connect",
        "accept",
        link,
        "--new-account",
        "newco",
        "--email",
        "boss@newco.example",
        "--password",
        "Tr4de-lane-Pass",
        "--name",
        "to-home",
        "--outbox",
        "out",
    )
    assert accepted["role"] == "send" and accepted["with"] == "home" and accepted["state"] == "active"
    sent = run_json("connect", "send", "to-home", str(_file(b2b, "hello.txt", b"hi")), "--account", "newco")
    assert sent[0]["transfer"] is not None and carry_pending() == ["delivered"]
    assert (b2b.lake / "in" / "acme" / "hello.txt").read_bytes() == b"hi"
    assert "409: account 'newco' already exists" in run(
        "connect",
        "accept",
        link,
        "--new-account",
        "newco",
        "--email",
        "boss@newco.example",
        "--password",
        "Tr4de-lane-Pass",
        "--name",
        "x",
        "--outbox",
        "y",
        ok=False,
    )


def test_held_files_of_a_declined_connection_stay_as_not_sent(b2b: Homes) -> None:
    link = str(invite_send()["link"])
    put("to-home", "early.json", b"{}")
    run("connect", "decline", link)
    [row] = run_json("transfers", "--connection", "to-home", "--account", "acme")
    assert row["state"] == "not sent"
    assert row["outcome"] == "not sent: the connection ended before it was accepted"
    assert row["receipt"]["size"] == 2
    with session_scope() as session:
        assert session.exec(select(Transfer)).all() == []

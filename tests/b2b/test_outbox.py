"""The outbox write path and the dispatcher's part: roles, a revoke during an upload, a file committed
held in the instant its connection became active, and the run labels of a landing batch."""

from __future__ import annotations

import pytest
from sqlmodel import select

from core import intake
from core.b2b import connections, outbox
from core.b2b.caller import Caller, cli_caller
from core.db import session_scope
from core.errors import Forbidden
from core.models import AuditEvent, Connection, Receipt, Transfer
from core.receipt_files import STORE_DIR
from tests.b2b.helpers import Homes, run_json


def _active() -> int:
    invited = run_json(
        "connect",
        "invite",
        "--account",
        "acme",
        "--send",
        "--outbox",
        "orders",
        "--email",
        "b@home.example",
        "--name",
        "to-home",
    )
    run_json(
        "connect", "accept", invited["link"], "--account", "home", "--name", "from-acme", "--dest", "lake"
    )
    return int(invited["id"])


def _caller(role: str) -> Caller:
    with session_scope() as session:
        base = cli_caller(session, "acme")
    return Caller(base.account_id, base.account_name, role, "user:someone@acme.example")  # type: ignore[arg-type]


def test_read_only_users_do_not_send(b2b: Homes) -> None:
    conn_id = _active()
    with session_scope() as session:
        conn = session.get(Connection, conn_id)
        assert conn is not None
        with pytest.raises(Forbidden, match="403: this needs the role admin or operator; this login is read"):
            outbox.begin(session, _caller("read-only"), conn, "x.json")
        with pytest.raises(Forbidden, match="this needs the role admin"):
            connections.revoke(session, _caller("operator"), conn_id)
        outbox.begin(session, _caller("operator"), conn, "x.json").abort()  # an operator may


def test_a_revoke_during_an_upload_refuses_it_at_the_commit(b2b: Homes) -> None:
    conn_id = _active()
    with session_scope() as session:
        conn = session.get(Connection, conn_id)
        assert conn is not None
        upload = outbox.begin(session, _caller("admin"), conn, "long.bin")
    upload.write(b"x" * 100_000)
    run_json("connect", "revoke", "to-home", "--account", "acme")
    with pytest.raises(intake.SenderRefused, match=r"was revoked on .*; the outbox no longer sends"):
        upload.commit()
    with session_scope() as session:
        assert session.exec(select(Receipt)).all() == []
    assert not any(p.is_file() for p in (b2b.home / "mailboxes" / STORE_DIR).rglob("*"))


def test_a_file_committed_held_after_activation_is_released_by_the_sweep(b2b: Homes) -> None:
    from deployments.dispatcher import Dispatcher

    conn_id = _active()
    # What a commit that read "pending" just before accept's release leaves: a held receipt.
    intake_caller = _caller("admin")
    with session_scope() as session:
        receipt = intake.record_receipt(
            session,
            account_id=intake_caller.account_id,
            partner_id=None,
            partner_name="cli",
            folder="b2b/orders",
            name="raced.json",
            size=2,
            sha256="0" * 64,
            protocol="b2b",
            data_flow_ids=[],
            storage_path=".store/x",
        )
        receipt.connection_id, receipt.held = conn_id, True
    [batch] = Dispatcher()._claim()
    assert batch.run_name == "b2b acme/to-home → home/from-acme: raced.json"
    assert batch.tags == [
        f"connection:{conn_id}",
        "b2b",
        "account:acme",
        "account:home",
        f"flow:b2b:{conn_id}",
    ]
    with session_scope() as session:
        assert session.exec(select(Receipt).where(Receipt.held == True)).all() == []  # noqa: E712
        assert len(session.exec(select(Transfer)).all()) == 1


def test_each_file_sent_is_in_the_senders_audit(b2b: Homes) -> None:
    import io

    conn_id = _active()
    outbox.write(_caller("operator"), conn_id, "po.json", io.BytesIO(b"{}"))
    with session_scope() as session:
        events = session.exec(
            select(AuditEvent).where(AuditEvent.action.in_(["upload", "connection.send"]))
        ).all()  # type: ignore[attr-defined]
        assert {(e.action, e.actor, e.account_id) for e in events} == {
            ("upload", "user:someone@acme.example", _caller("admin").account_id),
            ("connection.send", "user:someone@acme.example", _caller("admin").account_id),
        }

"""The `waiting` transfer state (issue 12 item 7, DESIGN-12 §5.8), without Prefect, on SQLite and
PostgreSQL: a destination that says "not now" (core.endpoints.base.Deferrable) makes a file wait
with backoff, never fail; the dispatcher's claim wakes it when due; `wake_waiting`, `replay` and a
Retry of its run make it go at once; revoke fails it; the CLI shows it. Through a real `tradelane
up`: tests/e2e/test_waiting_up.py.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import select
from typer.testing import CliRunner

from cli.main import app
from core import dataflows, delivery, partners, transfers
from core.config import get_settings
from core.db import init_db, session_scope
from core.delivery import Outcome
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import Deferrable, TransientError, Unreachable
from core.intake import receive_stream
from core.models import DataFlow, Receipt, Transfer, TransferState
from tasks.retry import is_retryable
from tests.isolation import clear_caches, isolated_home
from tests.tenancy import home_scope

runner = CliRunner()


@pytest.fixture(params=["sqlite", "postgres"])
def home(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    if url:  # a fresh schema per test keeps PostgreSQL runs independent
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    with isolated_home(tmp_path / "home", database_url=url):
        init_db()
        with session_scope() as session:
            partners.add(session, home_scope(session), "acme", password="waiting-Pass-41")
            endpoint_rows.add(session, home_scope(session), "out", "file", {"path": str(tmp_path / "out")})
            dataflows.add(session, home_scope(session), "acme-out", source="mailbox:acme", dest="out")
        yield tmp_path


def receive(name: str) -> int:
    with session_scope() as session:
        partner = partners.require(session, home_scope(session), "acme")
    receipt = receive_stream(partner, "upload", name, io.BytesIO(b'{"po": 1}'), protocol="rest")
    with session_scope() as session:
        transfer = session.exec(select(Transfer).where(Transfer.receipt_id == receipt.id)).one()
        assert transfer.id is not None
        return transfer.id


def row(transfer_id: int) -> Transfer:
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None
        session.expunge(transfer)
        return transfer


def away(transfer_id: int, flow_run_id: str | None = None) -> delivery.Recorded:
    """One run's try of the file ends with the destination saying "not now"."""
    (job,) = delivery.start_run([transfer_id], flow_run_id).jobs
    (recorded,) = delivery.record([Outcome(job, error=Deferrable("peer globex did not answer"))])
    return recorded


# -- the error and the backoff ----------------------------------------------------------------


def test_deferrable_is_a_transient_error_retried_within_the_run() -> None:
    assert issubclass(Deferrable, TransientError) and is_retryable(Deferrable("away"))
    assert Deferrable.__doc__ == "The destination cannot take files now; keep the file and try much later."


def test_the_backoff_doubles_from_30_seconds_up_to_the_cap_with_10_percent_jitter() -> None:
    exact = [transfers.wait_delay(k, 900, spread=lambda low, high: 1.0) for k in range(7)]
    assert exact == [30, 60, 120, 240, 480, 900, 900]
    assert transfers.wait_delay(3, 900, spread=lambda low, high: low) == pytest.approx(240 * 0.9)
    assert transfers.wait_delay(3, 900, spread=lambda low, high: high) == pytest.approx(240 * 1.1)
    assert transfers.wait_delay(10_000, 60, spread=lambda low, high: 1.0) == 60  # no overflow
    for k in range(12):
        assert 0.9 * min(900, 30 * 2**k) <= transfers.wait_delay(k, 900) <= 1.1 * min(900, 30 * 2**k)


# -- recorded as waiting, never failed ---------------------------------------------------------


def test_a_deferrable_error_makes_the_file_wait_with_backoff_and_keeps_the_error(home: Path) -> None:
    transfer_id = receive("po.json")
    before = datetime.now(UTC)
    first = away(transfer_id)
    assert first.state is TransferState.waiting and first.next_attempt_at is not None
    assert timedelta(seconds=27) <= first.next_attempt_at - before <= timedelta(seconds=34)
    waiting = row(transfer_id)
    assert (waiting.state, waiting.waits, waiting.finished_at) == ("waiting", 1, None)
    assert waiting.error == "destination unreachable: peer globex did not answer"
    assert waiting.error_kind == "unreachable" and waiting.next_attempt_at == first.next_attempt_at
    # The file stays where the partner put it (only a delivery takes it out of upload/).
    assert (get_settings().mailbox_root / "home" / "acme" / "upload" / "po.json").exists()

    # Due: the dispatcher's claim makes it pending again; the next wait is twice as long.
    with session_scope() as session:
        assert transfers.wake_due(session, now=first.next_attempt_at) == 1
    again = away(transfer_id)
    assert again.next_attempt_at is not None
    assert timedelta(seconds=54) <= again.next_attempt_at - datetime.now(UTC) <= timedelta(seconds=67)
    assert row(transfer_id).waits == 2


def test_an_unreachable_destination_that_did_not_defer_still_fails(home: Path) -> None:
    """Only an error an endpoint deliberately marks Deferrable waits: connection refused fails."""
    transfer_id = receive("po.json")
    (job,) = delivery.start([transfer_id])
    assert delivery.record_outcomes([Outcome(job, error=Unreachable("connection refused"))]) == [
        TransferState.failed
    ]


def test_the_wait_is_capped_by_the_setting(home: Path) -> None:
    os.environ["TRADELANE_WAIT_RETRY_MAX_SECONDS"] = "4"
    clear_caches()
    try:
        transfer_id = receive("po.json")
        recorded = away(transfer_id)
    finally:
        del os.environ["TRADELANE_WAIT_RETRY_MAX_SECONDS"]
        clear_caches()
    assert recorded.next_attempt_at is not None
    assert recorded.next_attempt_at - datetime.now(UTC) <= timedelta(seconds=4.4)


# -- the dispatcher's claim, and what holds a run ------------------------------------------------


def test_claim_wakes_due_waiting_transfers_and_in_flight_ignores_waiting_ones(home: Path) -> None:
    due, later = receive("due.json"), receive("later.json")
    with session_scope() as session:
        transfers.claim_batches(session, 50)
        for batch in transfers.unlaunched_batches(session):
            transfers.mark_launched(session, batch.key, "run-1")
    away(due, "run-1")
    away(later, "run-1")
    with session_scope() as session:
        assert transfers.in_flight(session) == []  # a waiting file holds no run
        session.get(Transfer, due).next_attempt_at = datetime.now(UTC) - timedelta(seconds=1)  # type: ignore[union-attr]
    with session_scope() as session:
        transfers.claim_batches(session, 50)
    woke, still = row(due), row(later)
    assert (woke.state, woke.flow_run_id, woke.next_attempt_at) == ("pending", None, None)
    assert woke.batch_key is not None and woke.waits == 1
    assert (still.state, still.flow_run_id) == ("waiting", "run-1")
    with session_scope() as session:
        [batch] = transfers.unlaunched_batches(session)
    assert batch.transfer_ids == [due]


def test_wake_waiting_makes_a_flows_waiting_files_due_at_once(home: Path) -> None:
    first, second = receive("a.json"), receive("b.json")
    away(first)
    away(second)
    with session_scope() as session:
        flow_id = session.exec(select(DataFlow.id).where(DataFlow.name == "acme-out")).one()
        assert transfers.wake_waiting(session, data_flow_id=flow_id) == 2
        assert transfers.wake_waiting(session, connection_id=12345) == 0
    with session_scope() as session:
        transfers.claim_batches(session, 50)
    assert {row(first).state, row(second).state} == {"pending"}
    with pytest.raises(ValueError, match="one of"), session_scope() as session:
        transfers.wake_waiting(session)


# -- Retry of the run, replay ------------------------------------------------------------------


def test_retry_of_the_run_carries_its_waiting_file_at_once(home: Path) -> None:
    transfer_id = receive("po.json")
    away(transfer_id, "run-1")
    retried = delivery.start_run([transfer_id], "run-1")
    assert [job.transfer_id for job in retried.jobs] == [transfer_id] and retried.left == []
    assert (retried.again, retried.woken) == (0, 1)
    taken = row(transfer_id)
    assert (taken.state, taken.flow_run_id, taken.next_attempt_at) == ("running", "run-1", None)


def test_a_run_leaves_a_file_another_run_carries(home: Path) -> None:
    """Woken and given to run-2, the file is not carried again by a Retry of run-1."""
    transfer_id = receive("po.json")
    away(transfer_id, "run-1")
    with session_scope() as session:
        transfers.wake_due(session, now=datetime.now(UTC) + timedelta(hours=1))
        transfers.claim_batches(session, 50)
        [batch] = transfers.unlaunched_batches(session)
        transfers.mark_launched(session, batch.key, "run-2")
    retried = delivery.start_run([transfer_id], "run-1")
    assert retried.jobs == []
    assert "being carried by transfer" in retried.left[0].describe()
    assert [job.transfer_id for job in delivery.start_run([transfer_id], "run-2").jobs] == [transfer_id]


def test_replay_of_a_waiting_transfer_makes_it_due_now_without_a_copy(home: Path) -> None:
    transfer_id = receive("po.json")
    away(transfer_id)
    said = runner.invoke(app, ["replay", str(transfer_id)])
    assert said.exit_code == 0, said.output
    assert f"transfer {transfer_id} was waiting; it is tried again now" in " ".join(said.output.split())
    waiting = row(transfer_id)
    assert waiting.state == "waiting" and waiting.next_attempt_at is not None
    assert waiting.next_attempt_at <= datetime.now(UTC)
    with session_scope() as session:
        transfers.claim_batches(session, 50)
        assert len(session.exec(select(Transfer)).all()) == 1
    assert row(transfer_id).state == "pending"


# -- what operators see --------------------------------------------------------------------------


def test_transfers_shows_waiting_with_its_next_try_and_filters_it(home: Path) -> None:
    waiting_id, other_id = receive("po.json"), receive("done.json")
    recorded = away(waiting_id)
    (job,) = delivery.start([other_id])
    delivery.record([Outcome.delivered(job, delivery.push(job))])
    assert recorded.next_attempt_at is not None
    table = runner.invoke(app, ["transfers"], env={"COLUMNS": "100"})
    assert table.exit_code == 0, table.output
    assert f"waiting, next try {recorded.next_attempt_at:%H:%M}" in table.output
    listed = json.loads(runner.invoke(app, ["transfers", "--state", "waiting", "--json"]).output)
    assert [r["id"] for r in listed] == [waiting_id]
    assert listed[0]["next_attempt_at"] == recorded.next_attempt_at.isoformat()
    assert listed[0]["error"] == "destination unreachable: peer globex did not answer"


# -- revoke -----------------------------------------------------------------------------------


def test_revoke_fails_the_connections_waiting_files(b2b: object) -> None:
    from tests.b2b.helpers import run, run_json
    from tests.b2b.test_connections import invite_send, put

    link = str(invite_send()["link"])
    run("connect", "accept", link, "--account", "home", "--name", "from-acme", "--dest", "lake:in/acme")
    sent = put("to-home", "late.json", b"{}")
    assert sent.transfer_id is not None
    away(sent.transfer_id, "run-1")
    rows = run_json("transfers", "--connection", "to-home", "--account", "acme")
    assert [(r["state"], r["outcome"]) for r in rows] == [
        ("waiting", "waiting: the receiver's side cannot take it now; the file is kept and sent again later")
    ]
    assert rows[0]["next_attempt_at"] is not None and "error" not in rows[0]
    line = " ".join(run("transfers", "--connection", "to-home", "--account", "acme").split())
    assert "late.json waiting waiting: the receiver's side cannot take it now" in line
    assert f"(next try {rows[0]['next_attempt_at'][11:16]} UTC)" in line
    run("connect", "revoke", "to-home", "--account", "acme")
    revoked = row(sent.transfer_id)
    assert (revoked.state, revoked.error_kind, revoked.next_attempt_at) == ("failed", "revoked", None)
    assert revoked.error == "connection revoked before delivery" and revoked.finished_at is not None
    rows = run_json("transfers", "--connection", "to-home", "--account", "acme")
    assert [(r["state"], r["outcome"]) for r in rows] == [("failed", "revoked before delivery")]


def test_a_file_whose_connection_was_revoked_while_its_run_tried_it_fails_instead_of_waiting(
    b2b: object,
) -> None:
    """Revoke leaves running files to their run; one that then cannot be delivered must not wait
    for a later run that the revoke has made impossible."""
    from tests.b2b.helpers import run
    from tests.b2b.test_connections import invite_send, put

    link = str(invite_send()["link"])
    run("connect", "accept", link, "--account", "home", "--name", "from-acme", "--dest", "lake:in/acme")
    sent = put("to-home", "late.json", b"{}")
    assert sent.transfer_id is not None
    (job,) = delivery.start_run([sent.transfer_id], "run-1").jobs  # running when revoked
    run("connect", "revoke", "to-home", "--account", "acme")
    assert row(sent.transfer_id).state == "running"
    (recorded,) = delivery.record([Outcome(job, error=Deferrable("peer globex did not answer"))])
    assert (recorded.state, recorded.error) == (TransferState.failed, "connection revoked before delivery")
    failed = row(sent.transfer_id)
    assert (failed.state, failed.error_kind, failed.next_attempt_at) == ("failed", "revoked", None)


# -- a waiting file is still to be carried ---------------------------------------------------------


def test_a_waiting_file_keeps_its_flow_and_its_partners_files_until_forced(home: Path) -> None:
    transfer_id = receive("po.json")
    away(transfer_id)
    with session_scope() as session:  # a receipt of the layout before the store: bytes in the home
        receipt = session.get(Receipt, row(transfer_id).receipt_id)
        assert receipt is not None and receipt.visible_path is not None
        receipt.storage_path = receipt.visible_path
    with session_scope() as session, pytest.raises(partners.PartnerError, match="1 transfer"):
        partners.remove(session, home_scope(session), "acme", purge=True, force=True)
    with session_scope() as session, pytest.raises(dataflows.DataFlowError, match="1 transfer"):
        dataflows.remove(session, home_scope(session), "acme-out")
    with session_scope() as session:
        assert dataflows.remove(session, home_scope(session), "acme-out", force=True).cancelled == 1
    stopped = row(transfer_id)
    assert (stopped.state, stopped.next_attempt_at) == ("failed", None)
    assert stopped.error == "the data flow was removed before this file was delivered"


# -- the run's final state ------------------------------------------------------------------------


def test_a_run_with_files_waiting_ends_failed_named_waiting_and_a_failure_outranks_them() -> None:
    from flows.transfer import _ended

    waiting = ["b.json waiting: destination unreachable: away, next try 08:03 (UTC) — the file is kept"]
    only = _ended("1 of 2 files delivered", [], waiting)
    assert (only.type.value, only.name) == ("FAILED", "Waiting")
    assert only.message == f"1 of 2 files delivered; {waiting[0]}"
    two = _ended("0 of 2 files delivered", [], waiting * 2)
    assert two.message is not None and two.message.endswith("(and 1 more waiting)")
    mixed = _ended("0 of 2 files delivered", ["a.json: failed: refused"], waiting)
    assert (mixed.type.value, mixed.name) == ("FAILED", "Failed")
    assert mixed.message == "0 of 2 files delivered; a.json: failed: refused (and 1 waiting)"
    done = _ended("2 of 2 files delivered", [], [])
    assert (done.type.value, done.message) == ("COMPLETED", "2 of 2 files delivered")

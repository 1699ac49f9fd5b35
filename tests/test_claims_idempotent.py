"""Id-based actions on one store shared by several processes are idempotent (issue 15 part 4): a
replay asked twice (or by two processes at once) carries the file once, an outcome recorded twice
is recorded once, a run whose transfer was taken from it records nothing over the new run's, and a
requeue of a run found dead never takes a transfer from the run that carries it since. On
PostgreSQL and SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from core import dataflows, delivery, partners, transfers
from core.db import session_scope
from core.delivery import Outcome
from core.endpoints import rows as endpoint_rows
from core.models import AuditEvent, Transfer, TransferState
from tests.migration_store import store  # noqa: F401  (the fixture: a store on each database)
from tests.tenancy import home_scope
from tradelane.testing import receipt_from_bytes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def out(store: None, tmp_path: Path) -> Iterator[Path]:  # noqa: F811
    """acme's uploads carried to the folder returned."""
    with session_scope() as session:
        partners.add(session, home_scope(session), "acme", password="idem-Passw0rd-1")
        endpoint_rows.add(session, home_scope(session), "out", "file", {"path": str(tmp_path / "out")})
        dataflows.add(session, home_scope(session), "acme-out", source="mailbox:acme", dest="out")
    yield tmp_path / "out"


def received(name: str = "po.json") -> int:
    """A file acme uploads; its transfer's id."""
    receipt = receipt_from_bytes("acme", name, b'{"po": 1}')
    with session_scope() as session:
        transfer = session.exec(select(Transfer).where(Transfer.receipt_id == receipt.id)).one()
        assert transfer.id is not None
        return transfer.id


def carried(transfer_id: int, run: str, error: Exception | None = None) -> list[TransferState]:
    """The run `run` starts the transfer, pushes it (or fails with `error`) and records that."""
    (job,) = delivery.start_run([transfer_id], run).jobs
    outcome = Outcome(job, error=error) if error else Outcome.delivered(job, delivery.push(job))
    return delivery.record_outcomes([outcome])


def state(transfer_id: int) -> Transfer:
    with session_scope() as session:
        row = session.get(Transfer, transfer_id)
        assert row is not None
        return row


def replay(transfer_id: int) -> int:
    with session_scope() as session:
        copy = transfers.replay(session, home_scope(session), transfer_id)
        session.flush()
        assert copy.id is not None
        return copy.id


def events(action: str) -> int:
    with session_scope() as session:
        return len(session.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def test_a_replay_asked_twice_is_one_replay_until_it_is_carried(out: Path) -> None:
    original = received()
    carried(original, "run-1", RuntimeError("destination broke"))
    first = replay(original)
    assert replay(original) == first  # asked again while it waits to be carried: the same one
    assert events("transfer.replay") == 1
    assert carried(first, "run-2") == [TransferState.delivered]
    again = replay(original)  # carried: a new replay is a new copy
    assert again not in (original, first)
    assert state(again).replay_of == original


def test_two_replays_at_once_make_one_copy(out: Path, tmp_path: Path) -> None:
    original = received()
    carried(original, "run-1", RuntimeError("destination broke"))
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.claims_racer", "replay", str(go), str(original)],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n", process.communicate(timeout=60)
    go.touch()
    copies = set()
    for process in processes:
        output, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors
        copies.add(json.loads(output)["copy"])
    assert len(copies) == 1
    with session_scope() as session:
        assert len(session.exec(select(Transfer).where(Transfer.replay_of == original)).all()) == 1


def test_an_outcome_recorded_twice_is_recorded_once(out: Path) -> None:
    transfer_id = received()
    (job,) = delivery.start_run([transfer_id], "run-1").jobs
    outcome = Outcome.delivered(job, delivery.push(job))
    assert delivery.record_outcomes([outcome]) == [TransferState.delivered]
    finished_at = state(transfer_id).finished_at
    assert delivery.record_outcomes([outcome]) == [TransferState.delivered]
    assert events("transfer.delivered") == 1
    assert state(transfer_id).finished_at == finished_at
    # And a failure reported after the delivery was recorded does not undo it.
    assert delivery.record_outcomes([Outcome(job, error=RuntimeError("late"))]) == [TransferState.delivered]
    assert state(transfer_id).state == TransferState.delivered


def test_a_run_whose_transfer_was_taken_from_it_records_nothing(out: Path) -> None:
    """The dispatcher found run-1 dead and requeued its transfer; run-2 took it. run-1 was only
    slow: its outcome, when it comes, is not written over run-2's."""
    transfer_id = received()
    (slow,) = delivery.start_run([transfer_id], "run-1").jobs
    with session_scope() as session:
        assert transfers.requeue(session, [transfer_id], "run-1 looked dead", from_run="run-1") == 1
    (job,) = delivery.start_run([transfer_id], "run-2").jobs
    [note] = delivery.record(
        [Outcome(slow, error=RuntimeError("run-1's late failure"))]  # would fail the file
    )
    assert note.state == TransferState.running and "run run-2" in (note.error or "")
    after = state(transfer_id)
    assert (after.state, after.flow_run_id) == (TransferState.running, "run-2")
    assert after.error == "run-1 looked dead"
    assert delivery.record_outcomes([Outcome.delivered(job, delivery.push(job))]) == [TransferState.delivered]
    assert events("transfer.failed") == 0


def test_a_requeue_of_a_dead_run_twice_never_takes_the_file_from_its_new_run(out: Path) -> None:
    transfer_id = received()
    delivery.start_run([transfer_id], "run-1")
    with session_scope() as session:
        assert transfers.requeue(session, [transfer_id], "run-1 crashed", from_run="run-1") == 1
    delivery.start_run([transfer_id], "run-2")
    with session_scope() as session:  # a second dispatcher, late, requeues run-1's files again
        assert transfers.requeue(session, [transfer_id], "run-1 crashed", from_run="run-1") == 0
    assert (state(transfer_id).state, state(transfer_id).flow_run_id) == (TransferState.running, "run-2")


def test_failing_an_unlaunchable_batch_spares_what_a_run_took(out: Path) -> None:
    """A dispatcher fails a batch no run can carry (its template will not load) while a run
    another dispatcher launched took one of its files: that file is the run's, not failed."""
    first, second = received("a.json"), received("b.json")
    with session_scope() as session:
        transfers.claim_batches(session, batch_size=10)
    with session_scope() as session:
        (batch,) = transfers.unlaunched_batches(session)
    delivery.start_run([first], "run-1")
    with session_scope() as session:
        transfers.fail_unlaunched(session, batch.key, "template broken")
    assert (state(first).state, state(second).state) == (TransferState.running, TransferState.failed)
    assert state(second).error == "template broken"

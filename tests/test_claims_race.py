"""Several dispatchers and runs on one store (issue 15 part 4): two real dispatcher claim loops in
two processes racing over a burst of transfers never put one transfer into two batches (so two
runs), and two runs starting one batch at once never both carry a transfer. On PostgreSQL (row
locks, SKIP LOCKED) and on SQLite (one writer; every claim's UPDATE re-checks the row)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from core import dataflows, partners, transfers
from core.db import session_scope
from core.endpoints import rows as endpoint_rows
from core.intake import record_receipt
from core.models import Transfer, TransferState, utcnow
from tests.migration_store import store  # noqa: F401  (the fixture: a store on each database)
from tests.tenancy import home_scope

ROOT = Path(__file__).resolve().parents[1]
RECEIPTS = 160  # two data flows take each: 320 transfers
CHUNK = 10


@pytest.fixture
def two_flows(store: None, tmp_path: Path) -> Iterator[int]:  # noqa: F811
    """acme's uploads carried by two data flows; the partner's id."""
    with session_scope() as session:
        partner = partners.add(session, home_scope(session), "acme", password="race-Passw0rd-1")
        for name in ("left", "right"):
            endpoint_rows.add(session, home_scope(session), name, "file", {"path": str(tmp_path / name)})
            dataflows.add(session, home_scope(session), f"acme-{name}", source="mailbox:acme", dest=name)
        assert partner.id is not None
        partner_id = partner.id
    yield partner_id


def receive(partner_id: int, first: int, count: int) -> None:
    with session_scope() as session:
        for i in range(first, first + count):
            record_receipt(
                session,
                account_id=1,
                partner_id=partner_id,
                partner_name="acme",
                folder="upload",
                name=f"po{i}.json",
                size=2,
                sha256="0" * 64,
                protocol="rest",
                storage_path=f".store/race/{i}",
            )


def racers(*commands: list[str], env: dict[str, str] | None = None) -> list[subprocess.Popen[str]]:
    """Start each command and wait until all say they are ready (the Python imports take seconds;
    the race is what happens after)."""
    processes = [racer(*command, env=env) for command in commands]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n", process.communicate(timeout=60)
    return processes


def racer(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.claims_racer", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines(process: subprocess.Popen[str]) -> list[dict[str, object]]:
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_two_dispatchers_never_batch_one_transfer_twice(two_flows: int, tmp_path: Path) -> None:
    go, stop = tmp_path / "go", tmp_path / "stop"
    # Small batches: many claims, many chances to collide.
    env = {"TRADELANE_DISPATCH_BATCH_SIZE": "7"}
    receive(two_flows, 0, RECEIPTS // 2)  # half the burst waits for both, which start at once
    dispatchers = racers(*[["dispatch", str(go), str(stop)]] * 2, env=env)
    go.touch()
    try:
        for first in range(RECEIPTS // 2, RECEIPTS, CHUNK):  # the rest arrives while both claim
            receive(two_flows, first, CHUNK)
    finally:
        stop.touch()
    outputs = [lines(process) for process in dispatchers]

    batch_of: dict[int, set[str]] = {}
    for output in outputs:
        for batch in output:
            for transfer_id in batch["ids"]:  # type: ignore[attr-defined]
                batch_of.setdefault(transfer_id, set()).add(str(batch["key"]))
    twice = {transfer_id: keys for transfer_id, keys in batch_of.items() if len(keys) > 1}
    assert twice == {}, f"{len(twice)} transfers were put into two batches (two runs)"
    with session_scope() as session:
        rows = session.exec(select(Transfer)).all()
    assert len(rows) == 2 * RECEIPTS
    # Every transfer was launched, once, by the run of the one batch it is in.
    assert {row.id for row in rows} == set(batch_of)
    assert all(row.flow_run_id == f"run-{row.batch_key}" for row in rows)
    assert all(batch_of[row.id] == {row.batch_key} for row in rows if row.id is not None)


def test_two_runs_starting_one_batch_never_both_carry_a_transfer(two_flows: int, tmp_path: Path) -> None:
    receive(two_flows, 0, 100)
    with session_scope() as session:
        transfers.claim_batches(session, batch_size=1000)
    with session_scope() as session:
        batches = transfers.unlaunched_batches(session)
    # Two runs of each data flow's batch (what a second dispatcher, or a second run of one batch,
    # would start) begin at the same moment.
    go = tmp_path / "go"
    # The second in the opposite order (a run's files are in id order, but nothing should depend
    # on it): each run locks the rows it takes in one order, so two never deadlock.
    commands = [
        ["start", f"run-{batch.key}-{n}", str(go), *map(str, ids)]
        for batch in batches
        for n, ids in ((1, batch.transfer_ids), (2, batch.transfer_ids[::-1]))
    ]
    runs = racers(*commands)
    go.touch()
    carried: dict[int, list[str]] = {}
    for output in map(lines, runs):
        for started in output:
            for transfer_id in started["jobs"]:  # type: ignore[attr-defined]
                carried.setdefault(transfer_id, []).append(str(started["run"]))
    assert {transfer_id: runs for transfer_id, runs in carried.items() if len(runs) > 1} == {}
    with session_scope() as session:
        rows = session.exec(select(Transfer)).all()
    assert len(carried) == len(rows) == 200
    assert all(row.state == TransferState.running and [row.flow_run_id] == carried[row.id] for row in rows)  # type: ignore[index]


def test_a_run_without_an_id_takes_nothing_another_run_holds(two_flows: int) -> None:
    """`delivery.start` (an in-process run, no Prefect id) takes only transfers no run holds."""
    from core import delivery

    receive(two_flows, 0, 1)
    with session_scope() as session:
        ids = [row.id for row in session.exec(select(Transfer)) if row.id is not None]
    taken = delivery.start_run(ids[:1], "run-1")
    assert [job.transfer_id for job in taken.jobs] == ids[:1]
    assert [job.transfer_id for job in delivery.start(ids)] == ids[1:]
    # Started again (a crash in between): it carries what it held, still nothing of run-1's.
    assert [job.transfer_id for job in delivery.start(ids)] == ids[1:]


def test_a_due_waiting_transfer_is_woken_into_one_batch(two_flows: int) -> None:
    """`wake_due` (run by every dispatcher's claim) skips rows another is waking; either way the
    woken transfer is batched once."""
    receive(two_flows, 0, 1)
    with session_scope() as session:
        rows = session.exec(select(Transfer)).all()
        for row in rows:
            row.state, row.next_attempt_at = TransferState.waiting, utcnow() - timedelta(seconds=1)
            session.add(row)
    with session_scope() as first, session_scope() as second:
        transfers.claim_batches(first, batch_size=10)
        first.commit()
        transfers.claim_batches(second, batch_size=10)
    with session_scope() as session:
        batches = transfers.unlaunched_batches(session)
    assert sorted(len(batch.transfer_ids) for batch in batches) == [1, 1]
    assert sorted(i for batch in batches for i in batch.transfer_ids) == sorted(r.id for r in rows if r.id)

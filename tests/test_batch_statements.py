"""A batch's bookkeeping costs a few store statements per run, not a few per file: starting a
run's batch, counting its tries and recording its outcomes read and write all its files at once.
Only the audit trail grows with the batch (one row per file, which SQLite inserts one at a time).
Counted, not timed: the number of statements is the same on a busy machine as on an idle one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from core import delivery
from core.db import get_engine
from core.delivery import Outcome
from core.endpoints.base import TransientError
from core.validators import ValidationError
from tests.test_delivery import home, receive  # noqa: F401  (the fixture)


@pytest.fixture
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    yield seen
    event.remove(Engine, "before_cursor_execute", count)


def carry_batch(ids: list[int], statements: list[str]) -> int:
    """Start, count and record a batch as one run does (all delivered but one failed and one
    rejected); the statements that took, audit rows left out."""
    get_engine()  # its first connection's settings are no statement of the batch
    statements.clear()
    jobs = delivery.start_run(ids, "run-1").jobs
    delivery.count_attempts([job.transfer_id for job in jobs])
    outcomes = [Outcome.delivered(job, delivery.push(job)) for job in jobs[2:]]
    outcomes += [
        Outcome(jobs[0], error=TransientError("away")),
        Outcome(jobs[1], error=ValidationError("json", "bad")),
    ]
    states = delivery.record_outcomes(outcomes)
    assert [state.value for state in states] == ["delivered"] * (len(ids) - 2) + ["failed", "rejected"]
    pushed = len(ids) - 2  # each push checks, file by file, that the run still holds it (the fence)
    return sum(1 for s in statements if not s.lstrip().upper().startswith("INSERT INTO AUDITEVENT")) - pushed


def test_a_batch_costs_the_same_statements_whatever_its_size(home: Path, statements: list[str]) -> None:  # noqa: F811
    small = carry_batch([receive(f"s{i}.json", b"{}") for i in range(3)], statements)
    large = carry_batch([receive(f"l{i}.json", b"{}") for i in range(12)], statements)
    assert large == small, (small, large)


def test_the_intake_reads_the_matching_data_flows_once(home: Path, statements: list[str]) -> None:  # noqa: F811
    receive("warm.json", b"{}")
    statements.clear()
    receive("po.json", b"{}")
    reads = [s for s in statements if "FROM dataflow" in " ".join(s.split())]
    assert len(reads) == 1, reads

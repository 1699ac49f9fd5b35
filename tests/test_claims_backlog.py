"""A batch grows with the backlog: while a data flow's last batch waits for its run to start (the
workers are busy), the files that arrive meanwhile are not claimed into a run of their own each
time the dispatcher wakes; they wait, and are claimed together once that run has taken its
files. A full batch is claimed at once. On PostgreSQL and SQLite."""

from __future__ import annotations

from core import delivery, transfers
from core.db import session_scope
from tests.migration_store import store  # noqa: F401  (the fixture: a store on each database)
from tests.test_claims_idempotent import out, received  # noqa: F401  (the fixture)


def claim(batch_size: int = 10, held: int | None = None) -> list[list[int]]:
    """Claim as the dispatcher does (`held`: how many files it says wait); the batches not launched yet."""
    with session_scope() as session:
        waiting = transfers.claim_batches(session, batch_size)
    assert held is None or waiting == held
    with session_scope() as session:
        return [batch.transfer_ids for batch in transfers.unlaunched_batches(session)]


def launch(batch: list[int], run: str) -> None:
    with session_scope() as session:
        key = transfers.unlaunched_batches(session)[0].key
        assert transfers.unlaunched_batches(session)[0].transfer_ids == batch
        transfers.mark_launched(session, key, run)


def test_files_arriving_while_a_run_waits_to_start_are_one_batch_after_it(out: None) -> None:  # noqa: F811
    first = received("a.json")
    assert claim() == [[first]]  # nothing waits: at once, however small
    launch([first], "run-1")
    later = [received(f"{name}.json") for name in "bcd"]
    assert claim(held=3) == []  # run-1 has not started: they wait for it
    delivery.start_run([first], "run-1")
    assert claim(held=0) == [later]  # one batch, not three


def test_a_full_batch_is_claimed_even_while_a_run_waits(out: None) -> None:  # noqa: F811
    first = received("a.json")
    assert claim(batch_size=2) == [[first]]
    launch([first], "run-1")
    later = [received(f"{name}.json") for name in "bcd"]
    assert claim(batch_size=2) == [later[:2]]  # a full run's worth; d waits
    launch(later[:2], "run-2")
    delivery.start_run([first], "run-1")
    assert claim(batch_size=2) == []  # run-2 has not started yet
    delivery.start_run(later[:2], "run-2")
    assert claim(batch_size=2) == [later[2:]]


def test_the_dispatcher_looks_again_soon_while_files_wait(out: None) -> None:  # noqa: F811
    """Nothing wakes the dispatcher when a run starts: while files wait for one, it looks again
    within HELD_RECHECK_SECONDS, however long its sweep interval (the scale-out roles run with
    an hour: their intake wakes them)."""
    from core.config import Settings
    from deployments.dispatcher import HELD_RECHECK_SECONDS, Dispatcher

    dispatcher = Dispatcher(Settings(sweep_interval_seconds=3600))
    first = received("a.json")
    (batch,) = dispatcher._claim()
    assert (batch.transfer_ids, dispatcher.next_wait()) == ([first], 3600)
    dispatcher._mark(batch.key, "run-1")
    received("b.json")
    assert dispatcher._claim() == []
    assert dispatcher.next_wait() == HELD_RECHECK_SECONDS
    delivery.start_run([first], "run-1")
    assert len(dispatcher._claim()) == 1 and dispatcher.next_wait() == 3600

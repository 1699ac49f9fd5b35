"""One writer at a time for one row, on SQLite and on PostgreSQL alike.

A check-then-write ("is there an open replay of this transfer? no: make one") is only safe if no
other process can do the same check in between. `lock(session, Model, id)` makes the session's
transaction the row's only writer until it commits: an UPDATE that sets a column to itself takes
PostgreSQL's row lock (a second locker waits for the first to commit, then reads what it wrote) and
SQLite's database write lock (SQLite has one writer; the transaction begins at this UPDATE, so what
it reads after is the newest data). `SELECT … FOR UPDATE` would do on PostgreSQL alone: SQLite
ignores it and would read without any lock.

`lock_all` locks many rows at once, in id order: two transactions that lock overlapping rows one by
one in different orders deadlock on PostgreSQL (one is aborted); in one order they only queue.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select


def lock(session: Session, model: Any, row_id: int, column: str = "updated_at") -> bool:
    """Lock the row of `model` with id `row_id` for this session's transaction (`column`, one the
    table has, is set to itself: nothing changes). False if there is no such row."""
    table_column = getattr(model, column)
    result = session.exec(
        update(model)
        .where(model.id == row_id)
        .values({table_column: table_column})
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def lock_all(session: Session, model: Any, row_ids: Collection[int]) -> None:
    """Lock the rows of `model` with these ids for this session's transaction, in id order, in one
    statement: PostgreSQL's `SELECT … ORDER BY id FOR UPDATE` takes its row locks in the order it
    returns the rows; SQLite's one write lock is taken by an UPDATE that changes nothing."""
    if not row_ids:
        return
    ids = sorted(set(row_ids))
    if session.get_bind().dialect.name == "postgresql":
        session.exec(select(model.id).where(model.id.in_(ids)).order_by(model.id).with_for_update()).all()
        return
    session.exec(
        update(model)
        .where(model.id.in_(ids))
        .values({model.updated_at: model.updated_at})
        .execution_options(synchronize_session=False)
    )

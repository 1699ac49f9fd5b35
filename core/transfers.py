"""Transfers: the run history, and the state changes the dispatcher and tasks make to it."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, update
from sqlmodel import Session, col, select

from core import audit, rowlock
from core.errors import Conflict, Invalid, NotFound
from core.models import (
    OPEN_STATES,
    Account,
    DataFlow,
    Endpoint,
    Partner,
    Receipt,
    Transfer,
    TransferState,
    utcnow,
)
from core.redact import Scrubber
from core.tenancy import Scope


class TransferError(Invalid):
    """A transfer cannot be found or replayed as asked (400, or its subclass's status)."""


class NoSuchTransfer(TransferError, NotFound):
    """No transfer of that id in the scope's account (404)."""

    status = NotFound.status


class CannotReplay(TransferError, Conflict):
    """The transfer's state, flow or connection forbids a replay now (409)."""

    status = Conflict.status


@dataclass(frozen=True)
class Batch:
    """Pending transfers of one data flow handed to one Prefect flow run."""

    key: str
    data_flow_id: int
    data_flow_name: str
    partner_name: str
    transfer_ids: list[int]
    first_file: str
    account_name: str = "home"  # the data flow's account (its deployment's name says it)
    # The data flow's template and params: which deployment runs the batch, with what parameters.
    template: str = "transfer"
    params: dict[str, Any] = field(default_factory=dict)
    # Set for B2B landing flows (core/b2b/landing.py): the run's name and tags, computed in core.
    run_name: str | None = None
    tags: list[str] | None = None


def new_pending(session: Session, receipt_id: int, data_flow_id: int) -> Transfer:
    """A pending transfer of a receipt by a data flow, added to the session; it belongs to the data
    flow's account (a B2B landing flow's is the receiver's), the account whose history shows it."""
    flow = session.get(DataFlow, data_flow_id)
    if flow is None:
        raise NoSuchTransfer(f"no data flow {data_flow_id} to carry receipt {receipt_id}")
    transfer = Transfer(**pending_row(receipt_id, data_flow_id, flow.account_id, utcnow()))
    session.add(transfer)
    return transfer


def pending_row(receipt_id: int, data_flow_id: int, account_id: int, now: datetime) -> dict[str, Any]:
    """A new pending transfer's row: `new_pending`'s object, and the intake's Core insert of each
    receipt's transfers (core/intake.py)."""
    return {
        "receipt_id": receipt_id,
        "data_flow_id": data_flow_id,
        "account_id": account_id,
        "state": TransferState.pending,
        "attempts": 0,
        "waits": 0,
        "created_at": now,
        "updated_at": now,
    }


def claim_batches(session: Session, batch_size: int) -> int:
    """Group pending, unbatched transfers into bounded batches, one data flow per batch; waiting
    transfers whose next attempt is due are pending again first, and are claimed with the rest.

    Safe with several dispatchers on one store. PostgreSQL: the rows are read `FOR UPDATE SKIP
    LOCKED`, so another dispatcher's claim in progress is skipped, not waited for, and never
    claimed twice. SQLite (which ignores FOR UPDATE): its one writer runs each UPDATE alone, and
    every UPDATE below re-checks that the row is still pending and unbatched, so a row another
    process batched between this read and this write keeps its batch. Both: a row is given a batch
    key once, by exactly one claim, until `requeue` or `wake_due` frees it again.

    A data flow whose last batch still waits for its run to take it (the workers are busy) gets no
    new batch smaller than `batch_size`: its files wait for that run to start and are claimed then,
    together, so a batch grows with the backlog and a burst costs fewer runs (each run costs a
    process and a series of Prefect API calls, whatever its size). A full batch is claimed at once.
    Returns how many files wait so: nothing wakes the dispatcher when a run starts, so it looks
    again soon while any do (deployments/dispatcher.py)."""
    wake_due(session)
    waiting = set(
        session.exec(
            select(Transfer.data_flow_id)
            .where(Transfer.state == TransferState.pending, col(Transfer.batch_key).is_not(None))
            .distinct()
        ).all()
    )
    # Only enabled flows' files: the dispatcher claims after every receipt, and a disabled flow's
    # backlog claimed then would be cut into a batch per wake (a run per few files once enabled).
    rows = session.exec(
        select(Transfer.id, Transfer.data_flow_id)
        .join(DataFlow, col(DataFlow.id) == Transfer.data_flow_id)
        .where(
            Transfer.state == TransferState.pending,
            col(Transfer.batch_key).is_(None),
            DataFlow.enabled == True,  # noqa: E712
        )
        .order_by(col(Transfer.id))
        .with_for_update(skip_locked=True, of=Transfer)
    ).all()
    batches: dict[str, list[int]] = {}
    open_batch: dict[int, str] = {}
    for transfer_id, data_flow_id in rows:
        assert transfer_id is not None
        key = open_batch.get(data_flow_id)
        if key is None or len(batches[key]) >= batch_size:
            key = open_batch[data_flow_id] = uuid.uuid4().hex
            batches[key] = []
        batches[key].append(transfer_id)
    held = 0
    for data_flow_id, key in open_batch.items():
        if data_flow_id in waiting and len(batches[key]) < batch_size:
            held += len(batches.pop(key))  # claimed once the batch before it has started
    now = utcnow()
    for key, ids in batches.items():
        session.exec(
            update(Transfer)
            .where(
                col(Transfer.id).in_(ids),
                col(Transfer.state) == TransferState.pending,
                col(Transfer.batch_key).is_(None),
            )
            .values(batch_key=key, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return held


def unlaunched_batches(session: Session) -> list[Batch]:
    """Batches claimed but not yet given a flow run (new ones, or left by a crash: same key again)."""
    rows = session.exec(
        select(Transfer, DataFlow, Receipt, Account.name)
        .join(DataFlow, col(DataFlow.id) == Transfer.data_flow_id)
        .join(Account, col(Account.id) == DataFlow.account_id)
        .join(Receipt, col(Receipt.id) == Transfer.receipt_id)
        .where(
            Transfer.state == TransferState.pending,
            col(Transfer.batch_key).is_not(None),
            col(Transfer.flow_run_id).is_(None),
            DataFlow.enabled == True,  # noqa: E712
        )
        .order_by(col(Transfer.id))
    ).all()
    batches: dict[str, Batch] = {}
    partner_names: dict[int | None, str] = {}
    firsts: dict[str, tuple[DataFlow, Receipt]] = {}
    for transfer, flow, receipt, account_name in rows:
        assert transfer.batch_key is not None and transfer.id is not None and flow.id is not None
        batch = batches.get(transfer.batch_key)
        if batch is None:
            if receipt.partner_id not in partner_names:
                partner = session.get(Partner, receipt.partner_id) if receipt.partner_id else None
                partner_names[receipt.partner_id] = partner.name if partner else "remote"
            batch = Batch(
                key=transfer.batch_key,
                data_flow_id=flow.id,
                data_flow_name=flow.name,
                partner_name=partner_names[receipt.partner_id],
                transfer_ids=[],
                first_file=receipt.name,
                account_name=account_name,
                template=flow.template,
                params=dict(flow.params or {}),
            )
            batches[transfer.batch_key] = batch
            firsts[transfer.batch_key] = (flow, receipt)
        batch.transfer_ids.append(transfer.id)
    return [_labelled(session, batch, *firsts[key]) for key, batch in batches.items()]


def _labelled(session: Session, batch: Batch, flow: DataFlow, first: Receipt) -> Batch:
    from core.b2b.landing import run_labels

    labels = run_labels(session, flow, first, len(batch.transfer_ids))
    return batch if labels is None else replace(batch, run_name=labels.name, tags=labels.tags)


def mark_launched(session: Session, batch_key: str, flow_run_id: str) -> int:
    """The batch's flow run was created: its transfers that no run holds yet are that run's. One
    conditional UPDATE: a second dispatcher marking the same batch (Prefect gave it the same run,
    by the batch's idempotency key) or a run that took its transfers already changes nothing.
    Returns how many were marked."""
    result = session.exec(
        update(Transfer)
        .where(
            col(Transfer.batch_key) == batch_key,
            col(Transfer.state) == TransferState.pending,
            col(Transfer.flow_run_id).is_(None),
        )
        .values(flow_run_id=flow_run_id, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def fail_unlaunched(session: Session, batch_key: str, reason: str) -> None:
    """A batch no run can carry (its data flow's template cannot be loaded): its transfers fail
    with the reason, so none stays pending for ever; `tradelane replay` carries them once it loads.
    Each row is locked and read again first: a run another dispatcher launched meanwhile keeps it."""
    ids = [i for i in session.exec(select(Transfer.id).where(Transfer.batch_key == batch_key)) if i]
    rowlock.lock_all(session, Transfer, ids)
    for transfer_id in ids:
        transfer = session.get(Transfer, transfer_id, populate_existing=True)
        if transfer is not None and transfer.state == TransferState.pending and transfer.flow_run_id is None:
            finish(session, transfer, TransferState.failed, error=reason)


def in_flight(session: Session) -> list[Transfer]:
    """Transfers handed to a flow run that has not finished them (a waiting one holds no run)."""
    return list(
        session.exec(
            select(Transfer).where(
                col(Transfer.state).in_([TransferState.pending, TransferState.running]),
                col(Transfer.flow_run_id).is_not(None),
            )
        )
    )


def requeue(session: Session, transfer_ids: list[int], reason: str, *, from_run: str | None = None) -> int:
    """Hand transfers whose run died back to the dispatcher, as a new batch. One conditional
    UPDATE: only transfers still open, and, given `from_run`, still held by that run, so a
    transfer another dispatcher requeued and launched again meanwhile is never taken from its new
    run (requeueing twice is once). On PostgreSQL a transfer whose row another transaction holds
    now is skipped: the next check finds it again. Returns how many were requeued."""
    if not transfer_ids:
        return 0
    held = [col(Transfer.flow_run_id) == from_run] if from_run is not None else []
    if session.get_bind().dialect.name == "postgresql":
        # A row locked now is a run recording its outcome or committing at its destination under
        # the push fence (core/delivery.py `still_carrying`): left for the next check rather than
        # waited for, which would hold up the dispatcher for the length of a send.
        free = session.exec(
            select(Transfer.id)
            .where(col(Transfer.id).in_(transfer_ids))
            .order_by(col(Transfer.id))
            .with_for_update(skip_locked=True)
        ).all()
        transfer_ids = [transfer_id for transfer_id in free if transfer_id is not None]
    result = session.exec(
        update(Transfer)
        .where(
            col(Transfer.id).in_(transfer_ids),
            col(Transfer.state).in_([TransferState.pending, TransferState.running]),
            *held,
        )
        .values(
            state=TransferState.pending, batch_key=None, flow_run_id=None, error=reason, updated_at=utcnow()
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


# The waiting state's backoff: the first wait is this long, each next one twice the last, up to
# the setting `wait_retry_max_seconds`, each scaled by a random factor in [1 - WAIT_JITTER, 1 + WAIT_JITTER]
# so the files of a destination that comes back do not all arrive in the same second.
WAIT_FIRST_SECONDS = 30.0
WAIT_JITTER = 0.1


def wait_delay(
    waits: int, max_seconds: float, spread: Callable[[float, float], float] = random.uniform
) -> float:
    """Seconds until the next try of a transfer that has waited `waits` times before:
    min(max, 30 s · 2^waits) ± 10 %."""
    doubling = WAIT_FIRST_SECONDS * 2 ** min(max(waits, 0), 32)  # 2^32 · 30 s is years: capped anyway
    return float(min(max_seconds, doubling) * spread(1 - WAIT_JITTER, 1 + WAIT_JITTER))


def wait(
    session: Session,
    transfer: Transfer,
    *,
    error: str,
    error_kind: str | None,
    max_seconds: float,
    now: datetime | None = None,
) -> datetime:
    """The destination cannot take the file now: the transfer waits (its file kept) until its
    next attempt, which the dispatcher makes (`wake_due`). Returns when that is."""
    now = now or utcnow()
    transfer.next_attempt_at = now + timedelta(seconds=wait_delay(transfer.waits, max_seconds))
    transfer.waits += 1
    transfer.state = TransferState.waiting
    transfer.error = error
    transfer.error_kind = error_kind
    transfer.updated_at = now
    session.add(transfer)
    flow = session.get(DataFlow, transfer.data_flow_id)
    receipt = session.get(Receipt, transfer.receipt_id)
    audit.record(
        session,
        "transfer.waiting",
        actor="flow",
        account_id=flow.account_id if flow else None,
        target=receipt.name if receipt else None,
        transfer=transfer.id,
        flow=flow.name if flow else None,
        error=error,
        next_attempt_at=transfer.next_attempt_at.isoformat(),
    )
    return transfer.next_attempt_at


def wake_due(session: Session, now: datetime | None = None) -> int:
    """Waiting transfers whose next attempt is due become pending, out of any batch or run, for
    the dispatcher to claim. One conditional UPDATE: a Retry of their run that took one meanwhile
    (`take`) keeps it."""
    now = now or utcnow()
    due = (col(Transfer.state) == TransferState.waiting, col(Transfer.next_attempt_at) <= now)
    # Read first: this runs at every sweep, and an UPDATE would take SQLite's write lock each time.
    if session.exec(select(Transfer.id).where(*due).limit(1)).first() is None:
        return 0
    # The rows another dispatcher is waking are skipped, not waited for (two multi-row UPDATEs
    # locking rows in different orders could deadlock on PostgreSQL); SQLite ignores FOR UPDATE.
    due_ids = select(Transfer.id).where(*due).with_for_update(skip_locked=True)
    result = session.exec(
        update(Transfer)
        .where(col(Transfer.id).in_(due_ids), *due)
        .values(
            state=TransferState.pending,
            batch_key=None,
            flow_run_id=None,
            next_attempt_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def wake_waiting(
    session: Session, *, data_flow_id: int | None = None, connection_id: int | None = None
) -> int:
    """Make the waiting transfers of a data flow, or of the data flows that carry a B2B connection's
    files, due at once (the destination answers again); the dispatcher's next sweep carries them.
    Returns how many."""
    if (data_flow_id is None) == (connection_id is None):
        raise ValueError("wake_waiting takes one of data_flow_id or connection_id")
    if data_flow_id is not None:
        flows = [data_flow_id]
    else:
        carriers = select(DataFlow.id).where(DataFlow.source_connection_id == connection_id)
        flows = [flow_id for flow_id in session.exec(carriers) if flow_id is not None]
    if not flows:
        return 0
    now = utcnow()
    result = session.exec(
        update(Transfer)
        .where(col(Transfer.state) == TransferState.waiting, col(Transfer.data_flow_id).in_(flows))
        .values(next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def take(session: Session, transfer_id: int, flow_run_id: str | None) -> bool:
    """The flow run `flow_run_id` carries this transfer, marked running, if no other run does: it
    is pending or running and given to this run or to none yet, or it is waiting (Prefect's Retry
    of a run that left files waiting carries them at once). One conditional UPDATE, so of two runs
    (or a run and the dispatcher waking the same waiting file) exactly one takes it: PostgreSQL
    makes the second UPDATE wait for the first's commit and re-check the row, SQLite runs one
    writer at a time. False: another run has it. `flow_run_id` None is a run without a Prefect id
    (tests, benches: `delivery.start`): it takes only what no run holds."""
    return transfer_id in take_all(session, [transfer_id], flow_run_id)


def take_all(session: Session, transfer_ids: list[int], flow_run_id: str | None) -> set[int]:
    """`take` for many transfers in one conditional UPDATE (a batch's run takes its files at
    once, not one statement each); the ids it took."""
    if not transfer_ids:
        return set()
    now = utcnow()
    held_here: ColumnElement[bool]
    if flow_run_id is None:
        held_here = col(Transfer.flow_run_id).is_(None)
        values: dict[str, Any] = {}
    else:
        held_here = or_(col(Transfer.flow_run_id).is_(None), col(Transfer.flow_run_id) == flow_run_id)
        values = {"flow_run_id": flow_run_id}
    open_here = and_(col(Transfer.state).in_([TransferState.pending, TransferState.running]), held_here)
    taken = session.exec(
        update(Transfer)
        .where(
            col(Transfer.id).in_(transfer_ids), or_(open_here, col(Transfer.state) == TransferState.waiting)
        )
        .values(state=TransferState.running, next_attempt_at=None, updated_at=now, **values)
        .returning(col(Transfer.id))
        .execution_options(synchronize_session=False)
    ).all()
    return {row[0] for row in taken}


def mark_running(session: Session, transfer: Transfer) -> None:
    transfer.state = TransferState.running
    transfer.updated_at = utcnow()
    session.add(transfer)


def count_attempts(session: Session, transfer_ids: list[int]) -> None:
    """One more try for each of these transfers, in one UPDATE."""
    if transfer_ids:
        session.exec(
            update(Transfer)
            .where(col(Transfer.id).in_(transfer_ids))
            .values(attempts=col(Transfer.attempts) + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def finish(
    session: Session,
    transfer: Transfer,
    state: TransferState,
    *,
    error: str | None = None,
    destination_uri: str | None = None,
    answer: dict[str, Any] | None = None,
) -> None:
    transfer.state = state
    transfer.error = error
    if destination_uri is not None:
        transfer.destination_uri = destination_uri
    transfer.destination_answer = answer
    transfer.finished_at = transfer.updated_at = utcnow()
    session.add(transfer)
    flow = session.get(DataFlow, transfer.data_flow_id)
    receipt = session.get(Receipt, transfer.receipt_id)
    audit.record(
        session,
        f"transfer.{state.value}",
        actor="flow",
        account_id=flow.account_id if flow else None,
        target=receipt.name if receipt else None,
        transfer=transfer.id,
        flow=flow.name if flow else None,
        error=error,
        destination=destination_uri,
    )


def get(session: Session, scope: Scope, transfer_id: int) -> Transfer | None:
    """The transfer if its data flow is the scope's account's (another account's: None, as if absent)."""
    return session.exec(
        select(Transfer).where(Transfer.id == transfer_id, Transfer.account_id == scope.account_id)
    ).first()


def replay(session: Session, scope: Scope, transfer_id: int) -> Transfer:
    """A new pending transfer of the same receipt by the same data flow."""
    scope.require_to("transfers.replay")
    return _replay(session, get(session, scope, transfer_id), transfer_id, scope.actor)


def _replay(session: Session, original: Transfer | None, transfer_id: int, actor: str) -> Transfer:
    """Idempotent while the file is still being carried: a replay of a transfer whose replay (or
    any newer transfer of its file by its data flow) is still open is that open transfer, not a
    second copy, so a request sent twice (a retry, two API processes, a double click) carries the
    file once. Replays of one transfer are serialised on its row (`rowlock`), so two at once
    cannot both find none open."""
    if original is None:
        raise NoSuchTransfer(f"no transfer {transfer_id}")
    assert original.id is not None
    rowlock.lock(session, Transfer, original.id)
    session.refresh(original)
    newer = _open_successor(session, original)
    if newer is not None:
        return newer
    if original.state == TransferState.waiting:
        return _due_now(session, original, actor)
    if original.state in (TransferState.pending, TransferState.running):
        raise CannotReplay(
            f"transfer {transfer_id} is still {original.state}; replay it once it has finished"
        )
    removed = session.get(DataFlow, original.data_flow_id)
    if removed is not None and removed.source_connection_id is not None:
        from core.models import Connection

        conn = session.get(Connection, removed.source_connection_id)
        if conn is not None and conn.state != "active":
            raise CannotReplay(f"connection {conn.receiver_name!r} was {conn.state}; nothing carries it")
    if removed is not None and removed.removed_at is not None:
        raise CannotReplay(
            f"transfer {transfer_id}'s data flow was removed ({removed.name}); nothing carries it"
        )
    copy = Transfer(
        receipt_id=original.receipt_id,
        data_flow_id=original.data_flow_id,
        account_id=original.account_id,
        replay_of=original.id,
    )
    session.add(copy)
    session.flush()
    flow = session.get(DataFlow, original.data_flow_id)
    audit.record(
        session,
        "transfer.replay",
        actor=actor,
        account_id=flow.account_id if flow else None,
        transfer=copy.id,
        replay_of=original.id,
    )
    return copy


def _open_successor(session: Session, transfer: Transfer) -> Transfer | None:
    """A newer transfer of the same file by the same data flow that is still open (a replay not
    carried yet), read afresh; None if there is none."""
    newer = session.exec(
        select(Transfer.id)
        .where(
            Transfer.receipt_id == transfer.receipt_id,
            Transfer.data_flow_id == transfer.data_flow_id,
            col(Transfer.id) > transfer.id,
            col(Transfer.state).in_(OPEN_STATES),
        )
        .order_by(col(Transfer.id).desc())
    ).first()
    return None if newer is None else session.get(Transfer, newer, populate_existing=True)


def _due_now(session: Session, transfer: Transfer, actor: str) -> Transfer:
    """`replay` of a waiting transfer: what an operator means is "try it now", not a second copy
    of a file that is still to be carried: its next attempt is now (the same transfer)."""
    assert transfer.id is not None
    now = utcnow()
    session.exec(
        update(Transfer)
        .where(col(Transfer.id) == transfer.id, col(Transfer.state) == TransferState.waiting)
        .values(next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(transfer)
    flow = session.get(DataFlow, transfer.data_flow_id)
    audit.record(
        session,
        "transfer.wake",
        actor=actor,
        account_id=flow.account_id if flow else None,
        transfer=transfer.id,
    )
    return transfer


def latest_of(session: Session, transfer: Transfer) -> Transfer:
    """The newest transfer of the same receipt by the same data flow: a replay supersedes the
    transfer it replays, so this one says what became of the file in that data flow."""
    latest = session.exec(
        select(Transfer)
        .where(Transfer.receipt_id == transfer.receipt_id, Transfer.data_flow_id == transfer.data_flow_id)
        .order_by(col(Transfer.id).desc())
    ).first()
    assert latest is not None  # `transfer` itself is one
    return latest


def carry_again(session: Session, failed: Transfer, flow_run_id: str) -> Transfer | None:
    """A replay of `failed` that the flow run `flow_run_id` carries itself, at once: what pressing
    Retry on a failed run in the Prefect UI does (the run is started again with its parameters).
    None: another run carries the file now (an open replay it took)."""
    assert failed.id is not None
    copy = _replay(session, failed, failed.id, actor=f"prefect-retry:{flow_run_id}")
    if copy.flow_run_id is None:
        copy.batch_key = failed.batch_key
        session.add(copy)
    session.flush()
    assert copy.id is not None
    if not take(session, copy.id, flow_run_id):
        return None
    session.refresh(copy)
    return copy


@dataclass(frozen=True)
class TransferView:
    id: int
    file: str
    flow: str
    partner: str
    dest: str  # the destination endpoint's name ("mailbox:acme" for a partner's mailbox)
    state: str
    attempts: int
    size: int
    sha256: str
    received_at: datetime
    finished_at: datetime | None
    flow_run_id: str | None
    destination_uri: str | None
    destination_answer: dict[str, Any] | None
    # The files the template's steps made, in order ({step, name, size, sha256}); [] for none.
    derived: list[dict[str, Any]]
    # The EDI envelope values edi-route routed on; None for other templates.
    envelope: dict[str, Any] | None
    error: str | None
    replay_of: int | None
    next_attempt_at: datetime | None = None  # when a waiting transfer is tried again


def recent(
    session: Session,
    scope: Scope,
    limit: int = 50,
    state: str | None = None,
    flow: str | None = None,
    *,
    partner: str | None = None,
    dest: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[TransferView]:
    """The newest transfers first, filtered by state, data flow, sending partner, destination
    endpoint and the time their file was received (`since` inclusive, `until` exclusive)."""
    wanted = TransferFilter(state=state, flow=flow, partner=partner, dest=dest, since=since, until=until)
    return _views(session, scope, wanted, None, limit)


@dataclass(frozen=True)
class TransferFilter:
    """Which transfers a history page shows (every field optional; `since` inclusive, `until`
    exclusive, on the time the file was received; `run` a Prefect flow run id)."""

    state: str | None = None
    flow: str | None = None
    partner: str | None = None
    dest: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    run: str | None = None


@dataclass(frozen=True)
class Page:
    """One page of the history, newest first; `next_before` fetches the older page (None: no more)."""

    rows: list[TransferView]
    next_before: int | None


MAX_PAGE = 200


def page(
    session: Session,
    scope: Scope,
    wanted: TransferFilter | None = None,
    *,
    before: int | None = None,
    limit: int = 50,
    scrubber: Scrubber,
) -> Page:
    """A page of the history by keyset (transfers older than id `before`), so a page costs the same
    however deep it is and new transfers never shift it; no count is made. Errors and answers
    are shown through `scrubber` (`core.endpoints.rows.scrubber(session, scope)`)."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"a page holds 1 to {MAX_PAGE} transfers, not {limit}")
    if before is not None and before < 1:
        raise Invalid(f"before must be a transfer id (1 or more), not {before}")
    if wanted and wanted.since and wanted.until and wanted.since >= wanted.until:
        raise Invalid("since must be earlier than until")
    views = _views(session, scope, wanted or TransferFilter(), before, limit + 1)
    more = len(views) > limit
    rows = scrubbed(views[:limit], scrubber)
    return Page(rows, rows[-1].id if more else None)


def _views(
    session: Session, scope: Scope, wanted: TransferFilter, before: int | None, limit: int
) -> list[TransferView]:
    query = (
        select(Transfer, Receipt, DataFlow, Endpoint)
        .join(Receipt, col(Receipt.id) == Transfer.receipt_id)
        .join(DataFlow, col(DataFlow.id) == Transfer.data_flow_id)
        .join(Endpoint, col(Endpoint.id) == DataFlow.dest_endpoint_id)
        .where(Transfer.account_id == scope.account_id)
        .order_by(col(Transfer.id).desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(col(Transfer.id) < before)
    if wanted.state:
        query = query.where(Transfer.state == wanted.state)
    if wanted.flow:
        query = query.where(DataFlow.name == wanted.flow)
    if wanted.dest:
        query = query.where(Endpoint.name == wanted.dest)
    if wanted.run:
        query = query.where(Transfer.flow_run_id == wanted.run)
    if wanted.since is not None:
        query = query.where(col(Receipt.received_at) >= wanted.since)
    if wanted.until is not None:
        query = query.where(col(Receipt.received_at) < wanted.until)
    if wanted.partner:
        query = query.join(Partner, col(Partner.id) == Receipt.partner_id).where(
            Partner.name == wanted.partner
        )
    names = {
        p.id: p.name for p in session.exec(select(Partner).where(Partner.account_id == scope.account_id))
    }
    views = []
    for transfer, receipt, data_flow, endpoint in session.exec(query):
        assert transfer.id is not None
        views.append(
            TransferView(
                id=transfer.id,
                file=receipt.name,
                flow=data_flow.name,
                partner=names.get(receipt.partner_id, "-"),
                dest=endpoint.name,
                state=transfer.state,
                attempts=transfer.attempts,
                size=receipt.size,
                sha256=receipt.sha256,
                received_at=receipt.received_at,
                finished_at=transfer.finished_at,
                flow_run_id=transfer.flow_run_id,
                destination_uri=transfer.destination_uri,
                destination_answer=transfer.destination_answer,
                derived=list(transfer.derived or []),
                envelope=transfer.envelope,
                error=transfer.error,
                replay_of=transfer.replay_of,
                next_attempt_at=transfer.next_attempt_at,
            )
        )
    return views


def scrubbed(views: list[TransferView], scrubber: Scrubber) -> list[TransferView]:
    """The views with every secret `scrubber` knows hidden in errors and answers: they were
    recorded by whichever process carried the file, maybe before a value was known as secret."""
    return [
        replace(
            view,
            error=scrubber.text(view.error) if view.error else view.error,
            destination_answer=scrubber.data(view.destination_answer),
        )
        for view in views
    ]


def counts(session: Session, scope: Scope) -> dict[str, int]:
    rows = session.exec(
        select(Transfer.state, func.count())
        .where(Transfer.account_id == scope.account_id)
        .group_by(Transfer.state)
    ).all()
    return {state: n for state, n in rows}

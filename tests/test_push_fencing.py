"""Push fencing (issue 15): a run cut off from Prefect but still reaching the store, whose files the
dispatcher gave to another run meanwhile, writes nothing at the destination after it lost them.

The destination is a real pyftpdlib server on 127.0.0.1 that counts every rename onto a final name
(one per completed write) and, once, runs a step of the test when the first bytes of an upload
reach it: the transfer is taken from the run mid-push there, while that run's client is still
sending (the upload is larger than what loopback socket buffers hold, so the client cannot have
finished sending, nor checked anything, before the server reads on). On SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from core import dataflows, delivery, partners, transfers
from core.db import session_scope
from core.delivery import Outcome, TransferTaken
from core.endpoints import rows as endpoint_rows
from core.endpoints.tempname import is_temp_name
from core.models import Transfer, TransferState
from tasks.retry import is_retryable
from tests.endpoint_servers.ftpd import serve_handler
from tests.migration_store import store  # noqa: F401  (the fixture: a store on each database)
from tests.tenancy import home_scope
from tradelane.testing import receipt_from_bytes

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # asyncore, as tests/endpoint_servers/ftpd.py
    from pyftpdlib.handlers import DTPHandler, FTPHandler

FTP_USER, FTP_PASSWORD = "fenced", "fenced-s3cret-pw"
# Far more than loopback's socket buffers hold (send and receive together, a few MiB): the client
# is still sending when the server, paused at the first bytes, reads on.
BIG = 24 * 1024 * 1024


@dataclass
class Receiver:
    home: Path
    port: int = 0
    renames: Counter[str] = field(default_factory=Counter)
    # Run once, in the server's thread (which reads nothing meanwhile), when an upload's first
    # bytes arrive.
    at_first_bytes: Callable[[], None] | None = None
    failure: BaseException | None = None

    def visible(self) -> dict[str, int]:
        return {p.name: p.stat().st_size for p in self.home.iterdir() if not is_temp_name(p.name)}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    home = tmp_path / "ftp-home"
    home.mkdir()
    state = Receiver(home)

    class Pausing(DTPHandler):  # type: ignore[misc]
        def handle_read(self) -> None:
            step, state.at_first_bytes = state.at_first_bytes, None
            if step is not None:
                try:
                    step()
                except BaseException as exc:  # said by the test, not lost in the server's loop
                    state.failure = exc
            super().handle_read()

        handle_read_event = handle_read  # (pyftpdlib's loop calls this name)

    class Counting(FTPHandler):  # type: ignore[misc]
        dtp_handler = Pausing

        def ftp_RNTO(self, path: str) -> Any:
            answer = super().ftp_RNTO(path)
            state.renames[os.path.basename(path)] += 1
            return answer

    with serve_handler(Counting, home, FTP_USER, FTP_PASSWORD) as state.port:
        yield state


@pytest.fixture
def flow(store: None, receiver: Receiver) -> None:  # noqa: F811
    """acme's uploads carried to the FTP server (on_conflict overwrite: a second write of the
    same bytes would leave no second file, only a second rename)."""
    with session_scope() as session:
        scope = home_scope(session)
        partners.add(session, scope, "acme", password="fence-Passw0rd-1")
        endpoint_rows.add(
            session,
            scope,
            "ftp-out",
            "ftp",
            {"host": "127.0.0.1", "port": receiver.port, "user": FTP_USER, "tls": "none"},
            {"password": FTP_PASSWORD},
        )
        dataflows.add(session, scope, "acme-ftp", source="mailbox:acme", dest="ftp-out")


def received(name: str, body: bytes) -> int:
    receipt = receipt_from_bytes("acme", name, body)
    with session_scope() as session:
        transfer = session.exec(select(Transfer).where(Transfer.receipt_id == receipt.id)).one()
        assert transfer.id is not None
        return transfer.id


def taken_by(transfer_id: int, run: str, from_run: str) -> Callable[[], None]:
    """What the dispatcher and a second run do when `from_run` looks dead: requeue, then take."""

    def take() -> None:
        with session_scope() as session:
            assert (
                transfers.requeue(session, [transfer_id], f"{from_run} looked dead", from_run=from_run) == 1
            )
        assert [job.transfer_id for job in delivery.start_run([transfer_id], run).jobs] == [transfer_id]

    return take


def row(transfer_id: int) -> Transfer:
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None
        return transfer


def test_a_run_that_lost_its_transfer_mid_push_writes_nothing(flow: None, receiver: Receiver) -> None:
    body = os.urandom(BIG)
    transfer_id = received("big.bin", body)
    (slow,) = delivery.start_run([transfer_id], "run-1").jobs
    receiver.at_first_bytes = taken_by(transfer_id, "run-2", from_run="run-1")

    with pytest.raises(TransferTaken, match="run run-1 no longer holds transfer") as lost:
        delivery.push(slow)
    assert receiver.failure is None and receiver.at_first_bytes is None  # taken mid-push, as meant
    assert "run run-2 has it" in str(lost.value)
    assert not is_retryable(lost.value)  # the run does not try again what is no longer its own
    assert receiver.renames == Counter() and receiver.visible() == {}  # aborted: nothing visible

    # run-1's outcome writes nothing over run-2's; run-2 carries the file, once.
    [note] = delivery.record([Outcome(slow, error=lost.value)])
    assert note.state == TransferState.running and "run run-2" in (note.error or "")
    (job,) = delivery.start_run([transfer_id], "run-2").jobs
    assert delivery.record_outcomes([Outcome.delivered(job, delivery.push(job))]) == [TransferState.delivered]
    assert receiver.renames == Counter({"big.bin": 1})
    assert receiver.visible() == {"big.bin": BIG}
    assert (receiver.home / "big.bin").read_bytes() == body
    assert (row(transfer_id).state, row(transfer_id).flow_run_id) == (TransferState.delivered, "run-2")


def test_a_run_whose_transfer_was_requeued_but_not_yet_taken_writes_nothing(
    flow: None, receiver: Receiver
) -> None:
    transfer_id = received("po.bin", os.urandom(BIG))

    def requeue_only() -> None:
        with session_scope() as session:
            transfers.requeue(session, [transfer_id], "run-1 looked dead", from_run="run-1")

    (slow,) = delivery.start_run([transfer_id], "run-1").jobs
    receiver.at_first_bytes = requeue_only
    with pytest.raises(TransferTaken, match="the dispatcher has it, pending"):
        delivery.push(slow)
    assert receiver.failure is None and receiver.renames == Counter() and receiver.visible() == {}


def test_the_run_that_holds_its_transfer_writes_it(flow: None, receiver: Receiver) -> None:
    transfer_id = received("ok.bin", b"small and still ours")
    (job,) = delivery.start_run([transfer_id], "run-1").jobs
    delivered = delivery.push(job)
    assert delivered.uri.endswith("/ok.bin")
    assert receiver.renames == Counter({"ok.bin": 1})


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_on_postgresql_a_requeue_leaves_a_commit_under_way_to_finish(flow: None) -> None:
    """The fence holds the transfer's row through the commit: the dispatcher's requeue, arriving
    between the check and the commit, skips it (at once: the dispatcher is not held up for the
    length of a send) rather than hand the file on; once the run recorded it, there is nothing to
    requeue."""
    transfer_id = received("held.bin", b"the commit is under way")
    (job,) = delivery.start_run([transfer_id], "run-1").jobs
    with delivery.still_carrying(job):
        done = threading.Event()
        requeued: list[int] = []

        def requeue() -> None:  # the dispatcher, in another connection
            with session_scope() as session:
                requeued.append(
                    transfers.requeue(session, [transfer_id], "run-1 looked dead", from_run="run-1")
                )
            done.set()

        dispatcher = threading.Thread(target=requeue)
        dispatcher.start()
        assert done.wait(timeout=30)  # not blocked behind the fence
        dispatcher.join()
        assert requeued == [0]
    assert delivery.record_outcomes([Outcome.delivered(job, delivery.Delivered("ftp://x/held.bin"))]) == [
        TransferState.delivered
    ]
    with session_scope() as session:
        assert transfers.requeue(session, [transfer_id], "run-1 looked dead", from_run="run-1") == 0
    assert (row(transfer_id).state, row(transfer_id).flow_run_id) == (TransferState.delivered, "run-1")

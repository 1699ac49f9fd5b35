"""The upload row's completion is a store-level claim (core/web_uploads.py `finish`, run in the
receipt's transaction): of two completions of one tus upload, from two requests, threads or
`serve api` processes on one store, exactly one receipt commits. On SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import Session, col, select

from core import partners, web_uploads
from core.db import session_scope
from core.intake import record_receipt
from core.login import LoginUser
from core.models import Receipt, WebUpload, WebUploadState
from tests.migration_store import store  # noqa: F401  (the fixture: a store on each database)
from tests.tenancy import home_scope


@pytest.fixture
def upload(store: None) -> Iterator[tuple[int, str]]:  # noqa: F811
    """acme's open browser upload of upload/po.json: (partner id, upload id)."""
    with session_scope() as session:
        partner = partners.add(session, home_scope(session), "acme", password="race-Passw0rd-1")
        assert partner.id is not None
        login = LoginUser(partner_id=partner.id, account_id=partner.account_id, name="acme")
        row, _ = web_uploads.create(session, login, "upload", "po.json", 2)
        ids = (partner.id, row.id)
    yield ids


def _take_in(session: Session, partner_id: int, upload_id: str) -> int:
    """What intake's transaction does for a completing tus upload: the receipt, then the row's done."""
    receipt = record_receipt(
        session,
        account_id=1,
        partner_id=partner_id,
        partner_name="acme",
        folder="upload",
        name="po.json",
        size=2,
        sha256="0" * 64,
        protocol="portal",
        storage_path=".store/race/po",
        data_flow_ids=[],
    )
    assert receipt.id is not None
    web_uploads.finish(session, upload_id, receipt.id)
    return receipt.id


def _receipts(partner_id: int) -> list[int]:
    with session_scope() as session:
        found = session.exec(select(Receipt.id).where(col(Receipt.partner_id) == partner_id))
        return [receipt_id for receipt_id in found if receipt_id is not None]


def _row(upload_id: str) -> WebUpload:
    with session_scope() as session:
        row = session.get(WebUpload, upload_id)
        assert row is not None
        session.expunge(row)
        return row


def test_a_completion_that_saw_the_upload_open_takes_nothing_in_once_another_did(
    upload: tuple[int, str],
) -> None:
    partner_id, upload_id = upload
    # The second completion (another process) read the row as open before the first committed:
    # its receipt rolls back with its row update, whatever it read.
    winner = 0
    with pytest.raises(web_uploads.NotOpen), session_scope() as late:
        seen = late.get(WebUpload, upload_id)
        assert seen is not None and seen.state == WebUploadState.open
        with session_scope() as first:
            winner = _take_in(first, partner_id, upload_id)
        _take_in(late, partner_id, upload_id)
    assert _receipts(partner_id) == [winner]
    row = _row(upload_id)
    assert row.state == WebUploadState.done and row.receipt_id == winner


def test_two_completions_racing_from_two_threads_make_one_receipt(upload: tuple[int, str]) -> None:
    partner_id, upload_id = upload
    start = threading.Barrier(2)

    def complete() -> int | None:
        start.wait(15)
        try:
            with session_scope() as session:
                return _take_in(session, partner_id, upload_id)
        except web_uploads.NotOpen:
            return None

    with ThreadPoolExecutor(2) as pool:
        results = [future.result(60) for future in [pool.submit(complete), pool.submit(complete)]]
    winners = [receipt_id for receipt_id in results if receipt_id is not None]
    assert len(winners) == 1, results
    assert _receipts(partner_id) == winners
    assert _row(upload_id).receipt_id == winners[0]


def test_a_cancelled_upload_is_not_taken_in(upload: tuple[int, str]) -> None:
    partner_id, upload_id = upload
    with session_scope() as session:
        web_uploads.cancel(session, upload_id)
    with pytest.raises(web_uploads.NotOpen), session_scope() as session:
        _take_in(session, partner_id, upload_id)
    assert _receipts(partner_id) == []
    assert _row(upload_id).state == WebUploadState.cancelled


def test_a_cancel_that_read_the_upload_open_leaves_it_done_once_taken_in(upload: tuple[int, str]) -> None:
    partner_id, upload_id = upload
    with session_scope() as cancelling:  # another process's DELETE, which read the row as open
        seen = cancelling.get(WebUpload, upload_id)
        assert seen is not None and seen.state == WebUploadState.open
        with session_scope() as first:
            winner = _take_in(first, partner_id, upload_id)
        web_uploads.cancel(cancelling, upload_id)
    row = _row(upload_id)
    assert row.state == WebUploadState.done and row.receipt_id == winner

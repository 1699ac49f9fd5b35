"""The Prefect-free steps of a transfer run over a batch: start, push, record, archive, and a crash
between archiving a delivered upload and committing its state."""

from __future__ import annotations

import io
import os
from pathlib import Path

from sqlmodel import select

from core import dataflows, delivery, partners
from core.config import get_settings
from core.db import init_db, session_scope
from core.delivery import Outcome
from core.endpoints import store as endpoint_store
from core.intake import receive_stream
from core.models import Receipt, Transfer, TransferState
from tests.isolation import isolated_home


def _receive(tmp_path: Path, names: list[str]) -> list[int]:
    with session_scope() as session:
        partners.add(session, "acme", password="delivery-Pass-1")
        endpoint_store.add(session, "out", "file", {"path": str(tmp_path / "out")})
        dataflows.add(session, "acme-out", source="mailbox:acme", dest="out")
    with session_scope() as session:
        partner = partners.require(session, "acme")
    for name in names:
        receive_stream(partner, "upload", name, io.BytesIO(name.encode() * 100), protocol="rest")
    with session_scope() as session:
        return [t.id for t in session.exec(select(Transfer).order_by(Transfer.id)).all() if t.id]


def test_a_batch_is_pushed_recorded_and_archived(tmp_path: Path) -> None:
    with isolated_home(tmp_path):
        init_db()
        ids = _receive(tmp_path, ["a.json", "b.json", "c.json"])
        jobs = delivery.start(ids)
        assert [j.receipt.name for j in jobs] == ["a.json", "b.json", "c.json"]
        delivery.count_attempts(ids)
        outcomes = [Outcome.delivered(job, delivery.push(job)) for job in jobs]
        assert delivery.record_outcomes(outcomes) == [TransferState.delivered] * 3
        for name in ("a.json", "b.json", "c.json"):
            assert (tmp_path / "out" / name).read_bytes() == name.encode() * 100
        with session_scope() as session:
            receipts = session.exec(select(Receipt)).all()
            assert all(r.storage_path.startswith(delivery.ARCHIVE_DIR) for r in receipts)
            rows = session.exec(select(Transfer)).all()
            assert all(r.attempts == 1 and r.state == TransferState.delivered for r in rows)
        # A batch run again (after a crash) carries only what is left: nothing.
        assert delivery.start(ids) == []


def test_bytes_moved_to_the_archive_by_a_killed_run_are_found_again(tmp_path: Path) -> None:
    """SIGKILL after the archive move but before the commit: the store names the upload folder."""
    with isolated_home(tmp_path):
        init_db()
        ids = _receive(tmp_path, ["po.json"])
        (job,) = delivery.start(ids)
        root = get_settings().mailbox_root
        archived = root / delivery.archive_path(job.receipt)
        archived.parent.mkdir(parents=True)
        os.replace(root / job.receipt.storage_path, archived)  # what the killed run had done
        (again,) = delivery.start(ids)
        assert again.source_path == delivery.archive_path(job.receipt)
        delivery.push(again)
        assert (tmp_path / "out" / "po.json").read_bytes() == b"po.json" * 100

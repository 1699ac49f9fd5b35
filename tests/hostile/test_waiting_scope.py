"""The waiting state from another account, and bad settings: another account cannot see, wake or
replay a waiting transfer by id, and a wait setting that is not a positive number is refused."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlmodel import select
from typer.testing import CliRunner

from cli.main import app
from core import accounts, dataflows, delivery, partners
from core.config import Settings
from core.db import init_db, session_scope
from core.delivery import Outcome
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import Deferrable
from core.intake import receive_stream
from core.models import Transfer
from tests.isolation import isolated_home
from tests.tenancy import home_scope

runner = CliRunner()


@pytest.fixture
def waiting_id(tmp_path: Path) -> Iterator[int]:
    """A transfer of account home that waits; account globex exists beside it."""
    with isolated_home(tmp_path / "home"):
        init_db()
        with session_scope() as session:
            partners.add(session, home_scope(session), "acme", password="waiting-Pass-41")
            endpoint_rows.add(session, home_scope(session), "out", "file", {"path": str(tmp_path / "out")})
            dataflows.add(session, home_scope(session), "acme-out", source="mailbox:acme", dest="out")
            accounts.add(session, "globex", email="admin@globex.example", password="globex-Owner-Pass-41")
            partner = partners.require(session, home_scope(session), "acme")
        receipt = receive_stream(partner, "upload", "po.json", io.BytesIO(b"{}"), protocol="rest")
        with session_scope() as session:
            transfer_id = session.exec(select(Transfer.id).where(Transfer.receipt_id == receipt.id)).one()
            assert transfer_id is not None
        (job,) = delivery.start([transfer_id])
        delivery.record([Outcome(job, error=Deferrable("away"))])
        yield transfer_id


def _next_try(transfer_id: int) -> object:
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None and transfer.state == "waiting"
        return transfer.next_attempt_at


def test_another_account_can_neither_see_nor_wake_a_waiting_transfer(waiting_id: int) -> None:
    before = _next_try(waiting_id)
    refused = runner.invoke(app, ["replay", str(waiting_id), "--account", "globex"])
    assert refused.exit_code == 1 and f"no transfer {waiting_id}" in refused.output
    assert _next_try(waiting_id) == before
    listed = runner.invoke(app, ["transfers", "--state", "waiting", "--json", "--account", "globex"])
    assert listed.exit_code == 0 and listed.output.strip() == "[]"


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_wait_setting_that_is_not_a_positive_number_is_refused(value: str) -> None:
    os.environ["TRADELANE_WAIT_RETRY_MAX_SECONDS"] = value
    try:
        with pytest.raises(ValidationError, match="wait_retry_max_seconds"):
            Settings()
    finally:
        del os.environ["TRADELANE_WAIT_RETRY_MAX_SECONDS"]

"""A tradelane home with partners, file endpoints and data flows, and the built-in templates run
in-process against a real Prefect test server (`prefect_test_harness`)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.utilities.asyncutils import run_coro_as_sync
from sqlmodel import select

from core import dataflows, partners, transfers
from core.db import session_scope
from core.derived import staging_root
from core.endpoints import rows as endpoint_rows
from core.intake import receive_stream
from core.models import Transfer
from core.transfers import TransferView
from tests.system import IDLE_AFTER_LAST_USE
from tests.tenancy import home_scope

Flow = Callable[..., Awaitable[Any]]


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect test server for every module that runs flows in-process (tests/conftest.py
    shares this definition, so tests/derived and tests/hostile do not each start one), stopped after
    the last test that uses it."""
    from prefect.testing.utilities import prefect_test_harness

    # Flows run in-process here; the worker's fork server installs the same in every run it forks.
    import deployments.prefect_result_store  # noqa: F401  (installed on import)

    # As `up` runs it (cli/supervisor.py): the telemetry write at boot races the server's migrations.
    saved = os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    try:
        with contextlib.ExitStack() as running:
            running.enter_context(prefect_test_harness(server_startup_timeout=120))
            IDLE_AFTER_LAST_USE["prefect_server"] = running.close
            yield
    finally:
        IDLE_AFTER_LAST_USE.pop("prefect_server", None)
        if saved is None:
            os.environ.pop("PREFECT_SERVER_ANALYTICS_ENABLED", None)
        else:
            os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = saved


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def add_partner(name: str) -> None:
    with session_scope() as session:
        partners.add(session, home_scope(session), name, password="derived-Pass-12345x")


def add_dir_endpoint(name: str, path: Path) -> None:
    with session_scope() as session:
        endpoint_rows.add(session, home_scope(session), name, "file", {"path": str(path)})


def add_flow(name: str, partner: str, dest: str, **kwargs: Any) -> int:
    with session_scope() as session:
        flow = dataflows.add(
            session, home_scope(session), name, source=f"mailbox:{partner}", dest=dest, **kwargs
        )
        assert flow.id is not None
        return flow.id


def receive(partner: str, name: str, data: bytes, flow_id: int) -> int:
    """Take `data` in as the partner's upload; the id of its transfer by data flow `flow_id`."""
    with session_scope() as session:
        row = partners.require(session, home_scope(session), partner)
    receipt = receive_stream(row, "upload", name, io.BytesIO(data), protocol="rest")
    with session_scope() as session:
        transfer = session.exec(
            select(Transfer).where(Transfer.receipt_id == receipt.id, Transfer.data_flow_id == flow_id)
        ).one()
        assert transfer.id is not None
        return transfer.id


def run(flow: Flow, flow_id: int, transfer_ids: list[int], params: dict[str, Any]) -> Any:
    """Run the template's flow in this process on the test Prefect server; its final state."""
    # On Prefect's own long-lived loop: a loop per run would leave its API connections unclosed.
    return run_coro_as_sync(flow(flow_id, transfer_ids, params=params, return_state=True))


def view(transfer_id: int) -> TransferView:
    with session_scope() as session:
        rows = transfers.recent(session, home_scope(session), limit=1000)
    return next(row for row in rows if row.id == transfer_id)


def staged_files() -> list[Path]:
    """Every file left in the derived staging area (none once transfers are final)."""
    root = staging_root()
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture(scope="module")
def derived_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tradelane home of the module's own (database, mailboxes), with partner "acme"."""
    from core import db
    from tests.isolation import isolated_home

    with isolated_home(tmp_path_factory.mktemp("tradelane-derived")) as home:
        db.init_db()
        add_partner("acme")
        yield home


def table_rows(flow_name: str) -> list[dict[str, Any]]:
    """The rows of the newest table artifact the data flow's runs published (read over the REST API:
    this Prefect client's read_artifacts sends nulls the server refuses)."""
    import json

    import httpx
    from prefect.settings import PREFECT_API_URL

    key = "files-" + "".join(c if c.isalnum() else "-" for c in flow_name.lower()).strip("-")
    body = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}
    with httpx.Client() as client:
        response = client.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body)
    response.raise_for_status()
    data = response.json()[0]["data"]
    rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
    return rows

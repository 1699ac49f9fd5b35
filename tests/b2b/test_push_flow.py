"""The sending instance's side of a cross-instance connection, in one home: `push_flow.create_flow`
makes the hidden `peer:<id>` endpoint and the read-only data flow `b2b:<id>` (DESIGN-12 §5.5); the
`peer` type is tradelane's own: no command or file makes one, and it only carries its own
account's connection."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from cli.main import app
from core import accounts, db
from core.b2b import keys, landing
from core.db import session_scope
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import ConfigError
from core.models import Connection, DataFlow, Receipt
from core.models import Endpoint as EndpointRow
from tests.b2b import peer_pair
from tests.isolation import isolated_home

runner = CliRunner()


@pytest.fixture
def sending(tmp_path: Path) -> Iterator[int]:
    """acme sends to another instance through connection `to-globex` (active): its id."""
    with isolated_home(tmp_path / "home"):
        db.init_db()
        with session_scope() as session:
            accounts.add(session, "acme", email="admin@acme.example", password="Acme-Pass-2024x")
            accounts.add(session, "other", email="admin@other.example", password="Other-Pass-2024x")
        ours = peer_pair.sender_begin("acme", "to-globex", "orders", "http://127.0.0.1:9")
        minted = keys.mint()
        theirs = peer_pair.Side(0, str(uuid.uuid4()), minted.key_id, minted.public_key)
        peer_pair.sender_activate(ours.connection_id, theirs, "globex", "from-acme")
        yield ours.connection_id


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_the_push_flow_carries_the_connection_to_its_hidden_peer_endpoint(sending: int) -> None:
    with session_scope() as session:
        conn = session.get(Connection, sending)
        assert conn is not None and conn.data_flow_id is not None
        flow = session.get(DataFlow, conn.data_flow_id)
        assert flow is not None and flow.name == f"b2b:{sending}" and flow.retries == 2
        assert flow.source_connection_id == sending and flow.account_id == conn.sender_account_id
        endpoint = session.get(EndpointRow, flow.dest_endpoint_id)
        assert endpoint is not None and endpoint.name == f"peer:{sending}" and endpoint.type == "peer"
        assert endpoint.config == {"connection": sending} and endpoint.secrets is None
        receipt = Receipt(
            account_id=conn.sender_account_id or 0,
            protocol="b2b",
            folder="b2b/orders",
            name="po.edi",
            size=1,
            sha256="0" * 64,
            storage_path=".store/x",
        )
        labels = landing.run_labels(session, flow, receipt, 1)
    assert labels is not None
    assert labels.name == "b2b acme/to-globex → globex/from-acme: po.edi"
    assert labels.tags == [f"connection:{sending}", "b2b", "account:acme", f"flow:b2b:{sending}"]


def test_users_cannot_change_the_push_flow_or_its_endpoint(sending: int, tmp_path: Path) -> None:
    code, said = cli("flow", "remove", f"b2b:{sending}", "--account", "acme")
    assert code == 1 and "belongs to connection 'to-globex'" in said
    code, said = cli("flow", "disable", f"b2b:{sending}", "--account", "acme")
    assert code == 1 and "belongs to connection 'to-globex'" in said
    code, said = cli("endpoint", "set", f"peer:{sending}", "--account", "acme")
    assert code != 0 and "no endpoint named" in said
    code, said = cli("endpoint", "add", "mine", "--type", "peer", "--account", "acme")
    assert code != 0 and "unknown --type 'peer'" in said
    code, said = cli("endpoint", "schema", "peer")
    assert code != 0 and "unknown type 'peer'" in said
    spec = tmp_path / "peer.yaml"
    spec.write_text(json.dumps({"endpoints": [{"name": "mine", "type": "peer", "connection": sending}]}))
    code, said = cli("apply", "-f", str(spec), "--account", "other")
    assert code != 0 and "unknown endpoint type 'peer'" in said


def test_a_peer_endpoint_only_carries_its_own_accounts_connection(sending: int) -> None:
    with session_scope() as session:
        flow = session.exec(select(DataFlow).where(DataFlow.name == f"b2b:{sending}")).one()
        row = session.get(EndpointRow, flow.dest_endpoint_id)
        assert row is not None
        stolen = EndpointRow(account_id=row.account_id + 1, name="stolen", type="peer", config=row.config)
    with endpoint_rows.open_row(row) as own:
        own.check()  # its own account's connection: fine
    with endpoint_rows.open_row(stolen) as other, pytest.raises(ConfigError, match="has no peer instance"):
        other.check()

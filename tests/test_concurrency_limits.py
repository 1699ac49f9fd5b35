"""Per-partner and per-endpoint concurrency limits in the store: the CLI, `apply`, the admin API's
models, the limits a file takes, and migration 0026 on SQLite and PostgreSQL. (That they hold in
Prefect on a real `up` is tests/e2e/test_concurrency_limits.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import inspect
from sqlmodel import SQLModel

from api.admin.schemas import EndpointUpdate, PartnerSettings
from core import accounts, concurrency_limits, partners
from core.concurrency_limits import BadLimit
from core.db import get_engine, init_db, migrate, session_scope
from core.endpoints import rows as endpoint_rows
from core.tenancy import scope_for_cli
from tests import migration_store
from tests.isolation import run_cli
from tests.migration_store import downgrade_to

PASSWORD = "Tr4de-lane-Pass"
store = migration_store.store


run = run_cli


@pytest.mark.parametrize(
    ("given", "stored"),
    [(3, 3), ("3", 3), (" 7 ", 7), (0, None), ("0", None), ("none", None), (None, None), ("", None)],
)
def test_a_limit_is_a_whole_number_and_zero_or_none_is_unlimited(given: object, stored: int | None) -> None:
    assert concurrency_limits.parse(given) == stored


@pytest.mark.parametrize(
    "given", [-1, "-2", "abc", 1.5, True, 10_001, "2.0", "٣", "1_0", "0x10", "1e3", "9" * 40, [1], {"n": 1}]
)
def test_anything_else_is_refused_in_words(given: object) -> None:
    with pytest.raises(BadLimit, match="concurrency limit"):
        concurrency_limits.parse(given)


def test_cli_sets_shows_and_removes_limits(home: Path, tmp_path: Path) -> None:
    run("partner", "add", "acme", "--password", PASSWORD)
    run("endpoint", "add", "archive", "--type", "file", "--path", str(tmp_path))
    assert "concurrency limit" in run(
        "endpoint",
        "add",
        "capped",
        "--type",
        "file",
        "--path",
        str(tmp_path),
        "--max-concurrent",
        "x",
        ok=False,
    )
    run("endpoint", "add", "capped", "--type", "file", "--path", str(tmp_path), "--max-concurrent", "6")
    with session_scope() as session:
        assert concurrency_limits.wanted(session) == {"endpoint:home:capped": 6}
    run("endpoint", "remove", "capped")  # a removed endpoint's limit is no longer wanted
    assert "at once: 2 at once" in run("partner", "set", "acme", "--max-concurrent", "2")
    assert "max_concurrent (1 at once)" in run("endpoint", "set", "archive", "--max-concurrent", "1")
    assert [p["max_concurrent"] for p in json.loads(run("partner", "list", "--json"))] == [2]
    assert [e["max_concurrent"] for e in json.loads(run("endpoint", "list", "--json"))] == [1]
    with session_scope() as session:
        assert concurrency_limits.wanted(session) == {"partner:home:acme": 2, "endpoint:home:archive": 1}
    assert "nothing changed" in run("endpoint", "set", "archive", "--max-concurrent", "1")
    assert "concurrency limit" in run("endpoint", "set", "archive", "--max-concurrent", "-1", ok=False)
    assert "concurrency limit" in run("partner", "set", "acme", "--max-concurrent", "lots", ok=False)
    run("partner", "set", "acme", "--max-concurrent", "none")
    run("endpoint", "set", "archive", "--max-concurrent", "0")
    with session_scope() as session:
        assert concurrency_limits.wanted(session) == {}


def test_apply_declares_limits(home: Path, tmp_path: Path) -> None:
    declared = tmp_path / "tradelane.yaml"

    def apply(partner_limit: str, endpoint_limit: str) -> str:
        declared.write_text(
            f"partners:\n  - name: acme\n    password: {PASSWORD}\n{partner_limit}"
            f"endpoints:\n  - name: archive\n    type: file\n    path: {tmp_path}\n{endpoint_limit}"
        )
        return run("apply", "-f", str(declared))

    apply("    max_concurrent: 2\n", "    max_concurrent: 3\n")
    with session_scope() as session:
        assert concurrency_limits.wanted(session) == {"partner:home:acme": 2, "endpoint:home:archive": 3}
    again = apply("    max_concurrent: 2\n", "    max_concurrent: 3\n")
    assert "partner acme: unchanged" in again and "endpoint archive: unchanged" in again
    # An endpoint is declared whole: without the key it is unlimited; a partner keeps what it has.
    assert "endpoint archive: updated" in apply("", "")
    with session_scope() as session:
        assert concurrency_limits.wanted(session) == {"partner:home:acme": 2}
    declared.write_text(
        f"endpoints:\n  - name: archive\n    type: file\n    path: {tmp_path}\n    max_concurrent: -3\n"
    )
    assert "endpoints[0].max_concurrent" in run("apply", "-f", str(declared), ok=False)
    declared.write_text("endpoints:\n  - name: mailbox:acme\n    type: mailbox\n    max_concurrent: 2\n")
    assert "takes no concurrency limit" in run("apply", "-f", str(declared), ok=False)


def test_a_file_takes_the_limits_of_its_partner_and_endpoint_in_their_accounts(
    home: Path, tmp_path: Path
) -> None:
    init_db()
    with session_scope() as session:
        accounts.add(session, "globex", email="admin@globex.example", password=PASSWORD)
    ids = {}
    with session_scope() as session:
        for account in ("home", "globex"):
            scope = scope_for_cli(session, account)
            partner = partners.add(session, scope, f"p-{account}", password=PASSWORD)
            partners.configure(session, scope, partner, max_concurrent=2)
            endpoint = endpoint_rows.add(session, scope, "out", "file", {"path": str(tmp_path)})
            concurrency_limits.set_endpoint(session, scope, "out", 5)
            open_endpoint = endpoint_rows.add(session, scope, "open", "file", {"path": str(tmp_path)})
            session.flush()
            ids[account] = (partner.id, endpoint.id, open_endpoint.id)
    with session_scope() as session:
        (hp, he, ho), (gp, ge, _) = ids["home"], ids["globex"]
        assert concurrency_limits.for_files(session, [(hp, he), (gp, ge), (None, ho), (hp, ho)]) == [
            {"partner:home:p-home": 2, "endpoint:home:out": 5},
            {"partner:globex:p-globex": 2, "endpoint:globex:out": 5},
            {},
            {"partner:home:p-home": 2},
        ]


def test_admin_api_models_take_a_limit_only_when_given() -> None:
    assert PartnerSettings.model_validate({"max_concurrent": 4}).changes()["max_concurrent"] == 4
    assert PartnerSettings.model_validate({}).changes()["max_concurrent"] is partners.UNCHANGED
    assert PartnerSettings.model_validate({"max_concurrent": None}).changes()["max_concurrent"] is None
    assert "max_concurrent" not in EndpointUpdate.model_validate({}).model_fields_set
    for bad in (-1, 10_001, "x"):
        with pytest.raises(ValidationError):
            EndpointUpdate.model_validate({"max_concurrent": bad})


def test_migration_0026_adds_and_drops_the_columns(store: None, tmp_path: Path) -> None:
    with session_scope() as session:
        scope = scope_for_cli(session, "home")
        partners.add(session, scope, "acme", password=PASSWORD)
    downgrade_to("0025")
    for table in ("partner", "endpoint"):
        assert "max_concurrent" not in {c["name"] for c in inspect(get_engine()).get_columns(table)}
    migrate()
    with get_engine().connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert [d for d in diffs if "'partner'" in repr(d) or "'endpoint'" in repr(d)] == []
    with session_scope() as session:
        scope = scope_for_cli(session, "home")
        partner = partners.require(session, scope, "acme")
        assert partner.max_concurrent is None
        partners.configure(session, scope, partner, max_concurrent=3)
    with session_scope() as session:
        assert concurrency_limits.wanted(session) == {"partner:home:acme": 3}

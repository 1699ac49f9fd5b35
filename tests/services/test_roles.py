"""core/roles.py: one table says what each role may change, and every changing service asks it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from core import accounts, dataflows, partners, roles, transfers
from core.endpoints import rows as endpoint_rows
from core.models import AuditEvent, DataFlow, Partner
from core.tenancy import RoleRefused, Scope
from tests.file_roots import allowed_folder
from tests.services.conftest import as_role, unique
from tests.tenancy import home_scope

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"


def changes(session: Session, tmp_path: Path) -> dict[str, Callable[[Scope], Any]]:
    """One call of every changing service, on objects the CLI made."""
    cli = home_scope(session)
    partner = unique("rp")
    partners.add(session, cli, partner, password="Role-Pass-12345")
    endpoint = unique("re")
    # Inside the folders the account's own users may use: they change this endpoint below.
    shelf = str(allowed_folder("home"))
    endpoint_rows.add(session, cli, endpoint, "file", {"path": shelf})
    flow = unique("rf")
    dataflows.add(session, cli, flow, source=f"mailbox:{partner}", dest=endpoint)
    row = partners.require(session, cli, partner)
    folder = {"path": shelf}
    source = f"mailbox:{partner}"
    user = f"{unique('u')}@example.com"
    return {
        "partners.add": lambda s: partners.add(session, s, unique("rq"), password="Role-Pass-12345"),
        "partners.configure": lambda s: partners.configure(session, s, row, email="x@example.com"),
        "partners.set_password": lambda s: partners.set_password(session, s, row, "Other-Pass-12345"),
        "partners.add_key": lambda s: partners.add_key(session, s, partner, KEY),
        "partners.remove_key": lambda s: partners.remove_key(session, s, partner, 1),
        "partners.unlock": lambda s: partners.unlock(session, s, partner),
        "partners.remove": lambda s: partners.remove(session, s, partner, force=True),
        "endpoints.add": lambda s: endpoint_rows.add(session, s, unique("rg"), "file", folder),
        "endpoints.set_settings": lambda s: endpoint_rows.set_settings(session, s, endpoint, {}, {}, ()),
        "endpoints.remove": lambda s: endpoint_rows.remove(session, s, endpoint, force=True),
        "flows.add": lambda s: dataflows.add(session, s, unique("rh"), source=source, dest=endpoint),
        "flows.update": lambda s: dataflows.update(session, s, flow, pattern="*.csv"),
        "flows.set_enabled": lambda s: dataflows.set_enabled(session, s, flow, False),
        "flows.remove": lambda s: dataflows.remove(session, s, flow, force=True),
        "transfers.replay": lambda s: transfers.replay(session, s, 1),
        "users.add": lambda s: accounts.add_user(session, s, user, password="User-Pass-12345"),
    }


@pytest.mark.parametrize("role", ["read-only", "partner", "system", "peer"])
def test_a_login_that_may_change_nothing_is_refused_everywhere_before_any_write(
    session: Session, tmp_path: Path, role: str
) -> None:
    calls = changes(session, tmp_path)
    session.commit()
    scope = as_role(session, role)  # type: ignore[arg-type]
    events = len(session.exec(select(AuditEvent)).all())
    for name, call in calls.items():
        with pytest.raises(RoleRefused, match=rf"^403: this needs the role admin.*; this login is {role}$"):
            call(scope)
        assert len(session.exec(select(AuditEvent)).all()) == events, name
    assert not session.dirty and not session.new


def test_an_operator_configures_but_neither_purges_nor_manages_users(
    session: Session, tmp_path: Path
) -> None:
    calls = changes(session, tmp_path)
    operator = as_role(session, "operator")
    for name in ("partners.configure", "partners.set_password", "endpoints.set_settings", "flows.update"):
        calls[name](operator)
    created = calls["partners.add"](operator)
    assert isinstance(created, Partner)
    assert isinstance(calls["flows.add"](operator), DataFlow)
    with pytest.raises(RoleRefused, match=r"^403: this needs the role admin; this login is operator$"):
        partners.remove(session, operator, created.name, purge=True)
    with pytest.raises(RoleRefused, match="this needs the role admin; this login is operator"):
        calls["users.add"](operator)
    admin = as_role(session, "admin")
    partners.remove(session, admin, created.name, purge=True)


def test_a_partner_row_of_another_account_is_not_found(session: Session, tmp_path: Path) -> None:
    cli = home_scope(session)
    name = unique("rx")
    row = partners.add(session, cli, name, password="Role-Pass-12345")
    elsewhere = Scope(cli.account_id + 10_000, "elsewhere", "admin", "user:a@elsewhere.example")
    with pytest.raises(partners.PartnerError, match=f"no partner named '{name}'"):
        partners.configure(session, elsewhere, row, email="x@example.com")


def test_the_table_names_only_account_roles_and_the_instance_may_do_all() -> None:
    cli = Scope(1, "home", "instance", "cli")
    for action, allowed in roles.ACTIONS.items():
        assert allowed <= {"admin", "operator", "read-only"}, action
        assert "admin" in allowed, action
        assert "read-only" not in allowed, action  # read-only reads, and changes nothing
        assert roles.may(cli, action)
    assert roles.roles_for("partners.purge") == ("admin",)
    assert roles.roles_for("flows.change") == ("admin", "operator")
    operator = Scope(1, "home", "operator", "user:o@example.com")
    assert roles.may(operator, "endpoints.test") and not roles.may(operator, "connections.manage")

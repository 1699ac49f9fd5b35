"""The scope is the only way to the account: nothing outside the first-start code reaches for `home`
by itself, and Prefect names keep two accounts' data flows apart."""

from __future__ import annotations

import re
from pathlib import Path

from deployments.naming import deployment_name, poll_deployment, tags, transfer_deployment

ROOT = Path(__file__).resolve().parents[2]
GUARDED = ("core", "api", "mailboxes", "cli", "deployments", "flows", "tasks")
ALLOWED = {Path("core/db.py")}  # first start creates `home`; migrations are not scanned


def test_no_code_reaches_for_the_home_account_by_itself() -> None:
    offenders = []
    for package in GUARDED:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel in ALLOWED:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"\bhome_account_id\(|\bHOME_ACCOUNT\b", line):
                    offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == [], "use the caller's Scope (core/tenancy.py):\n" + "\n".join(offenders)


def test_deployment_names_say_the_account_except_home() -> None:
    assert deployment_name("to-archive", "home") == "to-archive"  # existing history keeps its name
    assert deployment_name("to-archive", "globex") == "globex:to-archive"
    assert transfer_deployment("to-archive", "globex") != transfer_deployment("to-archive", "home")
    assert poll_deployment("to-archive", "globex").endswith("/globex:to-archive")
    assert deployment_name("b2b:7", "globex") == "b2b:7"  # connection flows are named for the connection
    assert tags("to-archive", "globex") == ["flow:to-archive", "account:globex"]


def test_only_an_accounts_admins_manage_its_users() -> None:
    """The role check comes first, before anything is read or written (no store needed)."""
    import pytest

    from core import accounts
    from core.tenancy import RoleRefused, Scope

    for role in ("operator", "read-only", "partner"):
        scope = Scope(1, "globex", role, f"user:{role}@globex.example")  # type: ignore[arg-type]
        with pytest.raises(RoleRefused, match="403: this needs the role admin"):
            accounts.add_user(None, scope, "new@globex.example", password="Whatever-Pass-1")  # type: ignore[arg-type]
        with pytest.raises(RoleRefused):
            accounts.remove_user(None, scope, "ops@globex.example")  # type: ignore[arg-type]
    Scope(1, "globex", "admin", "user:a@globex.example").require("admin")
    Scope(1, "globex", "instance", "cli").require("admin")  # the instance operator may do anything

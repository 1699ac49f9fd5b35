"""A throwaway store for the services every front end shares (roles, statuses, probe, history)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from core import db
from core.tenancy import Role, Scope, scope_for_cli
from tests.isolation import isolated_home

_names = itertools.count(1)


@pytest.fixture(scope="package")
def tradelane_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    saved = os.environ.pop("TRADELANE_SECRET_KEY", None)
    try:
        with isolated_home(tmp_path_factory.mktemp("tradelane-services")) as home:
            db.init_db()
            yield home
    finally:
        if saved is not None:
            os.environ["TRADELANE_SECRET_KEY"] = saved


@pytest.fixture
def session(tradelane_home: Path) -> Iterator[Session]:
    with db.session_scope() as s:
        yield s


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


def as_role(session: Session, role: Role, account: str = "home") -> Scope:
    """The scope of an account user with `role` in `account` (as `scope_for_login` builds it)."""
    cli = scope_for_cli(session, account)
    return Scope(cli.account_id, cli.account_name, role, f"user:{role}@{account}.example", user_id=1)


AsRole = Callable[[Session, Role], Scope]

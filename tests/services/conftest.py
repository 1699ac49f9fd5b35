"""A throwaway store for the services every front end shares (roles, statuses, probe, history)."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlmodel import Session

from core import db
from core.models import FINAL_STATES, DataFlow, Partner, Receipt, Transfer, utcnow
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


def arrive(
    session: Session,
    partner: Partner,
    flows: list[DataFlow],
    name: str,
    *,
    states: list[str] | None = None,
    errors: list[str | None] | None = None,
    run: str | None = None,
    received_at: datetime | None = None,
    protocol: str = "sftp",
) -> tuple[Receipt, list[Transfer]]:
    """A receipt of `partner`'s and one transfer per data flow in `states` (rows as intake and the
    tasks write them; the history queries read nothing else)."""
    receipt = Receipt(
        account_id=partner.account_id,
        partner_id=partner.id,
        protocol=protocol,
        folder="upload",
        name=name,
        size=len(name),
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        storage_path=f".store/test/{name}",
        received_at=received_at or utcnow(),
    )
    session.add(receipt)
    session.flush()
    assert receipt.id is not None
    made = []
    for i, flow in enumerate(flows):
        assert flow.id is not None
        state = (states or ["pending"] * len(flows))[i]
        transfer = Transfer(
            receipt_id=receipt.id,
            data_flow_id=flow.id,
            account_id=flow.account_id,
            state=state,
            error=(errors or [None] * len(flows))[i],
            flow_run_id=run,
            finished_at=utcnow() if state in FINAL_STATES else None,
        )
        session.add(transfer)
        made.append(transfer)
    session.flush()
    return receipt, made

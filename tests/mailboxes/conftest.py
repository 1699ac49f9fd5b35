"""A throwaway TRADELANE_HOME for the mailbox package, and partners made as the CLI makes them."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from core import dataflows, db, partners
from core.config import Settings, get_settings
from core.db import HOME_ACCOUNT, session_scope
from core.endpoints import rows as endpoint_rows
from core.endpoints.mailbox import mailbox_root_for
from core.models import AuditEvent, Partner, Receipt, Transfer
from mailboxes.auth import MailboxAuth, MailboxUser
from tests.isolation import isolated_home
from tests.tenancy import home_scope

# Settings a developer's shell may carry that would change what these tests expect.
_UNSET = (
    "TRADELANE_SECRET_KEY",
    "TRADELANE_MAX_UPLOAD_BYTES",
    "TRADELANE_MAX_CONNECTIONS_PER_PARTNER",
    "TRADELANE_IDLE_TIMEOUT_SECONDS",
    "TRADELANE_LOCKOUT_FAILURES",
)
_names = itertools.count(1)
# Every test logs in from 127.0.0.1: bans and locks that would carry from one test to the next are
# out of reach here (tests of the login policy use their own settings and source addresses).
LENIENT = {"lockout_failures": 100_000, "lockout_account_failures": 100_000}


def lenient_settings(**overrides: Any) -> Settings:
    return get_settings().model_copy(update={**LENIENT, **overrides})


@pytest.fixture(scope="package")
def tradelane_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    saved = {key: os.environ.pop(key, None) for key in _UNSET}
    try:
        with isolated_home(tmp_path_factory.mktemp("tradelane-mailbox")) as home:
            db.init_db()
            yield home
    finally:
        os.environ.update({key: value for key, value in saved.items() if value is not None})


@dataclass
class PartnerLogin:
    name: str
    password: str

    @property
    def home(self) -> Path:
        return mailbox_root_for(HOME_ACCOUNT, self.name)

    def user(self) -> MailboxUser:
        with session_scope() as session:
            partner = partners.require(session, home_scope(session), self.name)
            return MailboxUser(
                partner_id=partner.id or 0,
                account_id=partner.account_id,
                name=partner.name,
                can_delete_downloads=partner.can_delete_downloads,
                max_file_bytes=partner.max_file_bytes,
                max_connections=partner.max_connections,
            )

    def put_download(self, name: str, data: bytes) -> Path:
        """What a data flow would deliver into the partner's download/."""
        path = self.home / "download" / name
        path.write_bytes(data)
        return path

    def receipts(self) -> list[Receipt]:
        with session_scope() as session:
            partner = partners.require(session, home_scope(session), self.name)
            return list(session.exec(select(Receipt).where(Receipt.partner_id == partner.id)).all())

    def transfers(self) -> list[Transfer]:
        ids = [r.id for r in self.receipts()]
        with session_scope() as session:
            return list(session.exec(select(Transfer).where(Transfer.receipt_id.in_(ids))).all())  # type: ignore[union-attr]

    def audit(self, action: str | None = None) -> list[AuditEvent]:
        with session_scope() as session:
            query = select(AuditEvent).where(AuditEvent.actor == f"partner:{self.name}")
            if action:
                query = query.where(AuditEvent.action == action)
            return list(session.exec(query.order_by(AuditEvent.id)).all())  # type: ignore[arg-type]


MakePartner = Callable[..., PartnerLogin]


@pytest.fixture(scope="package")
def make_partner(tradelane_home: Path) -> MakePartner:
    def make(
        prefix: str = "p", *, keys: list[str] | None = None, flow_to: Path | None = None, **attrs: Any
    ) -> PartnerLogin:
        """A new partner; `flow_to` adds a data flow from its upload/ to a `file` endpoint there."""
        name = f"{prefix}{next(_names)}"
        password = f"S3cret-{os.urandom(6).hex()}"
        with session_scope() as session:
            partner = partners.add(
                session, home_scope(session), name, password=password, ssh_public_keys=keys
            )
            for key, value in attrs.items():
                setattr(partner, key, value)
            session.add(partner)
            if flow_to is not None:
                endpoint_rows.add(session, home_scope(session), f"{name}-out", "file", {"path": str(flow_to)})
                dataflows.add(
                    session, home_scope(session), f"{name}-flow", source=f"mailbox:{name}", dest=f"{name}-out"
                )
        return PartnerLogin(name, password)

    return make


@pytest.fixture
def partner(make_partner: MakePartner) -> PartnerLogin:
    return make_partner()


@pytest.fixture
def auth(tradelane_home: Path) -> MailboxAuth:
    """Lenient bans and locks, so one test's failed logins never lock another's."""
    return MailboxAuth(lenient_settings())


def set_partner(name: str, **attrs: Any) -> None:
    with session_scope() as session:
        partner = session.exec(select(Partner).where(Partner.name == name)).one()
        for key, value in attrs.items():
            setattr(partner, key, value)
        session.add(partner)

"""Migration 0008 on SQLite and PostgreSQL: AS2 profiles that existed before it get the safe
defaults (unsigned inbound refused, no MDN return URL, no MDN URL allow-list)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

import migrations
from core import partners
from core.as2 import identity, profiles
from core.db import get_engine, init_db, migrate, session_scope
from tests.isolation import isolated_home
from tests.tenancy import home_scope


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    if url:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    with isolated_home(tmp_path, database_url=url):
        init_db()
        yield


def _downgrade_to_before(revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    before = ScriptDirectory.from_config(cfg).get_revision(revision).down_revision
    assert isinstance(before, str)
    with get_engine().begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, before)


def test_profiles_made_before_0008_get_the_safe_defaults(store: None) -> None:
    _, cert = identity.self_signed("GLOBEX")
    with session_scope() as session:
        partners.add(session, home_scope(session), "globex", password="Pw-0008-migration")
        profiles.add(
            session,
            home_scope(session),
            "GLOBEX",
            mailbox="globex",
            url="https://as2.globex.example/as2",
            certificate=cert.encode(),
        )
    _downgrade_to_before("0008")  # the profile as it was stored before 0008
    with get_engine().connect() as conn:
        assert conn.execute(text("SELECT as2_id FROM as2partner")).scalars().all() == ["GLOBEX"]
    migrate()
    with session_scope() as session:
        profile = profiles.get(session, home_scope(session), "GLOBEX")
        assert profile is not None
        assert profile.allow_unsigned is False
        assert profile.mdn_return_url is None and profile.allow_mdn_urls == []
        assert profiles.allowed_mdn_prefixes(profile) == ["https://as2.globex.example/"]
        assert profiles.pyas2lib_partner(profile, receiving=True).sign is True

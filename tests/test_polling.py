"""Polling sources without Prefect: new files are taken once, through the intake, then kept/deleted/moved."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from core import dataflows, partners, polling
from core.db import init_db, session_scope
from core.endpoints import rows as endpoint_rows
from core.models import PulledFile, Receipt, Transfer
from tests.isolation import isolated_home
from tests.tenancy import home_scope


@pytest.fixture
def source_dir(tmp_path: Path) -> Iterator[Path]:
    with isolated_home(tmp_path / "home"):
        init_db()
        src = tmp_path / "remote"
        (src / "outbox").mkdir(parents=True)
        with session_scope() as session:
            endpoint_rows.add(session, home_scope(session), "remote", "file", {"path": str(src)})
            endpoint_rows.add(
                session, home_scope(session), "archive", "file", {"path": str(tmp_path / "archive")}
            )
        yield src


def _flow(after_pull: str, pattern: str = "*.csv") -> polling.Source:
    with session_scope() as session:
        flow = dataflows.add(
            session,
            home_scope(session),
            f"poll-{after_pull.replace(':', '-').replace('/', '-')}",
            source="remote",
            dest="archive",
            pattern=pattern,
            every_seconds=60,
            after_pull=after_pull,
            source_folder="outbox",
        )
        assert flow.id is not None
        flow_id = flow.id
    return polling.load(flow_id)


def test_new_files_are_taken_once_and_remembered(source_dir: Path) -> None:
    (source_dir / "outbox" / "a.csv").write_bytes(b"1,2\n")
    (source_dir / "outbox" / "b.csv").write_bytes(os.urandom(3 * 1024 * 1024))
    (source_dir / "outbox" / "skip.txt").write_bytes(b"no")
    source = _flow("keep")
    found = polling.new_files(source)
    assert [f.path for f in found] == ["outbox/a.csv", "outbox/b.csv"]
    receipts = [polling.pull(source, info) for info in found]
    assert [polling.after_pull(source, info) for info in found] == ["kept (remembered)"] * 2
    assert polling.new_files(source) == []
    with session_scope() as session:
        transfers = session.exec(select(Transfer)).all()
        assert {t.data_flow_id for t in transfers} == {source.flow.id}
        assert len(transfers) == 2 and len(session.exec(select(PulledFile)).all()) == 2
        stored = session.get(Receipt, receipts[1].id)
        assert stored is not None and stored.size == 3 * 1024 * 1024 and stored.partner_id is None
    # A changed file (new size/mtime) is a new file.
    changed = source_dir / "outbox" / "a.csv"
    before = changed.stat().st_mtime_ns
    changed.write_bytes(b"1,2\n3,4\n")
    os.utime(changed, ns=(before + 10**9, before + 10**9))  # a later mtime, whatever the clock's resolution
    assert [f.path for f in polling.new_files(source)] == ["outbox/a.csv"]


def test_after_pull_delete_and_archive(source_dir: Path) -> None:
    (source_dir / "outbox" / "d.csv").write_bytes(b"delete me")
    source = _flow("delete")
    [info] = polling.new_files(source)
    polling.pull(source, info)
    assert polling.after_pull(source, info) == "deleted at source"
    assert not (source_dir / "outbox" / "d.csv").exists()

    (source_dir / "outbox" / "m.csv").write_bytes(b"move me")
    source = _flow("archive:done/2026")
    [info] = [f for f in polling.new_files(source) if f.path.endswith("m.csv")]
    polling.pull(source, info)
    assert polling.after_pull(source, info) == "moved to done/2026/m.csv"
    assert (source_dir / "done" / "2026" / "m.csv").read_bytes() == b"move me"
    assert not (source_dir / "outbox" / "m.csv").exists()


def test_polling_settings_are_checked(source_dir: Path) -> None:
    with session_scope() as session:
        partners.add(session, home_scope(session), "acme", password="polling-Pass-1")
        with pytest.raises(dataflows.DataFlowError, match="needs one schedule"):
            dataflows.add(session, home_scope(session), "p1", source="remote", dest="archive")
        with pytest.raises(dataflows.DataFlowError, match="needs one schedule"):
            dataflows.add(
                session,
                home_scope(session),
                "p2",
                source="remote",
                dest="archive",
                every_seconds=5,
                cron="* * * * *",
            )
        with pytest.raises(dataflows.DataFlowError, match="cron expression"):
            dataflows.add(
                session, home_scope(session), "p3", source="remote", dest="archive", cron="every day"
            )
        with pytest.raises(dataflows.DataFlowError, match="after-pull"):
            dataflows.add(
                session,
                home_scope(session),
                "p4",
                source="remote",
                dest="archive",
                every_seconds=5,
                after_pull="shred",
            )
        with pytest.raises(dataflows.DataFlowError, match=r"'\.\.' not allowed"):
            dataflows.add(
                session,
                home_scope(session),
                "p5",
                source="remote",
                dest="archive",
                every_seconds=5,
                after_pull="archive:../x",
            )
        with pytest.raises(dataflows.DataFlowError, match="polling sources"):
            dataflows.add(
                session, home_scope(session), "p6", source="mailbox:acme", dest="archive", every_seconds=5
            )
        with pytest.raises(partners.PartnerError, match="reserved"):
            partners.add(session, home_scope(session), "_poll-x", password="polling-Pass-1")
        # An email source is not a folder: "archive" would mean sending a message.
        endpoint_rows.add(
            session,
            home_scope(session),
            "inbox",
            "email",
            {
                "imap_host": "127.0.0.1",
                "smtp_host": "127.0.0.1",
                "to": "a@example.com",
                "from": "t@example.com",
            },
            {"user": "u", "password": "pw"},
        )
        with pytest.raises(dataflows.DataFlowError, match="does not apply to an email source"):
            dataflows.add(
                session,
                home_scope(session),
                "p7",
                source="inbox",
                dest="archive",
                every_seconds=5,
                after_pull="archive:x",
            )
        # "delete" takes it the email endpoint's way (marks, moves or deletes the message).
        dataflows.add(
            session,
            home_scope(session),
            "p8",
            source="inbox",
            dest="archive",
            every_seconds=5,
            after_pull="delete",
        )
    assert dataflows.parse_interval("90") == 90
    assert dataflows.parse_interval("5m") == 300
    with pytest.raises(dataflows.DataFlowError):
        dataflows.parse_interval("soon")

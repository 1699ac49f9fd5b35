"""A poll's `pull files` step against a real HTTP source that fails: passing failures are retried
for that file alone, permanent ones are not, and a file that could not be taken is offered again."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from core import dataflows, polling
from core.db import init_db, session_scope
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import FileInfo
from core.models import PulledFile, Receipt
from tasks import pull
from tests.endpoint_servers.http_app import HttpApp
from tests.isolation import isolated_home
from tests.tenancy import home_scope

log = logging.getLogger("test-polling-retries")


@pytest.fixture
def app(http_app: HttpApp, monkeypatch: pytest.MonkeyPatch) -> HttpApp:
    http_app.reset()
    (http_app.root / "out").mkdir()
    monkeypatch.setattr(pull, "RETRY_BASE_SECONDS", 0.01)  # the policy, not its pauses, is under test
    return http_app


@pytest.fixture
def source(app: HttpApp, tmp_path: Path) -> Iterator[polling.Source]:
    with isolated_home(tmp_path / "home"):
        init_db()
        with session_scope() as session:
            url = f"{app.url}/files"
            endpoint_rows.add(
                session,
                home_scope(session),
                "api",
                "http",
                {"url": url, "list_url": url},
                {"bearer": "test-token-rw"},
            )
            endpoint_rows.add(
                session, home_scope(session), "archive", "file", {"path": str(tmp_path / "archive")}
            )
            flow = dataflows.add(
                session,
                home_scope(session),
                "api-pickup",
                source="api",
                dest="archive",
                every_seconds=60,
                after_pull="delete",
                source_folder="out",
            )
            assert flow.id is not None
            flow_id = flow.id
        yield polling.load(flow_id)


def offer(app: HttpApp, source: polling.Source, *names: str) -> tuple[dict[str, bytes], list[FileInfo]]:
    """Put files at the source and list them, so the failures armed next hit the pulls only."""
    data = {name: os.urandom(64 * 1024) for name in names}
    for name, body in data.items():
        (app.root / "out" / name).write_bytes(body)
    found = polling.new_files(source)
    assert [f.name for f in found] == sorted(names)
    app.requests.clear()
    return data, found


def downloads(app: HttpApp, name: str) -> int:
    return sum(1 for seen in app.requests if seen.method == "GET" and seen.path.endswith(f"/out/{name}"))


def receipts() -> dict[str, str]:
    with session_scope() as session:
        return {r.name: r.sha256 for r in session.exec(select(Receipt)).all()}


async def test_a_passing_failure_is_retried_and_the_file_taken_once(
    app: HttpApp, source: polling.Source
) -> None:
    data, found = offer(app, source, "a.csv")
    app.fail_next(2, 503)
    rows = await pull.take_in(source, found, log)
    assert [r["result"] for r in rows] == ["received; deleted at source"]
    assert downloads(app, "a.csv") == 3  # two 503s, then the bytes
    assert receipts() == {"a.csv": hashlib.sha256(data["a.csv"]).hexdigest()}
    assert not (app.root / "out" / "a.csv").exists()
    assert polling.new_files(source) == []


async def test_a_file_that_keeps_failing_does_not_stop_the_next_and_is_offered_again(
    app: HttpApp, source: polling.Source
) -> None:
    data, found = offer(app, source, "a.csv", "b.csv")
    app.fail_next(1 + pull.PULL_RETRIES, 503)  # every try of a.csv
    rows = await pull.take_in(source, found, log)
    assert rows[0]["result"].startswith("failed: ") and "503" in rows[0]["result"]
    assert rows[1]["result"] == "received; deleted at source"
    assert downloads(app, "a.csv") == 1 + pull.PULL_RETRIES
    assert receipts() == {"b.csv": hashlib.sha256(data["b.csv"]).hexdigest()}
    # Not remembered and still at the source: the next poll takes it.
    assert (app.root / "out" / "a.csv").read_bytes() == data["a.csv"]
    assert [f.name for f in polling.new_files(source)] == ["a.csv"]
    rows = await pull.take_in(source, polling.new_files(source), log)
    assert [r["result"] for r in rows] == ["received; deleted at source"]
    assert set(receipts()) == {"a.csv", "b.csv"}


async def test_an_auth_failure_is_not_retried(app: HttpApp, source: polling.Source) -> None:
    _, found = offer(app, source, "a.csv", "b.csv")
    app.fail_next(1, 401)
    rows = await pull.take_in(source, found, log)
    assert downloads(app, "a.csv") == 1
    assert rows[0]["result"].startswith("failed: ") and "401" in rows[0]["result"]
    assert rows[1]["result"] == "received; deleted at source"
    assert "test-token-rw" not in rows[0]["result"]
    with session_scope() as session:
        assert [p.path for p in session.exec(select(PulledFile)).all()] == ["out/b.csv"]


async def test_a_failed_delete_after_the_pull_is_retried(app: HttpApp, source: polling.Source) -> None:
    _, found = offer(app, source, "a.csv")
    real_pull = polling.pull

    def pull_then_arm_a_failure(src: polling.Source, info: FileInfo) -> Receipt:
        receipt = real_pull(src, info)
        app.fail_next(1, 503)  # meets the DELETE that follows the download
        return receipt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(polling, "pull", pull_then_arm_a_failure)
        rows = await pull.take_in(source, found, log)
    assert [r["result"] for r in rows] == ["received; deleted at source"]
    deletes = [seen for seen in app.requests if seen.method == "DELETE"]
    assert len(deletes) == 2
    assert not (app.root / "out" / "a.csv").exists()


async def test_one_url_source_with_keep_is_taken_again_only_when_it_changes(
    app: HttpApp, tmp_path: Path
) -> None:
    report = app.root / "out" / "stock.csv"
    report.write_bytes(b"sku,qty\n1,5\n")
    with isolated_home(tmp_path / "home-url"):
        init_db()
        with session_scope() as session:
            config = {"url": f"{app.url}/files", "pull_url": f"{app.url}/files/out/stock.csv"}
            endpoint_rows.add(
                session, home_scope(session), "stock-api", "http", config, {"bearer": "test-token-rw"}
            )
            endpoint_rows.add(
                session, home_scope(session), "archive", "file", {"path": str(tmp_path / "archive")}
            )
            flow = dataflows.add(
                session,
                home_scope(session),
                "stock",
                source="stock-api",
                dest="archive",
                every_seconds=60,
                after_pull="keep",
            )
            assert flow.id is not None
            flow_id = flow.id
        source = polling.load(flow_id)
        rows = await pull.take_in(source, polling.new_files(source), log)
        assert [r["result"] for r in rows] == ["received; kept (remembered)"]
        assert polling.new_files(source) == []  # same size, ETag and date: already taken
        report.write_bytes(b"sku,qty\n1,4\n2,9\n")
        [changed] = polling.new_files(source)
        await pull.take_in(source, [changed], log)
        with session_scope() as session:
            taken = sorted(r.sha256 for r in session.exec(select(Receipt)).all())
        assert taken == sorted(
            hashlib.sha256(body).hexdigest() for body in (b"sku,qty\n1,5\n", b"sku,qty\n1,4\n2,9\n")
        )
        assert report.exists()  # kept at the source

"""The Prefect side of concurrency limits against a real Prefect server (the session's test server):
the reconciler's mirror of the store (created, changed, set back after a hand edit, removed; other
limits left alone), and a file's slot (`tasks.slots.held`): one holder at a time on a limit of 1, and
a limit the store has but Prefect not yet is created from the store's value before the first slot;
two polls of one source endpoint with a limit of 1 never download two files at once; a slot Prefect
cannot give now fails the file for a passing reason (it is tried again)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from core import concurrency_limits, dataflows, partners, polling
from core.db import init_db, session_scope
from core.endpoints import rows as endpoint_rows
from deployments.limits import reconcile_limits
from tasks import pull
from tasks.retry import is_retryable
from tasks.slots import SlotUnavailable, held
from tests.endpoint_servers.http_app import HttpApp
from tests.isolation import isolated_home
from tests.servers import free_port
from tests.tenancy import home_scope

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    with isolated_home(tmp_path / "home") as path:
        init_db()
        yield path


async def prefect_limits() -> dict[str, int]:
    async with get_client() as client:
        found = await client.read_global_concurrency_limits(limit=200)
    return {limit.name: limit.limit for limit in found}


async def test_the_reconciler_mirrors_the_store(home: Path, tmp_path: Path) -> None:
    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="someone-elses", limit=7)
        )
    with session_scope() as session:
        scope = home_scope(session)
        partner = partners.add(session, scope, "mirror-p", password="Tr4de-lane-Pass-x")
        partners.configure(session, scope, partner, max_concurrent=2)
        endpoint_rows.add(session, scope, "mirror-e", "file", {"path": str(tmp_path)})
        concurrency_limits.set_endpoint(session, scope, "mirror-e", 1)
    changes = await reconcile_limits()
    assert sorted(changes.created) == ["endpoint:home:mirror-e", "partner:home:mirror-p"]
    limits = await prefect_limits()
    assert limits["partner:home:mirror-p"] == 2 and limits["endpoint:home:mirror-e"] == 1

    with session_scope() as session:
        concurrency_limits.set_endpoint(session, home_scope(session), "mirror-e", 3)
    async with get_client() as client:  # edited by hand in the UI: the store's value wins
        await client.update_global_concurrency_limit(
            "partner:home:mirror-p", GlobalConcurrencyLimitUpdate(limit=9)
        )
    changes = await reconcile_limits()
    assert sorted(changes.updated) == ["endpoint:home:mirror-e", "partner:home:mirror-p"]
    limits = await prefect_limits()
    assert limits["partner:home:mirror-p"] == 2 and limits["endpoint:home:mirror-e"] == 3

    with session_scope() as session:
        scope = home_scope(session)
        partners.configure(session, scope, partners.require(session, scope, "mirror-p"), max_concurrent=None)
    changes = await reconcile_limits()
    assert changes.removed == ["partner:home:mirror-p"] and not changes.created and not changes.updated
    limits = await prefect_limits()
    assert "partner:home:mirror-p" not in limits and limits["someone-elses"] == 7
    assert (await reconcile_limits()) == type(changes)()  # nothing left to do


async def test_a_limit_of_one_admits_one_holder_at_a_time_and_is_created_if_missing() -> None:
    name = "endpoint:home:slot-test"
    async with get_client() as client:
        with pytest.raises(ObjectNotFound):
            await client.read_global_concurrency_limit_by_name(name)
    inside = 0
    most = 0

    async def carry() -> None:
        nonlocal inside, most
        async with held({name: 1}):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.2)  # the file's work, while others wait for the slot
            inside -= 1

    await asyncio.gather(*(carry() for _ in range(4)))
    assert most == 1
    async with get_client() as client:
        created = await client.read_global_concurrency_limit_by_name(name)
    assert created.limit == 1 and created.active_slots == 0

    # A file that takes two limits, one of which Prefect lacks: both hold before its slot is taken.
    other = "partner:home:slot-test"
    async with held({name: 1, other: 1}), get_client() as client:
        taken = await client.read_global_concurrency_limit_by_name(other)
    assert taken.limit == 1 and taken.active_slots == 1


def polling_flow(app: HttpApp, name: str, folder: str) -> polling.Source:
    with session_scope() as session:
        flow = dataflows.add(
            session,
            home_scope(session),
            name,
            source="slow-source",
            dest="pulled",
            every_seconds=60,
            source_folder=folder,
        )
        assert flow.id is not None
        flow_id = flow.id
    return polling.load(flow_id)


async def test_polls_of_one_source_take_its_slot_per_file(
    home: Path, tmp_path: Path, http_app: HttpApp
) -> None:
    http_app.reset()
    http_app.read_delay = 0.3  # long enough that two polls' downloads would overlap
    url = f"{http_app.url}/files"
    with session_scope() as session:
        scope = home_scope(session)
        endpoint_rows.add(
            session, scope, "slow-source", "http", {"url": url, "list_url": url}, {"bearer": "test-token-rw"}
        )
        endpoint_rows.add(session, scope, "pulled", "file", {"path": str(tmp_path / "pulled")})
    sources = []
    for i, folder in enumerate(("a", "b", "c", "d")):
        (http_app.root / folder).mkdir()
        for n in range(3):
            (http_app.root / folder / f"{folder}{n}.txt").write_bytes(b"x" * 1000)
        sources.append(polling_flow(http_app, f"poll-{i}", folder))
    log = logging.getLogger("test-concurrency-slots")

    async def poll_all(limits: dict[str, int] | None, wanted: int) -> None:
        found = [polling.new_files(source) for source in sources]
        rows = await asyncio.gather(
            *(pull.take_in(s, f, log, limits) for s, f in zip(sources, found, strict=True))
        )
        assert sum(1 for each in rows for row in each if "receipt" in row) == wanted

    # Unlimited (the control): the four polls' downloads overlap.
    await poll_all(await pull._limits(sources[0]), 12)
    assert http_app.most_reads_at_once >= 2

    with session_scope() as session:
        concurrency_limits.set_endpoint(session, home_scope(session), "slow-source", 1)
    limits = await pull._limits(sources[0])
    assert limits == {"endpoint:home:slow-source": 1}
    for folder in ("a", "b", "c", "d"):
        for n in range(3):
            (http_app.root / folder / f"{folder}{n}.txt").write_bytes(b"y" * 1001)  # changed: taken again
    http_app.most_reads_at_once = 0
    await poll_all(limits, 12)
    assert http_app.most_reads_at_once == 1


async def test_a_slot_prefect_cannot_give_now_fails_the_file_for_a_passing_reason() -> None:
    away = {PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api", PREFECT_CLIENT_MAX_RETRIES: 0}
    with temporary_settings(updates=away), pytest.raises(SlotUnavailable) as raised:
        async with held({"endpoint:home:api-away": 1}):
            raise AssertionError("no slot was given, so the file must not be carried")
    assert is_retryable(raised.value)

"""`tasks.as_is`: a task's argument that Prefect's engine looks at but does not walk into. The task
gets the very object, its elements are never visited by Prefect, and the run's graph still links
the task to the one whose result the argument came from."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL
from prefect.utilities.asyncutils import run_coro_as_sync

from tasks.as_is import as_is

pytestmark = pytest.mark.usefixtures("prefect_server")


class Watched(list[int]):
    """A list that counts how often it is walked."""

    walks = 0

    def __iter__(self) -> Iterator[int]:
        Watched.walks += 1
        return super().__iter__()


@dataclass
class Started:
    jobs: Watched = field(default_factory=Watched)


@task(name="make", cache_policy=NO_CACHE)
async def make() -> Started:
    return Started(Watched(range(50)))


@task(name="take", cache_policy=NO_CACHE)
async def take(jobs: Watched, original_id: int) -> bool:
    return id(jobs) == original_id


def run_take(wrap: bool) -> tuple[bool, int, UUID]:
    @flow(name="as-is", persist_result=False)
    async def carry() -> tuple[bool, int, UUID]:
        started = await make()
        Watched.walks = 0
        jobs = as_is(started.jobs) if wrap else started.jobs
        same = await take(jobs, id(started.jobs))
        run_id = flow_run.get_id()
        assert run_id is not None
        return same, Watched.walks, UUID(run_id)

    result: tuple[bool, int, UUID] = run_coro_as_sync(carry())
    return result


def task_inputs(run_id: UUID) -> dict[str, list[Any]]:
    """`take`'s inputs as the run's graph shows them: for each argument, the task runs it came from."""
    body = {"flow_runs": {"id": {"any_": [str(run_id)]}}, "limit": 10, "sort": "EXPECTED_START_TIME_ASC"}
    deadline = time.monotonic() + 30
    while True:  # the server records task runs from their events, a moment after they ran
        response = httpx.post(f"{PREFECT_API_URL.value()}/task_runs/filter", json=body)
        response.raise_for_status()
        runs = response.json()
        if len(runs) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    names = {run["id"]: run["name"] for run in runs}
    (take_run,) = [run for run in runs if run["name"].startswith("take")]
    return {
        argument: [names.get(i["id"]) for i in inputs if i["input_type"] == "task_run"]
        for argument, inputs in take_run["task_inputs"].items()
    }


def test_a_task_gets_the_object_itself_and_prefect_never_walks_it() -> None:
    same, walks, run_id = run_take(wrap=True)
    assert same  # the very list, not a copy Prefect rebuilt
    assert walks == 0
    # The graph still shows that `take` used what `make` returned.
    inputs = task_inputs(run_id)
    assert [name.startswith("make") for name in inputs["jobs"]] == [True]


def test_without_it_prefect_walks_the_argument() -> None:
    """What `as_is` saves: the same call unwrapped has its list walked by Prefect."""
    _, walks, _ = run_take(wrap=False)
    assert walks >= 2

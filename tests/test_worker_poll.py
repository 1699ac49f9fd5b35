"""How often a worker asks Prefect for runs: every 2 s, as it is also woken at once for each run
scheduled on its pool (deployments/scheduled_wake.py; each ask costs the Prefect server ~30 ms of
CPU); TRADELANE_RUNNER_POLL_SECONDS, when set. And the wake-ups: each makes a poll once the worker
can take runs, and those that come during a poll make one more, not one each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import anyio
import pytest
from prefect.events import Event
from prefect.events.filters import EventOccurredFilter
from prefect.server.events.filters import EventFilter as ServerEventFilter
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.types._datetime import now as Now

from core.config import POLL_SECONDS, Settings
from deployments import scheduled_wake
from deployments import worker as worker_module
from deployments.worker import make_worker


def _prefetch(settings: Settings) -> float:
    return float(make_worker(settings, name="poll-test")._prefetch_seconds)


def test_a_worker_asks_every_two_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADELANE_RUNNER_POLL_SECONDS", raising=False)
    monkeypatch.delenv("PREFECT_WORKER_PREFETCH_SECONDS", raising=False)
    settings = Settings(home=tmp_path)
    assert settings.poll_seconds() == POLL_SECONDS == 2.0
    assert _prefetch(settings) == POLL_SECONDS


def test_a_set_interval_is_used_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELANE_RUNNER_POLL_SECONDS", "0.25")
    monkeypatch.delenv("PREFECT_WORKER_PREFETCH_SECONDS", raising=False)
    settings = Settings(home=tmp_path)
    assert settings.poll_seconds() == 0.25
    assert _prefetch(settings) == 0.25
    monkeypatch.setenv("TRADELANE_RUNNER_POLL_SECONDS", "0")
    with pytest.raises(ValueError, match="greater than 0"):
        Settings(home=tmp_path)


def test_wake_ups_before_ready_are_kept_and_those_during_a_poll_make_one_more() -> None:
    wakeups = scheduled_wake.WorkerWakeups()
    ready = False
    polls = 0
    polling = anyio.Event()
    release = anyio.Event()

    async def poll() -> None:
        nonlocal polls
        polls += 1
        polling.set()
        await release.wait()

    async def main() -> None:
        nonlocal ready
        async with anyio.create_task_group() as group:
            group.start_soon(wakeups.poll_on_each, lambda: ready, poll)
            wakeups.wake()  # before the worker can take runs: kept
            await anyio.sleep(0.3)
            assert polls == 0
            ready = True
            with anyio.fail_after(10):
                await polling.wait()
            for _ in range(5):  # during the poll: one more poll, not five
                wakeups.wake()
            release.set()
            with anyio.fail_after(10):
                while polls < 2:
                    await anyio.sleep(0.01)
            await anyio.sleep(0.3)
            assert polls == 2
            group.cancel_scope.cancel()

    anyio.run(main)


def _event(name: str, pool: UUID, role: str = "work-pool") -> ReceivedEvent:
    return ReceivedEvent.model_validate(
        {
            "event": f"prefect.flow-run.{name}",
            "resource": {"prefect.resource.id": f"prefect.flow-run.{uuid4()}"},
            "related": [{"prefect.resource.id": f"prefect.work-pool.{pool}", "prefect.resource.role": role}],
            "id": str(uuid4()),
            "occurred": datetime.now(UTC).isoformat(),
        }
    )


def test_a_worker_is_woken_by_runs_scheduled_on_its_pool_only() -> None:
    """The names, as the Prefect server applies them to the events it streams; the pool, which
    the server does not check on the live stream, as the worker checks each event it gets."""
    pool, other = uuid4(), uuid4()
    asked = scheduled_wake.scheduled_on(pool)
    # Prefect's subscriber sets the times on connecting: from a minute back, and for a year on.
    since, until = Now("UTC") - timedelta(minutes=1), Now("UTC") + timedelta(days=365)
    asked.occurred = EventOccurredFilter.model_validate({"since": since, "until": until})
    streamed = ServerEventFilter.model_validate(asked.model_dump(mode="json"))
    for name in ("Scheduled", "AwaitingRetry"):  # a new run; the UI's Retry
        assert streamed.includes(_event(name, pool))
        assert scheduled_wake.is_scheduled_on(Event.model_validate(_event(name, pool).model_dump()), pool)
    for name in ("Running", "Pending", "Completed"):
        assert not streamed.includes(_event(name, pool))
    for event in (
        _event("Scheduled", other),
        _event("Scheduled", pool, role="deployment"),
        _event("Running", pool),
    ):
        assert not scheduled_wake.is_scheduled_on(Event.model_validate(event.model_dump()), pool)


def test_a_full_worker_asks_when_a_slot_frees_and_a_wake_up_that_saw_nothing_asks_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wake-up while every slot is taken asks nothing: the slot freed next asks instead. A
    wake-up whose poll saw no run asks once more shortly after (the run may not be committed
    yet when its event arrives); one that saw the run and lost it to another worker does not."""
    monkeypatch.setattr(worker_module, "RECHECK_SECONDS", 0.01)
    worker = make_worker(Settings(home=tmp_path), name="poll-test", limit=1)
    answers: list[list[str]] = []
    polls = 0

    async def poll() -> list[str]:
        nonlocal polls
        polls += 1
        taken = answers.pop(0) if answers else []
        worker._runs_seen = len(taken) + seen_but_lost
        return taken

    seen_but_lost = 0

    woken: list[bool] = []
    worker.get_and_submit_flow_runs = poll  # type: ignore[method-assign,assignment]
    worker.wake = lambda: woken.append(True)

    async def main() -> None:
        nonlocal polls
        worker._limiter = anyio.CapacityLimiter(1)
        worker.is_setup, worker._has_successfully_synced = True, True
        worker._client = object()  # type: ignore[assignment]
        run = uuid4()
        worker._limiter.acquire_on_behalf_of_nowait(run)
        assert await worker.poll_when_woken() == [] and polls == 0  # full: nothing asked
        worker._release_limit_slot(run)
        assert woken == [True]  # the freed slot asks for the run left waiting
        other = uuid4()
        worker._limiter.acquire_on_behalf_of_nowait(other)
        worker._release_limit_slot(other)
        assert woken == [True]  # nothing was left waiting: no ask
        answers.extend([[], ["a run"]])
        assert await worker.poll_when_woken() == ["a run"] and polls == 2  # empty, then again
        answers.append(["another"])
        assert await worker.poll_when_woken() == ["another"] and polls == 3  # found at once: once
        nonlocal seen_but_lost
        seen_but_lost = 1  # the run was there, and another worker took it: no second ask
        assert await worker.poll_when_woken() == [] and polls == 4

    anyio.run(main)

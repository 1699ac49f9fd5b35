"""Hold a slot of each Prefect global concurrency limit a file touches while it is carried.

The limits are the partner's and the endpoint's `max_concurrent` (core/concurrency_limits.py), kept
in Prefect by deployments/limits.py; holding them through Prefect's `concurrency(...)` makes them
hold across every runner and worker. A file with no limit costs no Prefect call at all.

The slots are leased: a run whose machine dies frees them when the lease runs out
(`LEASE_SECONDS`), while a live one renews it. A limit the store has but Prefect does not yet (set
a moment ago, before the reconciler's next round) is created here from the store's value, so a cap
holds from the first file after it was set: each run looks each of its limits up once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError, concurrency
from prefect.context import TaskRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from core import concurrency_limits
from core.db import session_scope
from core.endpoints.errors import TransientError

Limits = dict[str, int]


class SlotUnavailable(TransientError):
    """The Prefect API could not give a file its slots now: the file is tried again (tasks/retry.py)."""


# Renewed at 3/4 of this while the file is carried; a dead holder's slot is free again after it.
LEASE_SECONDS = 60.0
# The limits this process has seen Prefect hold (see `_make_sure`).
_checked: set[str] = set()


def limits_of(files: list[tuple[int | None, int | None]]) -> list[Limits]:
    """Per file (partner id, endpoint id): the limits it takes a slot of (blocking: a thread)."""
    if not files:
        return []
    with session_scope() as session:
        return concurrency_limits.for_files(session, files)


async def limits_for(files: list[tuple[int | None, int | None]]) -> list[Limits]:
    return await to_thread.run_sync(limits_of, files)


@asynccontextmanager
async def held(limits: Limits) -> AsyncIterator[None]:
    """One slot of each limit in `limits` (name → slots) while the body runs; waits for them."""
    if not limits:
        yield
        return
    try:
        await _make_sure(limits)
    except Exception as exc:
        raise SlotUnavailable(f"could not reach Prefect for the concurrency limits {sorted(limits)}") from exc
    names = sorted(limits)
    for first_try in (True, False):
        entered = False
        try:
            async with concurrency(
                names,
                strict=True,
                lease_duration=LEASE_SECONDS,
                holder=_holder(),
                # A file already being written keeps going through a short API outage.
                raise_on_lease_renewal_failure=False,
            ):
                entered = True
                yield
                return
        except ConcurrencySlotAcquisitionError as exc:
            if entered:
                raise
            if not first_try:
                raise SlotUnavailable(f"could not take a slot of {names}: {exc}") from exc
        try:
            await ensure(limits)  # removed since this run looked: the store still wants it
        except Exception as exc:
            raise SlotUnavailable(f"could not reach Prefect for the concurrency limits {names}") from exc


async def _make_sure(limits: Limits) -> None:
    """Once per process (a flow run) for each limit: create it, or make it active, if Prefect does not
    hold it so. (An acquisition of several limits only takes those that exist: one the reconciler has
    not made yet would not hold.) Its value is the reconciler's business."""
    unseen = {name: slots for name, slots in limits.items() if name not in _checked}
    if not unseen:
        return
    async with get_client() as client:
        for name, slots in unseen.items():
            try:
                current = await client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                current = None
            if current is None or not current.active:
                await put_limit(client, name, slots)
    _checked.update(unseen)


async def ensure(limits: Limits) -> None:
    """Create (or re-activate at the store's value) the limits Prefect does not hold."""
    async with get_client() as client:
        for name, slots in limits.items():
            await put_limit(client, name, slots)


async def put_limit(client: PrefectClient, name: str, slots: int) -> None:
    """Create the global concurrency limit `name`, or set it to `slots` and active if it exists."""
    try:
        await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
    except ObjectAlreadyExists:
        update = GlobalConcurrencyLimitUpdate(limit=slots, active=True)
        await client.update_global_concurrency_limit(name, update)


def _holder() -> ConcurrencyLeaseHolder | None:
    """The task run that holds the slot, shown with the lease."""
    context = TaskRunContext.get()
    return ConcurrencyLeaseHolder(type="task_run", id=context.task_run.id) if context else None

"""Mirror the store's partner and endpoint concurrency limits into Prefect global concurrency limits.

Called by the deployments' reconciler on every round (deployments/serve.py), so a limit set,
changed or removed with `tradelane partner/endpoint set --max-concurrent`, `apply`, the admin API
or the console shows on the Prefect UI's Concurrency page within seconds, named
`partner:<account>:<name>` / `endpoint:<account>:<name>` (core/concurrency_limits.py). Prefect
limits with those prefixes belong to tradelane: one the store no longer asks for is deleted, one
changed by hand in the UI is set back to the store's value. Other limits are left alone.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

from anyio import to_thread
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse
from prefect.exceptions import ObjectNotFound

from core import concurrency_limits
from core.db import session_scope
from tasks.slots import put_limit

log = logging.getLogger("tradelane.limits")
PAGE = 200
# Prefect is asked again at least this often even when the store did not change, so a limit
# edited or deleted by hand in the UI is set back to the store's value.
REFRESH_SECONDS = 30.0


@dataclass
class LimitChanges:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _wanted() -> dict[str, int]:
    with session_scope() as session:
        return concurrency_limits.wanted(session)


async def reconcile_limits() -> LimitChanges:
    """Make Prefect's `partner:`/`endpoint:` limits what the store says; what changed."""
    wanted = await to_thread.run_sync(_wanted)
    changes = LimitChanges()
    async with get_client() as client:
        have = {limit.name: limit for limit in await _ours(client)}
        for name, slots in sorted(wanted.items()):
            current = have.get(name)
            if current is None:
                await put_limit(client, name, slots)  # (a run may have created it a moment ago)
                changes.created.append(name)
            elif current.limit != slots or not current.active:
                await put_limit(client, name, slots)
                changes.updated.append(name)
        for name in sorted(set(have) - set(wanted)):
            with contextlib.suppress(ObjectNotFound):
                await client.delete_global_concurrency_limit_by_name(name)
            changes.removed.append(name)
    said = {"created": changes.created, "updated": changes.updated, "removed": changes.removed}
    for verb, names in said.items():
        if names:
            log.info("concurrency limits %s: %s", verb, ", ".join(names))
    return changes


async def _ours(client: PrefectClient) -> list[GlobalConcurrencyLimitResponse]:
    """Every global concurrency limit named like tradelane's, page by page."""
    ours: list[GlobalConcurrencyLimitResponse] = []
    offset = 0
    while True:
        page = await client.read_global_concurrency_limits(limit=PAGE, offset=offset)
        ours += [limit for limit in page if limit.name.startswith(concurrency_limits.PREFIXES)]
        if len(page) < PAGE:
            return ours
        offset += PAGE


class LimitMirror:
    """`reconcile_limits` for the reconciler's rounds: a round whose store limits are the same as
    the last mirrored costs one store query and no Prefect call (until `REFRESH_SECONDS`)."""

    def __init__(self) -> None:
        self.mirrored: dict[str, int] | None = None
        self.at = 0.0

    async def once(self) -> None:
        try:
            wanted = await to_thread.run_sync(_wanted)
            if wanted == self.mirrored and time.monotonic() - self.at < REFRESH_SECONDS:
                return
            await reconcile_limits()
            self.mirrored, self.at = wanted, time.monotonic()
        except Exception:  # the API may be briefly away: the next round tries again; flows still served
            log.exception("could not mirror the concurrency limits into Prefect")

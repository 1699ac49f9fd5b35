"""What the content-changing templates share: their run (start → validate → steps → push → record),
comma-separated list params, and the account's PGP keyring.

A step is a name (its task run's, and its link of the transfer's chain) and a function from a job to
the job carrying what it made (`core.derived.derive`) or bound elsewhere (edi-route). A file a step
refuses is recorded at once with the reason and never reaches a push; the rest go on to the next step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any

from anyio import to_thread
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from pydantic import BeforeValidator

from core import derived
from core.db import session_scope
from core.delivery import Job
from core.pgp import keyring
from core.pgp.keyring import Keyring
from core.redact import install_log_scrubber
from core.tenancy import system_scope
from flows.transfer import carry
from tasks.as_is import as_is
from tasks.derive import derive
from tasks.start import start
from tasks.validate import validate


@dataclass(frozen=True)
class Step:
    """A content step of a template: its name and what it does to one job."""

    name: str
    run: Callable[[Job], Job]


async def carry_through(transfer_ids: list[int], steps: Sequence[Step]) -> State[Any]:
    """Carry each pending transfer of the batch through `steps`, in order, then to its destination."""
    install_log_scrubber()  # every secret an endpoint of this run holds is hidden in its logs
    count = f"{len(transfer_ids)} transfer" + ("" if len(transfer_ids) == 1 else "s")
    started = await start.with_options(task_run_name=f"start {count}")(as_is(transfer_ids), flow_run.get_id())
    jobs = started.jobs
    if not jobs:
        return await carry(started)
    refused: list[BaseException | None] = [None] * len(jobs)
    if jobs[0].flow.validators:
        refused = list(await validate.with_options(task_run_name=f"validate {_names(jobs)}")(as_is(jobs)))
    await to_thread.run_sync(derived.sweep)  # derived files a killed run left for finished transfers
    for step in steps:
        todo = [i for i, error in enumerate(refused) if error is None]
        if not todo:
            break
        batch = [jobs[i] for i in todo]
        derive_step = derive.with_options(task_run_name=f"{step.name} {_names(batch)}")
        results = await derive_step(as_is(batch), step.run)
        for i, result in zip(todo, results, strict=True):
            if isinstance(result, Exception):
                refused[i] = result
            else:
                jobs[i] = result
    return await carry(replace(started, jobs=jobs), refused)


def _names(jobs: list[Job]) -> str:
    return jobs[0].receipt.name if len(jobs) == 1 else f"{len(jobs)} files"


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list param given as text: `recipients=ops@acme.example,7A3C…` → ["ops@acme.example", "7A3C…"]
CommaList = Annotated[list[str], BeforeValidator(_split)]


def account_keyring(account_id: int) -> Keyring:
    """The PGP keyring of the data flow's account, read once before a file streams."""
    with session_scope() as session:
        return keyring.load(session, system_scope(session, account_id))

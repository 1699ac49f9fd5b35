"""The dispatcher starts a batch's run as `arun_deployment(..., timeout=0)` would, against a real
Prefect server, but reads each deployment by name once: later runs of it are created by its id.
A deployment replaced since (its data flow removed and added again) is read by name again, and one
that does not exist is ObjectNotFound, which the dispatcher retries later."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

import pytest
from prefect.client.orchestration import PrefectClient, get_client
from prefect.exceptions import ObjectNotFound

from core.config import Settings
from deployments.dispatcher import Dispatcher

pytestmark = pytest.mark.usefixtures("prefect_server")

FLOW = "tl-create-run"


def counted(read: Callable[..., Awaitable[Any]], reads: list[str]) -> Callable[..., Awaitable[Any]]:
    async def read_and_count(name: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(name)
        return await read(name, *args, **kwargs)

    return read_and_count


async def start(
    dispatcher: Dispatcher, client: PrefectClient, deployment: str, key: str | None = None
) -> Any:
    return await dispatcher._create_run(
        client,
        f"{FLOW}/{deployment}",
        parameters={"transfer_ids": [1, 2]},
        name="acme → out: 2 files",
        tags=["partner:acme"],
        idempotency_key=key or f"tradelane-batch-{uuid4()}",
    )


async def test_a_deployment_is_read_by_name_once_and_again_when_replaced() -> None:
    async with get_client() as client:
        flow_id = await client.create_flow_from_name(FLOW)
        first = await client.create_deployment(flow_id=flow_id, name="orders")
        dispatcher = Dispatcher(Settings())
        reads: list[str] = []
        client.read_deployment_by_name = counted(client.read_deployment_by_name, reads)  # type: ignore[method-assign]

        one = await start(dispatcher, client, "orders", key="tradelane-batch-k1")
        two = await start(dispatcher, client, "orders")
        assert one.deployment_id == two.deployment_id == first
        assert reads == [f"{FLOW}/orders"]  # once for both runs
        assert one.state is not None and one.state.is_scheduled()
        assert one.name == "acme → out: 2 files" and one.tags == ["partner:acme"]
        assert one.parameters == {"transfer_ids": [1, 2]}
        # The batch key still makes a second ask for the same batch the same run.
        assert (await start(dispatcher, client, "orders", key="tradelane-batch-k1")).id == one.id

        await client.delete_deployment(first)
        second = await client.create_deployment(flow_id=flow_id, name="orders")
        three = await start(dispatcher, client, "orders")
        assert three.deployment_id == second != first
        assert reads == [f"{FLOW}/orders"] * 2


async def test_a_deployment_not_there_is_not_found() -> None:
    async with get_client() as client:
        with pytest.raises(ObjectNotFound):
            await start(Dispatcher(Settings()), client, "never-served")

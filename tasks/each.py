"""Run a blocking step over each item of a batch in worker threads, a few at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
from anyio import to_thread

Item = TypeVar("Item")
Result = TypeVar("Result")


async def each_in_threads(
    step: Callable[[Item], Result], items: list[Item], concurrency: int
) -> list[Result | Exception]:
    """`step(item)` for every item, at most `concurrency` at once; per item its result or the
    exception it raised, in order, so one bad file never stops the rest of its batch."""
    results: list[Result | Exception] = [Exception("not run")] * len(items)
    limiter = anyio.CapacityLimiter(concurrency)

    async def run(index: int) -> None:
        try:
            results[index] = await to_thread.run_sync(step, items[index], limiter=limiter)
        except Exception as exc:  # returned, not raised: the caller records it per item
            results[index] = exc

    async with anyio.create_task_group() as group:
        for index in range(len(items)):
            group.start_soon(run, index)
    return results

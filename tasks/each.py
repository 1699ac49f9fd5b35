"""Run a blocking step over each item of a batch in worker threads, a few at a time."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TypeVar

import anyio
from anyio import to_thread

Item = TypeVar("Item")
Result = TypeVar("Result")


async def each_in_threads(
    step: Callable[[Item], Result],
    items: list[Item],
    concurrency: int,
    around: Callable[[int], AbstractAsyncContextManager[object]] | None = None,
) -> list[Result | Exception]:
    """`step(item)` for every item, at most `concurrency` at once; per item its result or the
    exception it raised, in order, so one bad file never stops the rest of its batch. `around(i)`,
    when given, is entered before item i's step takes a thread and left after it (e.g. the item's
    concurrency slots: waiting for one holds no thread)."""
    results: list[Result | Exception] = [Exception("not run")] * len(items)
    limiter = anyio.CapacityLimiter(concurrency)

    async def run(index: int) -> None:
        try:
            async with around(index) if around else nullcontext():
                results[index] = await to_thread.run_sync(step, items[index], limiter=limiter)
        except Exception as exc:  # returned, not raised: the caller records it per item
            results[index] = exc

    async with anyio.create_task_group() as group:
        for index in range(len(items)):
            group.start_soon(run, index)
    return results

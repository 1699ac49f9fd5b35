"""Router lifespans that run a background sweep thread (core/sweeper.py) while the app serves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from core.sweeper import SweepThread


def sweeping(worker: Callable[[], SweepThread]) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan that starts `worker()` (looked up when the app starts) and stops it at shutdown."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        thread = worker()
        thread.start()
        try:
            yield
        finally:
            await run_in_threadpool(thread.stop)

    return lifespan

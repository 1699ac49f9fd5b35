"""Point core's cached settings, engine and key at a throwaway home for one test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def clear_caches() -> None:
    from core.as2.worker import worker
    from core.b2b.worker import worker as peer_worker
    from core.config import get_settings
    from core.crypto import secret_key
    from core.db import get_engine

    # An API app served without its lifespan (TestClient) leaves the AS2 worker sweeping the store;
    # a sweep that read the old settings could cache the old engine again right after the clear.
    worker.stop()
    peer_worker.stop()  # the same for the peer worker (api/routes/peer.py's lifespan)

    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_settings.cache_clear()
    secret_key.cache_clear()


@contextmanager
def isolated_home(home: Path, database_url: str | None = None) -> Iterator[Path]:
    saved = {k: os.environ.get(k) for k in ("TRADELANE_HOME", "TRADELANE_DATABASE_URL")}
    os.environ["TRADELANE_HOME"] = str(home)
    if database_url:
        os.environ["TRADELANE_DATABASE_URL"] = database_url
    else:
        os.environ.pop("TRADELANE_DATABASE_URL", None)
    clear_caches()
    try:
        yield home
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        clear_caches()

"""deployments/prefect_result_store.py: a flow run's read of the server's default result storage
closes the connection it opened, where Prefect's own leaves it to the garbage collector (whose
ResourceWarning then failed whichever test was running)."""

from __future__ import annotations

import gc
import sys
import warnings
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

pytestmark = pytest.mark.usefixtures("prefect_server")


def unclosed_sockets_after(read: Callable[[], UUID | None]) -> list[str]:
    """What the garbage collector says is left unclosed once `read()` is done."""
    heard: list[Any] = []
    saved = sys.unraisablehook
    gc.collect()
    sys.unraisablehook = heard.append
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            assert read() is None  # the test server has no default result storage
            gc.collect()
    finally:
        sys.unraisablehook = saved
    return [repr(each.object) for each in heard if each.exc_type is ResourceWarning]


def test_the_read_closes_its_connection() -> None:
    import prefect.results

    from deployments import prefect_result_store

    assert (
        prefect.results._read_server_default_result_storage_block_id
        is prefect_result_store.read_server_default_block_id
    )
    assert unclosed_sockets_after(prefect_result_store.read_server_default_block_id) == []


def test_prefects_own_read_leaves_its_connection_open() -> None:
    """Why the module exists: once this fails, Prefect closes it itself and the module can go."""
    from deployments import prefect_result_store

    leaked = unclosed_sockets_after(prefect_result_store.prefects_own)
    assert len(leaked) == 1 and "socket" in leaked[0], leaked

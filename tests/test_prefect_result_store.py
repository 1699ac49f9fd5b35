"""deployments/prefect_result_store.py: a flow run's read of the server's default result storage
closes the connection it opened, where Prefect's own leaves it to the garbage collector (whose
ResourceWarning then failed whichever test was running)."""

from __future__ import annotations

import gc
import socket
import sys
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import pytest

pytestmark = pytest.mark.usefixtures("prefect_server")


def unclosed_sockets_after(read: Callable[[], UUID | None]) -> list[str]:
    """The sockets to the Prefect server the garbage collector finds unclosed once `read()` is
    done (any other unraisable error, another thread's say, goes to pytest as always)."""
    from prefect.settings import PREFECT_API_URL

    server_port = urlsplit(PREFECT_API_URL.value()).port
    heard: list[Any] = []
    saved = sys.unraisablehook

    def to_the_server(sock: object) -> bool:
        try:
            return isinstance(sock, socket.socket) and sock.getpeername()[1] == server_port
        except OSError:  # not connected
            return False

    def to_the_server_or_passed_on(unraisable: Any) -> None:
        ours = unraisable.exc_type is ResourceWarning and to_the_server(unraisable.object)
        (heard.append if ours else saved)(unraisable)

    gc.collect()
    sys.unraisablehook = to_the_server_or_passed_on
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            assert read() is None  # the test server has no default result storage
            gc.collect()
    finally:
        sys.unraisablehook = saved
    return [repr(each.object) for each in heard]


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

"""A flow run's read of the server's default result storage closes the connection it opened.

Prefect 3.8.8's `prefect.results._read_server_default_result_storage_block_id`, which every async
flow run (every template's) calls as it sets up its result store, makes a sync API client for that
one request and never closes it (a sync flow's run has a client of its own open, which it reuses):
the connection stays open until the garbage collector finds it, one per run, and the
ResourceWarning it then raises lands in whatever code runs at that moment (in the tests, an error
of whichever test is running). Here the same request goes through the same client, used as a
context manager: closed once it answered, or kept open if it is a client someone else had opened
(Prefect's sync client counts who entered it). Importing this module installs it; the worker's fork
server preloads it, so every run it forks has it.
"""

from __future__ import annotations

import logging
from uuid import UUID

import httpx
import prefect.results as results
from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError

log = logging.getLogger("prefect.results")

# Prefect's own, kept for the test that shows why this module is here (and when it can go).
prefects_own = results._read_server_default_result_storage_block_id


def read_server_default_block_id() -> UUID | None:
    """The server's default result storage block, if it has one (None also if it cannot be read,
    as Prefect decides)."""
    try:
        with get_client(sync_client=True) as client:
            configuration = client.read_server_default_result_storage()
    except (PrefectHTTPStatusError, httpx.HTTPError, RuntimeError, ValueError):
        log.debug("Unable to read server default result storage; using local defaults.", exc_info=True)
        return None
    return configuration.default_result_storage_block_id


def install() -> None:
    results._read_server_default_result_storage_block_id = read_server_default_block_id


install()

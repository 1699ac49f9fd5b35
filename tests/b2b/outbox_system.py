"""The `tradelane up` of the outbox tests (fixture `outbox_system`, shared by tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.system import IDLE_AFTER_LAST_USE, System, run_system, stop

__all__ = ["outbox_system"]


@pytest.fixture(scope="session")
def outbox_system() -> Iterator[System]:
    """One `up` for the outbox tests (tests/b2b/test_outboxes_up.py, tests/hostile/test_outboxes.py,
    run one after the other by tests/conftest.py): plain FTP allowed, lockout out of the way. Each
    test makes its own accounts."""
    low = 40000 + (os.getpid() % 200) * 100
    env = {
        "TRADELANE_FTP_REQUIRE_TLS": "false",
        "TRADELANE_FTP_PASSIVE_PORTS": f"{low}-{low + 60}",
        "TRADELANE_LOCKOUT_FAILURES": "100000",
        "TRADELANE_LOCKOUT_ACCOUNT_FAILURES": "100000",
    }
    with run_system(**env) as system:
        IDLE_AFTER_LAST_USE["outbox_system"] = lambda: stop(system)
        yield system

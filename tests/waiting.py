"""The one way tests wait: poll a condition until it holds, with a deadline.

Never a fixed sleep followed by an assert: on a loaded machine the sleep is too short (the test
flakes), and on an idle one it is too long (the suite crawls). Wait for what the assert needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], what: str = "the condition", timeout: float = 15.0, interval: float = 0.02
) -> T:
    """Call `condition` until it returns something truthy, and return that; fail (AssertionError,
    naming `what`) when it has not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)

"""Lockout after repeated failed logins, per user name and per source address, with a cool-down.

Kept in memory of the process that serves logins (`tradelane up` serves REST, SFTP and FTP from one
process, so they share one ledger). Counting both keys stops password spraying from one address as
well as guessing one user's password from many.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Strikes:
    count: int = 0
    first: float = 0.0
    locked_until: float = 0.0


class Lockout:
    def __init__(
        self,
        max_failures: int = 5,
        window_seconds: float = 300.0,
        cooldown_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_address_failures: int | None = None,
    ) -> None:
        self.max_failures = max_failures
        self.max_address_failures = max_address_failures or max_failures * 4
        self.window = window_seconds
        self.cooldown = cooldown_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._strikes: dict[str, _Strikes] = {}

    @staticmethod
    def keys(username: str, remote_addr: str | None) -> list[str]:
        keys = [f"user:{username.lower()}"]
        if remote_addr:
            keys.append(f"addr:{remote_addr}")
        return keys

    def locked(self, username: str, remote_addr: str | None) -> float:
        """Seconds until the login may be tried again (0 when it may be tried now)."""
        now = self.clock()
        with self._lock:
            waits = [
                s.locked_until - now for k in self.keys(username, remote_addr) if (s := self._strikes.get(k))
            ]
        return max([0.0, *waits])

    def failed(self, username: str, remote_addr: str | None) -> bool:
        """Record a failure; True when this failure locked the user or the address."""
        now = self.clock()
        locked = False
        with self._lock:
            for key in self.keys(username, remote_addr):
                strikes = self._strikes.setdefault(key, _Strikes(first=now))
                if now - strikes.first > self.window:
                    strikes.count, strikes.first = 0, now
                strikes.count += 1
                limit = self.max_address_failures if key.startswith("addr:") else self.max_failures
                if strikes.count >= limit:
                    strikes.locked_until = now + self.cooldown
                    strikes.count, strikes.first = 0, now
                    locked = True
        return locked

    def succeeded(self, username: str, remote_addr: str | None) -> None:
        """A good login clears the user's strikes (not the address's: it may be spraying others)."""
        with self._lock:
            strikes = self._strikes.get(f"user:{username.lower()}")
            if strikes and strikes.locked_until <= self.clock():
                del self._strikes[f"user:{username.lower()}"]


_shared: Lockout | None = None
_shared_guard = threading.Lock()


def shared_lockout() -> Lockout:
    """The process's one ledger, shared by the REST API, SFTP and FTP logins."""
    global _shared
    with _shared_guard:
        if _shared is None:
            from core.config import get_settings

            s = get_settings()
            _shared = Lockout(
                s.lockout_failures,
                s.lockout_window_seconds,
                s.lockout_cooldown_seconds,
                max_address_failures=s.lockout_address_failures,
            )
        return _shared

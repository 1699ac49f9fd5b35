"""Admission rules the servers share: OpenSSH's MaxStartups, and open files per partner.

Pure logic with no server library: the SFTP and FTP servers (and tests) call these.
"""

from __future__ import annotations

import random
import resource
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass


class LimitReached(Exception):
    """A cap was reached; the message says which and is safe to show the client."""


@dataclass(frozen=True)
class Startups:
    """OpenSSH's `MaxStartups start:rate:full` for connections that have not logged in yet.

    With `start` unauthenticated connections pending, a new one is refused with probability
    `rate`%, rising linearly to 100% at `full`. A single number `N` means a hard cap of `N`.
    """

    start: int
    rate: int
    full: int

    @classmethod
    def parse(cls, text: str) -> Startups:
        parts = text.strip().split(":")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"MaxStartups must be N or start:rate:full, not {text!r}") from None
        if len(numbers) == 1:
            numbers = [numbers[0], 100, numbers[0]]
        if len(numbers) != 3:
            raise ValueError(f"MaxStartups must be N or start:rate:full, not {text!r}")
        start, rate, full = numbers
        if not (0 < start <= full and 0 <= rate <= 100):
            raise ValueError(f"MaxStartups needs 0 < start <= full and 0 <= rate <= 100, not {text!r}")
        return cls(start, rate, full)

    def refuse(self, pending: int, roll: Callable[[], float] = random.random) -> bool:
        """Whether a new connection is refused while `pending` others have not logged in yet."""
        if pending >= self.full:
            return True
        if pending < self.start:
            return False
        chance = self.rate + (100 - self.rate) * (pending - self.start) / (self.full - self.start)
        return roll() * 100 < chance

    def __str__(self) -> str:
        return f"{self.start}:{self.rate}:{self.full}"


def descriptor_limit() -> int:
    """The process's open-file limit (`ulimit -n`)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class OpenFiles:
    """Files held open by logins' sessions: at most `per_partner` each and `total` in all.

    Keyed by the login's `key` (`LoginUser.key`: kind and id), so a partner and an account user
    who share an id are counted apart.

    One instance per process, shared by every protocol, so a partner's SFTP and FTP sessions
    count together and one greedy partner cannot use up the descriptors everyone else needs.
    """

    def __init__(self, per_partner: int, total: int) -> None:
        self.per_partner = per_partner
        self.total = total
        self._held: dict[Hashable, int] = {}
        self._all = 0
        self._lock = threading.Lock()

    def acquire(self, login: Hashable) -> None:
        with self._lock:
            held = self._held.get(login, 0)
            if held >= self.per_partner:
                raise LimitReached(
                    f"too many open files: this login already has {held} open (at most {self.per_partner}); "
                    "close some first"
                )
            if self._all >= self.total:
                raise LimitReached("too many open files on this server right now; try again shortly")
            self._held[login] = held + 1
            self._all += 1

    def release(self, login: Hashable) -> None:
        with self._lock:
            held = self._held.get(login, 0)
            if held <= 0:
                return
            if held == 1:
                del self._held[login]
            else:
                self._held[login] = held - 1
            self._all -= 1

    def held(self, login: Hashable) -> int:
        with self._lock:
            return self._held.get(login, 0)

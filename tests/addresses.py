"""Source addresses for tests of per-address rules (bans, allow-lists): the whole of 127.0.0.0/8 is
loopback on Linux, so a client can connect from 127.x.y.z to a server on 127.0.0.1. Each call gives
an address no other test in this process has used, so one test's ban never touches another."""

from __future__ import annotations

import itertools
import random

_second = random.randint(2, 250)
_next = itertools.count(1)


def fresh_loopback() -> str:
    n = next(_next)
    return f"127.{_second}.{n // 250}.{n % 250 + 1}"

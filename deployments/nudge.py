"""A local nudge from the dispatcher to `up`'s worker: "a run was just created, ask Prefect now".

A worker learns of new runs by polling Prefect (every TRADELANE_RUNNER_POLL_SECONDS), so a run
created just after a poll waited up to a whole interval for the next: on one idle machine the
largest wait between an upload and its delivery. Under `up` the dispatcher and the worker are on
the same machine, so the dispatcher sends one datagram to a Unix socket in the home after each run
it creates, and the worker polls at once. It is only a hint: the run is still taken through
Prefect (its Pending state, the worker's limit), a lost nudge leaves the run to the next poll, and
workers on other machines, which no nudge reaches, keep polling.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio

log = logging.getLogger("tradelane.nudge")

# A Unix socket's path must fit sun_path (108 bytes on Linux): a longer home gets no nudges.
MAX_PATH = 100


def socket_path(home: Path) -> Path:
    return home / "run" / "worker-nudge.sock"


def usable(path: Path) -> bool:
    """Whether a worker can be nudged at `path` (it fits a Unix socket address)."""
    return len(str(path)) <= MAX_PATH


def send(path: Path) -> None:
    """Nudge the worker listening at `path`, if any; never blocks, never raises."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.sendto(b"1", str(path))


@contextlib.asynccontextmanager
async def listening(path: Path) -> AsyncIterator[anyio.abc.UNIXDatagramSocket | None]:
    """The socket nudges arrive on, bound at `path` (a stale one from a dead process replaced);
    None when the path is too long for a Unix socket (the worker only polls then)."""
    if not usable(path):
        log.info("home path too long for the worker's nudge socket; runs are found by polling only")
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    sock = await anyio.create_unix_datagram_socket(local_path=path, local_mode=0o600)
    try:
        yield sock
    finally:
        await sock.aclose()
        path.unlink(missing_ok=True)


async def poll_when_nudged(
    sock: anyio.abc.UNIXDatagramSocket, ready: Callable[[], bool], poll: Callable[[], Awaitable[object]]
) -> None:
    """Call `poll()` after each nudge, once `ready()` (a nudge before the worker could take runs
    is kept, not lost); nudges that arrive during a poll make one more, not one each."""
    nudged = anyio.Event()

    async def receive() -> None:
        nonlocal nudged
        async for _ in sock:
            nudged.set()

    async with anyio.create_task_group() as group:
        group.start_soon(receive)
        while True:
            await nudged.wait()
            nudged = anyio.Event()
            while not ready():
                await anyio.sleep(0.1)
            try:
                await poll()
            except Exception:  # the API briefly away: the worker's own polling carries on
                log.exception("poll after a nudge failed")

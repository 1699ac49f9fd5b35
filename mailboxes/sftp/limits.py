"""Connections turned away before they cost a thread: caps in all, per address, and not logged in yet.

OpenSSH's MaxStartups and PerSourceMaxStartups for those not logged in yet; caps of 0 are off.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Sequence

from core.config import Settings
from core.limits import Startups
from mailboxes.sftp.connection import Connection

log = logging.getLogger(__name__)


def refused(
    settings: Settings, startups: Startups, connections: Sequence[Connection], remote_addr: str
) -> str | None:
    """Why a new connection from `remote_addr` is turned away, given those open now; or None."""
    total, per_address = settings.mailbox_max_connections, settings.mailbox_max_connections_per_address
    if total and len(connections) >= total:
        return f"too many connections ({total})"
    if per_address and sum(c.remote_addr == remote_addr for c in connections) >= per_address:
        return f"too many connections from {remote_addr} ({per_address})"
    here = [c for c in connections if c.remote_addr == remote_addr]
    pending_here = sum(not c.transport.is_authenticated() for c in here)
    per_source = settings.sftp_max_startups_per_address
    if per_source and pending_here >= per_source:
        return f"too many connections from {remote_addr} not logged in yet ({per_source})"
    pending = sum(not c.transport.is_authenticated() for c in connections)
    if startups.refuse(pending):
        return f"too many connections not logged in yet ({pending}; MaxStartups {startups})"
    return None


def turn_away(client: socket.socket, remote_addr: str, why: str) -> None:
    log.info("SFTP connection from %s refused: %s", remote_addr, why)
    # Before the SSH version line a server may send text lines (RFC 4253 4.2): say why.
    with contextlib.suppress(OSError):
        client.settimeout(1)
        client.sendall(f"Connection refused: {why}; try again later.\r\n".encode())
    with contextlib.suppress(OSError):
        client.close()

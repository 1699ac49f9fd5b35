"""REST transfers as sessions: counted with the partner's SFTP and FTP sessions against its own limit.

A partner with `--max-sessions N` has at most N uploads, downloads and SFTP/FTP sessions at once
(in this process); without one, REST transfers are not counted (SFTP/FTP sessions still are, against
TRADELANE_MAX_CONNECTIONS_PER_PARTNER).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from api import errors
from core.login import LoginRefused, LoginUser
from core.models import Partner
from core.sessions import LiveSession, shared_registry


def open_rest_session(partner: Partner, remote_addr: str | None) -> LiveSession:
    try:
        return shared_registry().open(LoginUser.of(partner), remote_addr, "rest", server_limit=False)
    except LoginRefused:
        raise errors.TooManyRequests(
            f"this login already has {partner.max_connections} transfers or sessions open "
            "(its limit); try again when one has finished",
            headers={"Retry-After": "1"},
        ) from None


def close_rest_session(live: LiveSession) -> None:
    shared_registry().close(live)


@asynccontextmanager
async def counted_session(partner: Partner, remote_addr: str | None) -> AsyncIterator[LiveSession]:
    live = open_rest_session(partner, remote_addr)
    try:
        yield live
    finally:
        close_rest_session(live)

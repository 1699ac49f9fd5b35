"""POST /api/authentication: a partner's username and password for a bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response

from api import errors
from api.auth import create_access_token
from api.deps import RemoteAddr, SessionDep, SettingsDep
from api.models import Token
from core import audit, partners
from core.db import home_account_id
from core.lockout import shared_lockout

router = APIRouter(tags=["authentication"])


@router.post(
    "/authentication",
    responses={400: {"description": "unsupported grant_type"}, 401: {"description": "wrong credentials"}},
)
def authenticate(
    session: SessionDep,
    settings: SettingsDep,
    remote_addr: RemoteAddr,
    response: Response,
    grant_type: Annotated[str, Form(description='must be "password"')],
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
) -> Token:
    """Exchange a partner's username and password for a bearer access token."""
    if grant_type != "password":
        raise errors.BadRequest(f"unsupported grant_type {grant_type[:40]!r}: use 'password'")
    lockout = shared_lockout()
    wait = lockout.locked(username, remote_addr)
    if wait > 0:
        raise errors.TooManyRequests(
            f"too many failed logins; try again in {wait:.0f} seconds", headers={"Retry-After": f"{wait:.0f}"}
        )
    partner = partners.authenticate(session, username, password)
    if partner is not None and not partners.network_allowed(partner.allowed_networks, remote_addr):
        partner = None
    if partner is None:
        lockout.failed(username, remote_addr)
        audit.record(
            session,
            "login.failed",
            actor=f"partner:{username[:100]}",
            account_id=home_account_id(session),
            target=username[:100],
            remote_addr=remote_addr,
            protocol="rest",
        )
        session.commit()  # the 401 below would otherwise roll the audit event back
        raise errors.Unauthorized("invalid username or password")
    lockout.succeeded(partner.name, remote_addr)
    audit.record(
        session,
        "login",
        actor=f"partner:{partner.name}",
        account_id=partner.account_id,
        target=partner.name,
        remote_addr=remote_addr,
        protocol="rest",
    )
    token, ttl = create_access_token(partner, settings)
    response.headers["Cache-Control"] = "no-store"
    return Token(access_token=token, expires_in=ttl, user_id=partner.uid)

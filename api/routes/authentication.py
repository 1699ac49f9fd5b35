"""POST /api/authentication: a partner's name (or an account user's e-mail address) and password for a
bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response
from starlette.concurrency import run_in_threadpool

from api import errors
from api.auth import create_access_token
from api.bodies import BoundedBodyRoute
from api.deps import RemoteAddr, SettingsDep
from api.models import Token
from core.login import LoginBusy, LoginRefused, shared_policy

router = APIRouter(tags=["authentication"], route_class=BoundedBodyRoute)


@router.post(
    "/authentication",
    responses={
        400: {"description": "unsupported grant_type"},
        401: {"description": "wrong credentials"},
        429: {"description": "this address failed too often; Retry-After says when to try again"},
        503: {"description": "too many logins at once; Retry-After says when to try again"},
    },
)
async def authenticate(
    settings: SettingsDep,
    remote_addr: RemoteAddr,
    response: Response,
    grant_type: Annotated[str, Form(description='must be "password"')],
    username: Annotated[str, Form(description="a partner's name, or an account user's e-mail address")],
    password: Annotated[str, Form()],
) -> Token:
    """Exchange a login's name and password for a bearer access token: a partner's name, or an
    account user's e-mail address (its home then holds `b2b`, the account's outboxes)."""
    if grant_type != "password":
        raise errors.BadRequest(f"unsupported grant_type {grant_type[:40]!r}: use 'password'")
    try:
        # The one login policy (core/login.py): address bans, account locks, allow-list, audit.
        user = await run_in_threadpool(shared_policy().password, username, password, remote_addr, "rest")
    except LoginBusy:
        wait = str(LoginBusy.retry_after)
        raise errors.ServiceUnavailable(
            f"too many logins at once; try again in {wait} seconds", headers={"Retry-After": wait}
        ) from None
    except LoginRefused as exc:
        if exc.banned_for > 0:
            wait = f"{exc.banned_for:.0f}"
            raise errors.TooManyRequests(
                f"too many failed logins from this address; try again in {wait} seconds",
                headers={"Retry-After": wait},
            ) from None
        raise errors.Unauthorized("invalid username or password") from None
    token, ttl = create_access_token(user, settings)
    response.headers["Cache-Control"] = "no-store"
    return Token(access_token=token, expires_in=ttl, user_id=user.uid)

"""API access tokens: HS256 JWTs signed with a key derived from tradelane's secret key.

Claims: `sub` (the login's uid), `name`, `knd` (`p` for a partner, `u` for an account user; a token
without it is a partner's, as tokens issued before account users were), `iat`, `exp` and `typ` =
"access". Only HS256 is accepted on the way in, so `alg: none` and tokens signed with another key
are refused.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt

from core.config import Settings, get_settings
from core.crypto import signing_key

ALGORITHM = "HS256"
TOKEN_TYPE = "access"


class TokenError(Exception):
    """A token that is malformed, forged, expired or of the wrong kind; the message says which."""


class Holder(Protocol):
    """Whom a token is for: a Partner row or a logged-in user."""

    @property
    def uid(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...


KINDS = {"partner": "p", "user": "u"}


def create_access_token(partner: Holder, settings: Settings | None = None) -> tuple[str, int]:
    """A signed token for `partner` (a partner or an account user) and its lifetime in seconds."""
    ttl = (settings or get_settings()).token_ttl_seconds
    issued = time.time()
    now = int(issued)
    claims = {
        "sub": partner.uid,
        "name": partner.name,
        "knd": KINDS[partner.kind],
        "iat": now,
        "exp": now + ttl,
        "typ": TOKEN_TYPE,
        "at": issued,  # when, to the microsecond: tokens from before the partner's sessions ended die
    }
    return jwt.encode(claims, signing_key(), algorithm=ALGORITHM), ttl


def decode_access_token(token: str) -> dict[str, Any]:
    """The claims of a valid access token; raises TokenError otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            signing_key(),
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("access token has expired") from None
    except jwt.InvalidTokenError:
        raise TokenError("invalid access token") from None
    if claims.get("typ") != TOKEN_TYPE or not isinstance(claims.get("sub"), str):
        raise TokenError("invalid access token")
    if claims.setdefault("knd", "p") not in KINDS.values():
        raise TokenError("invalid access token")
    return claims


def issued_at(claims: dict[str, Any]) -> datetime:
    """When a token was issued (its precise `at`, else `iat`)."""
    at = claims.get("at")
    value = float(at) if isinstance(at, int | float) else float(claims["iat"])
    return datetime.fromtimestamp(value, UTC)

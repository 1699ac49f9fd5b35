"""Invitation tokens: `tlc1_` + 43 base64url characters (256 random bits); only a SHA-256 is kept.

A fast hash is right for a 256-bit random secret (nothing to guess), and needs no key, so rotating
the instance's secret key does not orphan invitations. The clear token exists only in the inviting
process's memory, its output (and the e-mail): never in the database, a log, or a Prefect parameter.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlsplit

from core.errors import Invalid

PREFIX = "tlc1_"
BODY_LENGTH = 43  # base64url of 32 bytes, unpadded
ACCEPT_PATH = "/connect/accept"
_BODY = re.compile(r"[A-Za-z0-9_-]*")


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link(base_url: str, token: str) -> str:
    """The accept page's address for `token` on the instance at `base_url`."""
    return f"{base_url.rstrip('/')}{ACCEPT_PATH}?token={token}"


def check_shape(token: str) -> str:
    """`token` if it has the shape of a whole token; a message saying what is wrong otherwise."""
    if not token.startswith(PREFIX):
        raise Invalid("not an invitation token or link (a token starts with tlc1_)")
    body = token.removeprefix(PREFIX)
    if not _BODY.fullmatch(body):
        raise Invalid("the invitation token holds characters a token never has: copy the whole link")
    if len(body) < BODY_LENGTH:
        raise Invalid(
            f"the invitation token is incomplete ({len(body)} of {BODY_LENGTH} characters after "
            f"{PREFIX}): copy the whole link"
        )
    if len(body) > BODY_LENGTH:
        raise Invalid(
            f"the invitation token is too long ({len(body)} characters after {PREFIX}, not {BODY_LENGTH})"
        )
    return token


def parse_token_or_link(text: str) -> tuple[str, str | None]:
    """A bare token, or an accept link `…/connect/accept?token=…` → (token, the link's base URL)."""
    text = text.strip()
    if text.startswith(PREFIX):
        return check_shape(text), None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid("not an invitation token or link")
    found = parse_qs(parts.query).get("token")
    if not found:
        raise Invalid(
            "the link holds no invitation token (…/connect/accept?token=tlc1_…): copy the whole link"
        )
    path = parts.path
    base_path = path[: -len(ACCEPT_PATH)] if path.endswith(ACCEPT_PATH) else path
    return check_shape(found[0]), f"{parts.scheme}://{parts.netloc}{base_path.rstrip('/')}"

"""Signed peer requests (`/peer/v1/...`): FastAPI dependencies that check one before any body is read.

`PeerAuth.require(coverage)` runs the checks of DESIGN-12 §5.3 in their order (core/b2b/signing.py:
key, signature, age, connection, nonce, state) on the request line and headers only. Then, by what
the route takes:

* `JSON_BODY`: a declared Content-Length over the limit is refused (413) before a byte is read;
  the body is read within the limit and must match the signed Content-Digest (401).
* `UPLOAD`: the body is left to the route to stream; a declared length over `max_body_bytes` is
  refused first.
* `NO_BODY`: a request that declares a body is refused.

Every refusal answers `{"message": ...}` with `Connection: close` (so the client stops sending what
we will not read) and writes `peer.refused` to the audit, at most once a minute per key and reason.

A route using these must not declare body parameters: FastAPI reads such a body *before* it runs
dependencies. It takes the verified body from `PeerCall.body` / `PeerCall.json()` instead, and
names its connection path parameter `uid`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from api.errors import CLOSE
from core.b2b import keys, replay
from core.b2b.signing import (
    JSON_BODY,
    NO_BODY,
    POSSESSION,
    ConnectionLookup,
    Coverage,
    PeerCaller,
    PeerMessage,
    PeerRefused,
    SignatureInput,
    verify_possession,
    verify_request,
)

log = logging.getLogger(__name__)

# Peer JSON bodies are small (handshakes, upload creation, notices).
MAX_JSON_BYTES = 64 * 1024
# The authority is not covered by signatures (a proxy may change it): any fixed one will do.
_BASE = "http://peer.invalid"


@dataclass(frozen=True)
class PeerCall:
    """A signed peer request that passed every check; `body` is the verified JSON body, if any."""

    caller: PeerCaller
    body: bytes | None = None

    def json(self) -> Any:
        return _json(self.body or b"")


@dataclass(frozen=True)
class KeyOffer:
    """An accept handshake request signed by the key its body offers (§5.4 step 4)."""

    key_id: str
    public_key: str
    signature: SignatureInput
    body: bytes

    def json(self) -> Any:
        return _json(self.body)


def offered_key(data: Any) -> tuple[str, str]:
    """The key an accept request's JSON body offers: its `key_id` and `public_key` (base64url)."""
    if not isinstance(data, dict):
        raise ValueError("the body is not a JSON object")
    key_id, public_key = data.get("key_id"), data.get("public_key")
    if not isinstance(key_id, str) or not isinstance(public_key, str):
        raise ValueError("key_id and public_key must be strings")
    return key_id, public_key


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise HTTPException(400, "the request body is not JSON") from None


def message_of(request: Request) -> PeerMessage:
    """The request line and headers as they arrived: the path and query still encoded."""
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    query = request.scope.get("query_string") or b""
    target = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    return PeerMessage.of(request.method, _BASE + target, request.headers.items())


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not declared.isdigit():
        raise PeerRefused(400, "Content-Length is not a number", "bad-length")
    return int(declared)


def _too_large(limit: int) -> PeerRefused:
    return PeerRefused(413, f"the request body is larger than {limit} bytes", "too-large")


async def _read_within(request: Request, limit: int) -> bytes:
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise PeerRefused(400, "the client disconnected before the body was complete", "disconnect") from None
    return b"".join(chunks)


async def read_small_json(request: Request, limit: int = MAX_JSON_BYTES) -> Any:
    """An unsigned peer request's small JSON body (invitation preview/decline), read within `limit`."""
    try:
        body = await _read_within(request, limit)
    except PeerRefused as refused:
        raise HTTPException(refused.status, refused.message, headers=CLOSE) from None
    return _json(body)


class PeerAuth:
    """The checks for signed peer requests, bound to how this instance finds its connections.

    `find_connection(connection_id)` gives the connection a peer key was minted for (its uid and
    state), or None; the connections module provides it.
    """

    def __init__(
        self,
        find_connection: ConnectionLookup,
        *,
        max_json_bytes: int = MAX_JSON_BYTES,
        refusals: replay.RefusalAudit | None = None,
    ) -> None:
        self.find_connection = find_connection
        self.max_json_bytes = max_json_bytes
        self.refusals = refusals or replay.RefusalAudit()

    def require(
        self, coverage: Coverage, *, allow_revoked: bool = False, max_body_bytes: int | None = None
    ) -> Callable[[Request], Awaitable[PeerCall]]:
        """A dependency for a route under `/peer/v1/connections/{uid}/` taking `coverage`'s body."""

        async def signed_peer_request(request: Request) -> PeerCall:
            try:
                uid = request.path_params.get("uid")
                if not isinstance(uid, str):
                    raise RuntimeError(f"{request.url.path}: a peer route names its connection {{uid}}")
                caller = await run_in_threadpool(
                    verify_request,
                    message_of(request),
                    path_connection_uid=uid,
                    coverage=coverage,
                    find_key=keys.their_key,
                    find_connection=self.find_connection,
                    first_use=replay.first_use,
                    allow_revoked=allow_revoked,
                )
                declared = _declared_length(request)
                if coverage.has_digest:
                    body = await _read_within(request, self.max_json_bytes)
                    caller.check_body(body)
                    return PeerCall(caller, body)
                if coverage is NO_BODY and declared:
                    raise PeerRefused(400, "this request takes no body", "unexpected-body")
                if max_body_bytes is not None and declared is not None and declared > max_body_bytes:
                    raise _too_large(max_body_bytes)
                return PeerCall(caller)
            except PeerRefused as refused:
                raise await self._refuse(request, refused) from None

        return signed_peer_request

    def key_offer(
        self, offered: Callable[[Any], tuple[str, str]] = offered_key
    ) -> Callable[[Request], Awaitable[KeyOffer]]:
        """A dependency for the accept handshake: the small JSON body is read first (within the
        limit), `offered(parsed body)` names the key it offers - `(key_id, public key)`, raising
        ValueError when there is none - and the request must be signed by that key."""

        async def key_offer(request: Request) -> KeyOffer:
            try:
                body = await _read_within(request, self.max_json_bytes)
                try:
                    key_id, public_key_text = offered(json.loads(body))
                    keys.check_key_id(key_id)
                    public_key = keys.public_key(public_key_text)
                except ValueError as exc:
                    raise PeerRefused(400, f"the request offers no usable key: {exc}", "bad-offer") from None
                signature = await run_in_threadpool(
                    verify_possession,
                    message_of(request),
                    body,
                    key_id=key_id,
                    public_key=public_key,
                    first_use=replay.first_use,
                )
                return KeyOffer(key_id, public_key_text, signature, body)
            except PeerRefused as refused:
                raise await self._refuse(request, refused) from None

        return key_offer

    async def _refuse(self, request: Request, refused: PeerRefused) -> HTTPException:
        remote_addr = request.client.host if request.client else None
        try:
            await run_in_threadpool(
                self.refusals.record,
                refused,
                key_id=refused.key_id,
                known=refused.known_key,
                path=request.url.path,
                remote_addr=remote_addr,
            )
        except Exception:  # the answer matters more than its audit row
            log.exception("could not audit a refused peer request")
        return HTTPException(refused.status, refused.message, headers=CLOSE)


__all__ = ["JSON_BODY", "NO_BODY", "POSSESSION", "KeyOffer", "PeerAuth", "PeerCall", "read_small_json"]

"""Request bodies the API parses whole, capped: one definition for every route.

FastAPI reads a route's JSON body (or its form fields) whole, before any dependency runs, the
token check included: without a cap anyone could make the server hold gigabytes. `BoundedBodyRoute`
reads such a body to at most `MAX_BODY_BYTES` as it streams in and answers 413 past it, whether
the client declares its length or sends it chunked. Routes that stream their body themselves
(uploads, AS2, peers) declare no body parameter and are left alone: they apply their own limits.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from api import errors

# The largest JSON (or form) body a route parses: an endpoint's settings with a PEM certificate or
# two fit many times over.
MAX_BODY_BYTES = 1024 * 1024
CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BoundedBodyRoute(APIRoute):
    """A route whose parsed body is read to at most MAX_BODY_BYTES (413 past it, before the rest is
    read). With `cap_every_change`, the body of every changing request is read so, parsed or not."""

    cap_every_change = False

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None and not self.cap_every_change:
            return handler

        async def bounded(request: Request) -> Response:
            if self.body_field is not None or request.method in CHANGING_METHODS:
                request._body = await read_bounded(request)  # FastAPI then parses this copy
            return await handler(request)

        return bounded


async def read_bounded(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    too_large = f"the request body is larger than {limit} bytes"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise errors.ContentTooLarge(too_large, headers=errors.CLOSE)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise errors.ContentTooLarge(too_large, headers=errors.CLOSE)
    return bytes(body)

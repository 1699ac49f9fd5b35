"""The account console (`/console`): server-rendered pages for an account's users, sharing core's
services (and their role checks) with the CLI and the admin API. Every route takes the logged-in
login as a `Scope` from `deps.console_scope`: the web session's account user (api/web/auth.py).

    api.web.console.install(app)      # the routes, and HTML error pages for /console/*
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response

from api import errors
from api.web.auth import page
from api.web.console import audit, connections, endpoints, flows, overview, partners, transfers, users
from api.web.console.deps import ConsoleError, logged_in
from core.errors import StatusError

router = APIRouter(include_in_schema=False)
router.include_router(overview.router)
router.include_router(partners.router)
router.include_router(endpoints.router)
router.include_router(flows.router)
router.include_router(transfers.router)
router.include_router(audit.router)
router.include_router(users.router)
router.include_router(connections.router)

__all__ = ["install", "router"]

PREFIX = "/console"


def _error_page(request: Request, status: int, message: str) -> Response:
    return page(
        request, "console/error.html", login=logged_in(request), status=status, code=status, message=message
    )


async def _console_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsoleError)
    return _error_page(request, exc.status, exc.message)


async def _status_error(request: Request, exc: Exception) -> Response:
    """A core refusal: a page under /console (a person reads it), JSON elsewhere (as before)."""
    assert isinstance(exc, StatusError)
    if request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/"):
        return _error_page(request, exc.status, exc.message)
    return await errors.status_error(request, exc)


def install(app: FastAPI) -> None:
    """The console's routes, and its refusals as pages (after api.errors.install)."""
    app.include_router(router)
    app.add_exception_handler(ConsoleError, _console_error)
    app.add_exception_handler(StatusError, _status_error)

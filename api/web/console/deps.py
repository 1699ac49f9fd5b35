"""What every console route shares: the logged-in scope, the database, pages and checked forms.

`ConsoleScope` is the web session's account user (api/web/auth.py's `WebUserDep`): without a live
session a page goes to /login (a script gets 401), a partner is sent to its portal. Every changing
route takes its form first (`ConsoleFormDep`, `EndpointFormDep`: Origin, Sec-Fetch-Site and the one
CSRF token of the web, api/web/security.py), so a request without the token is refused (403) before
anything else is looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from api.web import auth, forms, security
from api.web.console.badges import pending_invitations
from core.db import session_scope
from core.links import prefect_ui_url
from core.roles import Action, may
from core.tenancy import Scope

T = TypeVar("T")


class ConsoleError(Exception):
    """A console request refused (403, 404, 400): answered with an HTML page saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def console_scope(request: Request, found: auth.WebUserDep) -> Scope:
    """The logged-in account user's scope (a partner never gets here: `WebUserDep` sends it to
    /portal); the nav's pending-invitations count is read on the way."""
    request.state.pending_invitations = await in_database(pending_invitations, found.scope)
    return found.scope


ConsoleScope = Annotated[Scope, Depends(console_scope)]

# The console's forms: at most 30 fields of the default size (partners, flows, users, actions); the
# endpoint form is larger (http has ~30 settings, a private key is kilobytes).
CONSOLE_FORM_FIELDS = 30
ConsoleFormDep = Annotated[
    dict[str, str],
    Depends(auth.checked_form_of(limit=security.FORM_LIMIT, max_fields=CONSOLE_FORM_FIELDS)),
]
EndpointFormDep = Annotated[
    dict[str, str], Depends(auth.checked_form_of(limit=forms.FORM_BYTES, max_fields=forms.FORM_FIELDS))
]


def logged_in(request: Request) -> auth.LoggedIn | None:
    """The login `ConsoleScope` found for this request (None on a refusal before it was looked up)."""
    found = getattr(request.state, "web_login", None)
    return found if isinstance(found, auth.LoggedIn) else None


async def in_database(work: Callable[..., T], *args: Any) -> T:
    """`work(session, *args)` in a committed session, off the event loop."""

    def run() -> T:
        with session_scope() as session:
            return work(session, *args)

    return await run_in_threadpool(run)


def csrf_value(request: Request) -> str:
    """The CSRF field for this request's forms (the web's one token; `page` sets its cookie)."""
    return security.csrf_field(auth.csrf_for(request))


def page(request: Request, template: str, scope: Scope, status: int = 200, **context: Any) -> HTMLResponse:
    """A console page in the web's layout: the template with the login, what its role may do, the
    CSRF field for its forms and the message of the change just made (post/redirect/get)."""
    return auth.page(
        request,
        template,
        login=logged_in(request),
        status=status,
        scope=scope,
        may=lambda action: may(scope, action),
        prefect_ui=prefect_ui_url(),
        pending_invitations=getattr(request.state, "pending_invitations", 0),
        **context,
    )


def allowed(scope: Scope, action: Action) -> None:
    """403 before a form is shown to a role that may not send it (core refuses the change anyway)."""
    if not may(scope, action):
        raise ConsoleError(403, f"your role ({scope.role}) may not do this")


# What a page says after a change (post/redirect/get): a fixed sentence per code, naming the object
# it was done to, left in the web's signed flash cookie (auth.flash) and shown once by the next page.
FLASHES = {
    "added": "Added {what}.",
    "saved": "Saved {what}.",
    "unchanged": "Nothing changed in {what}.",
    "removed": "Removed {what}.",
    "replayed": "Replayed as transfer {what} (pending).",
}


def back(url: str, done: str = "", what: str = "") -> RedirectResponse:
    """303 to a page (post/redirect/get), saying there what was done, and to what."""
    response = RedirectResponse(url, status_code=303)
    if done:
        auth.flash(response, None, FLASHES[done].format(what=what))
    return response


def parse_time(text: str, name: str) -> datetime | None:
    """A filter's time: a `datetime-local` value (UTC) or an ISO time; None for blank; 400 else."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConsoleError(400, f"{name}: not a time: {text[:40]!r} (use 2026-12-01T14:30)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

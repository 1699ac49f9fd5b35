"""What every console route shares: the logged-in scope, the database, pages and checked forms.

`console_scope` is a placeholder for the web session's dependency (stage 1a): it refuses every
request, so a console mounted before the session exists is closed, never open. The integrator
replaces its body with the session lookup (or `app.dependency_overrides[console_scope] = ...`);
the routes need nothing else. A partner's scope is refused (the console is for account users).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Depends
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from api.web import security
from core.db import session_scope
from core.links import prefect_ui_url
from core.roles import Action, may
from core.tenancy import Scope

T = TypeVar("T")


class ConsoleError(Exception):
    """A console request refused (401, 403, 404, 400): answered with an HTML page saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent.parent / "templates"),
    autoescape=True,  # every value is escaped; the templates mark nothing safe
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


async def console_scope(request: Request) -> Scope:
    """The logged-in account user's scope. Placeholder: no session exists yet, so nobody is."""
    raise ConsoleError(401, "log in to use the console")


async def _user_scope(scope: Annotated[Scope, Depends(console_scope)]) -> Scope:
    if scope.role == "partner":
        raise ConsoleError(403, "the console is for your account's users; your files are in the portal")
    return scope


ConsoleScope = Annotated[Scope, Depends(_user_scope)]


async def in_database(work: Callable[..., T], *args: Any) -> T:
    """`work(session, *args)` in a committed session, off the event loop."""

    def run() -> T:
        with session_scope() as session:
            return work(session, *args)

    return await run_in_threadpool(run)


def csrf_value(request: Request) -> str:
    """The CSRF field for this request's forms: of the browser's cookie, or of the one this
    answer sets (the same for every form of the page)."""
    cookie = security.csrf_cookie(request)
    if cookie is None:
        if not hasattr(request.state, "new_csrf_cookie"):
            request.state.new_csrf_cookie = security.new_csrf_cookie()
        cookie = str(request.state.new_csrf_cookie)
    return security.csrf_field(cookie)


def page(request: Request, template: str, scope: Scope, status: int = 200, **context: Any) -> HTMLResponse:
    """A console page: the template with the login, what its role may do, and a CSRF field for
    its forms (the cookie is set when the browser has none)."""
    csrf = csrf_value(request)
    html = templates.get_template(template).render(
        scope=scope,
        may=lambda action: may(scope, action),
        csrf=csrf,
        flash=flash(request),
        prefect_ui=prefect_ui_url(),
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    if security.csrf_cookie(request) is None:
        # Path=/ (the accept page's is /connect): the session's generalised CSRF (stage 1a) is too.
        response.set_cookie(
            security.CSRF_COOKIE,
            request.state.new_csrf_cookie,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


async def checked_form(
    request: Request, *, limit: int = security.FORM_LIMIT, max_fields: int = 50
) -> dict[str, str]:
    """A POSTed console form after the Origin check, the bounded read and the CSRF check (403)."""
    try:
        security.check_origin(request)
        form = await security.read_form(request, limit=limit, max_fields=max_fields)
        security.check_csrf(request, form)
    except security.FormRefused as refused:
        raise ConsoleError(refused.status, refused.message) from None
    return form


def allowed(scope: Scope, action: Action) -> None:
    """403 before a form is shown to a role that may not send it (core refuses the change anyway)."""
    if not may(scope, action):
        raise ConsoleError(403, f"your role ({scope.role}) may not do this")


# What a page says after a change (post/redirect/get): a fixed sentence per code, naming the object
# it was done to. Never text from the URL as such: a link could otherwise make the page say anything.
FLASHES = {
    "added": "Added {what}.",
    "saved": "Saved {what}.",
    "unchanged": "Nothing changed in {what}.",
    "removed": "Removed {what}.",
    "replayed": "Replayed as transfer {what} (pending).",
}
_NAME = re.compile(r"[A-Za-z0-9._:@+-]{1,120}")


def flash(request: Request) -> str:
    template = FLASHES.get(request.query_params.get("done", ""))
    what = request.query_params.get("what", "")
    if template is None or not _NAME.fullmatch(what):
        return ""
    return template.format(what=what)


def back(url: str, done: str = "", what: str = "") -> RedirectResponse:
    """303 to a page (post/redirect/get), with the code of what was done, and to what."""
    query = f"{'&' if '?' in url else '?'}{urlencode({'done': done, 'what': what})}" if done else ""
    return RedirectResponse(url + query, status_code=303)


def parse_time(text: str, name: str) -> datetime | None:
    """A filter's time: a `datetime-local` value (UTC) or an ISO time; None for blank; 400 else."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConsoleError(400, f"{name}: not a time: {text[:40]!r} (use 2026-12-01T14:30)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

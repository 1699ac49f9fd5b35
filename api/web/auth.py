"""Logging in to the web (portal and console), and the dependencies that give a route its login.

    GET  /                       logged in: 303 to the login's home (/portal or /console); else /login
    GET  /login?next=...         the form: "Partner name or e-mail address", "Password"
    POST /login                  the one login policy (core/login.py, protocol `web`) -> a session
    POST /logout                 ends the session (the old cookie value is refused from then on)
    GET  /portal/login, /console/login   303 /login?next=/portal (or /console)

A partner logs in with its name and lands on /portal, an account user with its e-mail address and
lands on /console. The session is server-side (core/web_sessions.py); the cookie `tl_session` is
HttpOnly, SameSite=Lax, Path=/, Secure under HTTPS.

**The dependencies** (what the portal and console routes take):

* `WebLoginDep` — the logged-in login, partner or account user, as a `LoggedIn` (its `scope` is the
  core `Scope` every tenant service takes; `login` the detached `core.login.LoginUser`). Without a
  live session a page answers 303 `/login?next=<this page>`, anything else (a script's fetch, a tus
  request) 401 JSON.
* `WebPartnerDep` — a partner only; `WebUserDep` — an account user only (a partner is sent to
  /portal, since the console is the account's).
* `MaybeWebLoginDep` — the login or None, for pages both may see.
* `CheckedFormDep` — the posted form of an unsafe request, after the Origin / Sec-Fetch-Site and
  CSRF checks (api/web/security.py); `check_unsafe_request` the same for requests without a form
  (the token in `X-CSRF-Token`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from api.web import security
from api.web.templates import render
from core import web_sessions
from core.db import session_scope
from core.login import LoginRefused, LoginUser, shared_policy
from core.tenancy import Scope, scope_for_login

SESSION_COOKIE = "tl_session"
PROTOCOL = "web"
WRONG_LOGIN = "wrong name or password"
LOGIN_NEEDED = "log in first: your session ended or never began"
PORTAL, CONSOLE, LOGIN = "/portal", "/console", "/login"
# Where `next=` may send a browser after login: our own pages only.
NEXT_PREFIXES = (PORTAL, CONSOLE, "/connect/accept")


@dataclass(frozen=True)
class LoggedIn:
    """Who is logged in on this request: the session, the login as it is now, and its scope."""

    session_id: int
    login: LoginUser
    scope: Scope

    @property
    def kind(self) -> Literal["partner", "user"]:
        return self.login.kind

    @property
    def name(self) -> str:
        """The partner's name, or the account user's e-mail address."""
        return self.login.name

    @property
    def account(self) -> str:
        return self.scope.account_name

    @property
    def is_partner(self) -> bool:
        return self.login.kind == "partner"

    @property
    def is_user(self) -> bool:
        return self.login.kind == "user"

    @property
    def role(self) -> str:
        """`partner`, or the account user's role (admin, operator, read-only)."""
        return self.scope.role

    @property
    def home(self) -> str:
        return PORTAL if self.is_partner else CONSOLE


class LoginNeeded(Exception):
    """No live session: a page goes to /login, anything else gets 401."""

    def __init__(self, ended: bool) -> None:
        super().__init__(LOGIN_NEEDED)
        self.ended = ended  # a cookie was sent: its session ended (rather than none ever began)


class GoElsewhere(Exception):
    """The login may not see this page; it is sent where it belongs (303)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


_UNCHECKED = object()


def remote_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


def _logged_in(cookie: str | None, addr: str | None) -> LoggedIn | None:
    """The session's login and scope, in one short database session of its own (a long download
    or upload holds no connection)."""
    with session_scope() as session:
        found = web_sessions.check(session, cookie, addr)
        if found is None:
            return None
        login = LoginUser.of(found.login)
        role = login.role if login.kind == "user" else None
        scope = scope_for_login(
            session,
            login.account_id,
            kind=login.kind,
            principal_id=login.partner_id,
            name=login.name,
            role=role,
        )
        assert found.row.id is not None
        return LoggedIn(found.row.id, login, scope)


async def maybe_web_login(request: Request) -> LoggedIn | None:
    """The login of this request's session, or None (cached on the request: one check per request)."""
    found: LoggedIn | object | None = getattr(request.state, "web_login", _UNCHECKED)
    if found is _UNCHECKED:
        cookie = request.cookies.get(SESSION_COOKIE)
        found = await run_in_threadpool(_logged_in, cookie, remote_addr(request)) if cookie else None
        request.state.web_login = found
    assert found is None or isinstance(found, LoggedIn)
    return found


MaybeWebLoginDep = Annotated[LoggedIn | None, Depends(maybe_web_login)]


async def web_login(request: Request, found: MaybeWebLoginDep) -> LoggedIn:
    """The logged-in login (partner or account user); LoginNeeded otherwise."""
    if found is None:
        raise LoginNeeded(ended=SESSION_COOKIE in request.cookies)
    return found


WebLoginDep = Annotated[LoggedIn, Depends(web_login)]


async def web_partner(found: WebLoginDep) -> LoggedIn:
    """A partner's session only (an account user is sent to the console)."""
    if not found.is_partner:
        raise GoElsewhere(CONSOLE)
    return found


WebPartnerDep = Annotated[LoggedIn, Depends(web_partner)]


async def web_user(found: WebLoginDep) -> LoggedIn:
    """An account user's session only (a partner is sent to its portal: the console is the account's)."""
    if not found.is_user:
        raise GoElsewhere(PORTAL)
    return found


WebUserDep = Annotated[LoggedIn, Depends(web_user)]


async def checked_form(request: Request) -> dict[str, str]:
    """The form of an unsafe request, after the Origin/Sec-Fetch-Site check, the size limit and the
    CSRF check; `security.FormRefused` (403/413/415/400) otherwise."""
    security.check_origin(request)
    form = await security.read_form(request)
    security.check_unsafe(request, form)
    return form


CheckedFormDep = Annotated[dict[str, str], Depends(checked_form)]


async def check_unsafe_request(request: Request) -> None:
    """For an unsafe request without a form (a script's): Origin/Sec-Fetch-Site and `X-CSRF-Token`."""
    security.check_unsafe(request)


# --- pages -------------------------------------------------------------------------------------


def csrf_for(request: Request) -> str:
    """This request's CSRF cookie value, a new one if it has none (`page` sets it on the answer)."""
    cookie: str | None = getattr(request.state, "csrf_cookie", None)
    if cookie is None:
        cookie = security.csrf_cookie(request) or security.new_csrf_cookie()
        request.state.csrf_cookie = cookie
    return cookie


def page(
    request: Request, template: str, *, login: LoggedIn | None, status: int = 200, **context: Any
) -> HTMLResponse:
    """A page of the web in the base layout, with the CSRF field for its forms (and the cookie it
    matches, set when the browser has none)."""
    cookie = csrf_for(request)
    html = render(template, login=login, csrf=security.csrf_field(cookie), path=request.url.path, **context)
    response = HTMLResponse(html, status_code=status)
    if security.csrf_cookie(request) != cookie:
        security.set_csrf_cookie(response, cookie, request)
    return response


def error_page(request: Request, status: int, message: str, login: LoggedIn | None = None) -> Response:
    if _wants_html(request):
        return page(request, "error.html", login=login, status=status, message=message)
    return JSONResponse({"message": message}, status_code=status)


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def safe_next(value: str | None) -> str:
    """Where to go after login: one of our pages (a path, never another host), else ""."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or "\\" in value:
        return ""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in value):
        return ""
    if not any(parts.path == p or parts.path.startswith(p + "/") for p in NEXT_PREFIXES):
        return ""
    return value


def _login_page(
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    name: str = "",
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    query = request.query_params
    notice = None
    if query.get("done") == "logout":
        notice = "You are logged out."
    elif query.get("ended"):
        notice = "Your session ended: log in again."
    response = page(
        request,
        "login.html",
        login=None,
        status=status,
        error=error,
        notice=notice,
        name=name,
        next=safe_next(query.get("next")),
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


router = APIRouter(include_in_schema=False)


@router.get("/")
async def root(found: MaybeWebLoginDep) -> Response:
    return RedirectResponse(found.home if found else LOGIN, status_code=303)


@router.get(LOGIN)
async def login_form(request: Request) -> Response:
    return _login_page(request)


@router.get(PORTAL + "/login")
async def portal_login() -> Response:
    return RedirectResponse(f"{LOGIN}?next={PORTAL}", status_code=303)


@router.get(CONSOLE + "/login")
async def console_login() -> Response:
    return RedirectResponse(f"{LOGIN}?next={CONSOLE}", status_code=303)


def _open_session(user: LoginUser, addr: str | None, agent: str | None) -> str:
    with session_scope() as session:
        _, value = web_sessions.create(session, user, remote_addr=addr, user_agent=agent)
        return value


def _end_session(cookie: str | None, addr: str | None) -> None:
    if not cookie:
        return
    with session_scope() as session:
        found = web_sessions.check(session, cookie, addr)
        if found is not None:
            web_sessions.end(session, found.row, "logout")


def set_session_cookie(response: Response, request: Request, value: str) -> None:
    """The session cookie: no Max-Age (it dies with the browser; the server's expiry is the real one)."""
    response.set_cookie(
        SESSION_COOKIE,
        value,
        path="/",
        httponly=True,
        samesite="lax",
        secure=security.secure_cookie(request),
    )


def start_session(request: Request, user: LoginUser, response: Response) -> Response:
    """Log `user` in on `response` (blocking: call it in a worker thread): a session, its cookie,
    and a fresh CSRF cookie (a pair planted before the login is worthless after it)."""
    _end_session(request.cookies.get(SESSION_COOKIE), remote_addr(request))
    value = _open_session(user, remote_addr(request), request.headers.get("user-agent"))
    set_session_cookie(response, request, value)
    security.set_csrf_cookie(response, security.new_csrf_cookie(), request)
    return response


@router.post(LOGIN)
async def log_in(request: Request) -> Response:
    try:
        form = await checked_form(request)
    except security.FormRefused as refused:
        return _login_page(request, status=refused.status, error=refused.message)
    name, password = form.get("name", "").strip(), form.get("password", "")
    addr = remote_addr(request)
    try:
        user = await run_in_threadpool(shared_policy().password, name, password, addr, PROTOCOL)
    except LoginRefused as refused:
        if refused.banned_for > 0:
            wait = f"{refused.banned_for:.0f}"
            message = f"too many failed logins from your address: try again in {wait} s"
            return _login_page(request, status=429, error=message, name=name, headers={"Retry-After": wait})
        return _login_page(request, status=401, error=WRONG_LOGIN, name=name)
    home = PORTAL if user.kind == "partner" else CONSOLE
    target = safe_next(form.get("next")) or home
    response = RedirectResponse(target, status_code=303)
    return await run_in_threadpool(start_session, request, user, response)


@router.post("/logout")
async def log_out(request: Request) -> Response:
    try:
        await checked_form(request)
    except security.FormRefused as refused:
        return error_page(request, refused.status, refused.message)
    await run_in_threadpool(_end_session, request.cookies.get(SESSION_COOKIE), remote_addr(request))
    response = RedirectResponse(f"{LOGIN}?done=logout", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    security.set_csrf_cookie(response, security.new_csrf_cookie(), request)
    return response


# A placeholder until the console stream fills it: it says who is logged in. (/portal: api/web/portal.py)
@router.get(CONSOLE)
async def console_home(request: Request, found: WebUserDep) -> Response:
    return page(request, "placeholder.html", login=found, title="Console")


async def _login_needed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginNeeded)
    if request.method in ("GET", "HEAD") and _wants_html(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        ended = "&ended=1" if exc.ended else ""
        return RedirectResponse(f"{LOGIN}?next={quote(target, safe='/')}{ended}", status_code=303)
    return JSONResponse({"message": LOGIN_NEEDED}, status_code=401)


async def _go_elsewhere(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GoElsewhere)
    return RedirectResponse(exc.location, status_code=303)


async def _form_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, security.FormRefused)
    return error_page(request, exc.status, exc.message)


def install(app: FastAPI) -> None:
    """Serve /, /login, /logout and the placeholders, and answer the dependencies' refusals."""
    app.add_exception_handler(LoginNeeded, _login_needed)
    app.add_exception_handler(GoElsewhere, _go_elsewhere)
    app.add_exception_handler(security.FormRefused, _form_refused)
    app.include_router(router)

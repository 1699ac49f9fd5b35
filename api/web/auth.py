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

Pages render with `page(request, template, login=found, ...)` (base.html, the CSRF field as
`csrf`); a POST answers 303 with `flash(response, request, "deleted po.json")`, which the next page
shows once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Awaitable, Callable
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
from core.login import LoginBusy, LoginRefused, LoginUser, shared_policy
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
    """The login may not see this page; it is sent where it belongs (303), told why."""

    def __init__(self, location: str, message: str | None = None) -> None:
        super().__init__(location)
        self.location = location
        self.message = message


CONSOLE_IS_FOR_USERS = "the console is for your account's users; your files are in the portal"


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
        raise GoElsewhere(PORTAL, CONSOLE_IS_FOR_USERS)
    return found


WebUserDep = Annotated[LoggedIn, Depends(web_user)]


async def checked_form(
    request: Request, *, limit: int = security.FORM_LIMIT, max_fields: int = security.MAX_FIELDS
) -> dict[str, str]:
    """The form of an unsafe request, after the Origin/Sec-Fetch-Site check, the size limit and the
    CSRF check; `security.FormRefused` (403/413/415/400) otherwise."""
    security.check_origin(request)
    form = await security.read_form(request, limit=limit, max_fields=max_fields)
    security.check_unsafe(request, form)
    return form


def checked_form_of(*, limit: int, max_fields: int) -> Callable[[Request], Awaitable[dict[str, str]]]:
    """`checked_form` with larger bounds, as a dependency (the console's endpoint form is larger).
    Put it before the login's dependency, so a request without the token is refused first."""

    async def checked(request: Request) -> dict[str, str]:
        return await checked_form(request, limit=limit, max_fields=max_fields)

    return checked


async def _checked_form(request: Request) -> dict[str, str]:
    return await checked_form(request)


CheckedFormDep = Annotated[dict[str, str], Depends(_checked_form)]


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
    matches, set when the browser has none) and the flash message a redirect left, if any (shown
    once, in the layout's role=status region)."""
    cookie = csrf_for(request)
    message = taken_flash(request)
    context.setdefault("flash", message)
    html = render(template, login=login, csrf=security.csrf_field(cookie), path=request.url.path, **context)
    response = HTMLResponse(html, status_code=status)
    if security.csrf_cookie(request) != cookie:
        security.set_csrf_cookie(response, cookie, request)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="lax")
    return response


# --- flash messages (post/redirect/get: "deleted po.json", "replayed as transfer 18") -------------

FLASH_COOKIE = "tl_flash"
FLASH_CHARS = 500


def _flash_mac(data: bytes) -> str:
    return hmac.new(security.web_key(), b"flash:" + data, hashlib.sha256).hexdigest()[:32]


def flash(response: Response, request: Request | None, message: str) -> Response:
    """Leave `message` for the next page this browser renders (a POST's 303 says what it did). The
    cookie is signed, so another site or a sibling host cannot make our page say something."""
    data = message[:FLASH_CHARS].encode()
    value = base64.urlsafe_b64encode(data).decode().rstrip("=") + "." + _flash_mac(data)
    response.set_cookie(
        FLASH_COOKIE,
        value,
        max_age=60,
        path="/",
        httponly=True,
        samesite="lax",
        secure=security.secure_cookie(request),
    )
    return response


def taken_flash(request: Request) -> str | None:
    """The flash message this request carries (None when absent or not ours)."""
    value = request.cookies.get(FLASH_COOKIE, "")
    encoded, _, mac = value.partition(".")
    try:
        data = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        return None
    if not mac or not hmac.compare_digest(mac, _flash_mac(data)):
        return None
    return data.decode(errors="replace")


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


def set_session_cookie(response: Response, request: Request | None, value: str) -> None:
    """The session cookie: no Max-Age (it dies with the browser; the server's expiry is the real one)."""
    response.set_cookie(
        SESSION_COOKIE,
        value,
        path="/",
        httponly=True,
        samesite="lax",
        secure=security.secure_cookie(request),
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")


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
    except LoginBusy:
        wait = str(LoginBusy.retry_after)
        message = f"too many logins at once: try again in {wait} s"
        return _login_page(request, status=503, error=message, name=name, headers={"Retry-After": wait})
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
    clear_session_cookie(response)
    security.set_csrf_cookie(response, security.new_csrf_cookie(), request)
    return response


async def _login_needed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginNeeded)
    if request.method in ("GET", "HEAD") and _wants_html(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        ended = "&ended=1" if exc.ended else ""
        return RedirectResponse(f"{LOGIN}?next={quote(target, safe='/')}{ended}", status_code=303)
    return JSONResponse({"message": LOGIN_NEEDED}, status_code=401)


async def _go_elsewhere(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GoElsewhere)
    response = RedirectResponse(exc.location, status_code=303)
    return flash(response, request, exc.message) if exc.message else response


async def _form_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, security.FormRefused)
    return error_page(request, exc.status, exc.message)


def install(app: FastAPI) -> None:
    """Serve /, /login and /logout, and answer the dependencies' refusals."""
    app.add_exception_handler(LoginNeeded, _login_needed)
    app.add_exception_handler(GoElsewhere, _go_elsewhere)
    app.add_exception_handler(security.FormRefused, _form_refused)
    app.include_router(router)

"""The invitation accept page, `/connect/accept`: small, server-rendered, no scripts.

    GET  /connect/accept?token=...   the invitation, then log in / create an account, or the accept form
    POST /connect/login              e-mail + password -> a web session (as /login), 303 back to the page
    POST /connect/signup             a new account and its admin (once per invitation), logged in, 303
    POST /connect/accept             accept as the logged-in admin's account -> what happens now
    POST /connect/decline            decline (the token is the authority)
    POST /connect/logout             end the web session

A GET never uses the token up (mail scanners open links): only the accept and decline POSTs do,
through the service. Every POST passes, in order, the Origin check, the bounded form read and the
CSRF check (api/web/security.py) before the service sees it. The token travels in the forms' hidden
field, so the POSTs' URLs carry none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.web import auth, security
from api.web.service import AcceptForm, AcceptService, Refused, WebLogin
from api.web.templates import environment
from core.b2b.mail import accept_link

HERE = Path(__file__).parent
STYLESHEET = HERE / "static" / "connect.css"
ACCEPT_PAGE = "/connect/accept"

templates = environment  # the web's one Jinja2 environment (api/web/templates.py)


# Every answer's security headers (no script, no referrer, no-store, no framing) come from the
# app's middleware, api/web/headers.py.
router = APIRouter(include_in_schema=False)


def _service(request: Request) -> AcceptService:
    service: AcceptService = request.app.state.accept_service
    return service


def _remote(request: Request) -> str | None:
    return request.client.host if request.client else None


def _html(template: str, status: int, csrf_cookie: str | None = None, **context: Any) -> HTMLResponse:
    response = HTMLResponse(templates.get_template(template).render(**context), status_code=status)
    if csrf_cookie is not None:
        security.set_csrf_cookie(response, csrf_cookie)
    return response


def _error(status: int, message: str) -> HTMLResponse:
    return _html("connect_error.html", status, message=message)


async def _current_login(request: Request) -> WebLogin | None:
    """The account user of the browser's web session (logged in here or at /login), if any."""
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    if not cookie:
        return None
    return await run_in_threadpool(_service(request).session_login, cookie, _remote(request))


async def _page(
    request: Request,
    token: str,
    *,
    status: int = 200,
    error: str | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    """The invitation page for `token`: its summary, then the forms that fit who is looking."""
    cookie = security.csrf_cookie(request) or security.new_csrf_cookie()
    service = _service(request)
    try:
        invitation = await run_in_threadpool(service.invitation, token)
    except Refused as refused:
        return _html("connect_error.html", refused.status, cookie, message=refused.message)
    login = await _current_login(request)
    endpoints = []
    if login is not None and login.is_admin and not invitation.invitee_sends:
        endpoints = await run_in_threadpool(service.endpoints, login)
    return _html(
        "connect_invitation.html",
        status,
        cookie,
        invitation=invitation,
        login=login,
        endpoints=endpoints,
        token=token,
        csrf=security.csrf_field(cookie),
        link=accept_link(token),
        error=error,
        values=values or {},
    )


async def _checked_form(request: Request) -> dict[str, str]:
    """The POSTed form, after the Origin check, the size limit and the CSRF check."""
    security.check_origin(request)
    form = await security.read_form(request)
    security.check_csrf(request, form)
    return form


def _back_to_page(token: str) -> RedirectResponse:
    return RedirectResponse(f"{ACCEPT_PAGE}?token={quote(token, safe='')}", status_code=303)


async def _logged_in(request: Request, token: str, login: WebLogin) -> RedirectResponse:
    """Back to the page, logged in with a web session (the one /login makes: the same cookie, so the
    console knows the login too), with a fresh CSRF cookie: a pair planted before the login (a
    cookie set from a sibling host) is worthless after it. A session the browser had ends."""
    service = _service(request)
    old = request.cookies.get(auth.SESSION_COOKIE)
    if old:
        await run_in_threadpool(service.end_session, old, _remote(request))
    value = await run_in_threadpool(
        service.start_session, login, _remote(request), request.headers.get("user-agent")
    )
    response = _back_to_page(token)
    auth.set_session_cookie(response, request, value)
    security.set_csrf_cookie(response, security.new_csrf_cookie(), request)
    return response


@router.get(ACCEPT_PAGE)
async def show(request: Request) -> Response:
    return await _page(request, request.query_params.get("token", ""))


@router.get("/connect/static/connect.css")
async def stylesheet() -> Response:
    return Response(STYLESHEET.read_bytes(), media_type="text/css")


@router.post("/connect/login")
async def log_in(request: Request) -> Response:
    try:
        form = await _checked_form(request)
    except security.FormRefused as refused:
        return _error(refused.status, refused.message)
    token, email = form.get("token", ""), form.get("email", "").strip()
    try:
        login = await run_in_threadpool(
            _service(request).log_in, email, form.get("password", ""), _remote(request)
        )
    except Refused as refused:
        return await _page(
            request, token, status=refused.status, error=refused.message, values={"email": email}
        )
    return await _logged_in(request, token, login)


@router.post("/connect/signup")
async def sign_up(request: Request) -> Response:
    try:
        form = await _checked_form(request)
    except security.FormRefused as refused:
        return _error(refused.status, refused.message)
    token = form.get("token", "")
    account, email = form.get("account", "").strip(), form.get("email", "").strip()
    try:
        login = await run_in_threadpool(
            _service(request).sign_up, token, account, email, form.get("password", ""), _remote(request)
        )
    except Refused as refused:
        values = {"account": account, "signup_email": email}
        return await _page(request, token, status=refused.status, error=refused.message, values=values)
    return await _logged_in(request, token, login)


@router.post(ACCEPT_PAGE)
async def accept(request: Request) -> Response:
    try:
        form = await _checked_form(request)
    except security.FormRefused as refused:
        return _error(refused.status, refused.message)
    token = form.get("token", "")
    login = await _current_login(request)
    if login is None:
        return await _page(request, token, status=401, error="log in first: your login has ended")
    choice = AcceptForm(
        name=form.get("name", "").strip(),
        outbox=form.get("outbox", "").strip() or None,
        endpoint=form.get("endpoint", "").strip() or None,
        dir=form.get("dir", "").strip(),
    )
    try:
        outcome = await run_in_threadpool(_service(request).accept, token, login, choice)
    except Refused as refused:
        values = {"name": choice.name, "outbox": choice.outbox or "", "dir": choice.dir}
        return await _page(request, token, status=refused.status, error=refused.message, values=values)
    return _html("connect_done.html", 200, outcome=outcome)


@router.post("/connect/decline")
async def decline(request: Request) -> Response:
    try:
        form = await _checked_form(request)
    except security.FormRefused as refused:
        return _error(refused.status, refused.message)
    token = form.get("token", "")
    try:
        outcome = await run_in_threadpool(_service(request).decline, token)
    except Refused as refused:
        return await _page(request, token, status=refused.status, error=refused.message)
    return _html("connect_done.html", 200, outcome=outcome)


@router.post("/connect/logout")
async def log_out(request: Request) -> Response:
    try:
        form = await _checked_form(request)
    except security.FormRefused as refused:
        return _error(refused.status, refused.message)
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    if cookie:
        await run_in_threadpool(_service(request).end_session, cookie, _remote(request))
    response = _back_to_page(form.get("token", ""))
    auth.clear_session_cookie(response)
    security.set_csrf_cookie(response, security.new_csrf_cookie(), request)
    return response


def install(app: FastAPI, service: AcceptService) -> None:
    """Serve the accept page on `app`, deciding through `service`."""
    app.state.accept_service = service
    app.include_router(router)

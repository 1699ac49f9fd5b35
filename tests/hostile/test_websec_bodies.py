"""Every body the API parses whole is capped by one definition (api/bodies.py), and ids in URLs that
are huge or not numbers are answered 400 (a request that fails validation) or 404, never 500: over
a real socket to uvicorn on 127.0.0.1 (tests/console_server.py serves the whole app)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from fastapi.routing import APIRoute

from api.app import create_app
from api.bodies import MAX_BODY_BYTES, BoundedBodyRoute
from tests.console_server import PASSWORD, ConsoleServer, console_server, user_of

__all__ = ["console_server"]

TOO_LARGE = {"message": f"the request body is larger than {MAX_BODY_BYTES} bytes"}


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    for route in routes:
        if hasattr(route, "original_router"):  # an included router (FastAPI keeps it as one)
            yield from _routes(route.original_router.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute):
            yield prefix + route.path, route


def test_every_route_that_parses_a_body_is_capped() -> None:
    parsing = {path: route for path, route in _routes(create_app().routes) if route.body_field is not None}
    assert "/api/connections" in parsing and "/api/authentication" in parsing  # the walk sees them
    uncapped = sorted(path for path, route in parsing.items() if not isinstance(route, BoundedBodyRoute))
    assert uncapped == []


def _chunks(body: bytes) -> Iterator[bytes]:  # no Content-Length: the server must count as it reads
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


def _bearer(server: ConsoleServer, client: httpx.Client) -> dict[str, str]:
    with server.browser("admin"):  # makes the home account's admin user
        pass
    answer = client.post(
        "/api/authentication",
        data={"grant_type": "password", "username": user_of("admin"), "password": PASSWORD},
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_connection_bodies_over_the_cap_are_refused(console_server: ConsoleServer) -> None:
    huge = b'{"email": "a@b.example", "name": "' + b"a" * MAX_BODY_BYTES + b'", "direction": "send"}'
    with httpx.Client(base_url=console_server.url, timeout=60) as client:
        headers = {**_bearer(console_server, client), "Content-Type": "application/json"}
        for path in ("/api/connections", "/api/connections/accept", "/api/connections/decline"):
            declared = client.post(path, content=huge, headers=headers)
            assert (declared.status_code, declared.json()) == (413, TOO_LARGE), path
            streamed = client.post(path, content=_chunks(huge), headers=headers)
            assert (streamed.status_code, streamed.json()) == (413, TOO_LARGE), path
        patched = client.patch("/api/connections/1", content=_chunks(huge), headers=headers)
        assert patched.status_code == 413
        assert client.get("/api/connections", headers=headers).json() == []  # nothing was made


def test_a_login_form_over_the_cap_is_refused(console_server: ConsoleServer) -> None:
    form = b"grant_type=password&username=x&password=" + b"a" * MAX_BODY_BYTES
    with httpx.Client(base_url=console_server.url, timeout=60) as client:
        content_type = {"Content-Type": "application/x-www-form-urlencoded"}
        answer = client.post("/api/authentication", content=_chunks(form), headers=content_type)
        assert (answer.status_code, answer.json()) == (413, TOO_LARGE)


def test_huge_or_non_numeric_connection_ids_are_400_or_404(console_server: ConsoleServer) -> None:
    with httpx.Client(base_url=console_server.url, timeout=60) as client:
        headers = _bearer(console_server, client)
        for raw in ("99999999999999999999999", str(2**31), str(2**63), "-1", "0", "abc", "1e3", "1.5"):
            for method, path, body in (
                ("GET", f"/api/connections/{raw}", None),
                ("PATCH", f"/api/connections/{raw}", {"allow_sender_view": True}),
                ("POST", f"/api/connections/{raw}/revoke", None),
                ("GET", f"/api/connections/{raw}/files", None),
                ("GET", f"/api/connections/{raw}/transfers", None),
                ("POST", f"/api/connections/{raw}/files", None),
            ):
                answer = client.request(method, path, json=body, headers=headers)
                # The API answers a request that fails validation 400 (api/errors.py), never 500.
                assert answer.status_code == 400, (method, path, answer.status_code, answer.text)
                assert "connection_id" in answer.json()["message"], answer.text
        for method, path in (("GET", "/api/connections/2147483646"), ("GET", "/api/connections/7/files")):
            assert client.request(method, path, headers=headers).status_code == 404, path
        for limit in ("99999999999999999999999", "0", "-5", "x"):
            answer = client.get(f"/api/connections/7/transfers?limit={limit}", headers=headers)
            assert answer.status_code == 400 and "limit" in answer.json()["message"], (limit, answer.text)


def test_the_consoles_huge_ids_are_refused_not_500(console_server: ConsoleServer) -> None:
    with console_server.browser("admin") as browser:
        for path in (
            "/console/transfers/99999999999999999999999",
            f"/console/transfers/{2**63}",
            "/console/transfers?before=99999999999999999999999",
            "/console/connections/99999999999999999999999",
        ):
            answer = browser.get(path)
            assert answer.status_code in (400, 404, 405), (path, answer.status_code)

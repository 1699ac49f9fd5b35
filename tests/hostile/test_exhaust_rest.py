"""REST exhaustion (issue 10): header size, header and body timeouts, connection caps.

The API is served as `tradelane up` serves it (uvicorn + httptools + api/server.py's limits), with
limits small enough to reach at once. Clients are raw sockets, so half-sent requests are possible.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.hostile.exhaust_support import *  # noqa: F403
from tests.hostile.exhaust_support import ATTACKER, Partner, api_server, connect_from, server_closed

HEADER_LIMIT = 4096
LIMITS = {
    "api_max_header_bytes": HEADER_LIMIT,
    "api_header_timeout_seconds": 0.5,
    "api_body_timeout_seconds": 0.5,
    "api_keepalive_timeout_seconds": 0.5,
    "api_max_connections_per_address": 8,
    "api_max_connections": 20,
}


@pytest.fixture(scope="module")
def api(exhaust_home: object) -> Iterator[int]:
    with api_server(**LIMITS) as port:
        yield port


@pytest.fixture(scope="module")
def capped_api(exhaust_home: object) -> Iterator[int]:
    """The same caps, with a header timeout long enough to hold connections while a test counts."""
    with api_server(**{**LIMITS, "api_header_timeout_seconds": 60.0}) as port:
        yield port


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer.split(b" ", 2)[1])


def health(port: int, source: str = "127.0.0.1") -> int:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(f"http://127.0.0.1:{port}/api/health").status_code


def test_a_header_past_the_limit_is_answered_431_and_closed(api: int) -> None:
    with connect_from(api) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        ended_by_server = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # a header that never ends, until the server ends it
            try:
                sock.sendall(b"a" * 65536)
            except OSError:
                ended_by_server = True
                break
        assert ended_by_server
        answer = server_closed(sock)
    assert status_of(answer) == 431
    assert f"larger than {HEADER_LIMIT} bytes".encode() in answer


def test_a_header_that_fits_is_served_and_a_body_past_the_header_limit_is_not_counted(
    api: int, make_partner: Callable[[], Partner]
) -> None:
    partner = make_partner()
    padding = "p" * (HEADER_LIMIT - 400)
    with httpx.Client(base_url=f"http://127.0.0.1:{api}", timeout=10) as client:
        assert client.get("/api/health", headers={"X-Padding": padding}).status_code == 200
        token = client.post(
            "/api/authentication",
            data={"grant_type": "password", "username": partner.name, "password": partner.password},
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        home = client.get("/api/folders", headers=auth).json()["resources"][0]["id"]
        children = client.get(f"/api/folders/{home}/children", headers=auth).json()["resources"]
        upload = next(c["id"] for c in children if c["subspace"] == "upload")
        body = b"z" * (3 * 1024 * 1024)
        for name in ("first.bin", "second.bin"):  # two uploads on one keep-alive connection
            r = client.post(
                f"/api/folders/{upload}/files",
                content=body,
                headers={**auth, "Content-Disposition": f"attachment;filename={name}"},
            )
            assert r.status_code == 201, r.text
    assert sorted(r.name for r in partner.receipts()) == ["first.bin", "second.bin"]


def test_idle_and_half_sent_connections_are_closed_with_408(api: int) -> None:
    with connect_from(api) as idle, connect_from(api) as half:
        half.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for sock in (idle, half):
            answer = server_closed(sock)
            assert status_of(answer) == 408
            assert b"not received within 0.5 seconds" in answer


def test_a_request_body_that_stalls_is_cut_off(api: int) -> None:
    with connect_from(api) as sock:
        sock.sendall(
            b"POST /api/authentication HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\ngrant_type="
        )
        assert server_closed(sock) == b""  # closed without an answer: the request never completed


def test_an_idle_keep_alive_connection_is_closed(api: int) -> None:
    with connect_from(api) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = server_closed(sock)  # the answer, then the close once the keep-alive time is over
    assert status_of(answer) == 200 and answer.endswith(b"}")


def test_one_address_gets_a_bounded_number_of_connections_and_others_are_still_served(
    capped_api: int,
) -> None:
    cap = int(LIMITS["api_max_connections_per_address"])
    with contextlib.ExitStack() as held:
        for _ in range(cap):
            held.enter_context(connect_from(capped_api))
        with connect_from(capped_api) as refused:
            answer = server_closed(refused)
        assert status_of(answer) == 503
        assert f"Too many connections from {ATTACKER}".encode() in answer
        assert health(capped_api, "127.0.0.1") == 200


def test_connections_in_all_are_capped_with_503(capped_api: int) -> None:
    per_address = int(LIMITS["api_max_connections_per_address"])
    sources = [f"127.0.0.{n}" for n in range(10, 13)]  # 3 × 8 idle connections > 20 in all
    with contextlib.ExitStack() as held:
        for source in sources:
            for _ in range(per_address):
                held.enter_context(connect_from(capped_api, source))
        assert health(capped_api, "127.0.0.1") == 503  # uvicorn's limit_concurrency

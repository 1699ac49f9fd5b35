"""A client cannot choose the address tradelane sees by sending `X-Forwarded-For`.

uvicorn believes forwarded headers from 127.0.0.1 by default, so any local process (or a proxy the
operator did not mean to trust) could pick the address the login lockout, the address bans, the
partners' IP allow-lists and the audit see. `tradelane up` serves the API with the same
`uvicorn_config` as here: forwarded headers off, unless TRADELANE_FORWARDED_ALLOW_IPS names the
proxies whose headers count (and then only theirs).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from pydantic import ValidationError

from api.server import uvicorn_config
from core.config import Settings


async def echo_client(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The address and scheme the server says the request came from."""
    if scope["type"] != "http":
        return
    body = f"{scope['client'][0]} {scope['scheme']}".encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serve(settings: Settings, app: Any = echo_client) -> Iterator[str]:
    """`app` served as `up` serves the API with `settings`, on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn_config(app, settings, lifespan="off", port=port)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)
    sock.close()


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(Settings()) as served:
        yield served


def test_forwarded_headers_from_a_local_client_are_not_believed(url: str) -> None:
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "Forwarded": "for=203.0.113.9"}
    answer = httpx.get(url, headers=forged, timeout=10)
    assert answer.text == "127.0.0.1 http"


FORWARDED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}


def test_forwarded_headers_from_a_named_proxy_are_believed() -> None:
    with serve(Settings(forwarded_allow_ips="10.1.2.3, 127.0.0.0/8")) as proxied:
        assert httpx.get(proxied, headers=FORWARDED, timeout=10).text == "203.0.113.9 https"
        # A chain: the right-most address that is not a trusted proxy is the client.
        chain = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 127.0.0.5", "X-Forwarded-Proto": "https"}
        assert httpx.get(proxied, headers=chain, timeout=10).text == "203.0.113.9 https"


def test_forwarded_headers_from_an_address_not_named_are_ignored() -> None:
    with serve(Settings(forwarded_allow_ips="10.1.2.3,192.0.2.0/24")) as proxied:
        assert httpx.get(proxied, headers=FORWARDED, timeout=10).text == "127.0.0.1 http"


@pytest.mark.parametrize(
    ("value", "words"),
    [("*", "would let any client choose its address"), ("proxy.example", "is not an IP address or network")],
)
def test_a_proxy_list_that_trusts_anyone_or_is_not_addresses_is_refused(value: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        Settings(forwarded_allow_ips=value)


def test_a_named_proxy_is_not_held_to_the_per_address_cap() -> None:
    """Behind a proxy every client arrives from its address: capping it would cap them all."""
    for proxies, allowed in (("", 1), ("127.0.0.1", 3)):
        settings = Settings(api_max_connections_per_address=1, forwarded_allow_ips=proxies)
        with serve(settings) as served:
            host, port = urlsplit(served).hostname, urlsplit(served).port
            held = [socket.create_connection((host, port), timeout=10) for _ in range(3)]
            try:
                answers = []
                for sock in held:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive: all stay counted
                    answers.append(sock.makefile("rb").readline())
            finally:
                for sock in held:
                    sock.close()
            assert sum(b" 200 " in answer for answer in answers) == allowed, (proxies, answers)
            assert sum(b" 503 " in answer for answer in answers) == 3 - allowed, (proxies, answers)

"""A client cannot choose the address tradelane sees by sending `X-Forwarded-For`.

uvicorn believes forwarded headers from 127.0.0.1 by default, so any local process (or a proxy the
operator did not mean to trust) could pick the address the login lockout, the address bans, the
partners' IP allow-lists and the audit see. `tradelane up` serves the API with the same
`uvicorn_config` as here, with forwarded headers off.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

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


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn_config(echo_client, Settings(), lifespan="off", port=port)
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


def test_forwarded_headers_from_a_local_client_are_not_believed(url: str) -> None:
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "Forwarded": "for=203.0.113.9"}
    answer = httpx.get(url, headers=forged, timeout=10)
    assert answer.text == "127.0.0.1 http"

"""Item 10 (AS2 line): a big body from an unknown AS2 sender is refused before it is read.

Before: POST /as2/receive spooled and parsed a 30 MB body from any sender before asking who it
was (+61 MiB and more of API memory per request). Now the AS2-From/AS2-To pair, then the
declared Content-Length, are checked first; a refusal is answered at once and the connection
closed, so the client cannot keep streaming.

The API runs here as `tradelane up` runs it (uvicorn with httptools), wrapped in an ASGI
middleware that counts the body bytes the application takes from the server. The client is a
raw socket that declares 30 MiB, sends 64 KiB, then waits for the answer (with a deadline): an
application that reads the body would wait for the rest, and the client would get no answer.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.app import create_app
from tests.as2 import conftest as as2
from tests.as2.conftest import Trading
from tests.as2.peer import Identity

as2_home, trading, us = as2.as2_home, as2.trading, as2.us

MIB = 1024 * 1024
DECLARED = 30 * MIB
SENT = 64 * 1024
DEADLINE = 30.0  # seconds to wait for an answer; generous, nothing is timed


@dataclass
class BodyCounter:
    """ASGI middleware: how many body bytes the app received, per path."""

    app: Any
    taken: dict[str, int] = field(default_factory=dict)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]

        async def counting() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                self.taken[path] = self.taken.get(path, 0) + len(message.get("body", b""))
            return message

        await self.app(scope, counting, send)


@dataclass
class Api:
    port: int
    counter: BodyCounter


@pytest.fixture(scope="module")
def api(as2_home: Path) -> Iterator[Api]:
    counter = BodyCounter(create_app())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(counter, http="httptools", lifespan="on", log_level="warning", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Api(sock.getsockname()[1], counter)
    server.should_exit = True
    thread.join(15)
    sock.close()


def post_partly(port: int, as2_from: str, as2_to: str, declared: int = DECLARED) -> tuple[bytes, bool]:
    """Declare `declared` bytes, send SENT, then read: (the answer, whether the server then closed)."""
    head = (
        "POST /as2/receive HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "AS2-Version: 1.2\r\n"
        f"AS2-From: {as2_from}\r\n"
        f"AS2-To: {as2_to}\r\n"
        f"Message-ID: <{os.urandom(6).hex()}@stranger>\r\n"
        "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(head + os.urandom(SENT))
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not _complete(answer):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pytest.fail(
                f"no answer within {DEADLINE} s while the body was unfinished: the server waits for it"
            )
        try:  # the server closes: EOF (or a reset, as our unread bytes meet a closed socket)
            closed = sock.recv(65536) == b""
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            closed = False
    return answer, closed


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def test_unknown_as2_from_is_refused_before_the_body_is_read(api: Api, us: Identity) -> None:
    before = api.counter.taken.get("/as2/receive", 0)
    answer, closed = post_partly(api.port, "NOBODY-WE-TRADE-WITH", us.as2_id)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 403 Forbidden", answer
    assert b"unknown-trading-partner" in answer and b"NOBODY-WE-TRADE-WITH" in answer
    assert b"connection: close" in answer.lower()
    assert closed, "the connection stayed open: the client could go on streaming"
    assert api.counter.taken.get("/as2/receive", 0) == before  # not one body byte was taken


def test_unknown_as2_to_is_refused_before_the_body_is_read(api: Api, trading: Any) -> None:
    partner: Trading = trading(sign="sha256")
    before = api.counter.taken.get("/as2/receive", 0)
    answer, closed = post_partly(api.port, partner.as2_id, "NOT-OUR-AS2-ID")
    assert answer.startswith(b"HTTP/1.1 403 "), answer
    assert b"unknown-trading-partner" in answer and b"is not an AS2 ID of ours" in answer
    assert closed
    assert api.counter.taken.get("/as2/receive", 0) == before


def test_known_sender_over_the_cap_is_refused_before_the_body_is_read(
    api: Api, trading: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADELANE_AS2_MAX_MESSAGE_BYTES", str(MIB))
    partner: Trading = trading(sign="sha256")
    before = api.counter.taken.get("/as2/receive", 0)
    answer, closed = post_partly(api.port, partner.as2_id, partner.us.as2_id)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"TRADELANE_AS2_MAX_MESSAGE_BYTES" in answer
    assert closed
    assert api.counter.taken.get("/as2/receive", 0) == before


def test_default_cap_is_2_gib_and_a_bigger_body_is_refused_before_it_is_read(
    api: Api, trading: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large messages stream through files, so the default cap is 2 GiB; one byte more is refused
    from its Content-Length alone."""
    monkeypatch.delenv("TRADELANE_AS2_MAX_MESSAGE_BYTES", raising=False)
    partner: Trading = trading(sign="sha256")
    before = api.counter.taken.get("/as2/receive", 0)
    answer, closed = post_partly(api.port, partner.as2_id, partner.us.as2_id, declared=2048 * MIB + 1)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"larger than the limit of 2147483648 bytes (TRADELANE_AS2_MAX_MESSAGE_BYTES)" in answer
    assert closed
    assert api.counter.taken.get("/as2/receive", 0) == before

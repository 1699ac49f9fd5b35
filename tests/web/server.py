"""The API app as `tradelane up` serves it (api/server.py's uvicorn config), on a free 127.0.0.1 port
in a thread of this process, with a throwaway home and its public URL set to its own address (the
web's Origin checks compare against it). `WebServer.browser()` is an httpx client that behaves as a
browser posting our forms: it keeps cookies, sends `Origin` and `Sec-Fetch-Site: same-origin`."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from api.app import create_app
from api.server import uvicorn_config
from api.web.accept_service import CoreAcceptService
from core import db
from core.config import get_settings
from tests.isolation import isolated_home


@dataclass
class WebServer:
    url: str
    home: Path

    def browser(self, **headers: str) -> httpx.Client:
        sent = {"Origin": self.url, "Sec-Fetch-Site": "same-origin", "Accept": "text/html", **headers}
        return httpx.Client(base_url=self.url, headers=sent, timeout=30)


@contextmanager
def web_server(home: Path, env: dict[str, str] | None = None) -> Iterator[WebServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    wanted = {"TRADELANE_PUBLIC_URL": url, **(env or {})}
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        with isolated_home(home):
            db.init_db()
            app = create_app(accept_service=CoreAcceptService())  # as `tradelane up` makes it
            server = uvicorn.Server(uvicorn_config(app, get_settings(), lifespan="off"))
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()
            deadline = time.monotonic() + 15
            while not server.started:
                assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.02)
            try:
                yield WebServer(url, home)
            finally:
                server.should_exit = True
                thread.join(15)
    finally:
        sock.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

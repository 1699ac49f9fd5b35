"""The accept page served as `tradelane up` serves the API (api/server.py), with a fake AcceptService.

The public URL is the server's own address, so the page's Origin check has something to compare.
`AcceptServer.browser()` is an httpx client that behaves as a browser posting the page's forms:
it keeps cookies, sends `Origin`, and reads the forms' fields out of the HTML.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.server import uvicorn_config
from core.config import get_settings
from tests.b2b.accept_fake import FakeAcceptService
from tests.isolation import isolated_home


class Forms(HTMLParser):
    """Each <form>'s action and its fields' names and values (inputs, selects' first option)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self._current: dict[str, str] | None = None
        self._select: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = self.forms.setdefault(a.get("action", ""), {})
        elif self._current is not None and tag == "input" and a.get("name"):
            self._current[a["name"]] = a.get("value", "")
        elif self._current is not None and tag == "select":
            self._select = a.get("name")
        elif self._current is not None and tag == "option" and self._select:
            self._current.setdefault(self._select, a.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None
        elif tag == "select":
            self._select = None


@dataclass
class AcceptServer:
    url: str
    service: FakeAcceptService
    home: Path

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Origin": self.url}, timeout=30)

    def page_url(self, token: str) -> str:
        return f"/connect/accept?token={token}"


def forms_of(response: httpx.Response) -> dict[str, dict[str, str]]:
    return Forms(response.text).forms


def submit(browser: httpx.Client, page: httpx.Response, action: str, **fields: str) -> httpx.Response:
    """Post the page's form `action` as a browser would: its hidden fields, plus `fields`."""
    form = forms_of(page).get(action)
    assert form is not None, f"no form {action} on the page: {sorted(forms_of(page))}\n{page.text}"
    return browser.post(action, data={**form, **fields}, follow_redirects=True)


def text_of(response: httpx.Response) -> str:
    """The page's text, tags removed and spaces collapsed (to read messages)."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.text).split())


@pytest.fixture(scope="module")
def accept_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcceptServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    saved = os.environ.get("TRADELANE_PUBLIC_URL")
    os.environ["TRADELANE_PUBLIC_URL"] = url
    service = FakeAcceptService()
    try:
        with isolated_home(tmp_path_factory.mktemp("accept-page")) as home:
            server = uvicorn.Server(uvicorn_config(create_app(service), get_settings(), lifespan="off"))
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()
            deadline = time.monotonic() + 15
            while not server.started:
                assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.02)
            try:
                yield AcceptServer(url, service, home)
            finally:
                server.should_exit = True
                thread.join(15)
    finally:
        sock.close()
        if saved is None:
            os.environ.pop("TRADELANE_PUBLIC_URL", None)
        else:
            os.environ["TRADELANE_PUBLIC_URL"] = saved

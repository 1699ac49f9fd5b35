"""The console served as `tradelane up` serves the API (api/server.py), on a real uvicorn server.

Until the web session lands (stage 1a), who is logged in comes from the placeholder dependency
`api.web.console.deps.console_scope`, overridden here (test code only) by a header naming a role
of the home account: `ConsoleServer.browser("operator")`. The browser keeps cookies, sends
`Origin`, and reads forms out of the pages.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.requests import Request

from api.app import create_app
from api.server import uvicorn_config
from api.web.console.deps import console_scope
from core.config import get_settings
from core.tenancy import Scope
from tests.isolation import isolated_home

ROLE_HEADER = "X-Test-Console-Role"


@dataclass
class ConsoleServer:
    url: str
    home: Path

    def browser(self, role: str = "operator") -> httpx.Client:
        headers = {"Origin": self.url, ROLE_HEADER: role}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


async def _scope_from_header(request: Request) -> Scope:
    from core.db import session_scope
    from tests.tenancy import home_scope

    role = request.headers[ROLE_HEADER]
    with session_scope() as session:
        home = home_scope(session)
    return Scope(home.account_id, home.account_name, role, f"user:{role}@console.test", user_id=1)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    saved = os.environ.get("TRADELANE_PUBLIC_URL")
    os.environ["TRADELANE_PUBLIC_URL"] = url
    try:
        with isolated_home(tmp_path_factory.mktemp("console")) as home:
            from core.db import init_db

            init_db()
            app = create_app()
            app.dependency_overrides[console_scope] = _scope_from_header
            server = uvicorn.Server(uvicorn_config(app, get_settings(), lifespan="off"))
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()
            deadline = time.monotonic() + 15
            while not server.started:
                assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.02)
            try:
                yield ConsoleServer(url, home)
            finally:
                server.should_exit = True
                thread.join(15)
    finally:
        sock.close()
        if saved is None:
            os.environ.pop("TRADELANE_PUBLIC_URL", None)
        else:
            os.environ["TRADELANE_PUBLIC_URL"] = saved

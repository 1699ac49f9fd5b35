"""The real app on uvicorn (tests/api/conftest.py's server), and account users logged in with bearer
tokens from `POST /api/authentication`: an admin, an operator and a read-only user of account
`acme`, and the admin of a second account, `globex`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app as cli_app
from core import accounts
from core.db import session_scope
from core.tenancy import scope_for_cli
from tests.api.conftest import app, client, server, tradelane_home
from tests.file_roots import allowed_folder

__all__ = ["app", "client", "server", "tradelane_home"]

PASSWORD = "Tr4de-lane-Key-73"


@dataclass
class User:
    """An account user logged in over REST."""

    client: httpx.Client
    email: str
    headers: dict[str, str]

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(url, headers=self.headers, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(url, headers=self.headers, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.patch(url, headers=self.headers, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.put(url, headers=self.headers, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.delete(url, headers=self.headers, **kwargs)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, url, headers=self.headers, **kwargs)


def log_in(client: httpx.Client, username: str, password: str = PASSWORD) -> dict[str, str]:
    answer = client.post(
        "/api/authentication", data={"grant_type": "password", "username": username, "password": password}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@dataclass
class Users:
    admin: User
    operator: User
    reader: User
    other: User  # globex's admin

    def of(self, role: str) -> User:
        return {"admin": self.admin, "operator": self.operator, "read-only": self.reader}[role]


@pytest.fixture(scope="package")
def users(server: Any) -> Iterator[Users]:
    with session_scope() as session:
        accounts.add(session, "acme", email="admin@acme.example", password=PASSWORD)
        accounts.add(session, "globex", email="admin@globex.example", password=PASSWORD)
        scope = scope_for_cli(session, "acme")
        accounts.add_user(session, scope, "op@acme.example", password=PASSWORD, role="operator")
        accounts.add_user(session, scope, "ro@acme.example", password=PASSWORD, role="read-only")
    client = httpx.Client(base_url=server.url, timeout=60)

    def user(email: str) -> User:
        return User(client, email, log_in(client, email))

    with client:
        yield Users(
            user("admin@acme.example"),
            user("op@acme.example"),
            user("ro@acme.example"),
            user("admin@globex.example"),
        )


@pytest.fixture
def acme_files() -> Path:
    """A fresh folder acme's users may put a file endpoint in (core/endpoints/file_roots.py)."""
    return allowed_folder("acme")


runner = CliRunner()


def cli_json(*args: str) -> Any:
    """`tradelane ARGS --json` in-process, parsed: what the admin API's answers must equal."""
    result = runner.invoke(cli_app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)

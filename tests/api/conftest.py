"""The real app, served by uvicorn on a free 127.0.0.1 port in a background thread of this process.

TRADELANE_HOME is a fresh temporary directory for the whole package; partners are created with
`core.partners.add`, exactly as the CLI does.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlmodel import select

from api import deps
from api.app import create_app
from core import config, db, partners
from core.db import HOME_ACCOUNT, session_scope
from core.endpoints.mailbox import mailbox_root_for
from core.models import Partner, Receipt
from tests.isolation import isolated_home
from tests.tenancy import home_scope

WALKTHROUGH_USER = "claudioapp"
WALKTHROUGH_PASSWORD = "Cl@udio_@pp_P@ssword"
# Settings a developer's shell may carry that would change what these tests expect.
_UNSET = ("TRADELANE_SECRET_KEY", "TRADELANE_MAX_UPLOAD_BYTES", "TRADELANE_TOKEN_TTL_SECONDS")
_names = itertools.count(1)


# Every test logs in from 127.0.0.1: its failed logins must not ban that address for the next test.
# Tests of bans and locks set their own thresholds and connect from other addresses.
LENIENT_ENV = {"TRADELANE_LOCKOUT_FAILURES": "100000", "TRADELANE_LOCKOUT_ACCOUNT_FAILURES": "100000"}


@pytest.fixture(scope="package")
def tradelane_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    saved = {key: os.environ.pop(key, None) for key in (*_UNSET, *LENIENT_ENV)}
    os.environ.update(LENIENT_ENV)
    try:
        with isolated_home(tmp_path_factory.mktemp("tradelane-api")) as home:
            db.init_db()
            yield home
    finally:
        for key in LENIENT_ENV:
            os.environ.pop(key, None)
        os.environ.update({key: value for key, value in saved.items() if value is not None})


@pytest.fixture(scope="package")
def app(tradelane_home: Path) -> FastAPI:
    return create_app()


@dataclass
class Server:
    url: str
    port: int
    thread: threading.Thread


@pytest.fixture(scope="package")
def server(app: FastAPI) -> Iterator[Server]:
    # proto=IPPROTO_TCP, or asyncio does not set TCP_NODELAY on accepted connections (40 ms stalls).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    cfg = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", http="h11", loop="asyncio")
    uv = uvicorn.Server(cfg)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield Server(f"http://127.0.0.1:{port}", port, thread)
    uv.should_exit = True
    thread.join(15)
    sock.close()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@dataclass
class PartnerLogin:
    """A partner, logged in, with shortcuts for the calls tests make over and over."""

    client: httpx.Client
    name: str
    password: str
    uid: str
    id: int
    token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def root(self) -> Path:
        return mailbox_root_for(HOME_ACCOUNT, self.name)

    def login(self) -> PartnerLogin:
        r = self.client.post(
            "/api/authentication",
            data={"grant_type": "password", "username": self.name, "password": self.password},
        )
        assert r.status_code == 200, r.text
        self.token = r.json()["access_token"]
        return self

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(url, headers=self.auth, **kwargs)

    def delete(self, url: str) -> httpx.Response:
        return self.client.delete(url, headers=self.auth)

    def home(self) -> dict[str, Any]:
        r = self.get("/api/folders")
        assert r.status_code == 200, r.text
        return r.json()["resources"][0]

    def folder(self, subspace: str) -> dict[str, Any]:
        r = self.get(f"/api/folders/{self.home()['id']}/children")
        assert r.status_code == 200, r.text
        return next(f for f in r.json()["resources"] if f["subspace"] == subspace)

    def upload(
        self,
        name: str | None,
        content: Any,
        folder_id: str | None = None,
        disposition: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        folder_id = folder_id or self.folder("upload")["id"]
        sent = {**self.auth, "Content-Type": "application/octet-stream", **(headers or {})}
        if disposition is None and name is not None:
            disposition = f"attachment;filename={name}"
        if disposition is not None:
            sent["Content-Disposition"] = disposition
        return self.client.post(f"/api/folders/{folder_id}/files", content=content, headers=sent)

    def files(self, subspace: str, **params: Any) -> dict[str, Any]:
        r = self.get(f"/api/folders/{self.folder(subspace)['id']}/files", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def put_download(self, name: str, data: bytes) -> Path:
        """Place a file in download/ the way a data flow delivering to this partner would."""
        path = self.root / "download" / name
        path.write_bytes(data)
        return path


def create_partner(name: str, password: str, *, can_delete_downloads: bool = True) -> Partner:
    with session_scope() as session:
        partner = partners.add(session, home_scope(session), name, password=password)
        partner.can_delete_downloads = can_delete_downloads
        session.add(partner)
    return partner


@pytest.fixture
def make_partner(server: Server, client: httpx.Client):  # type: ignore[no-untyped-def]
    """Create a fresh partner (a unique name) and log it in."""

    def make(*, can_delete_downloads: bool = True, prefix: str = "acme") -> PartnerLogin:
        name, password = f"{prefix}-{next(_names)}", f"pw-{os.urandom(6).hex()}"
        partner = create_partner(name, password, can_delete_downloads=can_delete_downloads)
        assert partner.id is not None
        return PartnerLogin(client, name, password, partner.uid, partner.id).login()

    return make


@pytest.fixture(scope="package")
def walkthrough_partner(server: Server) -> Partner:
    return create_partner(WALKTHROUGH_USER, WALKTHROUGH_PASSWORD)


@pytest.fixture
def small_limit(app: FastAPI) -> Iterator[int]:
    """Lower the upload limit to 64 KiB for one test."""
    limit = 64 * 1024
    settings = config.get_settings().model_copy(update={"max_upload_bytes": limit})
    app.dependency_overrides[deps.settings_dependency] = lambda: settings
    yield limit
    app.dependency_overrides.pop(deps.settings_dependency, None)


_STORE_FILES = ("tradelane.db", "tradelane.db-wal", "tradelane.db-shm", "secret.key")


def stored_files(home: Path) -> set[str]:
    """Every file under TRADELANE_HOME except the store itself: mailboxes and their temp dir."""
    return {str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and p.name not in _STORE_FILES}


def latest_receipt(partner_id: int, name: str) -> Receipt | None:
    with session_scope() as session:
        return session.exec(
            select(Receipt)
            .where(Receipt.partner_id == partner_id, Receipt.name == name)
            .order_by(Receipt.id.desc())  # type: ignore[union-attr]
        ).first()

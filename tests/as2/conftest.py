"""AS2 fixtures: the real app (with its lifespan, so the AS2 worker runs) on a loopback port,
our AS2 identity, partners' identities and profiles, and a peer AS2 server."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlmodel import select

from api.app import create_app
from core import db, partners
from core.as2 import identity, profiles
from core.db import HOME_ACCOUNT, session_scope
from core.endpoints.mailbox import mailbox_root_for
from core.models import As2Message, As2Organization
from tests.as2.peer import Identity, PeerServer, partner_of
from tests.isolation import isolated_home
from tests.tenancy import home_scope

OUR_ID = "TRADELANE-TEST"
_ids = itertools.count(1)
_AS2_ENV = {
    "TRADELANE_AS2_SWEEP_SECONDS": "0.1",
    "TRADELANE_AS2_MDN_RETRY_SECONDS": "0.2",
    "TRADELANE_AS2_HTTP_TIMEOUT_SECONDS": "20",
    # Every test partner (the peer server, our own /as2/mdn) is on 127.0.0.1.
    "TRADELANE_AS2_ALLOW_PRIVATE_MDN_URLS": "1",
}


@pytest.fixture(scope="package")
def as2_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    saved = {
        k: os.environ.get(k) for k in [*_AS2_ENV, "TRADELANE_SECRET_KEY", "TRADELANE_AS2_PUBLIC_MDN_URL"]
    }
    os.environ.update(_AS2_ENV)
    os.environ.pop("TRADELANE_SECRET_KEY", None)
    try:
        with isolated_home(tmp_path_factory.mktemp("tradelane-as2")) as home:
            db.init_db()
            yield home
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class As2Server:
    url: str

    @property
    def receive_url(self) -> str:
        return f"{self.url}/as2/receive"

    @property
    def mdn_url(self) -> str:
        return f"{self.url}/as2/mdn"


@pytest.fixture(scope="package")
def as2_server(as2_home: Path) -> Iterator[As2Server]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    os.environ["TRADELANE_AS2_PUBLIC_MDN_URL"] = f"http://127.0.0.1:{port}/as2/mdn"
    cfg = uvicorn.Config(
        create_app(), log_level="warning", lifespan="on", ws="none", http="h11", loop="asyncio"
    )
    uv = uvicorn.Server(cfg)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, name="uvicorn-as2", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield As2Server(f"http://127.0.0.1:{port}")
    uv.should_exit = True
    thread.join(15)
    sock.close()


@pytest.fixture(scope="package")
def us(as2_home: Path) -> Identity:
    """Our AS2 identity, stored as tradelane stores it."""
    ident = Identity.new(OUR_ID)
    with session_scope() as session:
        if session.exec(select(As2Organization).where(As2Organization.as2_id == OUR_ID)).first() is None:
            identity.create(session, home_scope(session), OUR_ID, ident.key_pem, ident.cert_pem)
    return ident


@dataclass
class Trading:
    """One partner: its identity, its mailbox, its profile with us, and pyas2lib objects to send to us."""

    ident: Identity
    mailbox: str
    us: Identity
    options: dict[str, Any]

    @property
    def as2_id(self) -> str:
        return self.ident.as2_id

    @property
    def upload(self) -> Path:
        return mailbox_root_for(HOME_ACCOUNT, self.mailbox) / "upload"

    def message(self, mdn_url: str | None = None, **partner_options: Any) -> Any:
        """A pyas2lib Message from this partner to us (options: sign, digest_alg, encrypt, ...)."""
        import pyas2lib

        receiver = partner_of(self.us, **partner_options)
        receiver.as2_name = OUR_ID
        return pyas2lib.Message(sender=self.ident.organization(mdn_url=mdn_url), receiver=receiver)

    def rows(self) -> list[As2Message]:
        with session_scope() as session:
            return list(session.exec(select(As2Message).where(As2Message.partner_as2_id == self.as2_id)))


@pytest.fixture
def trading(us: Identity, as2_home: Path) -> Callable[..., Trading]:
    """Make a fresh partner with a profile: trading(sign="sha256", encrypt="aes256", url=..., ...)."""

    def make(ident: Identity | None = None, url: str = "http://127.0.0.1:9/as2", **options: Any) -> Trading:
        n = next(_ids)
        ident = ident or Identity.new(f"PARTNER-{n}")
        mailbox = f"as2-mailbox-{n}"
        with session_scope() as session:
            partners.add(session, home_scope(session), mailbox, password=f"pw-{n}-{os.urandom(8).hex()}")
            options.setdefault("org", OUR_ID)
            profiles.add(
                session,
                home_scope(session),
                ident.as2_id,
                mailbox=mailbox,
                url=url,
                certificate=ident.cert_pem.encode(),
                **options,
            )
        return Trading(ident, mailbox, us, options)

    return make


@pytest.fixture
def peer(us: Identity) -> Iterator[PeerServer]:
    """A peer AS2 server with a new identity that knows us (any security we send; MDNs as we ask)."""
    server = PeerServer(me=Identity.new(f"PEER-{next(_ids)}"), partner=partner_of(us)).start()
    server.partner.as2_name = OUR_ID
    yield server
    server.stop()

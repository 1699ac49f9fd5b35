"""A receiving instance served in-process: the real API app (`api.app.create_app`) under uvicorn the
way `tradelane up` serves it, on a throwaway home whose account `home` receives into a file
endpoint `lake` (folder `in`). Each `Sender` is the other instance of one active cross-instance
connection (rows written by tests/b2b/peer_pair.receiver_side): the test holds its key and signs
its requests itself, so any request - also a hostile one - can be sent.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from api.app import create_app
from api.server import uvicorn_config
from core import db
from core.b2b import keys, receipts, signing
from core.config import get_settings
from core.db import session_scope
from core.endpoints import rows as endpoint_rows
from core.mailbox import layout
from core.tenancy import scope_for_cli
from tests.b2b import peer_pair
from tests.isolation import isolated_home


@dataclass
class Sender:
    """The other instance of one connection: its key, and our connection's id and uid."""

    connection_id: int
    uid: str  # our connection's uid (in the paths)
    private: Ed25519PrivateKey
    key_id: str
    our_key_id: str  # the receiver's key, which signs receipts
    our_public_key: str

    @property
    def signer(self) -> keys.OurKey:
        return keys.OurKey(self.key_id, self.private, self.uid)

    def key(self, transfer_id: int, sha256: str) -> str:
        return receipts.TransferKey(self.uid, transfer_id, sha256).text()


@dataclass
class Site:
    url: str
    home: Path
    lake: Path


def serve(home: Path) -> Iterator[Site]:
    """A receiving home and its API on 127.0.0.1 (a generator for a fixture)."""
    with isolated_home(home):
        db.init_db()
        lake = home.parent / f"{home.name}-lake"
        (lake / "in").mkdir(parents=True)
        with session_scope() as session:
            endpoint_rows.add(session, scope_for_cli(session, "home"), "lake", "file", {"path": str(lake)})
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn_config(create_app(), get_settings(), lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        try:
            yield Site(f"http://127.0.0.1:{port}", home, lake)
        finally:
            server.should_exit = True
            thread.join(15)
            sock.close()


def new_sender(name: str | None = None) -> Sender:
    """A new active connection into `lake:in` whose other side the test plays."""
    private = Ed25519PrivateKey.generate()
    key_id = keys.new_key_id()
    theirs = peer_pair.Side(0, str(uuid.uuid4()), key_id, keys.public_key_text(private.public_key()))
    ours = peer_pair.receiver_side(
        "home", name or f"from-{uuid.uuid4().hex[:8]}", "lake", "in", "http://127.0.0.1:1", theirs, "acme"
    )
    return Sender(ours.connection_id, ours.uid, private, key_id, ours.key_id, ours.public_key)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create(
    client: httpx.Client, sender: Sender, body: dict[str, Any], *, uid: str | None = None
) -> httpx.Response:
    request = client.build_request(
        "POST",
        f"/peer/v1/connections/{uid or sender.uid}/uploads",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    signing.sign_request(request, sender.signer)
    return client.send(request)


def declare(sender: Sender, data: bytes, name: str = "po.edi", transfer_id: int = 1) -> dict[str, Any]:
    digest = sha(data)
    return {"key": sender.key(transfer_id, digest), "name": name, "size": len(data), "sha256": digest}


def patch(
    client: httpx.Client,
    sender: Sender | None,
    upload: str,
    offset: int,
    body: bytes,
    *,
    uid: str | None = None,
    chunked: bool = False,
) -> httpx.Response:
    """A PATCH of `body` at `offset` (chunked: streamed without a Content-Length)."""
    headers = {signing.UPLOAD_OFFSET_HEADER: str(offset), "content-type": "application/offset+octet-stream"}
    content: Any = iter([body]) if chunked else body
    request = client.build_request(
        "PATCH",
        f"/peer/v1/connections/{uid or (sender.uid if sender else 'x')}/uploads/{upload}",
        content=content,
        headers=headers,
    )
    if sender is not None:
        signing.sign_request(request, sender.signer)
    return client.send(request)


def dump() -> dict[str, Any]:
    """What an upload request may change: the upload, receipt and transfer rows, and staged files."""
    tables = ["peer_upload", "receipt", "transfer"]
    with db.get_engine().connect() as conn:
        rows = {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))] for t in tables}
    staged = layout.root() / layout.PEER_DIR
    files = (
        sorted((str(p), p.stat().st_size) for p in staged.rglob("*") if p.is_file())
        if staged.exists()
        else []
    )
    return {**rows, "staged": files}

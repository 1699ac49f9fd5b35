"""Hostile peer requests against a real uvicorn server on 127.0.0.1, over real httpx (DESIGN-12 §5.3, §7).

The app here is the API's error handling plus small `/peer/v1/...` routes guarded by
`api/peer_auth.py`, served the way `tradelane up` serves the API (api/server.uvicorn_config: the
httptools protocol with its limits). Three connections have peer rows in a real store: two active,
one revoked. The connection rows themselves (their uid and state) come from a small table here:
the `connection` table is another stream's (DESIGN-12 stage 3).

Each refusal is checked for its status and text, for leaving the nonce table as it was (nobody can
burn a nonce without the key) and, where it matters, for never reading the body.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI, Request
from http_message_signatures import ContentDigest
from sqlmodel import func, select

from api import errors
from api.peer_auth import MAX_JSON_BYTES, KeyOffer, PeerAuth, PeerCall
from api.server import uvicorn_config
from core import db
from core.b2b import keys, signing
from core.b2b.signing import JSON_BODY, NO_BODY, UPLOAD, ConnectionSide
from core.config import get_settings
from core.db import session_scope
from core.models import AuditEvent, Peer, PeerNonce
from tests.isolation import isolated_home

UPLOAD_LIMIT = 1024 * 1024


@dataclass
class Side:
    """One connection as the *other* instance holds it: the key it signs with, our connection's uid."""

    connection_id: int
    uid: str
    private: Ed25519PrivateKey
    key_id: str

    @property
    def signer(self) -> keys.OurKey:
        return keys.OurKey(self.key_id, self.private, self.uid)


@dataclass
class Site:
    url: str
    port: int
    active: Side
    other: Side
    revoked: Side


def make_app(connections: dict[int, ConnectionSide]) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    auth = PeerAuth(connections.get)
    # Default-value style: the aliases would be local names, which postponed annotations cannot see.
    state_call = Depends(auth.require(NO_BODY, allow_revoked=True))
    json_call = Depends(auth.require(JSON_BODY))
    upload_call = Depends(auth.require(UPLOAD, max_body_bytes=UPLOAD_LIMIT))
    offer = Depends(auth.key_offer())

    @app.get("/peer/v1/connections/{uid}")
    def state(uid: str, call: PeerCall = state_call) -> dict[str, Any]:
        return {"uid": call.caller.connection.uid, "state": call.caller.connection.state}

    @app.post("/peer/v1/connections/{uid}/notes")
    def notes(uid: str, call: PeerCall = json_call) -> dict[str, Any]:
        return {"got": call.json(), "key_id": call.caller.key.key_id}

    @app.patch("/peer/v1/connections/{uid}/uploads/{upload}")
    async def upload(request: Request, uid: str, upload: str, call: PeerCall = upload_call) -> dict[str, Any]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"received": size, "offset": int(request.headers["upload-offset"])}

    @app.post("/peer/v1/invitations/accept")
    def accept(offered: KeyOffer = offer) -> dict[str, Any]:
        return {"key_id": offered.key_id, "name": offered.json().get("name")}

    return app


def _side(connection_id: int) -> tuple[Side, Peer]:
    """A peer row for `connection_id` as our instance stores it, and the other instance's view."""
    ours, theirs = keys.mint(), keys.mint()
    side = Side(
        connection_id,
        str(uuid.uuid4()),
        keys.open_private_key(theirs.sealed_private_key),
        theirs.key_id,
    )
    peer = Peer(
        connection_id=connection_id,
        base_url="http://127.0.0.1:1",
        their_connection_uid=str(uuid.uuid4()),
        their_account="acme",
        their_key_id=theirs.key_id,
        their_public_key=theirs.public_key,
        our_key_id=ours.key_id,
        our_public_key=ours.public_key,
        our_private_key=ours.sealed_private_key,
    )
    return side, peer


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with isolated_home(tmp_path_factory.mktemp("peer-signing")) as _home:
        db.init_db()
        sides = []
        with session_scope() as session:
            for connection_id in (1, 2, 3):
                side, peer = _side(connection_id)
                session.add(peer)
                sides.append(side)
        active, other, revoked = sides
        connections = {
            s.connection_id: ConnectionSide(s.connection_id, s.uid, "revoked" if s is revoked else "active")
            for s in sides
        }
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn_config(make_app(connections), get_settings(), lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        try:
            yield Site(f"http://127.0.0.1:{port}", port, active, other, revoked)
        finally:
            server.should_exit = True
            thread.join(15)
            sock.close()


@pytest.fixture
def client(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=30) as c:
        yield c


def nonces() -> int:
    with session_scope() as session:
        return session.exec(select(func.count()).select_from(PeerNonce)).one()


def refusals(reason: str) -> int:
    with session_scope() as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.action == "peer.refused")).all()
        return sum(1 for row in rows if row.detail.get("reason") == reason)


def note(
    client: httpx.Client,
    signer: keys.OurKey | None,
    body: Any = None,
    *,
    uid: str | None = None,
    created: datetime | None = None,
    nonce: str | None = None,
) -> httpx.Request:
    """A signed POST of a JSON note to a connection (by default the one the signer's key is for)."""
    content = json.dumps(body if body is not None else {"note": "hello"}).encode()
    target = uid or (signer.their_connection_uid if signer else "x")
    request = client.build_request(
        "POST",
        f"/peer/v1/connections/{target}/notes",
        content=content,
        headers={"content-type": "application/json"},
    )
    if signer is not None:
        signing.sign_request(request, signer, created=created, nonce=nonce)
    return request


def answer(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json().get("message", "")


def test_a_signed_request_is_answered(site: Site, client: httpx.Client) -> None:
    before = nonces()
    response = client.send(note(client, site.active.signer, {"po": 17}))
    assert response.status_code == 200, response.text
    assert response.json() == {"got": {"po": 17}, "key_id": site.active.key_id}
    assert nonces() == before + 1


def test_a_tampered_body_is_refused(site: Site, client: httpx.Client) -> None:
    signed = note(client, site.active.signer, {"size": 10})
    tampered = client.build_request("POST", signed.url, content=b'{"size": 99}', headers=dict(signed.headers))
    tampered.headers["content-length"] = str(len(b'{"size": 99}'))
    response = client.send(tampered)
    assert answer(response) == (401, "the request body does not match its signed Content-Digest")
    assert response.headers["connection"] == "close"


def test_a_tampered_header_is_refused(site: Site, client: httpx.Client) -> None:
    request = note(client, site.active.signer)
    request.headers["content-digest"] = ContentDigest.create(b'{"note": "other"}')
    before = nonces()
    assert answer(client.send(request)) == (401, "the request signature does not verify")
    assert nonces() == before


def test_the_wrong_key_is_refused_and_burns_no_nonce(site: Site, client: httpx.Client) -> None:
    forger = keys.OurKey(site.active.key_id, Ed25519PrivateKey.generate(), site.active.uid)
    nonce = signing.new_nonce()
    before = nonces()
    assert answer(client.send(note(client, forger, nonce=nonce))) == (
        401,
        "the request signature does not verify",
    )
    assert nonces() == before
    # The nonce the forger chose is still good for the key's owner.
    assert client.send(note(client, site.active.signer, nonce=nonce)).status_code == 200


def test_an_old_request_is_refused(site: Site, client: httpx.Client) -> None:
    before = nonces()
    old = datetime.now(UTC) - timedelta(seconds=900)
    status, message = answer(client.send(note(client, site.active.signer, created=old)))
    assert status == 401
    assert re.fullmatch(
        r"the request is too old \(created 9\d\d s ago; at most 300 s\): check both instances' clocks",
        message,
    )
    future = datetime.now(UTC) + timedelta(seconds=600)
    status, message = answer(client.send(note(client, site.active.signer, created=future)))
    assert status == 401 and "in the future" in message
    assert nonces() == before


def test_a_replayed_request_is_refused(site: Site, client: httpx.Client) -> None:
    request = note(client, site.active.signer, {"once": True})
    wire = (request.method, request.url, dict(request.headers), request.content)
    assert client.send(request).status_code == 200

    before = nonces()
    with httpx.Client(timeout=30) as other_connection:  # a replay arrives on a connection of its own
        again = other_connection.request(wire[0], wire[1], headers=wire[2], content=wire[3])
    assert answer(again) == (401, "replayed request (nonce already used)")
    assert nonces() == before


def test_an_unknown_key_is_refused(site: Site, client: httpx.Client) -> None:
    stranger = keys.OurKey(keys.new_key_id(), Ed25519PrivateKey.generate(), site.active.uid)
    before = nonces()
    assert answer(client.send(note(client, stranger))) == (401, "unknown key")
    assert nonces() == before


@pytest.mark.parametrize("target", ["other", "made-up"])
def test_another_connections_id_is_refused(site: Site, client: httpx.Client, target: str) -> None:
    uid = site.other.uid if target == "other" else str(uuid.uuid4())
    key_for_another = keys.OurKey(site.active.key_id, site.active.private, uid)
    before = nonces()
    response = client.send(note(client, key_for_another))
    assert answer(response) == (403, "this key does not belong to that connection")
    assert nonces() == before


def test_a_path_that_disagrees_with_the_signed_connection_is_refused(
    site: Site, client: httpx.Client
) -> None:
    request = note(client, site.active.signer, uid=site.other.uid)  # signed header: active; path: other
    assert answer(client.send(request))[0] == 403


def test_a_revoked_connection_answers_only_its_state(site: Site, client: httpx.Client) -> None:
    assert answer(client.send(note(client, site.revoked.signer))) == (410, "connection revoked")

    state = client.build_request("GET", f"/peer/v1/connections/{site.revoked.uid}")
    signing.sign_request(state, site.revoked.signer)
    response = client.send(state)
    assert response.status_code == 200
    assert response.json() == {"uid": site.revoked.uid, "state": "revoked"}


def test_missing_signature_headers_are_refused(site: Site, client: httpx.Client) -> None:
    unsigned = note(client, None, uid=site.active.uid)
    assert answer(client.send(unsigned)) == (
        401,
        "the request is not signed as a tradelane peer request: "
        "Signature-Input and Signature headers are required (RFC 9421)",
    )
    for drop in ("signature", "signature-input"):
        request = note(client, site.active.signer)
        del request.headers[drop]
        assert answer(client.send(request))[0] == 401
    garbled = note(client, site.active.signer)
    garbled.headers["signature-input"] = 'tl=("@method"'
    assert answer(client.send(garbled)) == (
        401,
        "the request is not signed as a tradelane peer request: the Signature-Input header does not parse",
    )


def test_an_oversized_json_body_is_refused(site: Site, client: httpx.Client) -> None:
    request = note(client, site.active.signer, {"pad": "x" * MAX_JSON_BYTES})
    response = client.send(request)
    assert answer(response) == (413, f"the request body is larger than {MAX_JSON_BYTES} bytes")


def _raw_exchange(site: Site, request: httpx.Request, declared: int) -> tuple[int, bytes]:
    """Send only the request line and headers, declaring `declared` body bytes that never come,
    and read the answer: one given without waiting for the body."""
    lines = [f"{request.method} {request.url.raw_path.decode()} HTTP/1.1", f"host: 127.0.0.1:{site.port}"]
    lines += [
        f"{k}: {v}"
        for k, v in request.headers.items()
        if k not in ("host", "content-length", "transfer-encoding")
    ]
    lines.append(f"content-length: {declared}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection(("127.0.0.1", site.port), timeout=20) as sock:
        sock.sendall(head)
        received = b""
        while b"\r\n\r\n" not in received or len(received) < received.index(b"\r\n\r\n") + 4 + _length(
            received
        ):
            chunk = sock.recv(65536)  # a server waiting for the body would time this out
            if not chunk:
                break
            received += chunk
    status = int(received.split(b" ", 2)[1])
    return status, received


def _length(received: bytes) -> int:
    match = re.search(rb"content-length: (\d+)", received.split(b"\r\n\r\n", 1)[0], re.IGNORECASE)
    return int(match.group(1)) if match else 0


def test_an_oversized_body_is_refused_before_it_is_read(site: Site, client: httpx.Client) -> None:
    status, raw = _raw_exchange(site, note(client, site.active.signer), declared=50 * 1024 * 1024)
    assert status == 413
    assert b"connection: close" in raw.lower()
    assert f"the request body is larger than {MAX_JSON_BYTES} bytes".encode() in raw

    upload = client.build_request(
        "PATCH",
        f"/peer/v1/connections/{site.active.uid}/uploads/u1",
        content=iter([b""]),
        headers={"upload-offset": "0"},
    )
    signing.sign_request(upload, site.active.signer)
    status, raw = _raw_exchange(site, upload, declared=UPLOAD_LIMIT + 1)
    assert status == 413
    assert f"the request body is larger than {UPLOAD_LIMIT} bytes".encode() in raw


def test_a_refused_signature_never_waits_for_the_body(site: Site, client: httpx.Client) -> None:
    forger = keys.OurKey(site.active.key_id, Ed25519PrivateKey.generate(), site.active.uid)
    status, raw = _raw_exchange(site, note(client, forger), declared=10 * 1024 * 1024)
    assert status == 401
    assert b"the request signature does not verify" in raw


def test_a_signed_upload_streams_its_body(site: Site, client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(16):
            yield b"x" * 65536

    upload = client.build_request(
        "PATCH",
        f"/peer/v1/connections/{site.active.uid}/uploads/u1",
        content=chunks(),
        headers={"upload-offset": "4096", "content-type": "application/offset+octet-stream"},
    )
    signing.sign_request(upload, site.active.signer)
    response = client.send(upload)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 16 * 65536, "offset": 4096}

    moved = client.build_request("PATCH", upload.url, content=b"x", headers=dict(upload.headers))
    moved.headers["upload-offset"] = "0"
    moved.headers["content-length"] = "1"
    del moved.headers["transfer-encoding"]
    assert answer(client.send(moved)) == (401, "the request signature does not verify")


def test_a_key_offer_must_be_signed_by_the_offered_key(site: Site, client: httpx.Client) -> None:
    offered = keys.mint()
    private = keys.open_private_key(offered.sealed_private_key)

    def accept(signed_by: Ed25519PrivateKey, body: dict[str, Any]) -> httpx.Response:
        request = client.build_request("POST", "/peer/v1/invitations/accept", json=body)
        signing.sign_with(request, offered.key_id, signed_by)
        return client.send(request)

    body = {"key_id": offered.key_id, "public_key": offered.public_key, "name": "from-acme"}
    assert answer(accept(Ed25519PrivateKey.generate(), body)) == (
        401,
        "the request signature does not verify",
    )
    bad = {**body, "public_key": "not a key"}
    assert answer(accept(private, bad)) == (
        400,
        "the request offers no usable key: the public key is not base64url",
    )
    response = accept(private, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"key_id": offered.key_id, "name": "from-acme"}


def test_refusals_are_audited_without_flooding(site: Site, client: httpx.Client) -> None:
    before = refusals("unknown-key")
    for _ in range(5):
        stranger = keys.OurKey(keys.new_key_id(), Ed25519PrivateKey.generate(), site.active.uid)
        assert client.send(note(client, stranger)).status_code == 401
    # One row a minute for all unknown keys: at most one more than before (none if one was just written).
    assert refusals("unknown-key") - before <= 1
    assert refusals("unknown-key") >= 1


def test_a_chunked_json_body_is_cut_off_at_the_limit(site: Site, client: httpx.Client) -> None:
    """A key holder declaring no length cannot make the server hold more than the JSON limit."""
    signed = note(client, site.active.signer)
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        while sent < 4 * MAX_JSON_BYTES:
            sent += 16384
            yield b" " * 16384

    headers = {k: v for k, v in signed.headers.items() if k != "content-length"}
    request = client.build_request("POST", signed.url, content=endless(), headers=headers)
    try:
        response = client.send(request)
    except httpx.TransportError:
        pytest.fail("the server should answer 413, not drop the connection unanswered")
    assert answer(response) == (413, f"the request body is larger than {MAX_JSON_BYTES} bytes")


def test_a_body_on_a_request_that_takes_none_is_refused(site: Site, client: httpx.Client) -> None:
    request = client.build_request("GET", f"/peer/v1/connections/{site.active.uid}", content=b"surprise")
    signing.sign_request(request, site.active.signer)
    assert answer(client.send(request)) == (400, "this request takes no body")

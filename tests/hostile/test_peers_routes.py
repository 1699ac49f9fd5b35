"""Hostile requests to `/peer/v1` between two real `tradelane up`s (fixture `peer_pair`): forged and
old signatures, a valid key used on another connection, replays, unsigned requests, an accept replayed
with another key, and expired, used, forged or truncated tokens through the handshake. Each is refused
with its own status and words, and leaves both instances' connections as they were.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.b2b import keys
from core.b2b.signing import sign_request, sign_with
from tests.b2b.peers_pair import Pair, unique
from tests.servers import free_port
from tests.waiting import wait_for


def accepted(pair: Pair) -> tuple[str, str, str]:
    """A new active connection (A sends to B): A's name, B's name, and the link it was accepted by."""
    name, theirs = unique("to-globex"), unique("from-acme")
    link = pair.invite(send=True, name=name)["link"]
    pair.b.cli("connect", "accept", link, "--name", theirs, "--dest", "lake:in")
    return name, theirs, link


def b_key(pair: Pair, theirs: str) -> keys.OurKey:
    """B's signing key for its connection `theirs` (read from B's store, as only B could)."""
    out = pair.b.py(
        "import json\n"
        "from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat\n"
        "from sqlmodel import select\n"
        "from core.b2b import keys\n"
        "from core.db import session_scope\n"
        "from core.models import Connection, Peer\n"
        "with session_scope() as s:\n"
        f"    c = s.exec(select(Connection).where(Connection.receiver_name == {theirs!r})).one()\n"
        "    p = s.exec(select(Peer).where(Peer.connection_id == c.id)).one()\n"
        "    key = keys.open_private_key(p.our_private_key)\n"
        "    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())\n"
        "    found = {'id': p.our_key_id, 'raw': keys.b64url(raw), 'uid': p.their_connection_uid}\n"
        "    print(json.dumps(found))\n"
    )
    found = json.loads(out)
    private = Ed25519PrivateKey.from_private_bytes(keys.from_b64url(found["raw"], "key"))
    return keys.OurKey(found["id"], private, found["uid"])


def state_request(pair: Pair, key: keys.OurKey, uid: str | None = None, **signing: object) -> httpx.Request:
    """A signed state request with `key`, for its own connection or the one `uid` names."""
    target = keys.OurKey(key.key_id, key.private_key, uid or key.their_connection_uid)
    request = httpx.Request("GET", f"{pair.a.url}/peer/v1/connections/{target.their_connection_uid}")
    sign_request(request, target, **signing)  # type: ignore[arg-type]
    return request


def send(request: httpx.Request) -> httpx.Response:
    with httpx.Client(timeout=30) as client:
        return client.send(request)


@pytest.fixture
def two(peer_pair: Pair) -> tuple[Pair, keys.OurKey, str, str]:
    """Two active connections A→B: B's key for the first, the first's name on A, the second's uid on A."""
    first, theirs, _ = accepted(peer_pair)
    second, _, _ = accepted(peer_pair)
    key = b_key(peer_pair, theirs)
    other_uid = peer_pair.a.py(
        "from sqlmodel import select\n"
        "from core.db import session_scope\n"
        "from core.models import Connection\n"
        "with session_scope() as s:\n"
        f"    print(s.exec(select(Connection).where(Connection.sender_name == {second!r})).one().uid)\n"
    ).strip()
    return peer_pair, key, first, other_uid


def test_a_signed_state_request_is_answered(two: tuple[Pair, keys.OurKey, str, str]) -> None:
    pair, key, _, _ = two
    answer = send(state_request(pair, key))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"state": "active", "allow_sender_view": False}


def test_forged_old_replayed_unsigned_and_misdirected_requests_are_refused(
    two: tuple[Pair, keys.OurKey, str, str],
) -> None:
    pair, key, first, other_uid = two
    before = pair.stores()

    forged = keys.OurKey(key.key_id, Ed25519PrivateKey.generate(), key.their_connection_uid)
    for path in ("", "/revoke"):
        request = httpx.Request(
            "POST" if path else "GET", f"{pair.a.url}/peer/v1/connections/{key.their_connection_uid}{path}"
        )
        sign_request(request, forged)
        answer = send(request)
        assert (
            answer.status_code == 401 and answer.json()["message"] == "the request signature does not verify"
        )

    answer = send(state_request(pair, key, uid=other_uid))
    assert (
        answer.status_code == 403
        and answer.json()["message"] == "this key does not belong to that connection"
    )

    old = send(state_request(pair, key, created=datetime.now(UTC) - timedelta(seconds=900)))
    assert old.status_code == 401 and "the request is too old" in old.json()["message"]

    once = state_request(pair, key)
    assert send(once).status_code == 200
    again = send(once)
    assert again.status_code == 401 and again.json()["message"] == "replayed request (nonce already used)"

    for method, path in (("GET", ""), ("POST", "/revoke")):
        unsigned = httpx.request(
            method, f"{pair.a.url}/peer/v1/connections/{key.their_connection_uid}{path}", timeout=30
        )
        assert unsigned.status_code == 401 and "not signed" in unsigned.json()["message"]

    assert pair.stores() == before
    assert pair.a.connection(first)["state"] == "active"


def _offer(
    pair: Pair, token: str, key: Ed25519PrivateKey, key_id: str, peer_url: str | None = None
) -> httpx.Response:
    body = {
        "token": token,
        "peer_url": peer_url or pair.b.url,
        "connection_uid": "6f1b2d2e-7a44-4a3e-9b54-4a8f0f1d2c3b",
        "key_id": key_id,
        "public_key": keys.public_key_text(key.public_key()),
        "account": "mallory",
        "name": "stolen",
    }
    request = httpx.Request(
        "POST",
        f"{pair.a.url}/peer/v1/invitations/accept",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    sign_with(request, key_id, key)
    return send(request)


def test_an_accept_replayed_with_another_key_is_refused(peer_pair: Pair) -> None:
    pair = peer_pair
    _, _, link = accepted(pair)
    token = link.split("token=", 1)[1]
    before = pair.stores()
    answer = _offer(pair, token, Ed25519PrivateKey.generate(), keys.new_key_id())
    assert answer.status_code == 409 and "already accepted" in answer.json()["message"]
    assert pair.stores() == before


def test_the_same_accept_again_gets_the_same_answer_and_no_other(peer_pair: Pair) -> None:
    """B's retry after a lost answer (same token, key and connection id) gets the first answer again."""
    pair = peer_pair
    name = unique("to-retry")
    token = pair.invite(send=True, name=name)["link"].split("token=", 1)[1]
    key, key_id = Ed25519PrivateKey.generate(), keys.new_key_id()
    nowhere = f"http://127.0.0.1:{free_port()}"  # its state checks find nobody: no noise on B
    first = _offer(pair, token, key, key_id, nowhere)
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "active" and first.json()["direction"] == "send"
    again = _offer(pair, token, key, key_id, nowhere)
    assert again.status_code == 200 and again.json() == first.json()
    before = pair.stores()
    other = _offer(pair, token, Ed25519PrivateKey.generate(), keys.new_key_id(), nowhere)
    assert other.status_code == 409 and "already accepted" in other.json()["message"]
    assert pair.stores() == before
    assert pair.a.connection(name)["peer"]["account"] == "mallory"


def test_bad_tokens_across_change_nothing(peer_pair: Pair) -> None:
    pair = peer_pair
    name = unique("to-globex")
    link = pair.invite(send=True, name=name)["link"]
    token = link.split("token=", 1)[1]
    before = pair.stores()

    def refused(link_text: str, status: int, words: str) -> None:
        said = pair.b.cli(
            "connect", "accept", link_text, "--name", unique("x"), "--dest", "lake:in", check=False
        )
        out = said.stdout + said.stderr
        assert said.returncode == 1 and f"{status}: {words}" in " ".join(out.split()), out

    refused(link[:-6], 400, "the invitation token is incomplete (37 of 43 characters after tlc1_)")
    short = httpx.post(f"{pair.a.url}/peer/v1/invitations/preview", json={"token": token[:-6]}, timeout=30)
    assert short.status_code == 400 and "the invitation token is incomplete" in short.json()["message"]
    forged = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
    refused(forged, 404, "no such invitation: check that the link is complete and unchanged")
    assert pair.stores() == before

    # Used: accepted once; a second accept (another name, another key) is refused.
    pair.b.cli("connect", "accept", link, "--name", unique("from-acme"), "--dest", "lake:in")
    before = pair.stores()
    refused(link, 409, "this invitation was already accepted on")
    used = httpx.post(f"{pair.a.url}/peer/v1/invitations/preview", json={"token": token}, timeout=30)
    assert used.status_code == 409
    assert pair.stores() == before

    # Expired.
    late = pair.invite(send=True, name=unique("to-late"), expires="1s")["link"]

    def expired() -> bool:
        answer = httpx.post(
            f"{pair.a.url}/peer/v1/invitations/preview",
            json={"token": late.split("token=", 1)[1]},
            timeout=30,
        )
        return answer.status_code == 410

    wait_for(expired, "the invitation to expire", timeout=30, interval=0.3)
    before = pair.stores()
    refused(late, 410, "this invitation expired on")
    assert pair.stores() == before

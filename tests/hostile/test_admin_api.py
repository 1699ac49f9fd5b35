"""Hostile input to the admin API (/api/admin/…), over a real socket to uvicorn on 127.0.0.1.

FastAPI reads a JSON body whole before any dependency runs, the token check included: without a
cap, anyone could make the server hold gigabytes. Each admin route reads at most 1 MiB, declared or
streamed chunked, and answers 413 past it; forged and foreign tokens, and names of other accounts'
objects, get nothing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import uvicorn

from api.app import create_app
from api.bodies import MAX_BODY_BYTES
from core import accounts, db, partners
from core.db import session_scope
from core.tenancy import scope_for_cli
from tests.isolation import isolated_home

PASSWORD = "Tr4de-lane-Key-73"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with isolated_home(tmp_path_factory.mktemp("admin-hostile")):
        db.init_db()
        with session_scope() as session:
            accounts.add(session, "acme", email="boss@acme.example", password=PASSWORD)
            accounts.add(session, "globex", email="boss@globex.example", password=PASSWORD)
            partners.add(session, scope_for_cli(session, "globex"), "gx-only", password=PASSWORD)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(create_app(), log_level="warning", lifespan="off", ws="none", http="h11")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        server.should_exit = True
        thread.join(15)
        sock.close()


def _token(client: httpx.Client, email: str) -> dict[str, str]:
    answer = client.post(
        "/api/authentication", data={"grant_type": "password", "username": email, "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_a_body_over_the_cap_is_refused_before_it_is_read_token_or_not(base_url: str) -> None:
    huge = b'{"name": "' + b"a" * (MAX_BODY_BYTES + 10) + b'", "password": "x"}'
    with httpx.Client(base_url=base_url, timeout=30) as client:
        declared = client.post(
            "/api/admin/partners", content=huge, headers={"Content-Type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.json() == {"message": f"the request body is larger than {MAX_BODY_BYTES} bytes"}

        def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count as it reads
            for start in range(0, len(huge), 64 * 1024):
                yield huge[start : start + 64 * 1024]

        headers = {**_token(client, "boss@acme.example"), "Content-Type": "application/json"}
        streamed = client.post("/api/admin/partners", content=chunks(), headers=headers)
        assert streamed.status_code == 413
        listed = client.get("/api/admin/partners", headers=headers)
        assert listed.status_code == 200 and listed.json() == []  # nothing was created


def test_forged_tokens_and_other_accounts_names_get_nothing(base_url: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        acme = _token(client, "boss@acme.example")
        claims = jwt.decode(acme["Authorization"].split()[1], options={"verify_signature": False})
        forged = jwt.encode(claims, "not-the-instance-key-" * 3, algorithm="HS256")
        unsigned = jwt.encode(claims, None, algorithm="none")
        for token in (forged, unsigned, "garbage"):
            answer = client.get("/api/admin/me", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 401, token
        # Names in the path never reach another account's objects, whatever their spelling.
        for name in ("gx-only", "GX-ONLY", "gx-only%00", "..%2Fgx-only"):
            assert client.get(f"/api/admin/partners/{name}", headers=acme).status_code == 404, name
        changed = client.patch("/api/admin/partners/gx-only", json={"enabled": False}, headers=acme)
        assert changed.status_code == 404
        with session_scope() as session:
            assert partners.require(session, scope_for_cli(session, "globex"), "gx-only").enabled is True
        # The account is the token's: a body or query cannot name another.
        sneaky = client.post(
            "/api/admin/partners",
            json={"name": "p1", "password": PASSWORD, "account": "globex"},
            headers=acme,
        )
        assert sneaky.status_code == 400 and "account" in sneaky.json()["message"]
        assert client.get("/api/admin/partners", params={"account": "globex"}, headers=acme).json() == []


def test_values_of_the_wrong_shape_are_400_with_a_message_never_500(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        boss = _token(client, "boss@acme.example")
        assert client.post(
            "/api/admin/partners", json={"name": "shaped", "password": PASSWORD}, headers=boss
        ).is_success
        cases = [
            (
                "POST",
                "/api/admin/flows",
                {"name": "f", "source": "mailbox:shaped", "dest": "x", "validators": [5]},
            ),
            (
                "POST",
                "/api/admin/flows",
                {"name": "f", "source": "mailbox:shaped", "dest": "x", "validators": "json"},
            ),
            (
                "POST",
                "/api/admin/flows",
                {"name": "f", "source": "mailbox:shaped", "dest": "x", "every": [1]},
            ),
            (
                "POST",
                "/api/admin/flows",
                {"name": "f", "source": "mailbox:shaped", "dest": "x", "params": "a=b"},
            ),
            ("POST", "/api/admin/flows", {"name": "../f", "source": "mailbox:shaped", "dest": "x"}),
            ("PATCH", "/api/admin/partners/shaped", {"allowed_networks": "10.0.0.0/8"}),
            ("PATCH", "/api/admin/partners/shaped", {"max_file_bytes": True}),
            ("PATCH", "/api/admin/partners/shaped", {"max_file_bytes": "-1"}),
            ("PATCH", "/api/admin/partners/shaped", {"max_file_bytes": 0}),
            ("PATCH", "/api/admin/partners/shaped", {"max_sessions": 0}),
            ("PATCH", "/api/admin/partners/shaped", {"email": "<script>@x"}),
            ("POST", "/api/admin/partners", {"name": "a/b", "password": PASSWORD}),
            ("POST", "/api/admin/partners", {"name": "ok-name", "password": "short"}),
            ("POST", "/api/admin/endpoints", {"name": "e", "type": "s3", "settings": ["bucket"]}),
            ("POST", "/api/admin/endpoints", {"name": "e", "type": "s3", "settings": {"bucket": {"a": 1}}}),
            ("POST", "/api/admin/endpoints", {"name": "../e", "type": "file", "settings": {"path": "/tmp"}}),
            ("POST", "/api/admin/endpoints", {"name": "e", "type": "file", "settings": {"path": "relative"}}),
            ("POST", "/api/admin/users", {"email": "not-an-address", "password": PASSWORD}),
        ]
        for method, path, body in cases:
            answer = client.request(method, path, json=body, headers=boss)
            assert answer.status_code == 400, (method, path, body, answer.text)
            assert answer.json()["message"], (method, path, body)
        not_json = client.post(
            "/api/admin/partners", content=b"{", headers={**boss, "Content-Type": "application/json"}
        )
        assert not_json.status_code == 400


def test_ids_beyond_the_store_are_not_found_or_refused_never_500(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        boss = _token(client, "boss@acme.example")
        for big in (2**63 - 1, 2**63, 10**30):
            assert client.get(f"/api/admin/transfers/{big}", headers=boss).status_code in (400, 404), big
            replayed = client.post(f"/api/admin/transfers/{big}/replay", headers=boss)
            assert replayed.status_code in (400, 404), big
            for path in ("/api/admin/transfers", "/api/admin/audit"):
                answer = client.get(path, params={"before": big}, headers=boss)
                assert answer.status_code in (200, 400), (path, big, answer.text)
            assert client.delete(f"/api/admin/partners/x/keys/{big}", headers=boss).status_code in (400, 404)

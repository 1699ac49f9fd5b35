"""B2B connections over REST (`/api/connections…`), served by uvicorn on 127.0.0.1 with httpx.

Who calls is an account admin logged in at `POST /api/authentication` (tests/b2b/helpers.py): the
body streams through intake, the refusals are the core's, and a partner's bearer token is refused.
"""

from __future__ import annotations

import hashlib
import os

import httpx

from core import partners
from core.db import session_scope
from tests.b2b.carry import carry_pending
from tests.b2b.helpers import ACME, HOME, OTHER, PASSWORD, Homes, run_json
from tests.tenancy import home_scope


def upload(client: httpx.Client, conn: int, name: str, data: bytes) -> httpx.Response:
    headers = {**ACME, "Content-Disposition": f"attachment; filename={name}"}
    return client.post(f"/api/connections/{conn}/files", content=data, headers=headers)


def test_send_over_rest_after_accept_and_what_each_side_gets(b2b: Homes, api: httpx.Client) -> None:
    invited = run_json(
        "connect",
        "invite",
        "--account",
        "acme",
        "--send",
        "--outbox",
        "orders",
        "--email",
        "b@home.example",
        "--name",
        "to-home",
    )
    conn = int(invited["id"])
    pending = upload(api, conn, "po.json", b"{}")
    assert pending.status_code == 409
    assert pending.json()["message"].startswith("connection 'to-home' is pending")
    run_json(
        "connect",
        "accept",
        str(invited["link"]),
        "--account",
        "home",
        "--name",
        "from-acme",
        "--dest",
        "lake:in/acme",
    )

    data = os.urandom(3 * 1024 * 1024 + 17)  # several request chunks and intake batches
    sent = upload(api, conn, "big.bin", data)
    assert sent.status_code == 201, sent.text
    body = sent.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size"] == len(data)
    assert body["transfer"] is not None and body["held"] is False
    assert carry_pending() == ["delivered"]
    assert (b2b.lake / "in" / "acme" / "big.bin").read_bytes() == data

    listed = api.get("/api/connections", headers=ACME).json()
    assert [(c["name"], c["role"], c["state"]) for c in listed] == [("to-home", "send", "active")]
    assert "dest" not in api.get(f"/api/connections/{conn}", headers=ACME).json()
    assert api.get(f"/api/connections/{conn}", headers=HOME).json()["dest"] == "lake:in/acme"
    mine = api.get(f"/api/connections/{conn}/transfers", headers=ACME).json()
    assert [(r["file"], r["state"], r["outcome"]) for r in mine] == [("big.bin", "delivered", "delivered")]
    assert "destination_uri" not in mine[0]

    refused = api.patch(f"/api/connections/{conn}", json={"allow_sender_view": True}, headers=ACME)
    assert refused.status_code == 403 and "only the receiving side" in refused.json()["message"]
    assert api.get(f"/api/connections/{conn}/files", headers=ACME).status_code == 403
    assert (
        api.patch(f"/api/connections/{conn}", json={"allow_sender_view": True}, headers=HOME).status_code
        == 200
    )
    files = api.get(f"/api/connections/{conn}/files", headers=ACME).json()
    assert [(f["name"], f["size"]) for f in files] == [("big.bin", len(data))]

    # Nothing the sender is answered names the receiver's endpoint, its folder or where the file went.
    answers = [
        api.get(path, headers=ACME).text
        for path in (
            "/api/connections",
            f"/api/connections/{conn}",
            f"/api/connections/{conn}/transfers",
            f"/api/connections/{conn}/files",
        )
    ]
    answers.append(sent.text)
    answers.append(
        api.patch(f"/api/connections/{conn}", json={"allow_sender_view": False}, headers=ACME).text
    )
    for text in answers:
        for secret in ("lake", str(b2b.lake), "in/acme", "file:"):
            assert secret not in text, f"{secret!r} in {text}"

    other = api.get(f"/api/connections/{conn}", headers=OTHER)
    assert other.status_code == 404
    assert api.post(f"/api/connections/{conn}/revoke", headers=HOME).json()["state"] == "revoked"
    after = upload(api, conn, "late.json", b"{}")
    assert after.status_code == 409 and "was revoked on" in after.json()["message"]


def test_a_partner_token_does_not_manage_connections(b2b: Homes, api: httpx.Client) -> None:
    with session_scope() as session:
        partners.add(session, home_scope(session), "widgets", password=PASSWORD)
    token = api.post(
        "/api/authentication", data={"grant_type": "password", "username": "widgets", "password": PASSWORD}
    ).json()["access_token"]
    answer = api.get("/api/connections", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403
    assert answer.json() == {"message": "only the account's users may do this; this is a partner login"}
    assert api.get("/api/connections").status_code == 401


def test_invite_accept_and_decline_over_rest(b2b: Homes, api: httpx.Client) -> None:
    invited = api.post(
        "/api/connections",
        json={
            "email": "ops@acme.example",
            "name": "from-acme",
            "direction": "receive",
            "dest": "lake:in/acme",
        },
        headers=HOME,
    )
    assert invited.status_code == 201, invited.text
    body = invited.json()
    assert body["state"] == "pending" and body["dest"] == "lake:in/acme" and body["email_sent"] is False
    assert body["link"].startswith("http://127.0.0.1:8080/connect/accept?token=tlc1_")
    wrong = api.post(
        "/api/connections/accept",
        json={"token": body["link"], "name": "to-home", "dest": "lake"},
        headers=ACME,
    )
    assert wrong.status_code == 400
    assert wrong.json()["message"] == "this invitation asks you to send files: give --outbox NAME, not --dest"
    accepted = api.post(
        "/api/connections/accept",
        json={"token": body["link"], "name": "to-home", "outbox": "orders"},
        headers=ACME,
    )
    assert accepted.status_code == 200 and accepted.json()["state"] == "active"
    assert "dest" not in accepted.json()
    again = api.post("/api/connections/decline", json={"token": body["link"]}, headers=ACME)
    assert again.status_code == 409 and again.json()["message"].startswith(
        "this invitation was already accepted"
    )
    bad = api.post(
        "/api/connections",
        json={"email": "x@y.example", "name": "n", "direction": "send", "outbox": "a/b"},
        headers=HOME,
    )
    assert bad.status_code == 400 and bad.json()["message"].startswith("invalid outbox name 'a/b'")
    second = api.post(
        "/api/connections",
        json={"email": "x@y.example", "name": "n", "direction": "send", "outbox": "out", "expires": "1h"},
        headers=HOME,
    ).json()
    declined = api.post("/api/connections/decline", json={"token": second["link"]}, headers=ACME)
    assert declined.json() == {"id": second["id"], "state": "declined"}

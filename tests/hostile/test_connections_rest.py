"""Bad input to `/api/connections…` (one instance): each refusal is answered with its status and a
message saying why, and changes nothing in the store. Who calls is chosen as in tests/b2b/test_rest.py."""

from __future__ import annotations

import httpx
import pytest

from tests.b2b.helpers import ACME, HOME, dump

pytestmark = pytest.mark.usefixtures("b2b")


def refused(answer: httpx.Response, status: int, message: str) -> None:
    assert answer.status_code == status, answer.text
    assert message in answer.json()["message"], answer.json()


def _invite(api: httpx.Client) -> dict[str, object]:
    answer = api.post(
        "/api/connections",
        json={"email": "b@home.example", "name": "to-home", "direction": "send", "outbox": "orders"},
        headers=ACME,
    )
    assert answer.status_code == 201, answer.text
    result: dict[str, object] = answer.json()
    return result


def test_tokens_over_rest(api: httpx.Client) -> None:
    link = str(_invite(api)["link"])
    token = link.split("token=", 1)[1]
    before = dump()
    for sent, status, message in (
        (token[:35], 400, "the invitation token is incomplete (30 of 43 characters after tlc1_)"),
        (token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"), 404, "no such invitation"),
        ("<script>", 400, "not an invitation token or link"),
        ("x" * 5000, 400, "not an invitation token or link"),
    ):
        answer = api.post(
            "/api/connections/accept", json={"token": sent, "name": "n", "dest": "lake"}, headers=HOME
        )
        refused(answer, status, message)
    own = api.post("/api/connections/accept", json={"token": link, "name": "n", "outbox": "o"}, headers=ACME)
    refused(own, 403, "an account cannot accept its own invitation")
    assert dump() == before


def test_bodies_and_ids_over_rest(api: httpx.Client) -> None:
    before = dump()
    for body, message in (
        ({"email": "b@h.example", "name": "n", "direction": "send", "outbox": "../x"}, "invalid outbox name"),
        (
            {"email": "not-an-address", "name": "n", "direction": "send", "outbox": "o"},
            "not an email address",
        ),
        (
            {"email": "b@h.example", "name": "n/m", "direction": "send", "outbox": "o"},
            "invalid connection name",
        ),
        (
            {"email": "b@h.example", "name": "n", "direction": "send", "outbox": "o", "expires": "1y"},
            "use a number",
        ),
        (
            {"email": "b@h.example", "name": "n", "direction": "receive", "dest": "lake:../../etc"},
            "'..' not allowed",
        ),
        ({"email": "b@h.example", "name": "n", "direction": "sideways", "outbox": "o"}, "invalid request"),
    ):
        answer = api.post(
            "/api/connections", json=body, headers=ACME if body["direction"] != "receive" else HOME
        )
        refused(answer, 400, message)
    refused(api.get("/api/connections/999", headers=ACME), 404, "no connection '999' in account 'acme'")
    refused(api.post("/api/connections/999/revoke", headers=ACME), 404, "no connection '999'")
    assert dump() == before


def test_sending_over_rest_into_what_does_not_take_files(api: httpx.Client) -> None:
    conn = int(str(_invite(api)["id"]))
    before = dump()
    file = {"Content-Disposition": "attachment; filename=po.json"}
    refused(
        api.post(f"/api/connections/{conn}/files", content=b"{}", headers={**ACME, **file}),
        409,
        "connection 'to-home' is pending",
    )
    refused(
        api.post(f"/api/connections/{conn}/files", content=b"{}", headers={**HOME, **file}),
        404,
        f"no connection '{conn}' in account 'home'",
    )
    for disposition, message in (
        (None, "a Content-Disposition header naming the file is required"),
        ("attachment; filename=../../etc/passwd", "path separator"),
        ("attachment; filename=.hidden", "must not start with '.'"),
        ("attachment; filename*=UTF-8''a%E2%80%AEb.json", "bidirectional"),
    ):
        headers = {**ACME, **({"Content-Disposition": disposition} if disposition else {})}
        refused(api.post(f"/api/connections/{conn}/files", content=b"{}", headers=headers), 400, message)
    multipart = api.post(
        f"/api/connections/{conn}/files", files={"f": ("po.json", b"{}")}, headers={**ACME, **file}
    )
    refused(multipart, 415, "send the file as the raw body")
    assert dump() == before

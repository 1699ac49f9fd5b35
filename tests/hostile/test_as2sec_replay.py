"""Item 9 (second half): a captured signed AS2 message re-sent with a new Message-ID.

Before: the Message-ID (an unsigned HTTP header) was the only duplicate check, so an attacker
who captured one signed message could have it delivered again and again by changing that
header. Now a signed message whose signature was already taken in within
TRADELANE_AS2_DUPLICATE_WINDOW_SECONDS is answered `processed/warning: duplicate-document` and
delivers nothing, exactly like a repeated Message-ID.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pyas2lib
import pytest
from sqlmodel import select

from core.db import session_scope
from core.models import Partner, Receipt
from tests.as2 import conftest as as2
from tests.as2.conftest import As2Server, Trading
from tests.as2.peer import post, wire

as2_home, as2_server, trading, us = as2.as2_home, as2.as2_server, as2.trading, as2.us


def judge(response: httpx.Response, original: Any) -> tuple[str | None, str | None]:
    """A sync MDN's disposition, its signature checked; any Original-Message-ID is accepted."""
    raw = b"".join(f"{k}: {v}\r\n".encode() for k, v in response.headers.items()) + b"\r\n" + response.content
    status, detail = pyas2lib.Mdn().parse(raw, lambda _mid, _rcpt: original)
    return status, detail


def with_message_id(headers: dict[str, str], message_id: str) -> dict[str, str]:
    return {k: (f"<{message_id}>" if k.lower() == "message-id" else v) for k, v in headers.items()}


def signed(partner: Trading, data: bytes, name: str, **options: Any) -> tuple[dict[str, str], bytes, Any]:
    message = partner.message(mdn_mode="SYNC", mdn_digest_alg="sha256", sign=True, **options)
    message.build(data, filename=name, content_type="application/octet-stream")
    headers, body = wire(message)
    return headers, body, message


def as2_receipts(partner: Trading) -> list[Receipt]:
    with session_scope() as session:
        mailbox = session.exec(select(Partner).where(Partner.name == partner.mailbox)).one()
        return list(session.exec(select(Receipt).where(Receipt.partner_id == mailbox.id)))


@pytest.mark.parametrize("encrypt", [False, True], ids=["signed", "signed+encrypted"])
def test_replay_with_a_new_message_id_is_a_duplicate(
    as2_server: As2Server, trading: Callable[..., Trading], encrypt: bool
) -> None:
    partner = trading(sign="sha256", encrypt="aes256" if encrypt else None)
    options = {"encrypt": True, "enc_alg": "aes_256_cbc"} if encrypt else {}
    headers, body, message = signed(partner, b"pay invoice 42 once", "invoice.edi", **options)
    first = post(as2_server.receive_url, headers, body)
    assert judge(first, message) == ("processed", None)

    for n in range(3):  # the attacker's copies: same body, a fresh Message-ID each time
        replay = post(
            as2_server.receive_url, with_message_id(headers, f"replay-{n}-{os.urandom(4).hex()}@x"), body
        )
        assert replay.status_code == 200, replay.text
        assert judge(replay, message) == ("processed/Warning", "duplicate-document")

    assert [p.name for p in partner.upload.iterdir()] == ["invoice.edi"]
    assert len(as2_receipts(partner)) == 1
    rows = partner.rows()
    assert sorted(r.status for r in rows) == ["duplicate", "duplicate", "duplicate", "received"]
    assert all(r.receipt_id is None for r in rows if r.status == "duplicate")


def test_replay_rewrapped_without_the_signature_changing_is_a_duplicate(
    as2_server: As2Server, trading: Callable[..., Trading]
) -> None:
    """The signed part re-sent under another multipart boundary and Message-ID: same signature."""
    partner = trading(sign="sha256")
    headers, body, message = signed(partner, b"rewrapped", "rewrap.edi")
    assert judge(post(as2_server.receive_url, headers, body), message) == ("processed", None)
    boundary = message.payload.get_boundary()
    new_boundary = "attacker" + os.urandom(6).hex()
    rewrapped = body.replace(boundary.encode(), new_boundary.encode())
    replay_headers = with_message_id(
        {k: v.replace(boundary, new_boundary) for k, v in headers.items()}, f"rewrap-{os.urandom(4).hex()}@x"
    )
    assert rewrapped != body and replay_headers["Content-Type"] != headers["Content-Type"]
    replay = post(as2_server.receive_url, replay_headers, rewrapped)
    assert judge(replay, message) == ("processed/Warning", "duplicate-document")
    assert [p.name for p in partner.upload.iterdir()] == ["rewrap.edi"]


def test_the_same_file_signed_again_is_a_new_message(
    as2_server: As2Server, trading: Callable[..., Trading]
) -> None:
    """Not a false duplicate: the partner signing the same file again makes a new signature
    (the signing time is signed), so a legitimate resend of identical content is delivered."""
    partner = trading(sign="sha256")
    headers, body, message = signed(partner, b"daily status: nothing new", "status.edi")
    assert judge(post(as2_server.receive_url, headers, body), message) == ("processed", None)
    second = int(time.time())
    while int(time.time()) == second:  # the signing time has one-second resolution
        time.sleep(0.05)
    headers, body, message = signed(partner, b"daily status: nothing new", "status.edi")
    assert judge(post(as2_server.receive_url, headers, body), message) == ("processed", None)
    assert len(list(partner.upload.iterdir())) == 2


def test_the_window_is_the_setting(
    as2_server: As2Server, trading: Callable[..., Trading], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRADELANE_AS2_DUPLICATE_WINDOW_SECONDS bounds how far back signatures are remembered."""
    partner = trading(sign="sha256")
    headers, body, message = signed(partner, b"old news", "old.edi")
    assert judge(post(as2_server.receive_url, headers, body), message) == ("processed", None)
    monkeypatch.setenv("TRADELANE_AS2_DUPLICATE_WINDOW_SECONDS", "0")
    replay = post(as2_server.receive_url, with_message_id(headers, f"late-{os.urandom(4).hex()}@x"), body)
    assert judge(replay, message) == ("processed", None)
    assert len(list(partner.upload.iterdir())) == 2

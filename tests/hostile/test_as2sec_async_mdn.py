"""Item 8: AS2 async MDNs are no longer an SSRF for whoever names a `Receipt-Delivery-Option`.

Before: a forged, undecryptable message claiming a known partner, with
`Receipt-Delivery-Option: http://127.0.0.1:…/internal-admin`, made the server POST there,
retried 6 times. Now an async MDN is owed only for a message taken in from a sender whose
signature verified against its profile's pinned certificate; it goes only to the profile's MDN
return URL or to a URL its allow-list takes; never to a non-public address unless
TRADELANE_AS2_ALLOW_PRIVATE_MDN_URLS; and redirects are not followed. Every other request for
an async MDN is answered in the HTTP response.

The "internal admin" here is a real HTTP server on 127.0.0.1 that records every request.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.as2.worker import sweep
from tests.as2 import conftest as as2
from tests.as2.conftest import As2Server, Trading
from tests.as2.peer import Identity, post, wire
from tests.waiting import wait_for

as2_home, as2_server, trading, us = as2.as2_home, as2.as2_server, as2.trading, as2.us


class Recorder:
    """An HTTP server on 127.0.0.1 that records each request's path; optionally redirects."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.paths: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorder.paths.append(self.path)
                self.send_response(302 if redirect_to else 200)
                if redirect_to:
                    self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def internal_admin() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.close()


def asking_async(message: Any, url: str) -> tuple[dict[str, str], bytes]:
    headers, body = wire(message)
    return {
        **headers,
        "Disposition-Notification-To": "attacker@example",
        "Receipt-Delivery-Option": url,
    }, body


def nothing_posted(partner: Trading, recorder: Recorder) -> None:
    """No MDN is or will be pending for the partner, and the worker, run now, posts nothing."""
    assert all(r.mdn_status != "pending" and r.mdn_mode != "async" for r in partner.rows())
    sweep()
    sweep()
    assert recorder.paths == []


def forged_undecryptable(partner: Trading) -> Any:
    message = partner.message(encrypt=True, enc_alg="aes_256_cbc")
    message.receiver.encrypt_cert = Identity.new("NOT-THE-HUB").cert_pem.encode()  # not our key
    message.build(b"forged", filename="x.edi", content_type="application/octet-stream")
    return message


def forged_signature(partner: Trading) -> Any:
    message = partner.message(sign=True, encrypt=True, enc_alg="aes_256_cbc")
    message.sender = Identity.new(partner.as2_id).organization()  # same AS2 ID, another key
    message.build(b"forged", filename="x.edi", content_type="application/octet-stream")
    return message


@pytest.mark.parametrize(
    ("forge", "disposition"),
    [(forged_undecryptable, "decryption-failed"), (forged_signature, "authentication-failed")],
    ids=["undecryptable", "bad-signature"],
)
def test_forged_message_posts_nothing(
    as2_server: As2Server,
    trading: Callable[..., Trading],
    internal_admin: Recorder,
    forge: Callable[[Trading], Any],
    disposition: str,
) -> None:
    """The issue's attack, with every other gate open (the URL on the origin of the profile's
    URL, so allowed by default; private addresses allowed, as in these tests): the failed
    authentication alone stops the POST."""
    partner = trading(sign="sha256", encrypt="aes256", url=f"{internal_admin.url}as2")
    headers, body = asking_async(forge(partner), f"{internal_admin.url}internal-admin")
    response = post(as2_server.receive_url, headers, body)
    assert response.status_code == 400
    assert disposition in response.text and "no asynchronous MDN" in response.text
    [row] = partner.rows()
    assert row.status == "failed" and disposition in (row.disposition or "")
    nothing_posted(partner, internal_admin)


def test_unsigned_message_gets_its_mdn_in_the_response(
    as2_server: As2Server, trading: Callable[..., Trading], internal_admin: Recorder
) -> None:
    """Even where unsigned messages are allowed, an unsigned sender is not authenticated: its
    message is taken in, its MDN comes back synchronously, nothing is posted."""
    partner = trading(allow_unsigned=True, allow_mdn_urls=[internal_admin.url])
    message = partner.message()
    message.build(b"unsigned", filename="u.edi", content_type="application/octet-stream")
    headers, body = asking_async(message, f"{internal_admin.url}internal-admin")
    response = post(as2_server.receive_url, headers, body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("multipart/report")
    assert b"processed" in response.content and b"Error" not in response.content
    assert (partner.upload / "u.edi").read_bytes() == b"unsigned"
    [row] = partner.rows()
    assert "not authenticated" in (row.error or "")
    nothing_posted(partner, internal_admin)


def signed_asking_async(partner: Trading, url: str, name: str = "s.edi") -> tuple[dict[str, str], bytes]:
    message = partner.message(sign=True)
    message.build(b"genuine " + name.encode(), filename=name, content_type="application/octet-stream")
    return asking_async(message, url)


def test_a_url_outside_the_profile_allow_list_is_not_posted_to(
    as2_server: As2Server, trading: Callable[..., Trading], internal_admin: Recorder
) -> None:
    """A genuine partner (or a replay with its headers edited) naming another URL: by default
    only the origin of the profile's --url is allowed (here http://127.0.0.1:9/)."""
    partner = trading(sign="sha256")
    response = post(
        as2_server.receive_url, *signed_asking_async(partner, f"{internal_admin.url}internal-admin")
    )
    assert response.status_code == 200 and b"processed" in response.content  # the MDN, synchronously
    [row] = partner.rows()
    assert row.status == "received" and "is not allowed for AS2 partner" in (row.error or "")
    nothing_posted(partner, internal_admin)
    # A look-alike host is not the allowed origin either.
    partner = trading(sign="sha256", url="http://127.0.0.1:9/as2")
    response = post(as2_server.receive_url, *signed_asking_async(partner, "http://127.0.0.1:9@127.0.0.1:1/x"))
    assert response.status_code == 200 and "not allowed" in (partner.rows()[0].error or "")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_needs_the_explicit_setting(
    as2_server: As2Server,
    trading: Callable[..., Trading],
    internal_admin: Recorder,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
) -> None:
    """Authenticated and allow-listed, but on a loopback address (also behind a host name):
    refused unless TRADELANE_AS2_ALLOW_PRIVATE_MDN_URLS is on."""
    monkeypatch.setenv("TRADELANE_AS2_ALLOW_PRIVATE_MDN_URLS", "0")
    url = f"http://{host}:{internal_admin.port}/"
    partner = trading(sign="sha256", allow_mdn_urls=[url])
    response = post(as2_server.receive_url, *signed_asking_async(partner, f"{url}internal-admin"))
    assert response.status_code == 200 and b"processed" in response.content
    [row] = partner.rows()
    assert row.status == "received" and "loopback" in (row.error or "")
    nothing_posted(partner, internal_admin)


def test_the_return_url_wins_and_redirects_are_not_followed(
    as2_server: As2Server, trading: Callable[..., Trading], internal_admin: Recorder
) -> None:
    """The profile's MDN return URL is used whatever URL the message names; its 302 to the
    internal admin is not followed, and the MDN fails at once instead of being retried."""
    redirector = Recorder(redirect_to=f"{internal_admin.url}internal-admin")
    try:
        partner = trading(sign="sha256", mdn_return_url=f"{redirector.url}mdn")
        named = f"{internal_admin.url}named-by-the-message"
        response = post(as2_server.receive_url, *signed_asking_async(partner, named))
        assert response.status_code == 200 and response.content == b""  # async: the MDN is posted
        row = wait_for(lambda: next((r for r in partner.rows() if r.mdn_status == "failed"), None))
        assert row is not None, partner.rows()
        assert row.mdn_url == f"{redirector.url}mdn" and row.attempts == 1
        assert "redirects are not followed" in (row.error or "")
        assert redirector.paths == ["/mdn"]
        sweep()
        assert internal_admin.paths == []
    finally:
        redirector.close()


def test_an_allowed_async_mdn_is_posted_signed(
    as2_server: As2Server, trading: Callable[..., Trading], internal_admin: Recorder
) -> None:
    """The legitimate path still works: a verified sender, an allow-listed URL."""
    partner = trading(sign="sha256", allow_mdn_urls=[f"{internal_admin.url}as2/"])
    message = partner.message(sign=True, mdn_mode="ASYNC", mdn_digest_alg="sha256")
    message.sender.mdn_url = f"{internal_admin.url}as2/mdn"
    message.build(b"ok", filename="ok.edi", content_type="application/octet-stream")
    response = post(as2_server.receive_url, *wire(message))
    assert response.status_code == 200 and response.content == b""
    assert wait_for(lambda: internal_admin.paths) == ["/as2/mdn"]
    row = wait_for(lambda: next((r for r in partner.rows() if r.mdn_status == "sent"), None))
    assert row is not None and row.mdn_signed and row.error is None


def test_a_duplicate_gets_its_mdn_in_the_response(
    as2_server: As2Server, trading: Callable[..., Trading], internal_admin: Recorder
) -> None:
    """A replayed message (its headers the attacker's to edit) is not a reason to post anything."""
    partner = trading(sign="sha256", allow_mdn_urls=[internal_admin.url])
    headers, body = signed_asking_async(partner, f"{internal_admin.url}first")
    assert post(as2_server.receive_url, headers, body).content == b""  # the original: async
    assert wait_for(lambda: internal_admin.paths) == ["/first"]
    replay = {
        **headers,
        "Message-ID": "<replayed@attacker>",
        "Receipt-Delivery-Option": f"{internal_admin.url}again",
    }
    response = post(as2_server.receive_url, replay, body)
    assert response.status_code == 200 and b"duplicate-document" in response.content
    sweep()
    assert internal_admin.paths == ["/first"]


def test_an_address_that_turned_private_is_refused_when_posting(
    as2_server: As2Server, internal_admin: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker checks again before each POST (a name may resolve elsewhere by then): refused
    at once, not retried. The pending MDN is made here, due now, after private addresses are
    refused; deliver() and the running worker (this process's, with the same settings) race for
    it, and whichever claims it refuses the POST."""
    from core.as2 import mdn as mdns
    from core.db import home_account_id, session_scope
    from core.models import As2Message, utcnow

    monkeypatch.setenv("TRADELANE_AS2_ALLOW_PRIVATE_MDN_URLS", "0")
    with session_scope() as session:
        row = As2Message(
            account_id=home_account_id(session), direction="in", message_id=f"held-{os.urandom(4).hex()}@x",
            org_as2_id="TRADELANE-TEST", partner_as2_id="HELD", status="received", mdn_mode="async",
            mdn="Content-Type: text/plain\r\n\r\nMDN", mdn_url=f"{internal_admin.url}mdn",
            mdn_status="pending", next_attempt_at=utcnow(),
        )  # fmt: skip
        session.add(row)
        session.flush()
        row_id = row.id
    assert row_id is not None
    assert mdns.deliver(row_id) is False  # refused, or claimed by the worker first

    def ended() -> As2Message | None:
        with session_scope() as session:
            held = session.get(As2Message, row_id)
            return held if held is not None and held.mdn_status != "pending" else None

    held = wait_for(ended)
    assert held and held.mdn_status == "failed" and held.attempts == 1 and "loopback" in (held.error or "")
    assert internal_admin.paths == []


def test_partner_set_changes_where_mdns_may_go(
    as2_server: As2Server, trading: Callable[..., Trading]
) -> None:
    import json

    from typer.testing import CliRunner

    from cli.main import app

    partner = trading(sign="sha256", url="https://as2.partner.example/as2")

    def listed() -> dict[str, Any]:
        result = CliRunner().invoke(app, ["as2", "partner", "list", "--json"])
        assert result.exit_code == 0, result.output
        return {p["as2_id"]: p for p in json.loads(result.output)}[partner.as2_id]

    def cli(*args: str) -> None:
        result = CliRunner().invoke(app, ["as2", "partner", "set", partner.as2_id, *args])
        assert result.exit_code == 0, result.output

    assert listed()["allow_mdn_urls"] == ["https://as2.partner.example/"]
    cli("--allow-mdn-url", "https://mdn.partner.example/in/", "--allow-mdn-url", "https://b.example/")
    assert listed()["allow_mdn_urls"] == ["https://mdn.partner.example/in/", "https://b.example/"]
    cli("--mdn-return-url", "https://mdn.partner.example/in/receipts")
    assert listed()["mdn_return_url"] == "https://mdn.partner.example/in/receipts"
    cli("--mdn-return-url", "", "--clear-allow-mdn-urls")
    assert (listed()["mdn_return_url"], listed()["allow_mdn_urls"]) == (
        None,
        ["https://as2.partner.example/"],
    )
    result = CliRunner().invoke(app, ["as2", "partner", "set", partner.as2_id, "--allow-mdn-url", "ftp://x/"])
    assert result.exit_code != 0 and "http" in result.output


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://as2.partner.example/mdn/in", True),
        ("https://AS2.partner.example:443/mdn/", True),
        ("https://as2.partner.example/mdn", True),
        ("https://as2.partner.example/mdnx", False),
        ("https://as2.partner.example/mdn/../admin", False),
        ("https://as2.partner.example/mdn/%2e%2e/admin", False),
        ("https://as2.partner.example.evil.test/mdn/", False),
        ("https://as2.partner.example@evil.test/mdn/", False),
        ("https://user@as2.partner.example/mdn/", False),
        ("http://as2.partner.example/mdn/", False),
        ("https://as2.partner.example:8443/mdn/", False),
        ("https://as2.partner.example:bad/mdn/", False),
    ],
)
def test_allow_list_prefixes_match_by_parts(url: str, allowed: bool) -> None:
    from core.as2.profiles import url_matches_prefix

    assert url_matches_prefix(url, "https://as2.partner.example/mdn") is allowed

"""The RFC 9421 profile between instances (core/b2b/signing.py), as a unit of pure logic.

A request is signed as an `httpx.Request` and checked as the server would see it (`PeerMessage`:
method, URL, header lines, no body). Keys, connections and nonces come from plain functions here;
tests/b2b/test_peer_store.py covers the database-backed ones and tests/hostile/test_peer_signing.py
the whole path over HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.b2b import keys, signing
from core.b2b.signing import ConnectionSide, PeerMessage, PeerRefused

OURS = "3f7c0a52-6f1e-4d55-9f7e-0c2b1d4e5a61"  # our connection's uid: the peer puts it in its paths
OTHER = "9d1b2c3e-4f5a-4b6c-8d7e-1f2a3b4c5d6e"


@dataclass
class Book:
    """What the receiving instance knows: the peer's key for connection 7, and the nonces it has seen."""

    private: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    key_id: str = field(default_factory=keys.new_key_id)
    state: str = "active"
    seen: set[tuple[str, str]] = field(default_factory=set)
    nonce_checks: int = 0

    @property
    def signer(self) -> keys.OurKey:
        """The key as the other instance holds it: it signs requests into our connection OURS."""
        return keys.OurKey(self.key_id, self.private, OURS)

    def find_key(self, key_id: str) -> keys.TheirKey | None:
        if key_id != self.key_id:
            return None
        return keys.TheirKey(key_id, self.private.public_key(), peer_id=1, connection_id=7)

    def find_connection(self, connection_id: int) -> ConnectionSide | None:
        return ConnectionSide(7, OURS, self.state) if connection_id == 7 else None

    def first_use(self, key_id: str, nonce: str) -> bool:
        self.nonce_checks += 1
        if (key_id, nonce) in self.seen:
            return False
        self.seen.add((key_id, nonce))
        return True

    def verify(
        self,
        request: httpx.Request,
        *,
        path_uid: str = OURS,
        coverage: signing.Coverage = signing.JSON_BODY,
        allow_revoked: bool = False,
        now: datetime | None = None,
    ) -> signing.PeerCaller:
        return signing.verify_request(
            received(request),
            path_connection_uid=path_uid,
            coverage=coverage,
            find_key=self.find_key,
            find_connection=self.find_connection,
            first_use=self.first_use,
            allow_revoked=allow_revoked,
            now=now,
        )


@pytest.fixture
def book() -> Iterator[Book]:
    yield Book()


def received(request: httpx.Request, host: str = "b.example:8443") -> PeerMessage:
    """The request as the receiving server sees it: another host (a proxy may change it), the same target."""
    target = request.url.raw_path.decode("ascii")
    return PeerMessage.of(request.method, f"https://{host}{target}", request.headers.multi_items())


def post(body: bytes = b'{"name":"po.json"}', uid: str = OURS, path: str = "uploads") -> httpx.Request:
    return httpx.Request(
        "POST",
        f"http://a.example/peer/v1/connections/{uid}/{path}",
        content=body,
        headers={"content-type": "application/json"},
    )


def refusal(excinfo: pytest.ExceptionInfo[PeerRefused]) -> tuple[int, str]:
    return excinfo.value.status, excinfo.value.message


def test_a_signed_request_verifies_and_its_body_checks(book: Book) -> None:
    request = post()
    signing.sign_request(request, book.signer)

    caller = book.verify(request)
    caller.check_body(request.content)

    assert caller.connection == ConnectionSide(7, OURS, "active")
    assert caller.key.key_id == book.key_id
    assert len(caller.nonce) >= 22
    assert request.headers["tradelane-connection"] == OURS
    assert request.headers["content-digest"].startswith("sha-256=:")
    signature_input = request.headers["signature-input"]
    assert signature_input.startswith(
        'tl=("@method" "@path" "@query" "tradelane-connection" "content-digest");created='
    )
    assert 'tag="tradelane-peer-v1"' in signature_input and 'alg="ed25519"' in signature_input


def test_a_changed_body_is_refused(book: Book) -> None:
    request = post(b'{"size":10}')
    signing.sign_request(request, book.signer)
    caller = book.verify(request)

    with pytest.raises(PeerRefused) as excinfo:
        caller.check_body(b'{"size":11}')
    assert refusal(excinfo) == (401, "the request body does not match its signed Content-Digest")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("tradelane-connection", OTHER),
        ("content-digest", "sha-256=:" + "A" * 43 + "=:"),
    ],
)
def test_a_changed_covered_header_is_refused(book: Book, header: str, value: str) -> None:
    request = post()
    signing.sign_request(request, book.signer)
    request.headers[header] = value

    with pytest.raises(PeerRefused) as excinfo:
        book.verify(request)
    assert refusal(excinfo) == (401, "the request signature does not verify")
    assert book.nonce_checks == 0  # nobody can burn a nonce with a request that does not verify


def test_a_changed_method_path_or_query_is_refused(book: Book) -> None:
    request = post(path="uploads?offset=0")
    signing.sign_request(request, book.signer)
    for method, target in [
        ("PUT", f"/peer/v1/connections/{OURS}/uploads?offset=0"),
        ("POST", f"/peer/v1/connections/{OURS}/revoke?offset=0"),
        ("POST", f"/peer/v1/connections/{OURS}/uploads?offset=5"),
    ]:
        message = PeerMessage.of(method, f"https://b.example{target}", request.headers.multi_items())
        with pytest.raises(PeerRefused, match="does not verify"):
            signing.verify_request(
                message,
                path_connection_uid=OURS,
                coverage=signing.JSON_BODY,
                find_key=book.find_key,
                find_connection=book.find_connection,
                first_use=book.first_use,
            )


def test_another_key_under_a_known_key_id_is_refused(book: Book) -> None:
    forger = keys.OurKey(book.key_id, Ed25519PrivateKey.generate(), OURS)
    request = post()
    signing.sign_request(request, forger)

    with pytest.raises(PeerRefused) as excinfo:
        book.verify(request)
    assert refusal(excinfo) == (401, "the request signature does not verify")


def test_an_unknown_key_is_refused_before_anything_else(book: Book) -> None:
    stranger = keys.OurKey(keys.new_key_id(), Ed25519PrivateKey.generate(), OURS)
    request = post()
    signing.sign_request(request, stranger, created=datetime.now(UTC) - timedelta(hours=2))

    with pytest.raises(PeerRefused) as excinfo:
        book.verify(request)
    assert refusal(excinfo) == (401, "unknown key")
    assert excinfo.value.key_id == stranger.key_id and not excinfo.value.known_key


def test_an_old_request_is_refused_after_its_signature_checked(book: Book) -> None:
    request = post()
    signing.sign_request(request, book.signer, created=datetime.now(UTC) - timedelta(seconds=900))

    with pytest.raises(PeerRefused) as excinfo:
        book.verify(request)
    status, message = refusal(excinfo)
    assert status == 401
    assert re.fullmatch(
        r"the request is too old \(created 90\d s ago; at most 300 s\): check both instances' clocks", message
    )
    assert book.nonce_checks == 0

    # The same age with a forged signature is a bad signature: the age is told to key holders only.
    forged = post()
    forger = keys.OurKey(book.key_id, Ed25519PrivateKey.generate(), OURS)
    signing.sign_request(forged, forger, created=datetime.now(UTC) - timedelta(seconds=900))
    with pytest.raises(PeerRefused, match="does not verify"):
        book.verify(forged)


def test_the_time_window_is_300_s_back_and_30_s_ahead(book: Book) -> None:
    created = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
    for offset, accepted in [(-300, True), (-301, False), (30, True), (31, False)]:
        request = post()
        signing.sign_request(request, book.signer, created=created)
        now = created - timedelta(seconds=offset)
        if accepted:
            book.verify(request, now=now)
        else:
            with pytest.raises(PeerRefused) as excinfo:
                book.verify(request, now=now)
            assert excinfo.value.status == 401 and excinfo.value.reason in ("too-old", "from-the-future")


def test_a_replayed_nonce_is_refused(book: Book) -> None:
    request = post()
    signing.sign_request(request, book.signer)
    book.verify(request)

    with pytest.raises(PeerRefused) as excinfo:
        book.verify(request)
    assert refusal(excinfo) == (401, "replayed request (nonce already used)")


@pytest.mark.parametrize("path_uid", [OTHER, "not-a-connection"])
def test_another_connection_in_the_path_is_refused_alike(book: Book, path_uid: str) -> None:
    request = post(uid=path_uid)
    signing.sign_request(request, keys.OurKey(book.key_id, book.private, path_uid))

    with pytest.raises(PeerRefused) as excinfo:
        book.verify(request, path_uid=path_uid)
    assert refusal(excinfo) == (403, "this key does not belong to that connection")
    assert book.nonce_checks == 0


def test_the_path_and_the_connection_header_must_agree(book: Book) -> None:
    request = post(uid=OTHER)  # signed header says OURS, the path OTHER
    signing.sign_request(request, book.signer)

    with pytest.raises(PeerRefused) as excinfo:
        book.verify(request, path_uid=OTHER)
    assert excinfo.value.status == 403


def test_a_revoked_connection_answers_410_except_where_allowed(book: Book) -> None:
    book.state = "revoked"
    request = post()
    signing.sign_request(request, book.signer)
    with pytest.raises(PeerRefused) as excinfo:
        book.verify(request)
    assert refusal(excinfo) == (410, "connection revoked")

    state = httpx.Request("GET", f"http://a.example/peer/v1/connections/{OURS}")
    signing.sign_request(state, book.signer)
    assert book.verify(state, coverage=signing.NO_BODY, allow_revoked=True).connection.state == "revoked"


def test_missing_signature_headers_are_refused(book: Book) -> None:
    request = post()
    signing.sign_request(request, book.signer)
    for drop in ("signature", "signature-input"):
        lines = [(k, v) for k, v in request.headers.multi_items() if k != drop]
        message = PeerMessage.of("POST", str(request.url), lines)
        with pytest.raises(PeerRefused) as excinfo:
            signing.verify_request(
                message,
                path_connection_uid=OURS,
                coverage=signing.JSON_BODY,
                find_key=book.find_key,
                find_connection=book.find_connection,
                first_use=book.first_use,
            )
        assert refusal(excinfo) == (
            401,
            "the request is not signed as a tradelane peer request: "
            "Signature-Input and Signature headers are required (RFC 9421)",
        )


def _library_signed(book: Book, **options: object) -> httpx.Request:
    """A request signed with the library directly, to leave out what sign_request always puts in."""
    from http_message_signatures import HTTPMessageSigner, algorithms

    request = post()
    request.headers["tradelane-connection"] = OURS
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519, key_resolver=signing._OneKey(book.key_id, book.private)
    )
    arguments: dict[str, object] = {
        "key_id": book.key_id,
        "label": "tl",
        "tag": signing.TAG,
        "nonce": signing.new_nonce(),
        "covered_component_ids": ("@method", "@path", "@query", "tradelane-connection"),
        "body": request.content,
    }
    arguments.update(options)
    signer.sign(request, **arguments)  # type: ignore[arg-type]
    return request


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nonce": None}, "the signature needs a nonce of 22-128 base64url characters"),
        ({"nonce": "short"}, "the signature needs a nonce of 22-128 base64url characters"),
        ({"tag": None}, "the 'tl' signature is not tagged tradelane-peer-v1"),
        ({"tag": "other-app"}, "the 'tl' signature is not tagged tradelane-peer-v1"),
        ({"label": "sig1"}, "no signature labelled 'tl'"),
    ],
)
def test_signatures_without_our_profile_are_refused(
    book: Book, options: dict[str, object], message: str
) -> None:
    request = _library_signed(book, **options)
    with pytest.raises(PeerRefused) as excinfo:
        book.verify(request)
    assert refusal(excinfo) == (401, f"the request is not signed as a tradelane peer request: {message}")


def test_a_signature_must_cover_what_the_route_needs(book: Book) -> None:
    request = _library_signed(book, covered_component_ids=("@method", "@path", "@query"), body=None)
    with pytest.raises(PeerRefused) as excinfo:
        book.verify(request)
    assert refusal(excinfo) == (
        401,
        "the request signature must cover tradelane-connection, content-digest (JSON body)",
    )


def test_an_upload_is_signed_with_its_offset_and_not_digested(book: Book) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"x" * 10

    request = httpx.Request(
        "PATCH",
        f"http://a.example/peer/v1/connections/{OURS}/uploads/u1",
        content=chunks(),
        headers={"upload-offset": "4096", "content-type": "application/offset+octet-stream"},
    )
    signing.sign_request(request, book.signer)
    assert "content-digest" not in request.headers
    book.verify(request, coverage=signing.UPLOAD)

    moved = httpx.Request("PATCH", request.url, headers={**request.headers, "upload-offset": "0"})
    with pytest.raises(PeerRefused, match="does not verify"):
        book.verify(moved, coverage=signing.UPLOAD)


def test_a_streamed_request_without_an_offset_is_not_signed(book: Book) -> None:
    request = httpx.Request("PATCH", f"http://a.example/peer/v1/connections/{OURS}/x", content=iter([b"x"]))
    with pytest.raises(ValueError, match="Upload-Offset"):
        signing.sign_request(request, book.signer)


def test_a_key_offer_proves_possession(book: Book) -> None:
    offered = Ed25519PrivateKey.generate()
    key_id = keys.new_key_id()
    body = b'{"key_id":"' + key_id.encode() + b'"}'
    request = httpx.Request("POST", "http://a.example/peer/v1/invitations/accept", content=body)
    signing.sign_with(request, key_id, offered)
    assert "tradelane-connection" not in request.headers

    def check(key: Ed25519PrivateKey, key_name: str = key_id, sent: bytes = body) -> signing.SignatureInput:
        return signing.verify_possession(
            received(request), sent, key_id=key_name, public_key=key.public_key(), first_use=book.first_use
        )

    with pytest.raises(PeerRefused, match="does not verify"):
        check(Ed25519PrivateKey.generate())
    with pytest.raises(PeerRefused, match="not signed with the key it offers"):
        check(offered, keys.new_key_id())
    with pytest.raises(PeerRefused, match="does not match its signed Content-Digest"):
        check(offered, sent=body + b" ")
    assert check(offered).key_id == key_id
    with pytest.raises(PeerRefused, match="replayed"):
        check(offered)


def test_a_second_signature_input_line_cannot_smuggle_another_key(book: Book) -> None:
    """Two `tl` members (one per header line): refused, whichever the parser would have picked."""
    genuine = post()
    signing.sign_request(genuine, book.signer)
    forged = post()
    signing.sign_request(forged, keys.OurKey(keys.new_key_id(), Ed25519PrivateKey.generate(), OURS))
    for first, second in [(genuine, forged), (forged, genuine)]:
        lines = [(k, v) for k, v in first.headers.multi_items() if k not in ("signature-input", "signature")]
        for source in (first, second):
            lines += [(k, source.headers[k]) for k in ("signature-input", "signature")]
        message = PeerMessage.of("POST", str(first.url), lines)
        with pytest.raises(PeerRefused) as excinfo:
            signing.verify_request(
                message,
                path_connection_uid=OURS,
                coverage=signing.JSON_BODY,
                find_key=book.find_key,
                find_connection=book.find_connection,
                first_use=book.first_use,
            )
        assert excinfo.value.status == 401
    assert book.nonce_checks == 0

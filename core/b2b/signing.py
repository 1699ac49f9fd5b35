"""Requests between two tradelane instances, signed with RFC 9421 HTTP Message Signatures (DESIGN-12 §5.2).

The only module that uses `http-message-signatures`. Profile: Ed25519, label `tl`, tag
`tradelane-peer-v1`, `keyid` = the sender's key for the connection, `created` = now and a 128-bit
`nonce` in every signature. Covered: `@method`, `@path`, `@query` and the `tradelane-connection`
header (the target connection's uid); `content-digest` (RFC 9530) whenever the body is known when
signing (JSON bodies); `upload-offset` when the request has one (resumable uploads, whose bodies are
streamed and not digested). `@authority`/`@target-uri` are not covered: a reverse proxy may change
the scheme or host, and the per-connection key already binds a request to its pair.

The receiving side checks a request in the order of §5.3, every step before a byte of the body is
read, each refusal with its own status and text (the library's texts can be empty):

1. the signature headers are there, parse, carry our tag, a nonce and `created`, and name a known
   key (401 `unknown key`);
2. the signature verifies with that key and covers what the route needs (401);
3. `created` lies within now - 300 s ... now + 30 s (401 `the request is too old ...`);
4. the connection in the path and in `tradelane-connection` is the key's (403, the same answer
   whether that connection exists or not);
5. the nonce is new (401 `replayed request`) - only after 2, so nobody can burn nonces;
6. the connection is not revoked (410), except for the calls that must still work then.

The body, when the route reads one, is checked against the signed Content-Digest afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import http_sf
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    VerifyResult,
    algorithms,
)

from core.b2b.keys import OurKey, TheirKey

LABEL = "tl"
TAG = "tradelane-peer-v1"
CONNECTION_HEADER = "tradelane-connection"
UPLOAD_OFFSET_HEADER = "upload-offset"
DIGEST_HEADER = "content-digest"
MAX_AGE = timedelta(seconds=300)
MAX_SKEW = timedelta(seconds=30)
# Nonces are secrets.token_urlsafe(16): 22 characters, 128 random bits; shorter ones are refused.
NONCE_MIN_CHARS = 22
NONCE_MAX_CHARS = 128
_NONCE_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
BASE_COMPONENTS = ("@method", "@path", "@query", CONNECTION_HEADER)


@dataclass(frozen=True)
class Coverage:
    """The components a kind of peer request must have signed."""

    name: str
    components: tuple[str, ...]

    @property
    def has_digest(self) -> bool:
        return DIGEST_HEADER in self.components


# No body (GET, revoke notices); a small JSON body with a signed digest; a streamed upload.
NO_BODY = Coverage("no body", BASE_COMPONENTS)
JSON_BODY = Coverage("JSON body", (*BASE_COMPONENTS, DIGEST_HEADER))
UPLOAD = Coverage("upload", (*BASE_COMPONENTS, UPLOAD_OFFSET_HEADER))
# The accept handshake (§5.4): no connection of ours exists yet, the body offers the key.
POSSESSION = Coverage("key offer", ("@method", "@path", "@query", DIGEST_HEADER))


class PeerRefused(Exception):
    """A peer request refused; `reason` is a short word for the audit (`peer.refused`)."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.reason = reason
        # Set by the checks once known, for the audit: the key the request named, and whether it is ours.
        self.key_id: str | None = None
        self.known_key = False


def _unsigned(why: str) -> PeerRefused:
    return PeerRefused(401, f"the request is not signed as a tradelane peer request: {why}", "unsigned")


def _bad_signature() -> PeerRefused:
    return PeerRefused(401, "the request signature does not verify", "bad-signature")


# --- signing (our requests to a peer) -------------------------------------------------------------


class _OneKey(HTTPSignatureKeyResolver):
    """The one key a signature is made or checked with (keys are looked up by our code, not the library)."""

    def __init__(self, key_id: str, key: Any) -> None:
        self.key_id = key_id
        self.key = key

    def resolve_public_key(self, key_id: str) -> Any:
        return self.key if key_id == self.key_id else None

    def resolve_private_key(self, key_id: str) -> Any:
        if key_id != self.key_id:
            raise InvalidSignature("no such key")
        return self.key


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def sign_request(
    request: httpx.Request, key: OurKey, *, created: datetime | None = None, nonce: str | None = None
) -> None:
    """Sign `request` in place for the peer connection `key` belongs to."""
    request.headers[CONNECTION_HEADER] = key.their_connection_uid
    sign_with(request, key.key_id, key.private_key, created=created, nonce=nonce)


def sign_with(
    request: httpx.Request,
    key_id: str,
    private_key: Ed25519PrivateKey,
    *,
    created: datetime | None = None,
    nonce: str | None = None,
) -> None:
    """Sign `request` in place with one key (`sign_request`, or a key offer in the accept handshake).

    A request built with bytes content gets a Content-Digest over them, covered by the signature;
    a streamed body (an upload) cannot be digested before it is sent, so it must carry
    `Upload-Offset`, which is covered instead. `tradelane-connection` is covered when present.
    """
    components = ["@method", "@path", "@query"]
    if CONNECTION_HEADER in request.headers:
        components.append(CONNECTION_HEADER)
    try:
        body: bytes | None = request.content
    except httpx.RequestNotRead:
        body = None
    if UPLOAD_OFFSET_HEADER in request.headers:
        components.append(UPLOAD_OFFSET_HEADER)
    elif body is None:
        raise ValueError("a streamed peer request must carry Upload-Offset (its body is not digested)")
    resolver = _OneKey(key_id, private_key)
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
    signer.sign(
        request,
        key_id=key_id,
        created=created or datetime.now(UTC),
        nonce=nonce or new_nonce(),
        label=LABEL,
        tag=TAG,
        covered_component_ids=components,
        body=body,
    )


# --- verifying (a peer's request to us) -----------------------------------------------------------


class _Lines:
    """Header field lines, in wire order, as the library reads them (repeated lines kept)."""

    def __init__(self, lines: Iterable[tuple[str, str]]) -> None:
        self._lines = list(lines)

    def items(self) -> list[tuple[str, str]]:
        return self._lines

    def get(self, name: str) -> str | None:
        values = [value.strip() for key, value in self._lines if key.lower() == name]
        return ", ".join(values) if values else None


@dataclass(frozen=True)
class PeerMessage:
    """A received request as the verifier sees it: no body, so nothing here can read one.

    `url` is the absolute URL with the path and query exactly as they arrived (encoded).
    """

    method: str
    url: str
    headers: _Lines

    @classmethod
    def of(cls, method: str, url: str, header_lines: Iterable[tuple[str, str]]) -> PeerMessage:
        return cls(method.upper(), url, _Lines(header_lines))


@dataclass(frozen=True)
class SignatureInput:
    """Our signature's parameters, read from `Signature-Input` before anything is verified."""

    key_id: str
    created: int
    nonce: str
    components: tuple[str, ...]


def read_signature_input(message: PeerMessage) -> SignatureInput:
    """Step 1a: both signature headers are there and our labelled, tagged signature has what we need."""
    text = message.headers.get("signature-input")
    if text is None or message.headers.get("signature") is None:
        raise _unsigned("Signature-Input and Signature headers are required (RFC 9421)")
    try:
        parsed = http_sf.parse(text.encode("latin-1"), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError):
        raise _unsigned("the Signature-Input header does not parse") from None
    if not isinstance(parsed, dict) or LABEL not in parsed:
        raise _unsigned(f"no signature labelled '{LABEL}'")
    entry: Any = parsed[LABEL]  # (inner list, parameters) for a well-formed signature input
    member, params = entry
    if not isinstance(member, list) or not isinstance(params, dict):
        raise _unsigned(f"the '{LABEL}' signature input is not an inner list")
    if params.get("tag") != TAG:
        raise _unsigned(f"the '{LABEL}' signature is not tagged {TAG}")
    key_id, created, nonce = params.get("keyid"), params.get("created"), params.get("nonce")
    if not isinstance(key_id, str) or not key_id:
        raise _unsigned("the signature names no key (keyid)")
    if type(created) is not int:
        raise _unsigned("the signature has no creation time (created)")
    if (
        not isinstance(nonce, str)
        or not NONCE_MIN_CHARS <= len(nonce) <= NONCE_MAX_CHARS
        or not set(nonce) <= _NONCE_ALPHABET
    ):
        size = f"{NONCE_MIN_CHARS}-{NONCE_MAX_CHARS}"
        raise _unsigned(f"the signature needs a nonce of {size} base64url characters")
    components = tuple(str(item[0]) for item in member)
    return SignatureInput(key_id, created, nonce, components)


class _Verifier(HTTPMessageVerifier):
    """The library's verifier, with the time checks left to `check_age` (step 3, after the signature)."""

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        return None


def check_signature(
    message: PeerMessage, signature: SignatureInput, key: Ed25519PublicKey, coverage: Coverage
) -> list[VerifyResult]:
    """Step 2: the signature verifies with `key` and covers what `coverage` requires."""
    missing = [c for c in coverage.components if c not in signature.components]
    if missing:
        raise PeerRefused(
            401, f"the request signature must cover {', '.join(missing)} ({coverage.name})", "bad-signature"
        )
    verifier = _Verifier(signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(signature.key_id, key))
    try:
        return verifier.verify(
            message, max_age=None, expect_tag=TAG, expect_label=LABEL, require_components=coverage.components
        )
    except (InvalidSignature, HTTPMessageSignaturesException):
        raise _bad_signature() from None


def check_age(signature: SignatureInput, now: datetime) -> None:
    """Step 3: `created` within now - 300 s ... now + 30 s."""
    age = int(now.timestamp()) - signature.created
    if age > MAX_AGE.total_seconds():
        raise PeerRefused(
            401,
            f"the request is too old (created {age} s ago; at most {int(MAX_AGE.total_seconds())} s): "
            "check both instances' clocks",
            "too-old",
        )
    if -age > MAX_SKEW.total_seconds():
        raise PeerRefused(
            401,
            f"the request was created {-age} s in the future (at most {int(MAX_SKEW.total_seconds())} s "
            "of clock difference): check both instances' clocks",
            "from-the-future",
        )


def wrong_connection() -> PeerRefused:
    return PeerRefused(403, "this key does not belong to that connection", "wrong-connection")


def check_body(message: PeerMessage, results: Sequence[VerifyResult], body: bytes) -> None:
    """After the route read `body`: it is what the signed Content-Digest says."""
    verifier = _Verifier(signature_algorithm=algorithms.ED25519, key_resolver=None)
    try:
        verifier.verify_body(message, results, body)
    except (InvalidSignature, HTTPMessageSignaturesException):
        raise PeerRefused(
            401, "the request body does not match its signed Content-Digest", "body-digest"
        ) from None


# --- the whole check, in order --------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionSide:
    """Our connection row as the checks need it: its uid (in the peer's paths) and its state."""

    id: int
    uid: str
    state: str


# What the checks look up, as plain functions so the order of §5.3 lives here and the storage elsewhere:
# the peer key a signature names (core/b2b/keys.their_key), the connection a key was minted for (the
# connections module), and the replay guard: record a nonce, False if it was seen (core/b2b/replay.first_use).
KeyLookup = Callable[[str], TheirKey | None]
ConnectionLookup = Callable[[int], ConnectionSide | None]
ReplayGuard = Callable[[str, str], bool]


@dataclass(frozen=True)
class PeerCaller:
    """A request that passed steps 1-6: who sent it, for which connection, and what was verified."""

    key: TheirKey
    connection: ConnectionSide
    nonce: str
    created: datetime
    message: PeerMessage
    results: tuple[VerifyResult, ...]

    def check_body(self, body: bytes) -> None:
        check_body(self.message, self.results, body)


def verify_request(
    message: PeerMessage,
    *,
    path_connection_uid: str,
    coverage: Coverage,
    find_key: KeyLookup,
    find_connection: ConnectionLookup,
    first_use: ReplayGuard,
    allow_revoked: bool = False,
    now: datetime | None = None,
) -> PeerCaller:
    """Steps 1-6 of DESIGN-12 §5.3 for a request to `/peer/v1/connections/{uid}/...`.

    `first_use(key_id, nonce)` records the nonce and says whether it was new; it must have
    committed when it returns, so a concurrent replay is refused even if this request then streams
    a long body.
    """
    now = now or datetime.now(UTC)
    signature = read_signature_input(message)
    key = find_key(signature.key_id)
    try:
        if key is None:
            raise PeerRefused(401, "unknown key", "unknown-key")
        results = check_signature(message, signature, key.public_key, coverage)
        check_age(signature, now)
        connection = find_connection(key.connection_id)
        header_uid = message.headers.get(CONNECTION_HEADER)
        if connection is None or not (path_connection_uid == header_uid == connection.uid):
            raise wrong_connection()
        if not first_use(signature.key_id, signature.nonce):
            raise PeerRefused(401, "replayed request (nonce already used)", "replay")
        if connection.state == "revoked" and not allow_revoked:
            raise PeerRefused(410, "connection revoked", "revoked")
    except PeerRefused as refused:
        refused.key_id, refused.known_key = signature.key_id, key is not None
        raise
    return PeerCaller(
        key=key,
        connection=connection,
        nonce=signature.nonce,
        created=datetime.fromtimestamp(signature.created, UTC),
        message=message,
        results=tuple(results),
    )


def verify_possession(
    message: PeerMessage,
    body: bytes,
    *,
    key_id: str,
    public_key: Ed25519PublicKey,
    first_use: ReplayGuard,
    now: datetime | None = None,
) -> SignatureInput:
    """The accept handshake (§5.4 step 4): the request is signed by the key its own body offers.

    The key comes from the body, so the route reads that (small) body first, within its limit;
    then the same checks as `verify_request` apply, with the body's digest checked before the
    nonce is recorded.
    """
    now = now or datetime.now(UTC)
    signature = read_signature_input(message)
    if signature.key_id != key_id:
        raise PeerRefused(401, "the request is not signed with the key it offers", "bad-signature")
    results = check_signature(message, signature, public_key, POSSESSION)
    check_age(signature, now)
    check_body(message, results, body)
    if not first_use(signature.key_id, signature.nonce):
        raise PeerRefused(401, "replayed request (nonce already used)", "replay")
    return signature

"""MDNs (RFC 4130 §7, RFC 3798): building ours, delivering async ones, and judging partners'.

An MDN is stored with its message as text: its headers, a blank line, then its body decoded as
Latin-1 so the bytes round-trip exactly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlmodel import Session, select

from core import rowlock
from core.as2 import mdnbuild, messages, signing
from core.as2.settings import as2_settings
from core.db import session_scope
from core.models import As2Message, As2Organization, As2Partner, utcnow
from core.netpolicy import HostNotResolved, UrlNotAllowed, check_public_url, guarded_transport

log = logging.getLogger(__name__)

USER_AGENT = "tradelane AS2"
# Request headers that describe the HTTP exchange, not the AS2 message.
HOP_BY_HOP = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "expect", "te", "upgrade"}
)


# ---- wire format ------------------------------------------------------------------------------


def header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """HTTP headers as the MIME header block pyas2lib parses (RFC 4130: HTTP headers are MIME headers)."""
    lines = [f"{name}: {value}\r\n" for name, value in headers if name.lower() not in HOP_BY_HOP]
    return "".join(lines).encode("latin-1", "replace")


def clean_headers(headers: dict[str, Any]) -> dict[str, str]:
    """MIME headers made fit for HTTP: unfolded, no line breaks."""
    return {str(k): " ".join(str(v).split()) for k, v in headers.items()}


def to_text(headers: dict[str, str], body: bytes) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n" + body.decode("latin-1")


def from_text(text: str) -> tuple[dict[str, str], bytes]:
    head, _, body = text.partition("\r\n\r\n")
    headers: dict[str, str] = {}
    for line in head.split("\r\n"):
        name, sep, value = line.partition(": ")
        if sep:
            headers[name] = value
    return headers, body.encode("latin-1")


# ---- our MDNs ---------------------------------------------------------------------------------


def requested(message: Any) -> bool:
    headers = {k.lower(): v for k, v in message.headers.items()}
    return bool(headers.get("disposition-notification-to"))


_building = threading.local()  # this thread is in Mdn.build (see _unlogged)
_install_lock = threading.Lock()


def _install_unlogged_serialization() -> None:
    """Make pyas2lib's `Mdn.build` cheaper, while `_unlogged()` is on in this thread:

    * its debug lines are f-strings over `pyas2lib.as2.mime_to_bytes(...)`, evaluated whatever
      the log level; within `Mdn.build` that name serves only those lines (the signed bytes come
      from pyas2lib.utils.canonicalize), so it returns a placeholder instead;
    * `pyas2lib.as2.sign_message` signs the MDN: with OpenSSL (core.as2.signing) where it can.
    Each wrapper is installed once per process (and again should something put the original back).
    """
    import pyas2lib.as2

    with _install_lock:
        serialize = pyas2lib.as2.mime_to_bytes
        if not getattr(serialize, "tradelane_wrapped", False):

            def mime_to_bytes(*args: Any, **kwargs: Any) -> bytes:
                if getattr(_building, "skip_log_text", False):
                    return b"(not serialized: pyas2lib debug logging is off)"
                result: bytes = serialize(*args, **kwargs)
                return result

            mime_to_bytes.tradelane_wrapped = True  # type: ignore[attr-defined]
            pyas2lib.as2.mime_to_bytes = mime_to_bytes

        sign = pyas2lib.as2.sign_message
        if not getattr(sign, "tradelane_wrapped", False):

            def sign_message(
                data: bytes, digest_alg: str, sign_key: Any, sign_alg: str = "rsassa_pkcs1v15"
            ) -> Any:
                if getattr(_building, "on", False):
                    signed = signing.sign_detached(data, digest_alg, sign_key, sign_alg)
                    if signed is not None:
                        return signed
                return sign(data, digest_alg, sign_key, sign_alg)

            sign_message.tradelane_wrapped = True  # type: ignore[attr-defined]
            pyas2lib.as2.sign_message = sign_message


@contextlib.contextmanager
def _unlogged() -> Iterator[None]:
    _install_unlogged_serialization()
    _building.skip_log_text = not logging.getLogger("pyas2lib").isEnabledFor(logging.DEBUG)
    _building.on = True
    try:
        yield
    finally:
        _building.skip_log_text = _building.on = False


def build(message: Any, status: str, detail: str | None) -> Any | None:
    """The MDN a parsed (or failed) pyas2lib Message asks for, or None when it asks for none.

    Signed when the sender asked for a signed receipt and we know who we are; should signing
    itself fail (an unknown digest asked for, say) an unsigned MDN still tells the sender the
    outcome, which beats no answer.
    """
    import pyas2lib

    headers = {k.lower(): v for k, v in message.headers.items()}
    if not headers.get("disposition-notification-to"):
        return None
    try:
        built = mdnbuild.build(message, headers, status, detail, USER_AGENT)
    except Exception:
        log.warning("could not write the MDN for %s directly; pyas2lib builds it", message.message_id,
                    exc_info=True)  # fmt: skip
        built = None
    if built is not None:
        return built
    url = headers.get("receipt-delivery-option")
    options = headers.get("disposition-notification-options")
    digest = options.split(";")[-1].split(",")[-1].strip() if options else None
    mdn = pyas2lib.Mdn(mdn_mode="ASYNC" if url else "SYNC", mdn_url=url, digest_alg=digest)
    try:
        with _unlogged():
            mdn.build(message=message, status=status, detailed_status=detail)
    except Exception:
        log.warning("could not sign the MDN for %s; sending it unsigned", message.message_id, exc_info=True)
        receiver, message.receiver = message.receiver, None
        try:
            with _unlogged():
                mdn.build(message=message, status=status, detailed_status=detail)
        finally:
            message.receiver = receiver
    if mdn.payload.get("user-agent"):
        mdn.payload.replace_header("user-agent", USER_AGENT)
    return mdn


def wire(mdn: Any) -> tuple[dict[str, str], bytes]:
    """An MDN's HTTP headers and body."""
    if isinstance(mdn, mdnbuild.Built):
        return dict(mdn.headers), mdn.content
    return clean_headers(mdn.headers), bytes(mdn.content)


def is_signed(mdn: Any) -> bool:
    """Whether an MDN `build()` made is signed."""
    if isinstance(mdn, mdnbuild.Built):
        return mdn.signed
    return bool(mdn.payload.get_content_type() == "multipart/signed")


# ---- async MDNs we owe partners -----------------------------------------------------------------
#
# Owed only to a sender whose signature we verified, for a message we took in (receive.py), and
# posted only where the partner's profile says: its MDN return URL, or the URL the sender named
# if the profile's allow-list takes it; never to a non-public address unless
# TRADELANE_AS2_ALLOW_PRIVATE_MDN_URLS; never following a redirect.


def async_destination(profile: As2Partner, requested: str) -> str:
    """Where our async MDN to `profile` goes when its message asked for one at `requested`.

    Raises UrlNotAllowed (with what to configure) when the profile does not allow it.
    """
    from core.as2 import profiles

    if profile.mdn_return_url:
        url = profile.mdn_return_url
    else:
        allowed = profiles.allowed_mdn_prefixes(profile)
        if not any(profiles.url_matches_prefix(requested, prefix) for prefix in allowed):
            raise UrlNotAllowed(
                f"Receipt-Delivery-Option {requested!r} is not allowed for AS2 partner {profile.as2_id!r} "
                f"(allowed: {', '.join(allowed)}); set its --mdn-return-url or --allow-mdn-url"
            )
        url = requested
    check_public_url(url, allow_private=as2_settings().allow_private_mdn_urls)
    return url


_clients: dict[tuple[int, bool], httpx.Client] = {}
_clients_lock = threading.Lock()


def _client(allow_private: bool) -> httpx.Client:
    """A pooled client that connects only to public addresses (unless allowed), per process."""
    key = (os.getpid(), allow_private)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = httpx.Client(
                transport=guarded_transport(allow_private=allow_private),
                timeout=as2_settings().http_timeout_seconds,
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
            )
            _clients[key] = client
        return client


def _post(url: str, headers: dict[str, str], body: bytes) -> tuple[str | None, bool]:
    """POST an MDN: (error or None, whether trying again may help)."""
    settings = as2_settings()
    try:
        check_public_url(url, allow_private=settings.allow_private_mdn_urls)
        response = _client(settings.allow_private_mdn_urls).post(
            url, headers=headers, content=body, timeout=settings.http_timeout_seconds
        )
    except HostNotResolved as exc:
        return f"could not post the MDN to {url}: {exc}", True
    except UrlNotAllowed as exc:
        return f"not posting the MDN to {url}: {exc}", False
    except httpx.HTTPError as exc:
        return f"could not post the MDN to {url}: {type(exc).__name__}: {exc}", True
    if response.is_redirect:
        location = response.headers.get("location", "?")
        return f"{url} answered {response.status_code} → {location}; redirects are not followed", False
    if not 200 <= response.status_code < 300:
        return f"{url} answered {response.status_code} {response.reason_phrase}", True
    return None, False


def post_lease_seconds() -> float:
    """How long a process owns an MDN it is posting: its POST's whole time and a margin; if the
    process dies meanwhile, another posts it after that."""
    return 2 * as2_settings().http_timeout_seconds + 30


def deliver(row_id: int) -> bool:
    """POST one pending async MDN; on failure schedule the next try (doubling pauses) or give up."""
    settings = as2_settings()
    with session_scope() as session:
        row = session.get(As2Message, row_id)
        if row is None or row.mdn_status != "pending" or not row.mdn or not row.mdn_url:
            return False
        # Several API processes may sweep the same row: one posts it, the others skip it.
        if not messages.claim(session, row, post_lease_seconds(), As2Message.mdn_status == "pending"):
            return False
        url, text = row.mdn_url, row.mdn
    headers, body = from_text(text)
    error, retry = _post(url, headers, body)
    with session_scope() as session:
        row = session.get(As2Message, row_id)
        assert row is not None
        row.attempts += 1
        row.updated_at = utcnow()
        if error is None:
            row.mdn_status, row.next_attempt_at = "sent", None
        elif not retry or row.attempts >= settings.mdn_delivery_attempts:
            row.mdn_status, row.next_attempt_at = "failed", None
            row.error = f"async MDN not delivered after {row.attempts} attempts: {error}"
            log.error("AS2 %s: %s", row.message_id, row.error)
        else:
            pause = settings.mdn_retry_seconds * 2 ** (row.attempts - 1)
            row.next_attempt_at = utcnow() + timedelta(seconds=pause)
            log.warning("AS2 %s: async MDN attempt %d failed (%s)", row.message_id, row.attempts, error)
        session.add(row)
    return error is None


# ---- partners' MDNs for what we sent ----------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a partner's MDN says about a message we sent."""

    status: str  # "processed", "processed/Error", "failed/Failure", ...
    detail: str | None
    mdn_message_id: str | None
    signed: bool

    @property
    def disposition(self) -> str:
        return f"{self.status}: {self.detail}" if self.detail else self.status

    @property
    def acknowledged(self) -> bool:
        """Processed; a duplicate-document warning also means the partner has the message."""
        if self.status == "processed":
            return True
        return self.status.lower() == "processed/warning" and "duplicate" in (self.detail or "").lower()


def original_message(row: As2Message, profile: As2Partner, org: As2Organization) -> Any:
    """A pyas2lib Message standing for one we sent, for Mdn.parse to check signature and MIC against."""
    import pyas2lib

    from core.as2 import identity, profiles

    message = pyas2lib.Message(
        sender=identity.pyas2lib_organization(org), receiver=profiles.pyas2lib_partner(profile)
    )
    message.message_id = row.message_id
    message.mic = row.mic.encode() if row.mic else None
    return message


def judge(raw: bytes, find: Any) -> Verdict:
    """Parse and verify an MDN (`raw`: headers + body); `find(message_id)` gives the original Message."""
    import pyas2lib

    mdn = pyas2lib.Mdn()
    status, detail = mdn.parse(raw, find_message_cb=lambda message_id, _recipient: find(message_id))
    return Verdict(
        status=status or "failed/Failure",
        detail=detail,
        mdn_message_id=mdn.message_id,
        signed=mdn.digest_alg is not None,
    )


def close(session: Session, row: As2Message, verdict: Verdict, mdn_text: str) -> None:
    """Record a partner's MDN on the message we sent: acknowledged, or failed with the reason."""
    row.mdn = mdn_text
    row.mdn_message_id = verdict.mdn_message_id
    row.mdn_signed = verdict.signed
    row.mdn_status = "received"
    row.disposition = verdict.disposition
    row.next_attempt_at = None
    row.updated_at = utcnow()
    if verdict.acknowledged:
        row.status, row.error = "acknowledged", None
    else:
        row.status = "failed"
        row.error = f"partner answered with a negative MDN: {verdict.disposition}"
    discard_spool(row)
    session.add(row)


def discard_spool(row: As2Message) -> None:
    if row.spool_path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(row.spool_path)
        row.spool_path = None


@dataclass(frozen=True)
class AsyncMdnOutcome:
    status_code: int
    message: str


def receive_async(headers: Iterable[tuple[str, str]], body: bytes) -> AsyncMdnOutcome:
    """An async MDN posted to /as2/mdn: verify it and close the pending message it answers."""
    from core.as2 import profiles
    from core.tenancy import system_scope

    found: dict[str, As2Message] = {}

    def find(message_id: str) -> Any:
        with session_scope() as session:
            row = session.exec(
                select(As2Message).where(As2Message.direction == "out", As2Message.message_id == message_id)
            ).first()
            if row is None:
                return None
            profile = profiles.get(session, system_scope(session, row.account_id), row.partner_as2_id)
            if profile is None:
                return None
            found["row"] = row
            return original_message(row, profile, profiles.organization_for(session, profile))

    raw = header_block(headers) + b"\r\n" + body
    verdict = judge(raw, find)
    row = found.get("row")
    if row is None:
        return AsyncMdnOutcome(404, f"no message we sent matches this MDN ({verdict.disposition})")
    with session_scope() as session:
        # One MDN recorded at a time: the same MDN posted twice, to two API processes, closes once.
        assert row.id is not None
        rowlock.lock(session, As2Message, row.id)
        current = session.get(As2Message, row.id, populate_existing=True)
        assert current is not None
        if current.status in ("acknowledged",):
            return AsyncMdnOutcome(200, f"message {current.message_id} was already acknowledged")
        if current.mdn_status == "received" and current.mdn_message_id == verdict.mdn_message_id:
            return AsyncMdnOutcome(200, f"MDN for {current.message_id} was already recorded")
        clean = clean_headers(dict(headers))
        close(session, current, verdict, to_text(clean, body))
        if current.status == "failed":
            messages.fail_transfer(session, current)
    log.info("AS2 %s: async MDN %s", row.message_id, verdict.disposition)
    return AsyncMdnOutcome(200, f"MDN for {row.message_id} recorded: {verdict.disposition}")

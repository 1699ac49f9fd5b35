"""Receiving one AS2 message: decrypt, verify, decompress, de-duplicate, take in, answer.

`check_sender()` runs on the headers alone, before the body is read: an `AS2-From`/`AS2-To`
pair that is not a known, enabled profile trading with one of our identities is refused at
once, so an unknown sender costs no body read, spool or parse.

`receive()` is given the HTTP headers and a body that was spooled to disk within the size cap
(api/routes/as2.py does that) and returns the HTTP answer: a synchronous MDN, an empty 200 when
the MDN goes asynchronously (the row is left `mdn_status="pending"` for the AS2 worker), or a
plain answer when no MDN was asked for. Every failure becomes a negative disposition
(decryption-failed, authentication-failed, insufficient-message-security,
unknown-trading-partner, decompression-failed, unexpected-processing-error), never an exception.

Unsigned messages are refused (insufficient-message-security) unless the profile allows them. A
signed message is a duplicate when its Message-ID or its signature (core.as2.replay) was already
taken in. An async MDN is owed only for a message taken in from a sender whose signature we
verified, and goes only where the profile allows (mdn.async_destination); anything else that
asked for one is answered in the HTTP response: the MDN if all went well, a 400 if not.

The payload goes to the mailbox partner named by the sender's profile, folder `upload/`,
through core.intake (protocol "as2"), in the same transaction as the message's row.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import IO, Any, NamedTuple, cast

from sqlalchemy import CursorResult, and_, bindparam, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core import intake
from core.as2 import bigreceive, identity, profiles, replay
from core.as2 import mdn as mdns
from core.as2 import parse as parsing
from core.as2.cms_stream import NotStreamable
from core.as2.settings import as2_settings
from core.as2.spool import MessageTooLarge, Spool
from core.db import session_scope
from core.mailbox import layout
from core.models import As2Message, As2Organization, As2Partner, Partner, Receipt, utcnow
from core.netpolicy import UrlNotAllowed
from core.tenancy import account_name, instance_account_id

log = logging.getLogger(__name__)

FOLDER = layout.UPLOAD  # where the partner's own uploads land: the same data flows carry it
UNEXPECTED = "unexpected-processing-error"
UNKNOWN_PARTNER = "unknown-trading-partner"
# From this size up a message is parsed from its spool file (core.as2.bigreceive) when it can be.
STREAM_FROM_BYTES = 8 * 1024 * 1024

# (partner, "id:" Message-ID or "sig:" replay digest) of messages being taken in right now.
_in_flight: set[tuple[str, str]] = set()
_in_flight_lock = threading.Lock()


@dataclass
class Answer:
    """The HTTP answer to a received message."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    async_mdn_pending: bool = False
    message_row_id: int | None = None


@dataclass
class _Found:
    org: As2Organization | None = None
    org_obj: Any = None
    profile: As2Partner | None = None
    mailbox: Partner | None = None  # the profile's mailbox partner, as loaded with it
    earlier_id: int | None = None  # a row of an earlier try of this Message-ID (not taken in)


class _Pair(NamedTuple):
    """What `_pair` found: our organization, the sender's profile and its mailbox partner (as
    loaded, not yet checked), and why the pair is not one we trade as (None when it is)."""

    org: As2Organization | None
    profile: As2Partner | None
    mailbox: Partner | None
    reason: str | None


def _pair(session: Session, org_id: str, partner_id: str) -> _Pair:
    """Whether (org_id, partner_id) is a pair we trade as, and what was found."""
    row = session.exec(_PAIR, params={"org_id": org_id, "partner_id": partner_id}).first()
    if row is None:
        return _Pair(None, None, None, f"{org_id!r} is not an AS2 ID of ours")
    org, profile, mailbox = row
    if profile is None or not profile.enabled:
        return _Pair(org, None, None, f"unknown AS2 partner {partner_id!r}")
    if profile.organization_id is not None and profile.organization_id != org.id:
        return _Pair(org, None, None, f"AS2 partner {partner_id!r} does not trade with {org_id!r}")
    return _Pair(org, profile, mailbox, None)


# One query (on the headers; parse reuses its answer, see Sender): the organization the AS2-To
# names, whichever account has it, the profile of the AS2-From in that account, and the mailbox
# partner it delivers to. Built once: building and keying a statement cost as much as running it.
_PAIR = (
    select(As2Organization, As2Partner, Partner)
    .outerjoin(
        As2Partner,
        and_(
            col(As2Partner.account_id) == As2Organization.account_id,
            col(As2Partner.as2_id) == bindparam("partner_id"),
        ),
    )
    .outerjoin(Partner, col(Partner.id) == As2Partner.partner_id)
    .where(As2Organization.as2_id == bindparam("org_id"))
)


@dataclass(frozen=True)
class Sender:
    """A pair we trade as, found by `check_sender` on a message's headers: `receive` uses it again
    instead of looking it up a second time when the message names the same pair and arrived
    within KNOWN_FOR_SECONDS (a profile changed while a long upload arrived is looked up anew)."""

    org_id: str
    partner_id: str
    pair: _Pair  # what was found, the pair being one we trade as
    at: float = field(default_factory=time.monotonic)

    def names(self, org_id: str, partner_id: str) -> bool:
        fresh = time.monotonic() - self.at <= KNOWN_FOR_SECONDS
        return fresh and (org_id, partner_id) == (self.org_id, self.partner_id)


KNOWN_FOR_SECONDS = 2.0


def check_sender(headers: Iterable[tuple[str, str]]) -> Answer | Sender:
    """Refuse, from the headers alone, a message whose AS2-From/AS2-To pair we do not trade as.

    Returns the answer to give at once (the body is then never read, and the connection is to
    be closed so the client stops sending it), or the pair found, to go on and read the body.
    """
    as2 = {k.lower(): v for k, v in headers}
    org_id, partner_id = _unquote(as2.get("as2-to", "")), _unquote(as2.get("as2-from", ""))
    if not org_id or not partner_id:
        return _refusal(400, UNEXPECTED, "AS2-From and AS2-To headers are required")
    with session_scope() as session:
        pair = _pair(session, org_id, partner_id)
    if pair.reason is None:
        return Sender(org_id, partner_id, pair)
    log.warning("AS2 message from %r to %r refused before reading it: %s", partner_id, org_id, pair.reason)
    return _refusal(403, UNKNOWN_PARTNER, pair.reason)


def _refusal(status_code: int, detail: str, reason: str) -> Answer:
    text = f"AS2 message refused: processed/Error: {detail} ({reason})\r\n"
    return Answer(status_code, {"Content-Type": "text/plain", "Connection": "close"}, text.encode())


def receive(
    headers: Iterable[tuple[str, str]],
    body: bytes | Spool,
    remote_addr: str | None = None,
    sender: Sender | None = None,
) -> Answer:
    """Process one AS2 message; never raises for anything a sender can cause.

    `body` is the message's bytes or its spool: from STREAM_FROM_BYTES up it is parsed from the
    file (core.as2.bigreceive) when its shape allows, else read whole within
    TRADELANE_AS2_MAX_IN_MEMORY_BYTES. `sender`: what `check_sender` found on these headers."""
    with contextlib.ExitStack() as cleanup:
        return _receive(list(headers), body, remote_addr, sender, cleanup)


def _receive(
    headers: list[tuple[str, str]],
    body: bytes | Spool,
    remote_addr: str | None,
    sender: Sender | None,
    cleanup: contextlib.ExitStack,
) -> Answer:
    import pyas2lib
    from pyas2lib.exceptions import PartnerNotFound

    found = _Found()

    def find_org_partner(org_id: str, partner_id: str) -> tuple[Any, Any]:
        # Raising here (inside pyas2lib's try) gives unknown-trading-partner with no half-set sender.
        if sender is not None and sender.names(org_id, partner_id):
            pair = sender.pair
        else:
            with session_scope() as session:
                pair = _pair(session, org_id, partner_id)
        org, profile, mailbox, reason = pair
        if org is not None:
            found.org_obj = identity.pyas2lib_organization(org)
        if reason is not None:
            raise PartnerNotFound(reason)
        assert org is not None and profile is not None
        found.org, found.profile, found.mailbox = org, profile, mailbox
        return identity.pyas2lib_organization(org), profiles.pyas2lib_partner(profile, receiving=True)

    def scratch() -> IO[bytes]:
        return cleanup.enter_context(Spool(1 << 62, "decrypted AS2 message")).file

    message = pyas2lib.Message()
    error: BaseException | None = None
    content: bigreceive.Content | None = None
    head = mdns.header_block(headers)
    with replay.recording() as signatures:
        try:
            if isinstance(body, Spool) and body.size >= STREAM_FROM_BYTES:
                try:
                    error, content = bigreceive.parse(
                        message, head, body.file, body.size, find_org_partner, scratch
                    )
                except NotStreamable as exc:
                    log.info("AS2 message of %d bytes parsed in memory (%s)", body.size, exc)
                    message, found = pyas2lib.Message(), _Found()
                    if body.size > as2_settings().max_in_memory_bytes:
                        error = _too_large_in_memory(message, head, find_org_partner)
                    else:
                        body = body.read_all()
            if content is None and error is None:
                data = body.read_all() if isinstance(body, Spool) else body
                error = parsing.parse(message, head, data, find_org_partner)
                del data
        except Exception as exc:  # not MIME at all
            log.warning("AS2 message could not be parsed", exc_info=True)
            error = exc
    message.tradelane_content = content
    as2 = {k.lower(): v for k, v in message.headers.items()} if message.payload is not None else {}
    if not as2:
        as2 = {k.lower(): v for k, v in headers}
    partner_as2_id = _unquote(as2.get("as2-from", ""))
    org_as2_id = _unquote(as2.get("as2-to", ""))

    if error is not None:
        detail = _detail(message, error)
        reason = _reason(error, found.profile)
        log.warning(
            "AS2 message %s from %r refused: %s (%s)", message.message_id, partner_as2_id, detail, reason
        )
        return _answer(
            message, found, "processed/Error", detail, reason, remote_addr, org_as2_id, partner_as2_id
        )

    # Verified against the pinned certificate of a known, enabled profile (find_org_partner).
    signed_digest = replay.digest(message, signatures) if found.profile is not None else None
    authenticated = signed_digest is not None
    keys = {(partner_as2_id, f"id:{message.message_id}")} if message.message_id else set()
    if signed_digest:
        keys.add((partner_as2_id, f"sig:{signed_digest}"))
    with _in_flight_lock:
        busy = bool(keys & _in_flight)
        if not busy:
            _in_flight.update(keys)
    try:
        with session_scope() as session:  # one read transaction for the duplicate checks and the mailbox
            replayed = bool(signed_digest) and replay.seen_within_window(
                partner_as2_id, signed_digest or "", session
            )
            earlier = _row(session, partner_as2_id, message.message_id)
            duplicate = busy or replayed or (earlier is not None and earlier.status == "received")
            found.earlier_id = earlier.id if earlier is not None else None
            destination = None if duplicate else _destination(session, found)
        if duplicate:
            why = " (its signature was already received)" if replayed else ""
            log.info("AS2 message %s from %r is a duplicate%s; not delivered again",
                     message.message_id, partner_as2_id, why)  # fmt: skip
            return _answer(
                message, found, "processed/Warning", "duplicate-document", None, remote_addr,
                org_as2_id, partner_as2_id, duplicate=True, authenticated=authenticated,
            )  # fmt: skip
        # The MDN is built first so it commits with the receipt: one write transaction. (Should
        # this raise, nothing was taken in: the sender is told to try again later, as before.)
        reply = _reply(message, found, "processed", None, partner_as2_id, authenticated)
        try:
            if isinstance(destination, Exception):
                raise destination
            assert destination is not None
            row_id = _take_in(
                message, found, destination, remote_addr, org_as2_id, partner_as2_id, signed_digest, reply
            )
        except intake.IntakeError as exc:
            return _answer(message, found, "processed/Error", UNEXPECTED, str(exc), remote_addr,
                           org_as2_id, partner_as2_id, authenticated=authenticated)  # fmt: skip
        except IntegrityError:  # another process took the same Message-ID in at the same moment
            return _answer(message, found, "processed/Warning", "duplicate-document", None,
                           remote_addr, org_as2_id, partner_as2_id, duplicate=True,
                           authenticated=authenticated)  # fmt: skip
        except Exception as exc:
            log.exception("AS2 message %s could not be taken in", message.message_id)
            return _answer(message, found, "processed/Error", UNEXPECTED, f"{type(exc).__name__}: {exc}",
                           remote_addr, org_as2_id, partner_as2_id, authenticated=authenticated)  # fmt: skip
        return _answer(message, found, "processed", None, None, remote_addr, org_as2_id, partner_as2_id,
                       row_id=row_id, authenticated=authenticated, recorded=reply)  # fmt: skip
    finally:
        with _in_flight_lock:
            _in_flight.difference_update(keys)


def _too_large_in_memory(message: Any, head: bytes, find_org_partner: Any) -> Exception:
    """A message too large for the in-memory parser, which its shape needs: refused, with an MDN
    signed as the sender's profile says (the sender and we are looked up as parse() would)."""
    from pyas2lib import as2

    message.payload = parsing.header_entity(head)
    message.message_id = str(message.payload.get("message-id", "")).strip().lstrip("<").rstrip(">") or None
    try:
        found = find_org_partner(
            as2.unquote_as2name(message.payload.get("as2-to", "")),
            as2.unquote_as2name(message.payload.get("as2-from", "")),
        )
        message.receiver, message.sender = found
    except Exception as exc:
        return exc
    return MessageTooLarge(as2_settings().max_in_memory_bytes, "AS2 message", in_memory=True)


def _unquote(value: str) -> str:
    from email.utils import unquote

    return unquote(value.strip())


def _detail(message: Any, error: BaseException) -> str:
    """The disposition modifier for a failure, sharper than pyas2lib's where it can be."""
    detail = getattr(error, "disposition_modifier", "") or UNEXPECTED
    encrypted = message.encrypted and message.payload is not None
    if detail == UNEXPECTED and encrypted and message.payload.get_content_type() == "application/pkcs7-mime":
        return "decryption-failed"  # the envelope was there but could not be read (truncated, garbled)
    if detail == UNEXPECTED and message.signed and message.mic is None:
        return "authentication-failed"  # the signature was there but could not be checked
    return str(detail)


def _reason(error: BaseException, profile: As2Partner | None) -> str:
    """What went wrong, in words an operator (and the sender) can act on."""
    reason = str(error) or type(error).__name__
    if profile is not None and "must be encrypted" in reason:  # pyas2lib's words are garbled
        reason = f"messages from AS2 partner {profile.as2_id!r} must be encrypted"
    if profile is not None and "must be signed" in reason:
        reason = f"messages from AS2 partner {profile.as2_id!r} must be signed"
        if profile.sign is None:  # required only because unsigned is not allowed
            reason += " (its profile does not allow unsigned messages)"
    return reason


def _destination(session: Session, found: _Found) -> tuple[Partner, str] | Exception:
    """(the mailbox partner the profile names, its account's name), or why there is none (the
    exception to answer with, raised where take-in failures are turned into MDNs)."""
    assert found.profile is not None
    try:
        mailbox = profiles.mailbox_of(session, found.profile, found.mailbox)
        return mailbox, account_name(mailbox.account_id)
    except Exception as exc:
        return exc


def _row(session: Session, partner_as2_id: str, message_id: str | None) -> As2Message | None:
    if not message_id:
        return None
    return session.exec(_ROW, params={"partner": partner_as2_id, "message_id": message_id}).first()


_ROW = select(As2Message).where(
    As2Message.direction == "in",
    As2Message.partner_as2_id == bindparam("partner"),
    As2Message.message_id == bindparam("message_id"),
)


def _file_name(message: Any, account: str, mailbox: str) -> str:
    """The sender's file name when it is a safe one, else one made from the Message-ID; never an
    existing file's name in upload/ (AS2 senders often reuse one name for every message)."""
    name = None
    try:
        name = message.payload.get_filename()
    except Exception:  # a malformed Content-Disposition
        name = None
    if name:
        name = posixpath.basename(str(name).replace("\\", "/"))
        try:
            intake.check_file_name(name)
        except intake.InvalidFileName:
            name = None
    digest = hashlib.sha256((message.message_id or os.urandom(8).hex()).encode()).hexdigest()[:10]
    if not name:
        return f"as2-{digest}.dat"
    folder = layout.home(account, mailbox) / FOLDER
    if (folder / name).exists():
        stem, suffix = posixpath.splitext(name)
        candidate = f"{stem}.{digest}{suffix}"
        if len(candidate.encode()) <= 255:
            return candidate
    return name


def _take_in(
    message: Any,
    found: _Found,
    destination: tuple[Partner, str],
    remote_addr: str | None,
    org_id: str,
    partner_id: str,
    signed_digest: str | None,
    reply: _Reply,
) -> int:
    """Payload → the partner's upload/ through intake; the message row (with the MDN in `reply`)
    commits with the receipt."""
    assert found.profile is not None
    mailbox, mailbox_account = destination
    streamed: bigreceive.Content | None = getattr(message, "tradelane_content", None)
    if streamed is None:
        content = message.content
        # A large decrypted payload is a bytearray (core.as2.envelope): written as it is, not copied.
        chunks: Iterable[bytes] = [content.encode() if isinstance(content, str) else content]
    else:  # left in the spool or decrypted file by core.as2.bigreceive
        chunks = streamed.chunks()
    name = _file_name(message, mailbox_account, mailbox.name)
    row_ids: list[int] = []
    account_id = found.profile.account_id

    def record(session: Session, receipt: Receipt) -> None:
        # The row of an earlier try is updated; none is looked up again (one that appeared since,
        # another process taking the same Message-ID in, fails the unique constraint instead).
        earlier = session.get(As2Message, found.earlier_id) if found.earlier_id else None
        # A new row is filled as plain values and inserted with a statement built once: building
        # and flushing the ORM object cost more than the insert itself, for every message.
        row: As2Message | SimpleNamespace = earlier or SimpleNamespace(
            account_id=account_id,
            direction="in",
            message_id=message.message_id,
            org_as2_id=org_id,
            partner_as2_id=partner_id,
        )
        _fill(row, message, "received", "processed", None, remote_addr)
        row.signed_digest = signed_digest
        row.file_name, row.size, row.sha256 = receipt.name, receipt.size, receipt.sha256
        row.receipt_id = receipt.id
        _note_mdn(row, reply, None)
        if isinstance(row, As2Message):
            session.add(row)
            session.flush()
            assert row.id is not None
            row_ids.append(row.id)
            return
        result = cast(CursorResult[Any], session.execute(_INSERT_MESSAGE, vars(row)))
        assert result.inserted_primary_key is not None
        row_ids.append(result.inserted_primary_key[0])

    with intake.begin(mailbox, FOLDER, name, protocol="as2", remote_addr=remote_addr) as upload:
        for chunk in chunks:
            upload.write(chunk)
        upload.commit(also=record)
    return row_ids[0]


_INSERT_MESSAGE = insert(As2Message.__table__)  # type: ignore[attr-defined]


def _fill(
    row: As2Message | SimpleNamespace,
    message: Any,
    status: str,
    disposition: str,
    error: str | None,
    remote_addr: str | None,
) -> None:
    row.status = status
    row.disposition = disposition
    row.error = error
    row.signed = bool(message.signed)
    row.encrypted = bool(message.encrypted)
    row.compressed = bool(message.compressed)
    row.mic = message.mic.decode() if isinstance(message.mic, bytes) else message.mic
    row.mic_alg = message.digest_alg
    row.remote_addr = remote_addr
    row.updated_at = utcnow()


@dataclass
class _Reply:
    """The answer a message gets, made before anything is recorded: the MDN, where it goes."""

    status: str
    refused: bool = False  # a failure that asked for an async MDN: answered here, no MDN
    mdn: Any = None
    mdn_headers: dict[str, str] = field(default_factory=dict)
    mdn_body: bytes = b""
    mdn_text: str | None = None
    async_url: str | None = None
    not_async: str | None = None  # why an async MDN asked for is answered synchronously


def _reply(
    message: Any, found: _Found, status: str, detail: str | None, partner_id: str, authenticated: bool
) -> _Reply:
    """Build the MDN (if asked for) and decide where it goes."""
    as2 = {k.lower(): v for k, v in message.headers.items()} if message.payload is not None else {}
    requested_url = as2.get("receipt-delivery-option") if as2.get("disposition-notification-to") else None
    if requested_url and "error" in status.lower():
        # A failed message gets no outbound POST, whoever it claims to be from: the answer is here.
        return _Reply(status, refused=True)

    reply = _Reply(status)
    if message.receiver is None and found.org_obj is not None:
        # An unknown sender still gets an MDN signed by the identity it addressed (when asked).
        import pyas2lib

        message.receiver = found.org_obj
        message.sender = pyas2lib.Partner(as2_name=partner_id or "unknown", validate_certs=False)
    if message.payload is not None:
        try:
            reply.mdn = mdns.build(message, status, detail)
        except Exception:
            log.exception("could not build an MDN for AS2 message %s", message.message_id)
    if reply.mdn is not None and requested_url:
        reply.async_url, reply.not_async = _async_destination(found, status, authenticated, requested_url)
        if reply.not_async:
            log.warning("AS2 message %s from %r: %s", message.message_id, partner_id, reply.not_async)
    if reply.mdn is not None:
        reply.mdn_headers, reply.mdn_body = mdns.wire(reply.mdn)
        reply.mdn_text = mdns.to_text(reply.mdn_headers, reply.mdn_body)
    return reply


def _answer(
    message: Any,
    found: _Found,
    status: str,
    detail: str | None,
    error: str | None,
    remote_addr: str | None,
    org_id: str,
    partner_id: str,
    *,
    row_id: int | None = None,
    duplicate: bool = False,
    authenticated: bool = False,
    recorded: _Reply | None = None,
) -> Answer:
    """Build the MDN (if asked for), record the outcome, and say what to answer over HTTP.

    `recorded`: the reply already made and committed with the message's row (a message taken in).
    """
    disposition = f"{status}: {detail}" if detail else status
    reply = recorded or _reply(message, found, status, detail, partner_id, authenticated)
    if reply.refused:
        _record_quietly(message, status, disposition, error, remote_addr, org_id, partner_id,
                        row_id=row_id, duplicate=duplicate)  # fmt: skip
        text = (
            f"AS2 message refused: {disposition}" + (f" ({error})" if error else "")
            + "; no asynchronous MDN is sent for a message that was not processed\r\n"
        )  # fmt: skip
        return Answer(400, {"Content-Type": "text/plain"}, text.encode(), message_row_id=row_id)
    if recorded is None:
        row_id = _record_quietly(
            message, status, disposition, error, remote_addr, org_id, partner_id,
            row_id=row_id, duplicate=duplicate, reply=reply,
        )  # fmt: skip
    if reply.mdn is None:
        if status.startswith("processed") and "Error" not in status:
            return Answer(
                200, {"Content-Type": "text/plain"}, b"AS2 message received\r\n", message_row_id=row_id
            )
        text = f"AS2 message refused: {disposition}" + (f" ({error})" if error else "") + "\r\n"
        return Answer(400, {"Content-Type": "text/plain"}, text.encode(), message_row_id=row_id)
    if reply.async_url:
        return Answer(200, {"Content-Type": "text/plain"}, b"", async_mdn_pending=True, message_row_id=row_id)
    return Answer(200, reply.mdn_headers, reply.mdn_body, message_row_id=row_id)


def _async_destination(
    found: _Found, status: str, authenticated: bool, requested_url: str
) -> tuple[str | None, str | None]:
    """(where the async MDN goes, or None with why it is answered synchronously instead)."""
    if status != "processed":
        return None, f"a {status} MDN is answered synchronously, not posted to {requested_url!r}"
    if not authenticated or found.profile is None:
        return None, f"the sender was not authenticated (unsigned): no MDN is posted to {requested_url!r}"
    try:
        return mdns.async_destination(found.profile, requested_url), None
    except UrlNotAllowed as exc:
        return None, f"{exc}; the MDN was answered synchronously"


def _record_quietly(*args: Any, **kwargs: Any) -> int | None:
    try:
        return _record(*args, **kwargs)
    except Exception:
        log.exception("could not record AS2 message %s", args[0].message_id)
        return kwargs.get("row_id")


def _record(
    message: Any,
    status: str,
    disposition: str,
    error: str | None,
    remote_addr: str | None,
    org_id: str,
    partner_id: str,
    *,
    row_id: int | None,
    duplicate: bool,
    reply: _Reply | None = None,
) -> int | None:
    with session_scope() as session:
        row = session.get(As2Message, row_id) if row_id else _row(session, partner_id, message.message_id)
        if row is None:
            org = identity.addressed(session, org_id)
            row = As2Message(
                # Addressed to none of our organizations: the instance's own (home) history, as before.
                account_id=org.account_id if org is not None else instance_account_id(session),
                direction="in",
                message_id=message.message_id,
                org_as2_id=org_id[:255] or "?",
                partner_as2_id=partner_id[:255] or "?",
                status="failed",
            )
            if duplicate:  # a replay under a new Message-ID: on record, never delivered
                _fill(row, message, "duplicate", disposition, None, remote_addr)
        if not duplicate:  # a duplicate keeps the original's outcome; only its MDN is new
            _fill(row, message, "failed" if error else "received", disposition, error, remote_addr)
        if reply is not None:
            _note_mdn(row, reply, error)
        session.add(row)
        session.flush()
        return row.id


def _note_mdn(row: As2Message | SimpleNamespace, reply: _Reply, error: str | None) -> None:
    """The MDN a message was answered with, on its row."""
    if reply.not_async and not error:
        row.error = f"async MDN not posted: {reply.not_async}"
    mdn = reply.mdn
    if mdn is None:
        return
    row.mdn_mode = "async" if reply.async_url else "sync"
    row.mdn = reply.mdn_text
    row.mdn_message_id = mdn.message_id
    row.mdn_signed = mdns.is_signed(mdn)
    row.mdn_sign = mdn.digest_alg
    if reply.async_url:
        row.mdn_url, row.mdn_status, row.attempts = reply.async_url, "pending", 0
        row.next_attempt_at = utcnow()
    else:
        row.mdn_status = "sent"

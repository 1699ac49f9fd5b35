"""Sending one AS2 message: build with pyas2lib, POST with httpx, judge the MDN.

A synchronous MDN is verified on the spot (signature, MIC, disposition) and a negative one is an
error for the caller. With an asynchronous MDN the built message is kept on disk and the row
waits `awaiting-mdn`; the AS2 worker (core.as2.worker, in the API process) resends it with the
SAME Message-ID when the partner's MDN timeout passes, up to the profile's `max_resends`, then
fails it visibly: the message turns `failed` and so does the transfer that sent it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from core import rowlock
from core.as2 import bigsend, identity, messages, profiles
from core.as2 import mdn as mdns
from core.as2.cms_stream import CHUNK, NotStreamable
from core.as2.identity import cert_info
from core.as2.settings import as2_settings, default_mdn_url, http_client, spool_root
from core.as2.spool import MessageTooLarge
from core.db import session_scope
from core.endpoints.base import ConfigError, EndpointError, TransientError
from core.endpoints.http_wire import map_httpx_error
from core.models import As2Message, utcnow
from core.tenancy import system_scope

log = logging.getLogger(__name__)

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# From this size up a file is sent without being held in memory (core.as2.bigsend).
STREAM_FROM_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Sent:
    """What became of a message we sent."""

    row_id: int
    message_id: str
    status: str  # sent (no MDN asked), awaiting-mdn, acknowledged
    mic: str | None
    disposition: str | None


def message_uri(partner_as2_id: str, path: str, message_id: str) -> str:
    """The destination URI recorded with the transfer; it names the AS2 message."""
    return f"as2:{partner_as2_id}/{path}#{message_id}"


@dataclass(frozen=True)
class Region:
    """`length` bytes of an open file from `offset`: a message body POSTed without loading it."""

    file: IO[bytes]
    offset: int
    length: int

    def chunks(self) -> Iterator[bytes]:
        self.file.seek(self.offset)
        left = self.length
        while left:
            chunk = self.file.read(min(CHUNK, left))
            if not chunk:
                raise OSError("the spooled AS2 message is shorter than recorded")
            left -= len(chunk)
            yield chunk


Body = bytes | Region


def send(
    partner_as2_id: str,
    payload: bytes | IO[bytes],
    path: str,
    *,
    size: int | None = None,
    content_type: str = DEFAULT_CONTENT_TYPE,
    subject: str | None = None,
    account_id: int | None = None,
) -> Sent:
    """Build, sign/encrypt/compress per the partner's profile, POST, and judge a sync MDN.

    `payload` is the file's bytes, or an open file of `size` bytes: from STREAM_FROM_BYTES up,
    the message is built into a temporary file (core.as2.bigsend) and POSTed from it.

    Raises ConfigError (profile, keys, expired certificates), TransientError (network, 5xx:
    worth retrying) or EndpointError (refused, negative or unverifiable MDN).
    """
    settings = as2_settings()
    size = len(payload) if isinstance(payload, bytes) else size
    assert size is not None
    if size > settings.max_message_bytes:
        raise ConfigError(str(MessageTooLarge(settings.max_message_bytes, "the file to send")))
    file_name = os.path.basename(path)
    with session_scope() as session:
        try:
            profile = profiles.require(session, profiles.sending_scope(session, account_id), partner_as2_id)
            org = profiles.organization_for(session, profile)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for whose, pem in (("partner " + profile.as2_id, profile.certificate), ("our", org.certificate)):
            info = cert_info(pem)
            if info.expired:
                raise ConfigError(f"AS2: {whose} certificate expired on {info.not_after:%Y-%m-%d}; renew it")
        account_id = profile.account_id
        org_obj = identity.pyas2lib_organization(org, mdn_url=profile.mdn_url or default_mdn_url())
        partner_obj = profiles.pyas2lib_partner(profile)
        mdn_mode, mdn_sign, url = profile.mdn_mode, profile.mdn_sign, profile.url
        timeout_seconds, org_as2_id = profile.mdn_timeout_seconds, org.as2_id

    build = {
        "filename": file_name,
        "subject": subject or f"AS2 message {file_name}",
        "content_type": content_type,
        "disposition_notification_to": org_as2_id,
    }
    with contextlib.ExitStack() as cleanup:
        built = None
        if not isinstance(payload, bytes) and size >= STREAM_FROM_BYTES:
            out = cleanup.enter_context(_temporary())
            built = _build_streaming(org_obj, partner_obj, payload, size, out, build)
        body: Body
        if built is not None:
            message, headers, body, sha256 = built
        else:
            if size > settings.max_in_memory_bytes:
                raise ConfigError(
                    str(MessageTooLarge(settings.max_in_memory_bytes, "the file to send", in_memory=True))
                )
            if not isinstance(payload, bytes):
                payload.seek(0)
                payload = payload.read()
            message, headers, body = _build(org_obj, partner_obj, payload, build)
            sha256 = hashlib.sha256(payload).hexdigest()
        return _deliver(
            message, headers, body, partner_as2_id, path, file_name, size, sha256, account_id, org_as2_id,
            mdn_mode, mdn_sign, url, timeout_seconds,
        )  # fmt: skip


def _temporary() -> IO[bytes]:
    directory = os.path.join(spool_root(), "tmp")
    os.makedirs(directory, exist_ok=True)
    return tempfile.TemporaryFile(dir=directory)


def _build(
    org_obj: Any, partner_obj: Any, payload: bytes, build: dict[str, str]
) -> tuple[Any, dict[str, str], bytes]:
    """pyas2lib builds the message in memory (small files, and shapes bigsend does not take on)."""
    import pyas2lib
    from pyas2lib.exceptions import AS2Exception, ImproperlyConfigured

    message = pyas2lib.Message(sender=org_obj, receiver=partner_obj)
    try:
        message.build(payload, **build)
    except (ImproperlyConfigured, AS2Exception, ValueError) as exc:
        raise ConfigError(f"AS2: cannot build the message: {exc}") from exc
    headers = mdns.clean_headers(message.headers)
    headers["User-Agent"] = mdns.USER_AGENT
    return message, headers, bytes(message.content)


def _build_streaming(
    org_obj: Any, partner_obj: Any, payload: IO[bytes], size: int, out: IO[bytes], build: dict[str, str]
) -> tuple[Any, dict[str, str], Region, str] | None:
    """The message built into `out` by core.as2.bigsend, or None when pyas2lib must build it."""
    import pyas2lib
    from pyas2lib.exceptions import AS2Exception, ImproperlyConfigured

    try:
        built = bigsend.build(org_obj, partner_obj, payload, size, out, **build)
    except NotStreamable:
        return None
    except (ImproperlyConfigured, AS2Exception, ValueError) as exc:
        raise ConfigError(f"AS2: cannot build the message: {exc}") from exc
    # A Message standing for what was built: the sync MDN is checked against it (MIC, keys).
    message = pyas2lib.Message(sender=org_obj, receiver=partner_obj)
    message.message_id, message.mic, message.digest_alg = built.message_id, built.mic, built.digest_alg
    message.signed, message.encrypted, message.compressed = built.signed, built.encrypted, False
    headers = mdns.clean_headers(built.headers)
    headers["User-Agent"] = mdns.USER_AGENT
    sha = hashlib.sha256()
    payload.seek(0)
    while chunk := payload.read(CHUNK):
        sha.update(chunk)
    return message, headers, Region(out, 0, built.size), sha.hexdigest()


def _deliver(
    message: Any,
    headers: dict[str, str],
    body: Body,
    partner_as2_id: str,
    path: str,
    file_name: str,
    size: int,
    sha256: str,
    account_id: int,
    org_as2_id: str,
    mdn_mode: str,
    mdn_sign: str | None,
    url: str,
    timeout_seconds: float,
) -> Sent:
    """Record the built message, POST it, and judge the answer."""
    mic = message.mic.decode() if message.mic else None
    with session_scope() as session:
        row = As2Message(
            account_id=account_id,
            direction="out",
            message_id=message.message_id,
            org_as2_id=org_as2_id,
            partner_as2_id=partner_as2_id,
            status="sending",
            file_name=file_name,
            size=size,
            sha256=sha256,
            mic=mic,
            mic_alg=message.digest_alg,
            signed=bool(message.signed),
            encrypted=bool(message.encrypted),
            compressed=bool(message.compressed),
            mdn_mode=mdn_mode,
            mdn_sign=mdn_sign,
            attempts=1,
            destination_uri=message_uri(partner_as2_id, path, message.message_id),
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        row_id = row.id
        if mdn_mode == "async":
            # Kept for resends with the same Message-ID until the MDN arrives or we give up.
            row.spool_path = _keep(row_id, headers, body)
            session.add(row)

    try:
        response = _post(url, headers, body)
    except EndpointError as exc:
        _finish(row_id, "failed", error=str(exc))
        raise
    if mdn_mode == "none":
        _finish(row_id, "sent")
        return Sent(row_id, message.message_id, "sent", mic, None)
    if mdn_mode == "async":
        due = utcnow() + timedelta(seconds=timeout_seconds)
        _finish(row_id, "awaiting-mdn", next_attempt_at=due)
        return Sent(row_id, message.message_id, "awaiting-mdn", mic, None)

    raw = mdns.header_block(response.headers.items()) + b"\r\n" + response.content
    verdict = mdns.judge(raw, lambda mid: message if mid == message.message_id else None)
    mdn_text = mdns.to_text(mdns.clean_headers(dict(response.headers.items())), response.content)
    with session_scope() as session:
        current = session.get(As2Message, row_id)
        assert current is not None
        mdns.close(session, current, verdict, mdn_text)
    if not verdict.acknowledged:
        raise EndpointError(f"AS2 partner {partner_as2_id} did not accept {file_name}: {verdict.disposition}")
    return Sent(row_id, message.message_id, "acknowledged", mic, verdict.disposition)


def _post(url: str, headers: dict[str, str], body: Body) -> httpx.Response:
    host = urlsplit(url).hostname or url
    settings = as2_settings()
    content: bytes | Iterator[bytes]
    if isinstance(body, Region):  # streamed from the file; the length is known, so not chunked
        headers = {**headers, "Content-Length": str(body.length)}
        content = body.chunks()
    else:
        content = body
    try:
        response = http_client().post(
            url, headers=headers, content=content, timeout=settings.http_timeout_seconds
        )
    except httpx.HTTPError as exc:
        raise map_httpx_error(exc, "AS2 send", host) from exc
    if len(response.content) > settings.max_mdn_bytes:
        raise EndpointError(f"AS2 send: {host} answered with more than {settings.max_mdn_bytes} bytes")
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise TransientError(f"AS2 send: {host} answered {response.status_code} {response.reason_phrase}")
    if not 200 <= response.status_code < 300:
        excerpt = " ".join(response.text.split())[:200]
        raise EndpointError(f"AS2 send: {host} answered {response.status_code}: {excerpt}")
    return response


def _finish(row_id: int, status: str, *, error: str | None = None, next_attempt_at: Any = None) -> None:
    """Move a just-sent row on, unless an async MDN already closed it (partners can be that quick)."""
    with session_scope() as session:
        row = session.get(As2Message, row_id)
        assert row is not None
        if row.status != "sending":
            return
        row.status, row.error, row.next_attempt_at = status, error, next_attempt_at
        row.updated_at = utcnow()
        if status in ("failed", "sent"):
            mdns.discard_spool(row)
        session.add(row)


def _keep(row_id: int, headers: dict[str, str], body: Body) -> str:
    directory = os.path.join(spool_root(), "outbox")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{row_id}.msg")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(json.dumps(headers).encode() + b"\n")
        for chunk in body.chunks() if isinstance(body, Region) else (body,):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _load(path: str, f: IO[bytes]) -> tuple[dict[str, str], Region]:
    """A kept message: its headers, and its body as a region of the open file `f`."""
    headers: dict[str, str] = json.loads(f.readline())
    offset = f.tell()
    return headers, Region(f, offset, os.fstat(f.fileno()).st_size - offset)


# ---- the async-MDN timeout: resend, then fail visibly ---------------------------------------------


def due_resends(limit: int = 100) -> list[int]:
    """Outgoing messages whose asynchronous MDN is overdue."""
    return messages.due(As2Message.direction == "out", As2Message.status == "awaiting-mdn", limit=limit)


def resend(row_id: int) -> str:
    """Handle one async message whose MDN is overdue: resend it (same Message-ID) or fail it."""
    with session_scope() as session:
        row = session.get(As2Message, row_id)
        if row is None or row.status != "awaiting-mdn":
            return "skipped"
        profile = profiles.get(session, system_scope(session, row.account_id), row.partner_as2_id)
        timeout = profile.mdn_timeout_seconds if profile else 600.0
        max_resends = profile.max_resends if profile else 0
        if not messages.claim(session, row, timeout, As2Message.status == "awaiting-mdn"):
            return "skipped"
        if profile is None or row.attempts > max_resends or not row.spool_path:
            sends = row.attempts
            row.status = "failed"
            row.error = f"no MDN from {row.partner_as2_id} within {timeout:g}s after {sends} send(s)"
            row.next_attempt_at = None
            row.updated_at = utcnow()
            mdns.discard_spool(row)
            session.add(row)
            messages.fail_transfer(session, row)
            log.error("AS2 %s: %s", row.message_id, row.error)
            return "failed"
        url, spool, message_id = profile.url, row.spool_path, row.message_id
    error = None
    with open(spool, "rb") as f:
        headers, body = _load(spool, f)
        try:
            _post(url, headers, body)
        except EndpointError as exc:
            error = str(exc)
    with session_scope() as session:
        rowlock.lock(session, As2Message, row_id)  # an MDN arriving now waits for this commit
        row = session.get(As2Message, row_id, populate_existing=True)
        assert row is not None
        if row.status != "awaiting-mdn":  # the MDN came while we were resending
            return "closed"
        row.attempts += 1
        row.error = f"resend {row.attempts - 1} failed: {error}" if error else None
        row.next_attempt_at = utcnow() + timedelta(seconds=timeout)
        row.updated_at = utcnow()
        session.add(row)
    log.warning("AS2 %s: no MDN within %gs; resent with the same Message-ID", message_id, timeout)
    return "resent"

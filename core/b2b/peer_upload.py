"""The receiving instance's side of a push (DESIGN-12 §5.5, §5.9): resumable, idempotent uploads.

Another instance (A) sends a connection's file to us (B) in two kinds of signed request:

* create: `{key, name, size, sha256}` → a new upload (offset 0), the partial one already held for
  that (connection, key, SHA-256) with the offset it holds, or - when it was taken in - the signed
  receipt given then (so a retry, a crash requeue or a replay of the same transfer lands once);
* PATCH at `Upload-Offset`: the body is appended to the staged file
  `<mailbox_root>/.peer/<connection uid>/<upload uid>` as it arrives (never whole in memory).
  When the last byte is in, the SHA-256 must be the declared one (else the staged bytes are
  discarded, 422) and the file is taken in by `core.intake.receive_staged` - protocol `b2b`, the
  connection's landing flow - with the upload marked complete, its receipt id and signed receipt
  stored, in the receipt's own transaction: a crash leaves either "receiving, N bytes staged" or
  "complete with its receipt", never a second receipt.

The staged file's size on disk is the truth about the offset (after a kill, whatever reached the
disk counts); a resumed PATCH re-hashes the staged prefix once. Every refusal is a
`core.errors.StatusError` raised before anything changes.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core import intake
from core.b2b import keys, receipts
from core.config import get_settings
from core.db import session_scope
from core.errors import Conflict, Gone, Invalid, NotFound, StatusError, TooLarge, Unavailable
from core.mailbox import layout
from core.mailbox.staging import sha256_of
from core.models import Connection, ConnectionState, Peer, PeerUpload, Receipt, utcnow

RECEIVING = "receiving"
COMPLETE = "complete"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Unprocessable(StatusError):
    status = 422


class OffsetMismatch(Conflict):
    """A PATCH at another offset than the one held: the answer carries the offset to continue at."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"this upload holds {offset} bytes: continue at offset {offset}")
        self.offset = offset


# --- who sends, for intake ------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerSender:
    """The other instance writing into one of our connections (an intake `Sender`, self-checking)."""

    account_id: int  # ours: the receiving account
    name: str  # the audit actor: `peer:<their account>@<their host>`
    connection_id: int
    partner_id: int | None = None
    max_file_bytes: int | None = None

    def refuse_if_ended(self) -> None:
        with session_scope() as session:
            conn = session.get(Connection, self.connection_id)
            if conn is None or conn.state != ConnectionState.active:
                state = conn.state if conn else "gone"
                raise intake.SenderRefused(f"the connection is {state}; the file was not received")


def _receiving(session: Session, connection_id: int) -> tuple[Connection, Peer]:
    """Our active connection that receives from its peer, with its `peer` row."""
    conn = session.get(Connection, connection_id)
    peer = session.exec(select(Peer).where(Peer.connection_id == connection_id)).first()
    if conn is None or peer is None:
        raise NotFound("no such connection")
    if conn.state == ConnectionState.revoked:
        raise Gone("connection revoked")
    if conn.state != ConnectionState.active:
        raise Conflict(f"the connection is {conn.state}: it takes no files")
    if conn.receiver_account_id is None or conn.data_flow_id is None:
        raise Conflict("this side of the connection does not receive files")
    return conn, peer


def _sender(conn: Connection, peer: Peer) -> PeerSender:
    assert conn.id is not None and conn.receiver_account_id is not None
    host = urlsplit(peer.base_url).hostname or "?"
    return PeerSender(conn.receiver_account_id, f"peer:{peer.their_account or '?'}@{host}", conn.id)


# --- create ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Declared:
    """What the sender says it will send: checked before anything is stored."""

    key: str
    name: str
    size: int
    sha256: str


def declared(data: Any, conn: Connection) -> Declared:
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object with key, name, size and sha256")
    key, name, size, sha256 = (data.get(f) for f in ("key", "name", "size", "sha256"))
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise Invalid("sha256 must be 64 lower-case hex digits")
    if type(size) is not int or size < 0:
        raise Invalid("size must be a whole number of bytes")
    # The key is (our connection uid, the sender's original transfer id, SHA-256): receipts.TransferKey.
    parts = key.split("/") if isinstance(key, str) else []
    if len(parts) != 3 or parts[0] != conn.uid or not parts[1].isdigit() or parts[2] != sha256:
        raise Invalid("key must be '<this connection's uid>/<transfer id>/<sha256>'")
    if not isinstance(name, str):
        raise Invalid("name must be a string")
    try:
        name = intake.check_file_name(name)
    except intake.InvalidFileName as exc:
        raise Invalid(str(exc)) from None
    limit = get_settings().max_upload_bytes
    if size > limit:
        raise TooLarge(f"file is larger than the limit of {limit} bytes")
    return Declared(str(key), name, size, sha256)


def staged_file(upload: PeerUpload) -> Path:
    return layout.root() / upload.staged_path


def held(upload: PeerUpload) -> int:
    """The bytes staged on disk: what a crash left is what counts."""
    try:
        return os.lstat(staged_file(upload)).st_size
    except FileNotFoundError:
        return 0


def answer(upload: PeerUpload) -> dict[str, Any]:
    """An upload's state as the sender is told it; with the signed receipt once complete."""
    if upload.state == COMPLETE:
        assert upload.signed_receipt and upload.receipt_signature and upload.receipt_key_id
        signed = receipts.SignedReceipt(
            upload.signed_receipt, upload.receipt_signature, upload.receipt_key_id
        )
        return {"upload": upload.uid, "complete": True, "offset": upload.size, **signed.as_json()}
    return {"upload": upload.uid, "complete": False, "offset": held(upload)}


def create(connection_id: int, data: Any) -> tuple[int, dict[str, Any]]:
    """Start an upload, or find the one already made for the same (connection, key, SHA-256).

    201 for a new one (offset 0); 200 with the offset held, or with the receipt when complete."""
    with session_scope() as session:
        conn, _ = _receiving(session, connection_id)
        wanted = declared(data, conn)
        existing = _find(session, connection_id, wanted)
        if existing is not None:
            return 200, answer(existing)
        upload = PeerUpload(
            connection_id=connection_id,
            transfer_key=wanted.key,
            sha256=wanted.sha256,
            size=wanted.size,
            name=wanted.name,
            staged_path="",
        )
        upload.staged_path = f"{layout.PEER_DIR}/{conn.uid}/{upload.uid}"
        session.add(upload)
        try:
            session.commit()
        except IntegrityError:  # the same create, at the same moment: the other one made it
            session.rollback()
        else:
            return 201, answer(upload)
    with session_scope() as session:
        existing = _find(session, connection_id, wanted)
        assert existing is not None
        return 200, answer(existing)


def _find(session: Session, connection_id: int, wanted: Declared) -> PeerUpload | None:
    found = session.exec(
        select(PeerUpload).where(
            PeerUpload.connection_id == connection_id,
            PeerUpload.transfer_key == wanted.key,
            PeerUpload.sha256 == wanted.sha256,
        )
    ).first()
    if found is not None and (found.name, found.size) != (wanted.name, wanted.size):
        raise Conflict("an upload with this key and SHA-256 was declared with another name or size")
    return found


def state(connection_id: int, upload_uid: str) -> dict[str, Any]:
    with session_scope() as session:
        return answer(_upload(session, connection_id, upload_uid))


def _upload(session: Session, connection_id: int, upload_uid: str) -> PeerUpload:
    upload = session.exec(
        select(PeerUpload).where(PeerUpload.uid == upload_uid, PeerUpload.connection_id == connection_id)
    ).first()
    if upload is None:
        raise NotFound("no such upload")
    return upload


# --- PATCH ----------------------------------------------------------------------------------------

# Uploads a request is writing right now, by uid: one PATCH at a time per upload.
_busy: set[str] = set()
_busy_lock = threading.Lock()


def begin_patch(
    connection_id: int, upload_uid: str, offset_header: str | None, length: int | None
) -> Patch | dict[str, Any]:
    """Open an upload for a PATCH at `Upload-Offset`; the answer itself if it is already complete."""
    if offset_header is None or not offset_header.isdigit():
        raise Invalid("Upload-Offset must be given, a whole number of bytes")
    offset = int(offset_header)
    with session_scope() as session:
        conn, peer = _receiving(session, connection_id)
        upload = _upload(session, connection_id, upload_uid)
        if upload.state == COMPLETE:
            return answer(upload)
        sender, folder = _sender(conn, peer), f"b2b/{conn.uid}"
        assert upload.id is not None
        session.expunge(upload)
    with _busy_lock:
        if upload.uid in _busy:
            raise Conflict("this upload is being written by another request; try again shortly")
        _busy.add(upload.uid)
    try:
        have = held(upload)
        if offset != have:
            raise OffsetMismatch(have)
        if length is not None and offset + length > upload.size:
            raise Invalid(
                f"the body ({length} bytes from offset {offset}) goes past the declared size "
                f"of {upload.size} bytes"
            )
        path = staged_file(upload)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            have = os.fstat(fd).st_size
            if offset != have:  # (changed since the look above: another writer, which _busy prevents)
                raise OffsetMismatch(have)
            sha = sha256_of(fd, have)  # a resume: the staged prefix is hashed once
            if offset > 0:
                _count_resume(upload.id)
        except BaseException:
            os.close(fd)
            raise
    except BaseException:
        _release(upload.uid)
        raise
    return Patch(upload, sender, folder, fd, have, sha)


def _count_resume(upload_id: int | None) -> None:
    with session_scope() as session:
        row = session.get(PeerUpload, upload_id)
        if row is not None:
            row.resumes += 1
            row.updated_at = utcnow()
            session.add(row)


def _release(uid: str) -> None:
    with _busy_lock:
        _busy.discard(uid)


class Patch:
    """One PATCH writing into a staged upload; `finish()` at the end of the body, `close()` always."""

    def __init__(
        self, upload: PeerUpload, sender: PeerSender, folder: str, fd: int, start: int, sha: Any
    ) -> None:
        self.upload = upload
        self.sender = sender
        self.folder = folder  # where intake records it: `b2b/<connection uid>`
        self._fd = fd
        self.start = start
        self.end = start
        self._sha = sha
        self._open = True

    def write(self, data: bytes) -> None:
        """Append `data`; a body that goes past the declared size is refused and its bytes undone."""
        if self.end + len(data) > self.upload.size:
            os.ftruncate(self._fd, self.start)
            self.end = self.start
            raise Invalid(f"the body goes past the declared size of {self.upload.size} bytes")
        view = memoryview(data)
        while view:
            try:
                written = os.pwrite(self._fd, view, self.end)
            except OSError as exc:  # what was written stays for the resume
                raise Unavailable(f"the upload cannot be stored right now: {exc.strerror}") from None
            self._sha.update(view[:written])
            self.end += written
            view = view[written:]

    def finish(self) -> dict[str, Any]:
        """The body is in: record the offset; at the declared size check the SHA-256 and take it in."""
        if self.end < self.upload.size:
            self._record_offset()
            return answer_partial(self.upload, self.end)
        os.fsync(self._fd)
        if self._sha.hexdigest() != self.upload.sha256:
            self.close()
            with contextlib.suppress(FileNotFoundError):
                staged_file(self.upload).unlink()
            self._record_offset(0)
            raise Unprocessable(
                "the file's SHA-256 does not match what was declared; its bytes were discarded"
            )
        self.close()
        try:
            intake.receive_staged(
                self.sender,
                self.folder,
                self.upload.name,
                staged_file(self.upload),
                sha256=self.upload.sha256,
                protocol="b2b",
                data_flow_ids=[_landing_flow(self.sender.connection_id)],
                also=_complete(self.upload.id),
            )
        except intake.SenderRefused as exc:
            raise Gone(str(exc)) from None
        except intake.IntakeError as exc:
            raise Invalid(str(exc)) from None
        return state(self.sender.connection_id, self.upload.uid)

    def _record_offset(self, offset: int | None = None) -> None:
        with session_scope() as session:
            row = session.get(PeerUpload, self.upload.id)
            if row is not None and row.state == RECEIVING:
                row.offset = self.end if offset is None else offset
                row.updated_at = utcnow()
                session.add(row)

    def abandon(self) -> None:
        """The sender went away mid-body: keep what arrived for its resume."""
        if self._open:
            self._record_offset()
        self.close()

    def close(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(OSError):
                os.close(self._fd)
            _release(self.upload.uid)


def answer_partial(upload: PeerUpload, offset: int) -> dict[str, Any]:
    return {"upload": upload.uid, "complete": False, "offset": offset}


def _landing_flow(connection_id: int) -> int:
    with session_scope() as session:
        conn = session.get(Connection, connection_id)
        if conn is None or conn.data_flow_id is None:
            raise Conflict("this side of the connection does not receive files")
        return conn.data_flow_id


def _complete(upload_id: int | None) -> Any:
    """Run in the receipt's transaction: tie the receipt to the connection, sign it, and mark the
    upload complete with both - so the receipt and the upload's completion commit together."""

    def also(session: Session, receipt: Receipt) -> None:
        upload = session.get(PeerUpload, upload_id)
        assert upload is not None and receipt.id is not None
        if upload.state == COMPLETE:
            raise Conflict("this upload was already taken in")
        conn = session.get(Connection, upload.connection_id)
        peer = session.exec(select(Peer).where(Peer.connection_id == upload.connection_id)).first()
        assert conn is not None and peer is not None and peer.their_connection_uid is not None
        receipt.connection_id = conn.id
        session.add(receipt)
        facts = receipts.Receipt(
            connection=conn.uid,
            peer_connection=peer.their_connection_uid,
            key=upload.transfer_key,
            name=upload.name,
            size=upload.size,
            sha256=upload.sha256,
            received_at=receipts.received_at_text(receipt.received_at),
            receipt_id=receipt.id,
        )
        signed = receipts.issue(facts, peer.our_key_id, keys.open_private_key(peer.our_private_key))
        now = utcnow()
        upload.state = COMPLETE
        upload.offset = upload.size
        upload.receipt_id = receipt.id
        upload.signed_receipt, upload.receipt_signature = signed.receipt, signed.signature
        upload.receipt_key_id = signed.key_id
        upload.completed_at = upload.updated_at = now
        session.add(upload)

    return also

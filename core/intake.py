"""THE one path every arriving file takes.

REST upload, SFTP close, FTP receive, portal, AS2, email poll, polled remote sources and B2B
outboxes all call `begin()` (or `receive_stream()`; SFTP and FTP, whose uploads can be resumed
after a dropped connection, stage the bytes in `core.mailbox.staging` and hand them over with
`receive_staged()`):

1. bytes stream into a private temporary file while size and SHA-256 are computed; only when
   the upload completed are they renamed into the store, one immutable file per receipt
   (`core/receipt_files.py`), and linked into the partner's folder, so a broken upload leaves
   nothing behind and triggers nothing, and a later upload of the same name never touches them;
2. a receipt row and one pending transfer per matching data flow are committed: the database,
   not an event, is the source of truth;
3. the dispatcher is woken (in-process listeners; other processes are found by its sweep).

Steps 1's move into the store, 2 and 3 are one function, `commit()`, whichever way the bytes were
staged: `Upload.commit()` and `receive_staged()` both end in it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast, runtime_checkable

from sqlalchemy import CursorResult, bindparam, insert
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, col, select

from core import audit, receipt_files, storage, transfers
from core.config import get_settings
from core.db import autocommit, session_scope
from core.endpoints.base import CHUNK_SIZE, WriteStream, clean_path
from core.endpoints.file import FileEndpoint
from core.endpoints.mailbox import MailboxEndpoint
from core.mailbox import layout
from core.models import DataFlow, Partner, Receipt, Transfer, utcnow
from core.names import normalize_name
from core.tenancy import account_name

log = logging.getLogger(__name__)

_listeners: list[Callable[[], None]] = []
_announcers: list[Callable[[Receipt], None]] = []


class IntakeError(Exception):
    """A file cannot be taken in; the message is safe to show the sender."""


class InvalidFileName(IntakeError):
    pass


class UploadTooLarge(IntakeError):
    pass


class SenderRefused(IntakeError):
    """The partner was removed, disabled or locked while its upload was under way."""


def check_sender(partner_id: int | None, name: str) -> None:
    """Refuse a file from a partner that may no longer send: checked before anything becomes visible.

    A session (or a long REST upload) begun before `partner remove` must not finish into the
    mailbox of whoever holds the name now. Files pulled from a source (no partner) pass.
    """
    if partner_id is None:
        return
    from core.login import Standing, standing

    # A prebuilt read of four columns: a third of the CPU of loading the row through a session,
    # asked once or twice for every file that arrives; outside a transaction, one round trip.
    with autocommit() as connection:
        partner = connection.execute(_SENDER, {"id": partner_id}).first()
    stopped = standing(partner)
    if partner is None or stopped is Standing.REMOVED or partner.name != name:
        raise SenderRefused("this login was removed; the file was not received")
    if stopped is not None:
        raise SenderRefused("this login is disabled or locked; the file was not received")


_SENDER = select(Partner.name, Partner.removed_at, Partner.enabled, Partner.locked_until).where(
    Partner.id == bindparam("id")
)


def on_received(callback: Callable[[], None]) -> None:
    """Call `callback` (cheap, non-blocking) after every committed receipt in this process."""
    _listeners.append(callback)


def on_receipt(callback: Callable[[Receipt], None]) -> None:
    """Call `callback(receipt)` after every committed receipt in this process (the Prefect side's
    `tradelane.file.received` event, flows/events.py): it must not block, and may not fail the upload."""
    if callback not in _announcers:
        _announcers.append(callback)


def _wake(receipt: Receipt) -> None:
    for callback in list(_listeners):
        try:
            callback()
        except Exception:  # a listener must never lose a receipt that is already committed
            log.exception("intake listener failed")
    for announce in list(_announcers):
        try:
            announce(receipt)
        except Exception:
            log.exception("intake announcer failed")


def check_file_name(name: str) -> str:
    """A single file name a partner may create, in NFC: no separators, no NUL, nothing hidden or special.

    Callers keep the returned name: it is the one stored (see `core.names`).
    """
    if not name or name in (".", ".."):
        raise InvalidFileName("file name is empty")
    if "/" in name or "\\" in name:
        raise InvalidFileName(f"file name must not contain a path separator: {name!r}")
    try:
        name = normalize_name(name)  # one Unicode form; nothing that disguises how the name reads
    except ValueError as exc:
        raise InvalidFileName(str(exc)) from None
    if name.startswith("."):
        raise InvalidFileName(f"file name must not start with '.': {name!r}")
    if len(name.encode()) > 255:
        raise InvalidFileName("file name is longer than 255 bytes")
    return name


@runtime_checkable
class SelfChecking(Protocol):
    """A sender that knows itself whether it may still send (a B2B outbox: its connection's state)."""

    def refuse_if_ended(self) -> None:
        """Raise SenderRefused if it may not send any more."""


def check_may_send(sender: Sender) -> None:
    """`check_sender` for any sender: a partner's login, or a self-checking sender's own rule."""
    check_sender(sender.partner_id, sender.name)
    if isinstance(sender, SelfChecking):
        sender.refuse_if_ended()


class Sender(Protocol):
    """Who is sending: a Partner row, or a protocol server's logged-in user."""

    @property
    def partner_id(self) -> int | None: ...
    @property
    def name(self) -> str: ...
    @property
    def account_id(self) -> int: ...
    @property
    def max_file_bytes(self) -> int | None: ...


@dataclass(frozen=True)
class PartnerSender:
    partner_id: int | None
    name: str
    account_id: int
    max_file_bytes: int | None

    @classmethod
    def of(cls, partner: Partner) -> PartnerSender:
        return cls(partner.id, partner.name, partner.account_id, partner.max_file_bytes)


class Upload:
    """One arriving file: write chunks, then `commit()` for a receipt, or `abort()` to leave no trace."""

    def __init__(
        self,
        sender: Sender,
        folder: str,
        name: str,
        *,
        protocol: str,
        remote_addr: str | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self._sender = sender
        self.partner_id = sender.partner_id
        self.partner_name = sender.name
        self.account_id = sender.account_id
        self.folder = folder
        self.name = check_file_name(name)
        self.protocol = protocol
        self.remote_addr = remote_addr
        self.max_bytes = max_bytes or sender.max_file_bytes or get_settings().max_upload_bytes
        self.size = 0
        check_may_send(sender)
        self._hash = hashlib.sha256()
        self._visible = visible_place(sender, folder, self.name)
        self._stream: WriteStream
        self._stream, self._kept = receipt_files.open_write(f"{folder}/{self.name}")

    def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.max_bytes:
            self.abort()
            raise UploadTooLarge(f"file is larger than the limit of {self.max_bytes} bytes")
        self._stream.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def abort(self) -> None:
        self._stream.abort()

    def commit(
        self,
        data_flow_ids: list[int] | None = None,
        also: Callable[[Session, Receipt], None] | None = None,
    ) -> Receipt:
        """Rename the bytes into place, then record the receipt and its pending transfers.

        `data_flow_ids` names the flows to carry it (a polled file belongs to the flow that pulled
        it); by default every flow whose source matches. `also` runs in the same transaction.
        """
        arrival = Arrival(
            self._sender,
            self.folder,
            self.name,
            self.size,
            self._hash.hexdigest(),
            self.protocol,
            self.remote_addr,
            self._visible,
        )
        return commit(arrival, self, data_flow_ids=data_flow_ids, also=also)

    # -- as `Staged`: the bytes are in a private temporary file until `keep()`

    def keep(self) -> str:
        self._stream.commit()
        return self._kept

    def unkeep(self, kept: str) -> None:
        receipt_files.discard(kept)  # no receipt will name it

    def refuse(self) -> None:
        self.abort()

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()


def begin(sender: Partner | Sender, folder: str, name: str, *, protocol: str, **kwargs: object) -> Upload:
    """Start taking in one file from a partner (a Partner row or any Sender)."""
    if isinstance(sender, Partner):
        sender = PartnerSender.of(sender)
    return Upload(sender, folder, name, protocol=protocol, **kwargs)  # type: ignore[arg-type]


def receive_stream(
    sender: Partner | Sender, folder: str, name: str, stream: BinaryIO, *, protocol: str, **kwargs: object
) -> Receipt:
    """Take a whole readable stream in; used by protocols that hand us a file object."""
    with begin(sender, folder, name, protocol=protocol, **kwargs) as upload:
        while chunk := stream.read(CHUNK_SIZE):
            upload.write(chunk)
        return upload.commit()


# Work done in the receipt's own transaction (`commit`'s `also`): it commits with the receipt or
# neither does.
Also = Callable[[Session, Receipt], None]


def receive_staged(
    sender: Partner | Sender,
    folder: str,
    name: str,
    staged: Path,
    *,
    sha256: str | None = None,
    protocol: str,
    remote_addr: str | None = None,
    data_flow_ids: list[int] | None = None,
    also: Callable[[Session, Receipt], None] | None = None,
) -> Receipt:
    """Take in a file a protocol server already wrote whole under `staged` (and its SHA-256, if it
    hashed the bytes on the way in; else they are read here once).

    For uploads that must outlive a dropped connection so the client can resume them (SFTP, FTP):
    the server keeps the bytes in a staging folder on the mailbox filesystem
    (`core.mailbox.staging`, so the move into the store is a rename) and calls this once the client
    says the file is complete. The name and size limit are checked, then `commit()` takes it in
    exactly as for `Upload.commit` (`data_flow_ids` and `also` as there). On an error before the
    move, `staged` is left where it was.
    """
    if isinstance(sender, Partner):
        sender = PartnerSender.of(sender)
    name = check_file_name(name)
    size = os.stat(staged).st_size
    limit = sender.max_file_bytes or get_settings().max_upload_bytes
    if size > limit:
        raise UploadTooLarge(f"file is larger than the limit of {limit} bytes")
    if sha256 is None:
        sha256 = _sha256_of_file(staged)
    target = visible_place(sender, folder, name)
    arrival = Arrival(sender, folder, name, size, sha256, protocol, remote_addr, target)
    return commit(arrival, StagedFile(staged), data_flow_ids=data_flow_ids, also=also)


def _sha256_of_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            sha.update(chunk)
    return sha.hexdigest()


class Staged(Protocol):
    """Bytes of one arriving file, waiting to be taken in."""

    def keep(self) -> str:
        """Move them into the store (durably); their path there, relative to the mailbox root."""

    def unkeep(self, kept: str) -> None:
        """They could not be shown to the partner and no receipt names them: undo `keep()`."""

    def refuse(self) -> None:
        """The sender may no longer send: nothing will be kept."""


class StagedFile:
    """A whole file a protocol server staged on the mailbox filesystem (for resumable uploads)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def keep(self) -> str:
        return receipt_files.keep_staged(self.path)

    def unkeep(self, kept: str) -> None:
        receipt_files.unkeep(kept, self.path)  # back where the client can resume or retry it

    def refuse(self) -> None:
        pass  # left staged: the session decides (a resume is no longer possible for this login)


@dataclass(frozen=True)
class Arrival:
    """What is known of a complete file before it is taken in."""

    sender: Sender
    folder: str
    name: str  # checked by `check_file_name`
    size: int
    sha256: str
    protocol: str
    remote_addr: str | None
    visible: Visible | None  # where the partner will see it (`visible_place`)


def commit(
    arrival: Arrival,
    staged: Staged,
    *,
    data_flow_ids: list[int] | None = None,
    also: Callable[[Session, Receipt], None] | None = None,
) -> Receipt:
    """THE commit every arriving file ends in: keep the bytes in the store, link them where the
    partner sees them, record the receipt and its pending transfers, wake the dispatcher.

    The sender is checked once more first (it may have been removed, disabled or locked while its
    upload was under way). `also` runs in the receipt's transaction.
    """
    sender = arrival.sender
    try:
        check_may_send(sender)
    except SenderRefused:
        staged.refuse()
        raise
    kept = staged.keep()
    # A link already there (an earlier upload of the name, another process's of this file) is
    # replaced by `show`; a rollback leaves ours then, rather than no file where one was.
    replaced = arrival.visible is not None and os.path.lexists(arrival.visible.local)
    try:
        visible = _show(kept, arrival.visible)
    except BaseException:
        staged.unkeep(kept)
        raise
    recorded = False
    try:
        with session_scope() as session:
            receipt = record_receipt(
                session,
                account_id=sender.account_id,
                partner_id=sender.partner_id,
                partner_name=sender.name,
                folder=arrival.folder,
                name=arrival.name,
                size=arrival.size,
                sha256=arrival.sha256,
                protocol=arrival.protocol,
                remote_addr=arrival.remote_addr,
                data_flow_ids=data_flow_ids,
                storage_path=kept,
                visible_path=visible,
            )
            if also is not None:
                also(session, receipt)
            recorded = True  # the commit follows: a failure there may have committed after all
    except BaseException:
        if not recorded:  # rolled back (`also` refused, say): no receipt names the bytes
            if arrival.visible is not None and not replaced:
                receipt_files.unshow(kept, arrival.visible.local)
            staged.unkeep(kept)  # a staged upload's bytes go back where the client resumes them
        raise
    _wake(receipt)
    return receipt


@dataclass(frozen=True)
class Visible:
    """Where the partner sees a file: `local`, checked to stay inside its home, and `rel`, the same
    place relative to the mailbox root (what the receipt records)."""

    local: Path
    rel: str


def visible_place(sender: Sender, folder: str, name: str) -> Visible | None:
    """Where the partner sees the file (`<home>/<folder>/<name>`); None for a polled file, which no
    partner has to see."""
    if sender.partner_id is None:
        return None
    account = account_name(sender.account_id)
    rel = clean_path(f"{folder}/{name}")
    home_rel = layout.home_relative(account, sender.name)
    if storage.is_object_store():  # nothing is linked on S3 (receipt_files.show): only the record
        return Visible(layout.root() / home_rel / rel, f"{home_rel}/{rel}")
    home = MailboxEndpoint({"partner": sender.name, "account": account})
    assert isinstance(home, FileEndpoint)
    return Visible(home.local_path(rel), f"{home_rel}/{rel}")


def _show(kept: str, visible: Visible | None) -> str | None:
    """Link the kept bytes at the partner's path; that path relative to the mailbox root."""
    if visible is None:
        return None
    receipt_files.show(kept, visible.local)
    return visible.rel


def matching_flows(session: Session, partner_id: int | None, folder: str, name: str) -> list[tuple[int, int]]:
    """(id, account) of every data flow this file belongs to. Disabled flows queue it; they send it
    once enabled."""
    statement = _FLOWS_OF_POLLS if partner_id is None else _FLOWS_OF_PARTNER
    rows = session.execute(statement, {"partner": partner_id, "folder": folder}).tuples()
    return [(flow_id, account) for flow_id, account, pattern in rows if fnmatchcase(name, pattern)]


# A file from a partner's mailbox, and one pulled from a source (no partner): `== None` is IS NULL.
_FLOWS_OF_PARTNER = select(DataFlow.id, DataFlow.account_id, DataFlow.pattern).where(
    DataFlow.source_partner_id == bindparam("partner"), DataFlow.source_folder == bindparam("folder")
)
_FLOWS_OF_POLLS = select(DataFlow.id, DataFlow.account_id, DataFlow.pattern).where(
    col(DataFlow.source_partner_id).is_(None), DataFlow.source_folder == bindparam("folder")
)


def record_receipt(
    session: Session,
    *,
    account_id: int,
    partner_id: int | None,
    partner_name: str,
    folder: str,
    name: str,
    size: int,
    sha256: str,
    protocol: str,
    remote_addr: str | None = None,
    data_flow_ids: list[int] | None = None,
    storage_path: str,
    visible_path: str | None = None,
) -> Receipt:
    """Write the receipt, a pending transfer for each data flow that takes it (`data_flow_ids`, else
    every one matching its partner, folder and name) and its audit event, in `session`'s transaction.

    The rows are written with Core statements built once: building and flushing three ORM objects
    cost about three times the inserts themselves, once for every file that arrives. The receipt
    returned is in `session` as if loaded from it, so a change to it (an `also`) is written too."""
    values: dict[str, Any] = {
        "account_id": account_id,
        "partner_id": partner_id,
        "user_id": None,
        "protocol": protocol,
        "folder": folder,
        "name": name,
        "size": size,
        "sha256": sha256,
        "storage_path": storage_path,
        "visible_path": visible_path,
        "received_at": utcnow(),
        "connection_id": None,
        "held": False,
    }
    inserted = cast(CursorResult[Any], session.execute(_INSERT_RECEIPT, values)).inserted_primary_key
    assert inserted is not None
    receipt_id: int = inserted[0]
    receipt = Receipt(id=receipt_id, **values)
    make_transient_to_detached(receipt)
    session.add(receipt)
    if data_flow_ids is None:
        takers = matching_flows(session, partner_id, folder, name)
    else:
        takers = _flow_accounts(session, data_flow_ids, receipt_id)
    if takers:
        now = receipt.received_at
        rows = [transfers.pending_row(receipt_id, flow_id, account, now) for flow_id, account in takers]
        session.execute(_INSERT_TRANSFER, rows)
    # A B2B outbox write is an upload by the account's own login ("cli", "user:<email>").
    outbox = protocol == "b2b" and partner_id is None
    audit.record(
        session,
        "upload" if partner_id is not None or outbox else "pull",
        actor=f"partner:{partner_name}"
        if partner_id is not None
        else partner_name
        if outbox
        else f"source:{partner_name}",
        account_id=account_id,
        target=f"{folder}/{name}",
        remote_addr=remote_addr,
        protocol=protocol,
        size=size,
        sha256=sha256,
        receipt=receipt_id,
    )
    return receipt


def _flow_accounts(session: Session, data_flow_ids: list[int], receipt_id: int) -> list[tuple[int, int]]:
    """(id, account) of each data flow named, in the order given; one that is gone is an error."""
    if not data_flow_ids:
        return []
    accounts = dict(session.execute(_FLOW_ACCOUNTS, {"ids": data_flow_ids}).tuples().all())
    for flow_id in data_flow_ids:
        if flow_id not in accounts:
            raise transfers.NoSuchTransfer(f"no data flow {flow_id} to carry receipt {receipt_id}")
    return [(flow_id, accounts[flow_id]) for flow_id in data_flow_ids]


_INSERT_RECEIPT = insert(Receipt.__table__)  # type: ignore[attr-defined]
_INSERT_TRANSFER = insert(Transfer.__table__)  # type: ignore[attr-defined]
_FLOW_ACCOUNTS = select(DataFlow.id, DataFlow.account_id).where(
    col(DataFlow.id).in_(bindparam("ids", expanding=True))
)

"""Every table tradelane stores, in one place (one module on purpose: one file to read for the schema,
which the migrations follow)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from core.mailbox.layout import SOURCE_FOLDER


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uid() -> str:
    return str(uuid.uuid4())


class Account(SQLModel, table=True):
    """A company (tenant); the first start creates `home`."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    # Touched to take the account's write lock where a rule spans rows one index cannot (core/b2b).
    updated_at: datetime | None = None


class AccountUser(SQLModel, table=True):
    """A person who logs in for an account (its e-mail address is the login) with a role.

    The lifecycle columns are the partner's, so the one login policy and the session watcher
    treat both logins alike. E-mail addresses always hold `@` and partner names never do, so no
    login name is in both tables (core/logins.py)."""

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(default_factory=new_uid, unique=True, index=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    email: str = Field(unique=True, index=True)  # lower-cased; "<email>.removed.<id>" once removed
    password_hash: str | None = None
    role: str = "read-only"  # admin, operator, read-only (core/tenancy.py USER_ROLES)
    enabled: bool = True
    locked_until: datetime | None = None
    sessions_ended_at: datetime | None = None
    removed_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str | None = None

    # What the one login policy reads of every login (core/login.py), a partner's or a user's.
    @property
    def name(self) -> str:
        return self.email

    @property
    def allowed_networks(self) -> list[str]:
        return []  # users log in from anywhere; allow-lists are a partner setting


class Partner(SQLModel, table=True):
    """A mailbox login an account gives a trading partner."""

    # Partner names are login names: unique on the whole instance, not only in their account.
    __table_args__ = (UniqueConstraint("account_id", "name"), Index("uq_partner_name", "name", unique=True))

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(default_factory=new_uid, unique=True, index=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    name: str = Field(index=True)
    password_hash: str | None = None
    ssh_public_keys: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    # Whether the partner may delete what it has fetched from download/.
    can_delete_downloads: bool = True
    # Source networks the partner may log in from (CIDR); empty means anywhere.
    allowed_networks: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Simultaneous SFTP/FTP sessions; None uses the server-wide default.
    max_connections: int | None = None
    # Largest file this partner may upload; None uses TRADELANE_MAX_UPLOAD_BYTES.
    max_file_bytes: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # Who to write to about this mailbox (shown by `partner list`).
    email: str | None = None
    # Told about its own files (core/notify/partner_notices.py): addresses, comma-separated, and
    # whether they hear when an upload of the partner's is rejected, and when a data flow has
    # delivered a file into its download/.
    contact_emails: str | None = None
    tell_rejected: bool = False
    tell_downloads: bool = False
    # This partner's files delivered (pushed) at once across every worker, kept as a
    # Prefect global concurrency limit (core/concurrency_limits.py); None: unlimited.
    max_concurrent: int | None = None
    # Locked by distributed evidence of password guessing (core/login.py) until then; None: not locked.
    locked_until: datetime | None = None
    # Sessions and API tokens that began before this moment end (removed, disabled, locked, new password).
    sessions_ended_at: datetime | None = None
    # Set by `partner remove`: the row stays for history under a freed name, its home moved out of reach.
    removed_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class EndpointType(StrEnum):
    mailbox = "mailbox"
    file = "file"
    s3 = "s3"
    azure = "azure"
    sftp = "sftp"
    ftp = "ftp"
    as2 = "as2"
    email = "email"
    http = "http"


class Endpoint(SQLModel, table=True):
    """A named place files come from or go to; secrets are encrypted at rest."""

    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    name: str = Field(index=True)
    type: str
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    secrets: str | None = None  # Fernet token of a JSON object
    # Files carried to or from this endpoint at once across every worker, kept as a Prefect
    # global concurrency limit (core/concurrency_limits.py); None: unlimited.
    max_concurrent: int | None = None
    # Set by `endpoint remove --force` while data flows still name it (they are disabled).
    removed_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class DataFlow(SQLModel, table=True):
    """A source (endpoint or partner mailbox + folder + pattern) paired with a destination."""

    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    name: str = Field(index=True)
    source_partner_id: int | None = Field(default=None, foreign_key="partner.id", index=True)
    source_endpoint_id: int | None = Field(default=None, foreign_key="endpoint.id")
    source_folder: str = SOURCE_FOLDER
    pattern: str = "*"
    dest_endpoint_id: int = Field(foreign_key="endpoint.id")
    # Where the file lands at the destination; {name}, {stem}, {suffix}, {partner}, {date}, {receipt} expand.
    dest_path: str = "{name}"
    validators: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    retries: int = 5
    retry_delay_seconds: float = 2.0
    enabled: bool = True
    # Polling sources (source_endpoint_id set): when to look, and what to do with a pulled file:
    # "keep" (remember it by name + size + mtime/etag), "delete", or "archive:PATH" (move it there).
    schedule_interval_seconds: float | None = None
    schedule_cron: str | None = None
    after_pull: str = "keep"
    # Set by `flow remove` when transfers still point at the flow: kept for history, never served.
    removed_at: datetime | None = None
    # What a delivery does when its name is taken at the destination: rename, overwrite or fail;
    # None: the destination type's default (core/endpoints/conflict.py).
    on_conflict: str | None = None
    # Set on the hidden data flow (`b2b:<id>`) that carries a B2B connection's files.
    source_connection_id: int | None = Field(default=None, foreign_key="connection.id", index=True)
    # The flow template it runs (tradelane/templates.py) and its params, checked against the
    # template's model when set: only the params given; the others take the model's defaults.
    template: str = "transfer"
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PulledFile(SQLModel, table=True):
    """A file a polling data flow already took from its source, so it is taken once."""

    __table_args__ = (UniqueConstraint("data_flow_id", "path", "fingerprint"),)

    id: int | None = Field(default=None, primary_key=True)
    data_flow_id: int = Field(foreign_key="dataflow.id", index=True)
    path: str
    fingerprint: str  # size + mtime or etag at the time it was pulled
    receipt_id: int | None = Field(default=None, foreign_key="receipt.id")
    pulled_at: datetime = Field(default_factory=utcnow)


class Receipt(SQLModel, table=True):
    """One file that arrived; written before anything else happens to it."""

    # A login's uploads newest first (the portal's recent uploads) walk one of these.
    __table_args__ = (
        Index("ix_receipt_partner_id_id", "partner_id", "id"),
        Index("ix_receipt_user_id_id", "user_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    partner_id: int | None = Field(default=None, foreign_key="partner.id")
    # The account user who put the file in (an outbox write); None for partners and pulls.
    # (No foreign key: see migration 0010. Users are never deleted, so the id stays valid.)
    user_id: int | None = None
    protocol: str  # rest, sftp, ftp, portal, as2, email, poll, b2b
    folder: str
    name: str
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str
    # Where the bytes are kept, relative to the mailbox root: `.store/<day>/<uuid>`, private and
    # never changed (older receipts: the partner's path or `.archive/...`; see core/receipt_files.py).
    storage_path: str
    # The partner's link to those bytes (`home/<partner>/upload/<name>`) until they are delivered.
    visible_path: str | None = None
    received_at: datetime = Field(default_factory=utcnow, index=True)
    # A file put into a B2B connection's outbox (core/b2b/outbox.py).
    connection_id: int | None = Field(default=None, foreign_key="connection.id", index=True)
    # Taken in while its connection was pending: no transfer until the connection is active.
    held: bool = Field(default=False, index=True)


class TransferState(StrEnum):
    pending = "pending"
    running = "running"
    delivered = "delivered"
    failed = "failed"
    rejected = "rejected"
    # The destination said "not now" (core.endpoints.base.Deferrable): the file is kept and the
    # dispatcher carries it again at `next_attempt_at`. Not final; holds no run.
    waiting = "waiting"


FINAL_STATES = frozenset({TransferState.delivered, TransferState.failed, TransferState.rejected})
# Transfers whose file is still to be carried (what removing a flow or a partner must reckon with).
OPEN_STATES = (TransferState.pending, TransferState.running, TransferState.waiting)


class Transfer(SQLModel, table=True):
    """One receipt carried by one data flow: the run history users query."""

    # The history pages (newest first, by account, state, data flow; migration 0025) and the
    # console's last-24-h counts walk these indexes instead of sorting every matching row.
    __table_args__ = (
        Index("ix_transfer_account_id_id", "account_id", "id"),
        Index("ix_transfer_account_state_id", "account_id", "state", "id"),
        Index("ix_transfer_data_flow_id_id", "data_flow_id", "id"),
        Index("ix_transfer_account_created", "account_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    receipt_id: int = Field(foreign_key="receipt.id", index=True)
    data_flow_id: int = Field(foreign_key="dataflow.id")
    # The data flow's account (for a B2B landing flow, the receiver's), copied here so an
    # account's history is one index walk, not a join and a sort.
    account_id: int = Field(foreign_key="account.id")
    state: str = Field(default=TransferState.pending, index=True)
    attempts: int = 0
    # Set when the dispatcher groups this transfer into a run; doubles as the run's idempotency key.
    batch_key: str | None = Field(default=None, index=True)
    flow_run_id: str | None = Field(default=None, index=True)
    destination_uri: str | None = None
    # What the destination answered (an API's status and body, a Message-ID, an MDN, an ETag).
    destination_answer: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The files a template's steps made from the receipt, in order (core/derived.py): each
    # {step, name, size, sha256}; the last one is what was delivered. None: the receipt's bytes.
    derived: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The EDI envelope values edi-route read and routed on (core/transforms/edi_route.py).
    envelope: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    error: str | None = None
    # What kind of failure `error` is (core/delivery.py `error_kind`): what the sender of a B2B file
    # is told instead of the receiver's error text.
    error_kind: str | None = None
    replay_of: int | None = Field(default=None, foreign_key="transfer.id")
    # `waiting`: when the dispatcher carries it again; `waits`: how often it has waited (its backoff).
    next_attempt_at: datetime | None = Field(default=None, index=True)
    waits: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class AuditEvent(SQLModel, table=True):
    """Who did what, when: logins, uploads, downloads, deletes, configuration changes, failures."""

    # An account's events newest first, by keyset (the console's audit page).
    __table_args__ = (Index("ix_auditevent_account_id_id", "account_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int | None = Field(default=None, foreign_key="account.id")
    actor: str  # "partner:acme", "cli", "flow"
    action: str  # "login", "login.failed", "upload", "download", "delete", "partner.add", ...
    target: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    remote_addr: str | None = None
    at: datetime = Field(default_factory=utcnow, index=True)


class LoginFailure(SQLModel, table=True):
    """One failed login: the ledger address bans and account locks are decided from (core/login.py)."""

    __table_args__ = (
        Index("ix_loginfailure_address_at", "address", "at"),
        Index("ix_loginfailure_username_at", "username", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    address: str  # the source address, IPv6 cut to its /64
    username: str
    protocol: str
    at: datetime = Field(default_factory=utcnow, index=True)


class AddressBan(SQLModel, table=True):
    """A source address refused every login until `until`, whatever user it tries."""

    __table_args__ = (Index("ix_addressban_address_until", "address", "until"),)

    id: int | None = Field(default=None, primary_key=True)
    address: str
    until: datetime
    failures: int
    at: datetime = Field(default_factory=utcnow)


class As2Organization(SQLModel, table=True):
    """Our AS2 identity: an AS2 ID, its private key (encrypted at rest) and its certificate."""

    # /as2/receive routes by AS2-To alone, so an AS2 ID names one identity on the whole instance.
    __table_args__ = (
        UniqueConstraint("account_id", "as2_id"),
        Index("uq_as2organization_as2_id", "as2_id", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    as2_id: str = Field(index=True)
    private_key: str = Field(sa_column=Column(Text, nullable=False))  # Fernet token of the PEM key
    certificate: str = Field(sa_column=Column(Text, nullable=False))  # PEM, given to partners
    cert_not_after: datetime
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class As2Partner(SQLModel, table=True):
    """A trading partner's AS2 profile: its URL and certificate, the security both ways, its mailbox."""

    __table_args__ = (UniqueConstraint("account_id", "as2_id"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    as2_id: str = Field(index=True)
    # Which of our identities this partner talks to; None: the account's only (or first) one.
    organization_id: int | None = Field(default=None, foreign_key="as2organization.id")
    # What it sends lands in this mailbox partner's upload/ folder.
    partner_id: int = Field(foreign_key="partner.id", index=True)
    url: str
    certificate: str = Field(sa_column=Column(Text, nullable=False))
    cert_not_after: datetime
    sign: str | None = None  # digest for messages both ways (required inbound when set)
    encrypt: str | None = None  # cipher for messages both ways (required inbound when set)
    compress: bool = False
    mdn_mode: str = "sync"  # none, sync, async: the receipt we ask for when sending
    mdn_sign: str | None = None  # digest we ask the partner to sign its MDNs with
    mdn_url: str | None = None  # where the partner posts async MDNs to us
    mdn_timeout_seconds: float = 600.0
    max_resends: int = 3
    # Inbound: take unsigned messages (anyone who knows the AS2 IDs can then send as this partner).
    allow_unsigned: bool = False
    # Where our async MDNs to this partner go; None: the sender's Receipt-Delivery-Option, if it
    # starts with one of `allow_mdn_urls` (empty: the origin of `url`).
    mdn_return_url: str | None = None
    allow_mdn_urls: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class As2Message(SQLModel, table=True):
    """One AS2 message, in or out: its security, MIC, MDN and what became of it."""

    __table_args__ = (UniqueConstraint("direction", "partner_as2_id", "message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    direction: str = Field(index=True)  # "in" or "out"
    message_id: str | None = Field(default=None, index=True)
    org_as2_id: str
    partner_as2_id: str
    # in: received, duplicate, failed; out: sending, sent, awaiting-mdn, acknowledged, failed
    status: str = Field(index=True)
    disposition: str | None = None  # from the MDN: "processed", "processed/Error: decryption-failed", ...
    error: str | None = None
    file_name: str | None = None
    size: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    sha256: str | None = None
    mic: str | None = None
    mic_alg: str | None = None
    # in, signed: SHA-256 over the MIC and the signature, to recognise a replay under a new Message-ID
    signed_digest: str | None = Field(default=None, index=True)
    signed: bool = False
    encrypted: bool = False
    compressed: bool = False
    mdn_mode: str = "none"  # none, sync, async
    mdn_url: str | None = None  # in: where the async MDN goes
    mdn_sign: str | None = None  # the digest a signed MDN was asked with
    mdn_message_id: str | None = None
    mdn_signed: bool = False
    # in (async): pending, sent, failed; out: received
    mdn_status: str | None = None
    mdn: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # headers + body
    attempts: int = 0  # out: sends of the message; in: deliveries of the async MDN
    next_attempt_at: datetime | None = Field(default=None, index=True)
    spool_path: str | None = None  # out, awaiting an async MDN: the built message kept for resends
    destination_uri: str | None = None
    receipt_id: int | None = Field(default=None, foreign_key="receipt.id")
    transfer_id: int | None = Field(default=None, foreign_key="transfer.id")
    remote_addr: str | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class ConnectionState(StrEnum):
    pending = "pending"
    active = "active"
    declined = "declined"
    revoked = "revoked"
    expired = "expired"


# States in which a connection's names (its outbox, and each side's name) stay taken.
NAMED_STATES = ("pending", "active", "revoked")


def _named(*columns: str) -> Index:
    where = text(f"state IN ({', '.join(repr(state) for state in NAMED_STATES)})")
    return Index(
        f"uq_connection_{'_'.join(c.removesuffix('_account_id') for c in columns)}",
        *columns,
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )


class Connection(SQLModel, table=True):
    """A B2B connection between two accounts: one sends files into the other's storage.

    One row per pairing on this instance. `direction` is what the inviter does; the sender's side
    (its name, its outbox) and the receiver's (its name, where files land) fill in as each side
    names its end. Only `sha256(token)` of the invitation is kept (core/b2b/tokens.py).
    """

    __table_args__ = (
        _named("sender_account_id", "outbox_name"),
        _named("sender_account_id", "sender_name"),
        _named("receiver_account_id", "receiver_name"),
    )

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(default_factory=new_uid, unique=True, index=True)
    direction: str  # "send" | "receive": what the inviter does
    state: str = Field(default=ConnectionState.pending, index=True)
    sender_account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    sender_name: str | None = None
    outbox_name: str | None = None
    receiver_account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    receiver_name: str | None = None
    dest_endpoint_id: int | None = Field(default=None, foreign_key="endpoint.id")
    dest_dir: str | None = None  # relative to the endpoint's own path or prefix; "" for its root
    allow_sender_view: bool = False
    invite_email: str | None = None
    token_hash: str | None = Field(default=None, unique=True)
    token_expires_at: datetime | None = None
    token_used_at: datetime | None = None
    signup_account_id: int | None = Field(default=None, foreign_key="account.id")
    # The local data flow that carries its files (the receiver's `b2b:<id>`); no foreign key, as
    # dataflow.source_connection_id already points back here.
    data_flow_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str | None = None
    accepted_at: datetime | None = None
    accepted_by: str | None = None
    declined_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoked_side: str | None = None  # "sender" | "receiver"
    expired_at: datetime | None = None
    view_changed_at: datetime | None = None
    view_changed_by: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class Peer(SQLModel, table=True):
    """The other instance of one cross-instance connection: its URL, its key and ours (DESIGN-12 §5.1).

    Keys are minted for this connection alone. The private key is sealed with the instance's secret
    key (core/b2b/keys.py) and opened only in memory; the other side's public key stays after a
    revoke, so the receipts it signed can be verified years later.
    """

    id: int | None = Field(default=None, primary_key=True)
    # The connection this peer belongs to (a foreign key to connection.id once that table exists).
    connection_id: int = Field(unique=True, index=True)
    base_url: str  # the other instance's public URL
    their_connection_uid: str | None = None  # their row's uid, in the paths of our requests
    their_account: str | None = None  # display only
    # Ed25519, raw 32 bytes in base64url; None until the accept handshake has answered.
    their_key_id: str | None = Field(default=None, unique=True, index=True)
    their_public_key: str | None = None
    our_key_id: str = Field(unique=True, index=True)
    our_public_key: str
    our_private_key: str = Field(sa_column=Column(Text, nullable=False))  # Fernet-sealed
    # The state check (DESIGN-12 §5.7).
    reachable: bool = True
    unreachable_since: datetime | None = None
    last_error: str | None = None
    checked_at: datetime | None = None
    next_check_at: datetime | None = Field(default=None, index=True)
    # The revoke notice still owed to the other side.
    revoke_to_send: bool = False
    notice_attempts: int = 0
    next_notice_at: datetime | None = None
    view_allowed_seen: bool | None = None  # the sender's copy of the receiver's allow-view
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PeerNonce(SQLModel, table=True):
    """A signed peer request's nonce, kept while its signature could still be accepted (replay guard)."""

    __tablename__ = "peer_nonce"

    key_id: str = Field(primary_key=True)
    nonce: str = Field(primary_key=True)
    seen_at: datetime = Field(default_factory=utcnow, index=True)


class PeerUpload(SQLModel, table=True):
    """A file another instance is pushing to us through a connection, resumable (DESIGN-12 §5.5).

    One row per (connection, transfer key, SHA-256): the sender's retries, crash requeues and
    replays of one transfer resume or find this row, so the file is taken in once. `offset` is
    what the last request recorded; after a crash the staged file's size on disk is the truth.
    """

    __tablename__ = "peer_upload"
    __table_args__ = (UniqueConstraint("connection_id", "transfer_key", "sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(default_factory=new_uid, unique=True, index=True)  # in the upload's URL
    connection_id: int = Field(foreign_key="connection.id", index=True)
    transfer_key: str  # receipts.TransferKey.text(): the sender's idempotency key
    sha256: str
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    name: str
    offset: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    staged_path: str  # relative to the mailbox root: `.peer/<connection uid>/<upload uid>`
    state: str = "receiving"  # receiving | complete
    receipt_id: int | None = Field(default=None, foreign_key="receipt.id")
    # The signed receipt sent back (core/b2b/receipts.py), kept so a repeat gets the same one.
    signed_receipt: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    receipt_signature: str | None = None
    receipt_key_id: str | None = None
    resumes: int = 0  # PATCHes that continued after a non-zero offset
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None


class PgpKey(SQLModel, table=True):
    """An OpenPGP key in an account's keyring: a partner's public key, or ours with its private part."""

    __table_args__ = (UniqueConstraint("account_id", "name"), UniqueConstraint("account_id", "fingerprint"))

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    name: str = Field(index=True)
    email: str | None = Field(default=None, index=True)
    fingerprint: str = Field(index=True)  # 40 (v4) or 64 (v5/v6) hex digits, upper case
    user_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    algorithm: str
    can_encrypt: bool = True
    can_sign: bool = True
    public_key: str = Field(sa_column=Column(Text, nullable=False))  # ASCII-armored, given to partners
    # Fernet token (core.crypto) of the private key, its passphrase and keygrips; None: public only.
    private_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    key_created_at: datetime
    expires_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class WebSession(SQLModel, table=True):
    """One browser login to the portal or console (core/web_sessions.py): server-side, so logout,
    a new password or a lock ends it at once. Only the SHA-256 of the cookie value is kept, so
    reading the store yields no live cookie."""

    __tablename__ = "web_session"
    __table_args__ = (Index("ix_web_session_kind_principal_id", "kind", "principal_id"),)

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)  # sha256(cookie value), hex
    kind: str  # "partner" or "user" (core/logins.py)
    principal_id: int  # partner.id or accountuser.id, as `kind` says
    account_id: int = Field(foreign_key="account.id")
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)  # absolute end; the idle end is last_seen_at + idle
    ended_at: datetime | None = None
    ended_reason: str | None = None  # logout, password, removed, ...
    remote_addr: str | None = None
    user_agent: str | None = Field(default=None, max_length=200)


class WebUploadState(StrEnum):
    open = "open"
    done = "done"
    cancelled = "cancelled"
    superseded = "superseded"


class WebUpload(SQLModel, table=True):
    """One resumable browser upload (tus, api/web/tus.py): bound to the login, not to the browser
    session, so it resumes after a new login. Its bytes are in the login's staging folder."""

    __tablename__ = "web_upload"
    # One open upload per login and file name: a second one supersedes or is refused (core/web_uploads.py).
    __table_args__ = (
        Index(
            "uq_web_upload_open",
            "kind",
            "principal_id",
            "folder",
            "name",
            unique=True,
            sqlite_where=text("state = 'open'"),
            postgresql_where=text("state = 'open'"),
        ),
        Index("ix_web_upload_state_updated_at", "state", "updated_at"),
    )

    id: str = Field(primary_key=True, max_length=32)  # 128 random bits, hex: the upload's URL
    kind: str  # "partner" or "user"
    principal_id: int
    account_id: int = Field(foreign_key="account.id")
    folder: str  # "upload" or "b2b/<outbox>"
    name: str
    length: int = Field(sa_column=Column(BigInteger, nullable=False))  # Upload-Length
    # Bytes the PATCHes wrote to staging (= length when nothing was sent twice) and how many did.
    received: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    patches: int = 0
    state: str = WebUploadState.open
    receipt_id: int | None = Field(default=None, foreign_key="receipt.id")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class NotifyChannel(SQLModel, table=True):
    """Where notifications go (core/notify/channels.py): e-mail addresses or a webhook URL."""

    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    name: str
    kind: str  # "email" or "webhook"
    # E-mail: the addresses, comma-separated; webhook: the URL (its secret is in `secrets`).
    target: str
    format: str = "json"  # webhook body: json, slack or teams
    secrets: str | None = None  # Fernet token of a JSON object ({"secret": …})
    # The last send: when it went out, or when and why it failed, and how many in a row failed.
    last_sent_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failures: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class NotifyRule(SQLModel, table=True):
    """`tradelane notify on WHAT`: kept as a Prefect automation (deployments/notify_rules.py)."""

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    on: str  # failed, rejected, received or delivered
    channel_id: int = Field(foreign_key="notifychannel.id", index=True)
    partner_id: int | None = Field(default=None, foreign_key="partner.id")
    data_flow_id: int | None = Field(default=None, foreign_key="dataflow.id")
    digest_seconds: int | None = None  # one message per window of this length; None: one per file
    created_at: datetime = Field(default_factory=utcnow)


class Sla(SQLModel, table=True):
    """`tradelane sla add`: a partner's files expected by a time on some days (core/notify/slas.py)."""

    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    name: str
    partner_id: int = Field(foreign_key="partner.id")
    pattern: str = "*"  # a glob on the file name
    by: str  # the deadline's local time, "HH:MM" or "HH:MM:SS"
    days: str  # the weekdays it applies, e.g. "mon,tue,wed,thu,fri"
    timezone: str = "UTC"
    min_files: int = 1
    channel_id: int = Field(foreign_key="notifychannel.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    # The last deadline checked (each is checked once: the check claims it), and what it found.
    last_deadline: datetime | None = None
    last_outcome: str | None = None  # "met" or "missed"
    last_count: int | None = None

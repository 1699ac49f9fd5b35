"""B2B connections on one instance: invite, accept, decline, revoke, allow-view, and what each side sees.

States (DESIGN-12 §2.2): `pending` → `active` (accepted by another account), or → `declined`
(the token holder said no), `revoked` (either side's admin; the inviter also while pending) or
`expired` (the token's time ran out). The last three are final. Every refusal is a
`core.errors.StatusError` raised before anything is written in its transaction.

A connection is named by each side for itself (`sender_name`, `receiver_name`); `N` in the CLI is
the caller's own name for it, or its id. The receiver's destination (endpoint and folder) is shown
to the receiver only: nothing here returns it to the sender.

A link of another instance takes the cross-instance branch (core/b2b/invitations.py, handshake.py);
a revoke of a cross-instance connection owes the other instance a notice (`peer.revoke_to_send`,
sent by core/b2b/worker.py); what the other instance asks of us is core/b2b/peer_side.py.

Why one module of ~740 lines: every operation checks and changes the same row under the same
account lock, and the states' rules read best side by side. The views (`view`, `peer_view`,
`receiver_listing`) are the part to move out next.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import update
from sqlmodel import Session, and_, col, or_, select

from core import audit, transfers
from core.b2b import landing, mail, tokens
from core.b2b.caller import Caller
from core.config import get_settings
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import EndpointError, clean_path
from core.errors import Conflict, Forbidden, Gone, Invalid, NotFound, Unavailable
from core.models import (
    NAMED_STATES,
    Account,
    Connection,
    ConnectionState,
    DataFlow,
    Peer,
    Receipt,
    Transfer,
    TransferState,
    utcnow,
)
from core.models import Endpoint as EndpointRow
from core.object_names import InvalidName, validate_name
from core.partners import PartnerError, check_email

Direction = Literal["send", "receive"]
DEFAULT_EXPIRY = timedelta(days=7)
MIN_EXPIRY = timedelta(seconds=1)
MAX_EXPIRY = timedelta(days=90)
_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def public_url() -> str:
    """This instance's address as others reach it (the link's base): TRADELANE_PUBLIC_URL when set."""
    return get_settings().public_base_url


def parse_expiry(text: str) -> timedelta:
    """`30m`, `48h`, `7d`, `90s` (1 s … 90 d)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise Invalid(f"--expires {text!r}: use a number with s, m, h or d (30m, 48h, 7d)")
    value = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if not MIN_EXPIRY <= value <= MAX_EXPIRY:
        raise Invalid(f"--expires {text!r}: between 1s and 90d")
    return value


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "?"


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- names --------------------------------------------------------------------------------------


def check_connection_name(name: str) -> str:
    try:
        return validate_name(name)
    except InvalidName:
        raise Invalid(
            f"invalid connection name {name!r}: use letters, digits, '-', '_' or '.' (not starting with '.')"
        ) from None


def check_outbox_name(name: str) -> str:
    try:
        return validate_name(name)
    except InvalidName:
        raise Invalid(
            f"invalid outbox name {name!r}: use letters, digits, '-', '_' or '.' (not starting with '.')"
        ) from None


def _lock_account(session: Session, account_id: int) -> None:
    """Take the account's write lock, so two naming a connection at once go one after the other."""
    session.execute(update(Account).where(col(Account.id) == account_id).values(updated_at=utcnow()))


def _named_in(session: Session, account_id: int) -> list[Connection]:
    return list(
        session.exec(
            select(Connection).where(
                or_(Connection.sender_account_id == account_id, Connection.receiver_account_id == account_id),
                col(Connection.state).in_(NAMED_STATES),
            )
        )
    )


def check_name_free(session: Session, account: Account, name: str, outbox: str | None = None) -> None:
    """A connection name unique across both roles of the account, and an outbox name unique in it."""
    assert account.id is not None
    _lock_account(session, account.id)
    for conn in _named_in(session, account.id):
        mine = side_name(conn, account.id)
        if mine == name:
            raise Conflict(f"account {account.name!r} already has a connection named {name!r}")
        if outbox is not None and conn.sender_account_id == account.id and conn.outbox_name == outbox:
            raise Conflict(
                f"account {account.name!r} already has an outbox named {outbox!r} (connection {mine!r})"
            )


def side_of(conn: Connection, account_id: int) -> Literal["send", "receive"]:
    return "send" if conn.sender_account_id == account_id else "receive"


def side_name(conn: Connection, account_id: int) -> str | None:
    return conn.sender_name if side_of(conn, account_id) == "send" else conn.receiver_name


# -- destination ------------------------------------------------------------------------------


def _dest(session: Session, account: Account, dest: str) -> tuple[EndpointRow, str]:
    """`ENDPOINT[:DIR]` of the account → the endpoint row and the cleaned folder (must exist where
    the store has folders)."""
    endpoint_name, _, folder = dest.partition(":")
    row = session.exec(
        select(EndpointRow).where(
            EndpointRow.account_id == account.id,
            EndpointRow.name == endpoint_name,
            col(EndpointRow.removed_at).is_(None),
        )
    ).first()
    if row is None or row.type == "mailbox":
        raise NotFound(f"no endpoint named {endpoint_name!r} in account {account.name!r}")
    if folder.startswith("/"):
        raise Invalid(f"absolute path not allowed: {folder!r} (DIR is relative to the endpoint's own path)")
    try:
        folder = clean_path(folder, allow_root=True)
    except EndpointError as exc:
        raise Invalid(str(exc)) from None
    try:
        with endpoint_rows.open_row(row) as endpoint:
            exists = endpoint.exists_dir(folder)
    except EndpointError as exc:
        raise Invalid(f"endpoint {endpoint_name!r} cannot be checked right now: {exc}") from None
    if exists is False:
        raise NotFound(f"folder {folder!r} does not exist in endpoint {endpoint_name!r}")
    return row, folder


def dest_label(session: Session, conn: Connection) -> str | None:
    if conn.dest_endpoint_id is None:
        return None
    row = session.get(EndpointRow, conn.dest_endpoint_id)
    name = row.name if row else "?"
    return f"{name}:{conn.dest_dir}" if conn.dest_dir else name


# -- expiry -----------------------------------------------------------------------------------


def expire_due(session: Session, now: datetime | None = None) -> int:
    """Mark pending connections whose invitation ran out `expired` (with an audit row per side)."""
    now = now or utcnow()
    due = session.exec(
        select(Connection).where(
            Connection.state == ConnectionState.pending,
            col(Connection.token_expires_at).is_not(None),
            col(Connection.token_expires_at) < now,
        )
    ).all()
    for conn in due:
        conn.state = ConnectionState.expired
        conn.expired_at = conn.updated_at = now
        session.add(conn)
        _audit_sides(session, conn, "connection.expire", actor="system")
    if due:
        session.flush()
    return len(due)


# -- invite -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invitation:
    connection: Connection
    token: str  # the clear token: shown once, never stored
    link: str


def invite(
    session: Session,
    caller: Caller,
    *,
    name: str,
    direction: Direction,
    email: str,
    outbox: str | None = None,
    dest: str | None = None,
    expires: timedelta = DEFAULT_EXPIRY,
) -> Invitation:
    """A pending connection with the caller's account on the `direction` side, and its token."""
    caller.require_to("connections.manage")
    expire_due(session)
    account = session.get(Account, caller.account_id)
    assert account is not None
    check_connection_name(name)
    try:
        email = check_email(email)
    except PartnerError as exc:
        raise Invalid(exc.message) from None
    if not MIN_EXPIRY <= expires <= MAX_EXPIRY:
        raise Invalid("an invitation expires between 1s and 90d from now")
    conn = Connection(direction=direction, invite_email=email, created_by=caller.actor)
    if direction == "send":
        if outbox is None or dest is not None:
            raise Invalid("an invitation to send files takes --outbox NAME (and no --dest)")
        check_outbox_name(outbox)
        check_name_free(session, account, name, outbox)
        conn.sender_account_id, conn.sender_name, conn.outbox_name = account.id, name, outbox
    else:
        if dest is None or outbox is not None:
            raise Invalid("an invitation to receive files takes --dest ENDPOINT[:DIR] (and no --outbox)")
        check_name_free(session, account, name)
        row, folder = _dest(session, account, dest)
        conn.receiver_account_id, conn.receiver_name = account.id, name
        conn.dest_endpoint_id, conn.dest_dir = row.id, folder
    token = tokens.new_token()
    conn.token_hash = tokens.token_hash(token)
    conn.token_expires_at = utcnow() + expires
    session.add(conn)
    session.flush()
    audit.record(
        session,
        "connection.invite",
        actor=caller.actor,
        account_id=account.id,
        target=f"connection:{conn.id}",
        name=name,
        direction=direction,
        email=email,
        expires_at=conn.token_expires_at.isoformat(),
    )
    return Invitation(conn, token, mail.accept_link(token))


def invitation_mail(session: Session, invitation: Invitation) -> mail.Invitation:
    """What the invitation e-mail says (read now, sent by the caller once its transaction committed:
    a mail for a connection that a failed commit never made would be a lie)."""
    conn = invitation.connection
    inviter = conn.created_by or ""
    assert conn.invite_email is not None and conn.token_expires_at is not None
    return mail.Invitation(
        inviter_account=_inviter_name(session, conn),
        inviter_email=inviter.removeprefix("user:") if inviter.startswith("user:") else None,
        connection_name=_inviter_side_name(conn) or "",
        direction="send" if conn.direction == "send" else "receive",
        recipient=conn.invite_email,
        expires_at=_aware(conn.token_expires_at),
        token=invitation.token,
    )


# -- the token holder: accept, decline --------------------------------------------------------


def token_and_base(text: str) -> tuple[str, str | None]:
    """The token, and the base URL of the instance that issued it when that is not this one (a
    bare token, or a link to this instance's public URL, is local)."""
    token, base = tokens.parse_token_or_link(text)
    if base is None or base.rstrip("/") == public_url():
        return token, None
    return token, base.rstrip("/")


def find_invitation(session: Session, token: str) -> Connection:
    """The connection a usable token invites to; each reason it is not usable has its own message."""
    expire_due(session)
    conn = session.exec(select(Connection).where(Connection.token_hash == tokens.token_hash(token))).first()
    # A row whose inviter is another instance is our half of accepting *its* invitation: no invitation here.
    if conn is None or _inviter_id(conn) is None:
        raise NotFound("no such invitation: check that the link is complete and unchanged")
    inviter = _inviter_name(session, conn)
    if conn.state == ConnectionState.active or conn.accepted_at is not None:
        raise Conflict(f"this invitation was already accepted on {_when(conn.accepted_at)}")
    if conn.state == ConnectionState.declined:
        raise Conflict(f"this invitation was declined on {_when(conn.declined_at)}")
    if conn.state == ConnectionState.revoked:
        raise Gone(f"this invitation was withdrawn by {inviter} on {_when(conn.revoked_at)}")
    if conn.state == ConnectionState.expired:
        raise Gone(f"this invitation expired on {_when(conn.token_expires_at)}; ask {inviter} for a new one")
    return conn


def _inviter_id(conn: Connection) -> int | None:
    return conn.sender_account_id if conn.direction == "send" else conn.receiver_account_id


def _inviter_name(session: Session, conn: Connection) -> str:
    account = session.get(Account, _inviter_id(conn)) if _inviter_id(conn) else None
    if account is None and conn.id is not None:  # the inviter is the other instance
        peer = peer_of(session, conn)
        return (peer.their_account or "the inviter") if peer else "the inviter"
    return account.name if account else "the inviter"


def _use_token(session: Session, conn: Connection, state: ConnectionState) -> None:
    """Single use: only the first of two accepts (or declines) racing for a token changes it."""
    now = utcnow()
    done = session.execute(
        update(Connection)
        .where(
            col(Connection.id) == conn.id,
            col(Connection.token_used_at).is_(None),
            col(Connection.state) == ConnectionState.pending.value,
        )
        .values(token_used_at=now, state=state.value, updated_at=now)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("this invitation was already used")
    session.refresh(conn)


def accept_here(
    session: Session,
    caller: Caller,
    token: str,
    *,
    name: str,
    dest: str | None = None,
    outbox: str | None = None,
) -> Connection:
    """Accept an invitation of another account on this instance: active on return. (A link of
    either instance is taken by `core.b2b.invitations.accept`, which calls this for ours.)"""
    caller.require_to("connections.manage")
    conn = find_invitation(session, token)
    if _inviter_id(conn) == caller.account_id:
        raise Forbidden(
            f"an account cannot accept its own invitation (connection {_inviter_side_name(conn)!r} "
            f"was created by {caller.account_name})"
        )
    account = session.get(Account, caller.account_id)
    assert account is not None and account.id is not None
    check_connection_name(name)
    if conn.direction == "receive":
        dest_row = session.get(EndpointRow, conn.dest_endpoint_id) if conn.dest_endpoint_id else None
        if dest_row is None or dest_row.removed_at is not None:
            raise Conflict(
                f"the receiving side removed where files would land; ask {_inviter_name(session, conn)} "
                "for a new invitation"
            )
    if conn.direction == "send":  # the inviter sends: the accepter receives
        if dest is None or outbox is not None:
            raise Invalid(
                "this invitation asks you to receive files: give --dest ENDPOINT[:DIR], not --outbox"
            )
        check_name_free(session, account, name)
        row, folder = _dest(session, account, dest)
        conn.receiver_account_id, conn.receiver_name = account.id, name
        conn.dest_endpoint_id, conn.dest_dir = row.id, folder
    else:
        if outbox is None or dest is not None:
            raise Invalid("this invitation asks you to send files: give --outbox NAME, not --dest")
        check_outbox_name(outbox)
        check_name_free(session, account, name, outbox)
        conn.sender_account_id, conn.sender_name, conn.outbox_name = account.id, name, outbox
    _use_token(session, conn, ConnectionState.active)
    conn.accepted_at = conn.updated_at = utcnow()
    conn.accepted_by = caller.actor
    session.add(conn)
    session.flush()
    _activate(session, conn)
    for side in _local_sides(conn):
        audit.record(
            session,
            "connection.accept",
            actor=caller.actor,
            account_id=side,
            target=f"connection:{conn.id}",
            name=side_name(conn, side),
            **({"dest": dest_label(session, conn)} if side == conn.receiver_account_id else {}),
        )
    return conn


def _inviter_side_name(conn: Connection) -> str | None:
    return conn.sender_name if conn.direction == "send" else conn.receiver_name


def decline_here(session: Session, token: str, actor: str = "cli") -> Connection:
    """The token holder says no to an invitation of this instance: the connection is declined (the
    token is the authority)."""
    conn = find_invitation(session, token)
    _use_token(session, conn, ConnectionState.declined)
    conn.declined_at = conn.updated_at = utcnow()
    session.add(conn)
    _audit_sides(session, conn, "connection.decline", actor=actor)
    return conn


def _activate(session: Session, conn: Connection) -> None:
    """Entering active: the local data flow that carries its files - the receiver's landing flow,
    or, when the receiver is the other instance, the sender's push flow - and the held files
    released into it."""
    if conn.receiver_account_id is None:  # we send to a peer
        from core.b2b import push_flow

        flow = push_flow.create_flow(session, conn)
    else:
        flow = landing.create_flow(session, conn)
    if flow is None:  # no push flow yet (see core/b2b/push_flow.py): files stay held
        return
    conn.data_flow_id = flow.id
    session.add(conn)
    session.flush()
    release_held(session, conn.id)


def peer_of(session: Session, conn: Connection) -> Peer | None:
    """The other instance of a cross-instance connection (None on one instance)."""
    return session.exec(select(Peer).where(Peer.connection_id == conn.id)).first()


def release_held(session: Session, connection_id: int | None = None) -> int:
    """Give each held receipt of an active connection its pending transfer (the dispatcher's sweep
    runs this too, for a file committed held in the instant its connection became active)."""
    query = (
        select(Receipt, Connection)
        .join(Connection, col(Connection.id) == Receipt.connection_id)
        .where(Receipt.held == True, Connection.state == ConnectionState.active)  # noqa: E712
    )
    if connection_id is not None:
        query = query.where(Connection.id == connection_id)
    released = 0
    for receipt, conn in session.exec(query).all():
        if conn.data_flow_id is None:
            continue
        assert receipt.id is not None
        # Guarded: whoever clears `held` first gives the file its one transfer.
        guarded = update(Receipt).where(col(Receipt.id) == receipt.id, col(Receipt.held).is_(True))
        cleared = session.execute(guarded.values(held=False))
        if cleared.rowcount != 1:  # type: ignore[attr-defined]
            continue
        transfers.new_pending(session, receipt.id, conn.data_flow_id)
        released += 1
    if released:
        session.flush()
    return released


# -- either side ------------------------------------------------------------------------------


def _local_sides(conn: Connection) -> list[int]:
    return [a for a in (conn.sender_account_id, conn.receiver_account_id) if a is not None]


def _audit_sides(session: Session, conn: Connection, action: str, *, actor: str, **detail: Any) -> None:
    """One audit row per local side, so each account's trail holds its own history."""
    for side in _local_sides(conn):
        audit.record(session, action, actor=actor, account_id=side, target=f"connection:{conn.id}", **detail)


def visible_to(session: Session, caller: Caller) -> list[Connection]:
    """The caller's account's connections (either side), newest first."""
    expire_due(session)
    return list(
        session.exec(
            select(Connection)
            .where(
                or_(
                    Connection.sender_account_id == caller.account_id,
                    Connection.receiver_account_id == caller.account_id,
                )
            )
            .order_by(col(Connection.id).desc())
        )
    )


def require(session: Session, caller: Caller, ref: str | int) -> Connection:
    """The caller's connection named `ref` (its own name for it) or with that id; 404 otherwise,
    also for another account's connection (its existence is not revealed)."""
    text = str(ref).strip()
    candidates = visible_to(session, caller)
    for conn in candidates:
        if side_name(conn, caller.account_id) == text and conn.state in NAMED_STATES:
            return conn
    if text.isdigit():
        for conn in candidates:
            if conn.id == int(text):
                return conn
    for conn in candidates:  # a name of a connection that ended (declined, expired)
        if side_name(conn, caller.account_id) == text:
            return conn
    raise NotFound(f"no connection {text!r} in account {caller.account_name!r}")


def set_view(session: Session, caller: Caller, ref: str | int, allow: bool) -> Connection:
    """The receiver lets the sender list its folder through the connection (or stops it)."""
    caller.require_to("connections.manage")
    conn = require(session, caller, ref)
    if side_of(conn, caller.account_id) != "receive":
        raise Forbidden("only the receiving side decides whether the sender may view its folder")
    if conn.state not in (ConnectionState.pending, ConnectionState.active):
        raise Conflict(f"connection {side_name(conn, caller.account_id)!r} is {conn.state}")
    if conn.allow_sender_view != allow:
        conn.allow_sender_view = allow
        conn.view_changed_at = conn.updated_at = utcnow()
        conn.view_changed_by = caller.actor
        session.add(conn)
        _audit_sides(session, conn, "connection.view", actor=caller.actor, on=allow)
    return conn


def revoke(session: Session, caller: Caller, ref: str | int) -> Connection:
    """Either side's admin ends the connection: its landing flow stops, files not yet started fail
    ("revoked before delivery"), the outbox refuses new files. Final."""
    caller.require_to("connections.manage")
    conn = require(session, caller, ref)
    label = side_name(conn, caller.account_id)
    if conn.state in (ConnectionState.revoked, ConnectionState.declined, ConnectionState.expired):
        raise Conflict(f"connection {label!r} is already {conn.state}")
    side = "sender" if side_of(conn, caller.account_id) == "send" else "receiver"
    end(session, conn, actor=caller.actor, side=side)
    peer = peer_of(session, conn)
    if peer is not None and peer.their_connection_uid is not None:
        # The other instance is told by the peer worker (core/b2b/worker.py), with retries.
        peer.revoke_to_send = True
        peer.notice_attempts = 0
        peer.next_notice_at = peer.updated_at = utcnow()
        session.add(peer)
    return conn


def end(session: Session, conn: Connection, *, actor: str, side: str) -> None:
    """Revoke `conn` (by `side`, "sender" or "receiver"): its flow stops, files not yet started fail."""
    now = utcnow()
    conn.state = ConnectionState.revoked
    conn.revoked_at = conn.updated_at = now
    conn.revoked_by = actor
    conn.revoked_side = side
    session.add(conn)
    if conn.data_flow_id is not None:
        flow = session.get(DataFlow, conn.data_flow_id)
        if flow is not None:
            flow.enabled = False
            flow.updated_at = now
            session.add(flow)
        not_started = or_(
            and_(Transfer.state == TransferState.pending, col(Transfer.flow_run_id).is_(None)),
            Transfer.state == TransferState.waiting,  # the destination was away: no run holds it
        )
        waiting = session.exec(
            select(Transfer).where(Transfer.data_flow_id == conn.data_flow_id, not_started)
        ).all()
        for transfer in waiting:
            transfer.state = TransferState.failed
            transfer.error = "connection revoked before delivery"
            transfer.error_kind = "revoked"
            transfer.next_attempt_at = None
            transfer.finished_at = transfer.updated_at = now
            session.add(transfer)
    _audit_sides(session, conn, "connection.revoke", actor=actor, side=side)


# -- sending ------------------------------------------------------------------------------------


def check_can_send(session: Session, caller: Caller, conn: Connection) -> None:
    """`connect send` / POST …/files: the sender's side, an active connection."""
    caller.require_to("connections.send")
    label = side_name(conn, caller.account_id)
    if side_of(conn, caller.account_id) != "send":
        raise Forbidden("only the sending side sends files")
    if conn.state == ConnectionState.pending:
        other = _other_name(session, conn, caller.account_id) or "the receiver"
        hint = (
            f"; put them into the outbox b2b/{conn.outbox_name}/ to have them held until it is active"
            if conn.outbox_name
            else ""
        )
        raise Conflict(
            f"connection {label!r} is pending ({other} has not accepted yet): files sent from the "
            f"connection are refused{hint}"
        )
    if conn.state == ConnectionState.revoked:
        raise Conflict(f"connection {label!r} was revoked on {_when(conn.revoked_at)}")
    if conn.state != ConnectionState.active:
        raise Conflict(f"connection {label!r} was {conn.state}; it sends nothing")


def check_can_receive(session: Session, connection_id: int) -> Connection:
    """An outbox write (at its start and at its commit): pending (held) or active."""
    expire_due(session)
    conn = session.get(Connection, connection_id)
    if conn is None or conn.state in (ConnectionState.declined, ConnectionState.expired):
        raise NotFound("no such folder")
    if conn.state == ConnectionState.revoked:
        raise Forbidden(
            f"connection {conn.sender_name!r} was revoked on {_when(conn.revoked_at)}; "
            "the outbox no longer sends"
        )
    return conn


def _other_name(session: Session, conn: Connection, account_id: int) -> str | None:
    other = conn.receiver_account_id if side_of(conn, account_id) == "send" else conn.sender_account_id
    if other is None:  # the other side is another instance: its account's name, as it told us
        peer = peer_of(session, conn)
        return peer.their_account if peer else None
    account = session.get(Account, other)
    return account.name if account else None


def peer_view(peer: Peer) -> dict[str, object]:
    """What a side shows of the other instance: its address and account, and whether it answers."""
    from core.b2b.peer_client import host_of

    return {
        "url": peer.base_url,
        "host": host_of(peer.base_url),
        "account": peer.their_account,
        "reachable": peer.reachable,
        "last_error": peer.last_error,
        "checked_at": _aware(peer.checked_at).isoformat() if peer.checked_at else None,
    }


# -- what each side sees ----------------------------------------------------------------------


def state_text(conn: Connection) -> str:
    if conn.state == ConnectionState.pending:
        return f"pending — invited {conn.invite_email}, expires {_when(conn.token_expires_at)}"
    if conn.state == ConnectionState.revoked:
        return f"revoked {_when(conn.revoked_at)} by the {conn.revoked_side}"
    return str(conn.state)


def view(session: Session, caller: Caller, conn: Connection) -> dict[str, object]:
    """The connection as the caller's side sees it; `dest` only in the receiver's answer."""
    side = side_of(conn, caller.account_id)
    item: dict[str, object] = {
        "id": conn.id,
        "name": side_name(conn, caller.account_id),
        "role": side,
        "with": _other_name(session, conn, caller.account_id),
        "state": conn.state,
        "state_text": state_text(conn),
        "invited_by": _inviter_name(session, conn),
        "email": conn.invite_email,
        "outbox": conn.outbox_name if side == "send" else None,
        "allow_sender_view": conn.allow_sender_view,
        "created_at": _aware(conn.created_at).isoformat(),
        "expires_at": _aware(conn.token_expires_at).isoformat()
        if conn.token_expires_at and conn.state == ConnectionState.pending
        else None,
        "accepted_at": _aware(conn.accepted_at).isoformat() if conn.accepted_at else None,
        "revoked_at": _aware(conn.revoked_at).isoformat() if conn.revoked_at else None,
        "peer": None,
    }
    peer = peer_of(session, conn)
    if peer is not None:
        shown = peer_view(peer)
        item["with"] = f"peer {shown['host']}"
        item["peer"] = shown
    if side == "receive":
        item["dest"] = dest_label(session, conn)
        item["data_flow"] = landing.flow_name(conn)
    return item


@dataclass(frozen=True)
class Listed:
    name: str
    size: int
    modified: datetime


def receiver_listing(session: Session, caller: Caller, ref: str | int) -> list[Listed]:
    """The receiver's folder, names/sizes/times only; for the sender only with allow-view on.

    Across instances the sender asks the receiving instance (signed), which applies its own
    allow-view; the answer carries names, sizes and times, never where the folder is."""
    conn = require(session, caller, ref)
    label = side_name(conn, caller.account_id)
    sender = side_of(conn, caller.account_id) == "send"
    peer = peer_of(session, conn) if sender else None
    if peer is not None:
        if conn.state != ConnectionState.active:
            raise Conflict(f"connection {label!r} is {conn.state}: there is no folder to list")
        return _listing_of_peer(peer)
    if sender and not conn.allow_sender_view:
        other = _other_name(session, conn, caller.account_id)
        raise Forbidden(f"{other} has not allowed viewing its folder for connection {label!r}")
    if conn.state != ConnectionState.active or conn.dest_endpoint_id is None:
        raise Conflict(f"connection {label!r} is {conn.state}: there is no folder to list")
    try:
        return receiver_folder(session, conn)
    except EndpointError as exc:
        if sender:
            raise Unavailable("the receiver's storage cannot be listed right now") from None
        raise Invalid(f"the folder cannot be listed: {exc}") from None


def receiver_folder(session: Session, conn: Connection) -> list[Listed]:
    """What is in the receiving folder (EndpointError when it cannot be listed); no checks."""
    row = session.get(EndpointRow, conn.dest_endpoint_id) if conn.dest_endpoint_id else None
    if row is None or row.removed_at is not None:
        raise EndpointError("the receiving endpoint was removed")
    with endpoint_rows.open_row(row) as endpoint:
        return [Listed(info.name, info.size, info.modified) for info in endpoint.list(conn.dest_dir or "")]


def _listing_of_peer(peer: Peer) -> list[Listed]:
    """The receiving instance's listing; its refusal (403 without the view) keeps its own words."""
    from core.b2b import keys, peer_client

    answer = peer_client.list_files(peer_client.PeerTarget(peer.base_url, keys.our_key(peer)))
    files = answer.get("files")
    if not isinstance(files, list):
        raise Unavailable("the other instance answered something that is not a listing")
    try:
        return [
            Listed(str(f["name"]), int(f["size"]), datetime.fromisoformat(str(f["modified"]))) for f in files
        ]
    except (KeyError, TypeError, ValueError):
        raise Unavailable("the other instance answered something that is not a listing") from None

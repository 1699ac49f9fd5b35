"""Partners: the mailbox logins an account gives its trading partners, from added to removed.

A partner's files live in its home, `<mailbox_root>/<account>/<name>` (`upload/`, `download/`), and
its unfinished SFTP/FTP uploads in `<mailbox_root>/.partial/<account>/<name>` (`core.mailbox.layout`);
every function takes the caller's `Scope` (core/tenancy.py) and sees only that account's partners. Both
are keyed by name, so the name must never lead a new partner to an old one's files
(`core.mailbox.homes`):

* `remove` moves both out of reach, into `<mailbox_root>/.removed/partner-<id>/` (a dot-folder no
  partner path can name), or deletes them with `purge=True`. Receipts that still point into the
  home are re-pointed, so the removed partner's transfers can still be carried and replayed.
* `add` always starts with empty folders: anything already at the new partner's paths (left by a
  crash, or put there by hand) is moved aside into `<mailbox_root>/.removed/`, never adopted.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, literal, update
from sqlmodel import Session, col, select

from core import audit, concurrency_limits, object_names
from core.crypto import hash_password
from core.errors import Conflict, Invalid, NotFound, said
from core.login import network_allowed
from core.logins import LoginNameError, check_login_name
from core.mailbox import homes, layout
from core.mailbox.layout import FOLDERS
from core.models import (
    OPEN_STATES,
    As2Partner,
    DataFlow,
    Endpoint,
    Partner,
    Receipt,
    Transfer,
    utcnow,
)
from core.passwords import check_password
from core.tenancy import Scope

__all__ = ["FOLDERS", "NoSuchPartner", "PartnerError", "PartnerExists", "PartnerInUse", "network_allowed"]

_REMOVED_NAME = re.compile(r".*\.removed\.\d+$")


class PartnerError(Invalid):
    """A partner cannot be created, found or changed as asked (400, or its subclass's status)."""


class NoSuchPartner(PartnerError, NotFound):
    """No partner of that name in the scope's account (404)."""

    status = NotFound.status


class PartnerExists(PartnerError, Conflict):
    """The name is taken (409)."""

    status = Conflict.status


class PartnerInUse(PartnerError, Conflict):
    """Data flows or AS2 profiles still use the partner, or its files still wait; the message names them."""

    status = Conflict.status


def validate_name(name: str) -> str:
    """A partner's name follows the rule of every name (`core.object_names`); refused, a PartnerError."""
    try:
        return object_names.validate_name(name)
    except object_names.InvalidName as exc:
        raise PartnerError(str(exc)) from None


def get(session: Session, scope: Scope, name: str) -> Partner | None:
    """The scope's account's partner of that name (a removed one too, under its freed name)."""
    return session.exec(
        select(Partner).where(Partner.account_id == scope.account_id, Partner.name == name)
    ).first()


def require(session: Session, scope: Scope, name: str) -> Partner:
    partner = get(session, scope, name)
    if partner is None or partner.removed_at is not None:
        raise NoSuchPartner(f"no partner named {name!r}")
    return partner


def add(
    session: Session,
    scope: Scope,
    name: str,
    *,
    password: str | None = None,
    ssh_public_keys: list[str] | None = None,
    email: str | None = None,
) -> Partner:
    scope.require_to("partners.change")
    account_id = scope.account_id
    actor = scope.actor
    validate_name(name)
    if name.startswith("_"):
        raise PartnerError(f"partner names starting with '_' are reserved: {name!r}")
    if get(session, scope, name) is not None:
        raise PartnerExists(f"partner {name!r} already exists")
    try:
        check_login_name(session, name, "partner")  # a login name: unique on the whole instance
    except LoginNameError as exc:  # taken (409) or malformed (400)
        raise (PartnerExists if isinstance(exc, Conflict) else PartnerError)(said(exc)) from None
    partner = Partner(
        account_id=account_id,
        name=name,
        password_hash=hash_password(check_password(password, name)) if password else None,
        ssh_public_keys=[check_public_key(k) for k in ssh_public_keys or []],
        email=check_email(email) if email else None,
    )
    session.add(partner)
    session.flush()
    set_aside = homes.make(scope.account_name, name)
    stale = _detach_stale_mailbox_endpoint(session, scope, name)
    audit.record(
        session,
        "partner.add",
        actor=actor,
        account_id=account_id,
        target=name,
        set_aside=[str(p) for p in set_aside],
        flows_disabled=stale,
    )
    return partner


def _detach_stale_mailbox_endpoint(session: Session, scope: Scope, name: str) -> list[str]:
    """A `mailbox:NAME` endpoint left by a partner removed before removal detached it (store
    revision 0007) still names NAME: its flows must not deliver to the new partner. Detach it and
    disable them; the operator points them at the new partner on purpose (`flow set --dest`)."""
    from core.endpoints import rows as endpoint_rows

    if endpoint_rows.get(session, scope, f"mailbox:{name}") is None:
        return []
    return endpoint_rows.remove(session, scope, f"mailbox:{name}", force=True)


def _may_change(scope: Scope, partner: Partner) -> None:
    """Refuse a change to a partner row the scope may not change (another account's is not found)."""
    scope.require_to("partners.change")
    if partner.account_id != scope.account_id:
        raise NoSuchPartner(f"no partner named {partner.name!r}")


def set_password(session: Session, scope: Scope, partner: Partner, password: str) -> None:
    """A new password (checked by the policy); the partner's sessions and tokens end."""
    _may_change(scope, partner)
    actor = scope.actor
    partner.password_hash = hash_password(check_password(password, partner.name))
    partner.sessions_ended_at = utcnow()
    session.add(partner)
    audit.record(session, "partner.password", actor=actor, account_id=partner.account_id, target=partner.name)


# -- settings -------------------------------------------------------------------------------------

UNCHANGED: Any = object()


def check_networks(networks: list[str]) -> list[str]:
    """CIDRs (or single addresses), normalised; PartnerError naming a bad one."""
    cleaned = []
    for net in networks:
        try:
            cleaned.append(str(ipaddress.ip_network(str(net).strip(), strict=False)))
        except ValueError:
            raise PartnerError(f"not an IP network: {net!r} (e.g. 203.0.113.0/24 or 2001:db8::/48)") from None
    return list(dict.fromkeys(cleaned))


def check_email(email: str) -> str:
    email = email.strip()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email) or len(email) > 254:
        raise PartnerError(f"not an email address: {email!r}")
    return email


@dataclass
class Changes:
    """What `configure` changed, in words for the operator."""

    said: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.said)


def configure(
    session: Session,
    scope: Scope,
    partner: Partner,
    *,
    password: str | None = None,
    email: str | None = UNCHANGED,
    allowed_networks: list[str] | None = None,
    max_file_bytes: int | None = UNCHANGED,
    max_sessions: int | None = UNCHANGED,
    max_concurrent: int | str | None = UNCHANGED,
    enabled: bool | None = None,
    can_delete_downloads: bool | None = None,
    contact_emails: str | None = UNCHANGED,
    tell_rejected: bool | None = None,
    tell_downloads: bool | None = None,
) -> Changes:
    """Change a partner's settings; each takes effect on the next login (or at once, see below).

    Disabling ends the partner's sessions and tokens within seconds; so does a new password, and
    an allow-list ends the sessions from addresses it no longer holds.
    """
    _may_change(scope, partner)
    actor = scope.actor
    changes = Changes()
    before: dict[str, Any] = {}
    if allowed_networks is not None:
        nets = check_networks(allowed_networks)
        if nets != partner.allowed_networks:
            before["allowed_networks"] = partner.allowed_networks
            partner.allowed_networks = nets
            changes.said.append(f"allow-list: {', '.join(nets) or 'anywhere'}")
    if max_file_bytes is not UNCHANGED and max_file_bytes != partner.max_file_bytes:
        if max_file_bytes is not None and max_file_bytes < 1:
            raise PartnerError("the file-size limit must be at least 1 byte")
        before["max_file_bytes"] = partner.max_file_bytes
        partner.max_file_bytes = max_file_bytes
        changes.said.append(f"largest file: {max_file_bytes or 'the server default'} bytes")
    if max_sessions is not UNCHANGED and max_sessions != partner.max_connections:
        if max_sessions is not None and max_sessions < 1:
            raise PartnerError("the session limit must be at least 1")
        before["max_sessions"] = partner.max_connections
        partner.max_connections = max_sessions
        changes.said.append(f"sessions at once: {max_sessions or 'the server default'}")
    if max_concurrent is not UNCHANGED:
        limit = concurrency_limits.parse(max_concurrent)
        if limit != partner.max_concurrent:
            before["max_concurrent"] = partner.max_concurrent
            partner.max_concurrent = limit
            changes.said.append(f"files carried at once: {concurrency_limits.describe(limit)}")
    if email is not UNCHANGED and email != partner.email:
        partner.email = check_email(email) if email else None
        changes.said.append(f"email: {partner.email or '-'}")
    if contact_emails is not UNCHANGED and contact_emails != partner.contact_emails:
        from core.notify.channels import check_addresses

        partner.contact_emails = ",".join(check_addresses(contact_emails)) if contact_emails else None
        changes.said.append(f"contact e-mails: {partner.contact_emails or '-'}")
    if tell_rejected is not None and tell_rejected != partner.tell_rejected:
        if tell_rejected and not partner.contact_emails:
            raise PartnerError("--tell-rejected needs a --contact-email to tell")
        partner.tell_rejected = tell_rejected
        changes.said.append("contacts told of rejected uploads" if tell_rejected else "contacts not told")
    if tell_downloads is not None and tell_downloads != partner.tell_downloads:
        if tell_downloads and not partner.contact_emails:
            raise PartnerError("--tell-downloads needs a --contact-email to tell")
        partner.tell_downloads = tell_downloads
        changes.said.append(
            "contacts told of files waiting in download/"
            if tell_downloads
            else "contacts not told of files waiting in download/"
        )
    if not partner.contact_emails and (partner.tell_rejected or partner.tell_downloads):
        # Clearing the contacts of a partner that is told would leave its notices addressed to no one.
        raise PartnerError(
            "the contacts are told of notices: turn --no-tell-rejected/--no-tell-downloads first"
        )
    if can_delete_downloads is not None and can_delete_downloads != partner.can_delete_downloads:
        partner.can_delete_downloads = can_delete_downloads
        changes.said.append("may delete downloads" if can_delete_downloads else "may not delete downloads")
    if enabled is not None and enabled != partner.enabled:
        partner.enabled = enabled
        if not enabled:
            partner.sessions_ended_at = utcnow()
        changes.said.append("enabled" if enabled else "disabled (its sessions end)")
    session.add(partner)
    if password:
        set_password(session, scope, partner, password)
        changes.said.append("password changed (its sessions end)")
    if changes:
        audit.record(
            session,
            "partner.set",
            actor=actor,
            account_id=partner.account_id,
            target=partner.name,
            changes=[c for c in changes.said if not c.startswith("password")],
            password=bool(password),
            before=before,
        )
    return changes


def unlock(session: Session, scope: Scope, name: str) -> bool:
    """Lift a lock set on distributed evidence of password guessing; True if the partner was locked."""
    from core.login import unlock as lift

    scope.require_to("partners.change")
    return lift(session, require(session, scope, name), actor=scope.actor)


# -- removal --------------------------------------------------------------------------------------


@dataclass
class Removal:
    """What `remove` did, for the operator."""

    name: str
    flows_disabled: list[str] = field(default_factory=list)
    as2_disabled: list[str] = field(default_factory=list)
    files: Path | None = None  # where its files were kept; None when purged or there were none
    purged: bool = False


def mailbox_endpoints(session: Session, partner: Partner) -> list[Endpoint]:
    """The `mailbox:NAME` endpoints that deliver into this partner's download/."""
    rows = session.exec(
        select(Endpoint).where(
            Endpoint.account_id == partner.account_id,
            Endpoint.type == "mailbox",
            col(Endpoint.removed_at).is_(None),
        )
    )
    return [row for row in rows if row.config.get("partner") == partner.name]


def users(session: Session, partner: Partner) -> tuple[list[DataFlow], list[As2Partner]]:
    """Data flows that take from or deliver to the partner, and AS2 profiles that deliver into it."""
    endpoint_ids = [e.id for e in mailbox_endpoints(session, partner)]
    flows = session.exec(
        select(DataFlow)
        .where(
            DataFlow.account_id == partner.account_id,
            col(DataFlow.removed_at).is_(None),
            (col(DataFlow.source_partner_id) == partner.id)
            | col(DataFlow.dest_endpoint_id).in_(endpoint_ids),
        )
        .order_by(DataFlow.name)
    ).all()
    profiles = session.exec(
        select(As2Partner).where(As2Partner.partner_id == partner.id).order_by(As2Partner.as2_id)
    ).all()
    return list(flows), list(profiles)


def remove(session: Session, scope: Scope, name: str, *, purge: bool = False, force: bool = False) -> Removal:
    """Disable the login, free the name, and put the partner's files out of every new partner's reach.

    Refused while data flows or AS2 profiles use the partner, naming them, unless `force`: they are
    then disabled (and a disabled flow delivering into its mailbox cannot be enabled again). With
    `purge` its files are deleted instead of kept (refused while its uploads wait to be carried).
    """
    scope.require_to("partners.purge" if purge else "partners.change")
    actor = scope.actor
    partner = require(session, scope, name)
    assert partner.id is not None
    flows, profiles = users(session, partner)
    active_profiles = [p for p in profiles if p.enabled]
    if (flows or active_profiles) and not force:
        used_by = [f"data flow {f.name}" for f in flows] + [
            f"AS2 partner {p.as2_id}" for p in active_profiles
        ]
        raise PartnerInUse(
            f"partner {name!r} is used by {', '.join(used_by)}: remove or change them first "
            "(tradelane flow remove|set), or pass --force to disable them"
        )
    home_prefix = f"{layout.home_relative(scope.account_name, name)}/"
    if purge:
        waiting = _waiting_in_home(session, partner.id, home_prefix)
        if waiting:
            raise PartnerInUse(
                f"{waiting} transfer(s) of files {name!r} sent are still pending or running; wait for "
                "them, or remove without --purge (its files are then kept out of reach)"
            )
    from core.flow_disable import disable_all

    now = utcnow()
    removal = Removal(name=name, purged=purge)
    removal.flows_disabled = disable_all(
        session, flows, reason=f"partner {name} removed", actor=actor, now=now
    )
    for profile in active_profiles:
        profile.enabled = False
        profile.updated_at = now
        session.add(profile)
        removal.as2_disabled.append(profile.as2_id)
    new_name = f"{name}.removed.{partner.id}"
    for endpoint in mailbox_endpoints(session, partner):
        in_use = any(f.dest_endpoint_id == endpoint.id for f in flows)
        if in_use:  # kept for the disabled flows' history, pointing at no partner anyone can have
            endpoint.name = f"mailbox:{new_name}"
            endpoint.config = {**endpoint.config, "partner": new_name}
            endpoint.removed_at = now
            session.add(endpoint)
        else:
            session.delete(endpoint)
    # Keep the row (receipts and transfers point at it) but free the name and end the login.
    partner.enabled = False
    partner.removed_at = now
    partner.sessions_ended_at = now
    partner.name = new_name
    partner.password_hash = None
    partner.ssh_public_keys = []
    session.add(partner)
    session.flush()
    removal.files = homes.retire(scope.account_name, name, partner.id, purge)
    if removal.files is not None:
        kept = removal.files.relative_to(layout.root()).as_posix()
        # Receipts whose bytes are still in the home follow them, so transfers and replays find them.
        moved = literal(f"{kept}/") + func.substr(Receipt.storage_path, len(home_prefix) + 1)
        session.exec(
            update(Receipt)
            .where(
                col(Receipt.partner_id) == partner.id,
                col(Receipt.storage_path).startswith(home_prefix, autoescape=True),
            )
            .values(storage_path=moved)
        )
    audit.record(
        session,
        "partner.remove",
        actor=actor,
        account_id=partner.account_id,
        target=name,
        flows_disabled=removal.flows_disabled,
        as2_disabled=removal.as2_disabled,
        files=str(removal.files) if removal.files else None,
        purged=purge,
    )
    return removal


def _waiting_in_home(session: Session, partner_id: int, home_prefix: str) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(Transfer)
            .join(Receipt, col(Receipt.id) == Transfer.receipt_id)
            .where(
                Receipt.partner_id == partner_id,
                col(Receipt.storage_path).startswith(home_prefix, autoescape=True),
                col(Transfer.state).in_(OPEN_STATES),  # waiting ones too: their files are still to go
            )
        ).one()
    )


def list_all(session: Session, scope: Scope) -> list[Partner]:
    """Every partner of the account that was not removed (disabled ones too), by name."""
    return list(
        session.exec(
            select(Partner)
            .where(Partner.account_id == scope.account_id, col(Partner.removed_at).is_(None))
            .order_by(Partner.name)
        )
    )


KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)


def check_public_key(line: str) -> str:
    """A normalised OpenSSH public key line ("TYPE BASE64 [comment]"), or PartnerError."""
    import base64
    import binascii

    parts = line.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise PartnerError(f"not an OpenSSH public key of a known type ({', '.join(KEY_TYPES)})")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PartnerError("the public key's base64 does not decode") from exc
    # The blob starts with its own type name; a mismatch means a pasted or corrupted key.
    if blob[4 : 4 + len(parts[0])] != parts[0].encode():
        raise PartnerError("the public key's type does not match its contents")
    return " ".join(parts)


def add_key(session: Session, scope: Scope, name: str, line: str) -> Partner:
    scope.require_to("partners.change")
    actor = scope.actor
    partner = require(session, scope, name)
    key = check_public_key(line)
    blobs = {k.split()[1] for k in partner.ssh_public_keys}
    if key.split()[1] in blobs:
        raise PartnerExists("that key is already on this partner")
    partner.ssh_public_keys = [*partner.ssh_public_keys, key]
    session.add(partner)
    audit.record(
        session,
        "partner.key.add",
        actor=actor,
        account_id=partner.account_id,
        target=name,
        key_type=key.split()[0],
    )
    return partner


def remove_key(session: Session, scope: Scope, name: str, index: int) -> None:
    scope.require_to("partners.change")
    actor = scope.actor
    partner = require(session, scope, name)
    keys = list(partner.ssh_public_keys)
    if not 1 <= index <= len(keys):
        raise PartnerError(f"{name} has {len(keys)} keys; give a number from `partner key list`")
    keys.pop(index - 1)
    partner.ssh_public_keys = keys
    partner.sessions_ended_at = utcnow()  # a session opened with that key ends
    session.add(partner)
    audit.record(session, "partner.key.remove", actor=actor, account_id=partner.account_id, target=name)

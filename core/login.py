"""The one login policy: every door (REST, SFTP, FTP, and the portal to come) calls it.

One attempt, in order:

1. **Address ban.** A source address that failed `lockout_failures` times within
   `lockout_window_seconds` is refused every login for `lockout_cooldown_seconds`, whatever user
   it tries (SFTPGo's "defender" does the same). A guesser is stopped where it stands, and a
   partner's own logins from elsewhere go on: five bad logins from one address no longer lock the
   partner out everywhere.
2. **Credentials**: the password (argon2; a dummy hash when the user does not exist, so timing
   tells nothing) or one of the partner's SSH keys.
3. **The account**: enabled, not removed, not locked, and the address in its allow-list. A locked
   or disabled account, or an address outside the allow-list, is refused with the same answer as
   a wrong password.

A failure is one `LoginFailure` row. The account is locked only on *distributed* evidence:
`lockout_account_failures` failures for it within the window from at least
`lockout_account_addresses` distinct addresses lock it for `lockout_account_seconds` (and end its
sessions); `tradelane partner unlock NAME` lifts it at once. IPv6 addresses count per /64, so one
host cannot pose as many. The ledger lives in the store, not in process memory, so the CLI's
unlock reaches a running `tradelane up` and several API processes share one ledger.

Cost: a successful login is one indexed query for a ban, one for the partner, and the audit row;
failures pay for the counting.

Why ~520 lines in one module: it is the one login policy every door calls; its steps share one
ledger and one order, which a reader should see in one place.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, Protocol

from sqlalchemy import delete, distinct, func
from sqlmodel import Session, col, select

from core import audit
from core.config import Settings, get_settings
from core.crypto import verify_password
from core.db import session_scope
from core.logins import find_login
from core.models import AccountUser, AddressBan, LoginFailure, Partner, utcnow

# A login of either kind: a partner (mailbox) or an account user (e-mail address). Both rows carry
# what the policy reads: password_hash, enabled, locked_until, sessions_ended_at, removed_at,
# allowed_networks, account_id, name.
Login = Partner | AccountUser

# Verified against when the user does not exist (or has no password), so timing reveals nothing.
# A literal, not hashed at import: hashing costs a third of a second of every process that imports
# this (each CLI command, each of `up`'s processes). It has the parameters of every new hash
# (tests/test_login_dummy_hash.py), so verifying against it costs what verifying a real one does.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$1f3ZlEaknQjMHCesEd/76A$ur8okB+hE6BlKoQtCKmhWwuyfpUk5uYMa9qMuF4/De4"
)
WRONG_CREDENTIALS = "wrong user name or password"
KEY_NOT_ACCEPTED = "public key not accepted"


class LoginRefused(Exception):
    """A login that must not proceed. `reason` is for logs and audit, never shown to the client.

    Clients are told apart only one thing: a banned address (`banned_for` > 0, seconds left), which
    says nothing about any user. Everything else reads as a wrong password.
    """

    def __init__(self, reason: str, *, banned_for: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.banned_for = banned_for


class LoginBusy(LoginRefused):
    """Too many password checks at once in this process: refused without a check, so neither a
    failure nor a strike is recorded (a guesser's flood must not lock its victims out). Doors
    answer "busy, try again" (REST 503 with Retry-After), SFTP/FTP a failed login."""

    retry_after = 1


class _PasswordChecks:
    """At most `slots` argon2 checks at once in the process, every door together: each takes 64 MiB
    and ~50 ms of a core, so a flood of wrong logins costs bounded memory and CPU. A check that finds
    every slot taken waits up to `wait` seconds in a queue of at most `queue`; past either it is
    refused (LoginBusy) at once, so waiting logins cannot tie up the servers' threads either."""

    def __init__(self, slots: int, wait: float) -> None:
        self.slots = threading.BoundedSemaphore(slots)
        self.wait = wait
        self.queue = 4 * slots
        self._waiting = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if not self.slots.acquire(blocking=False):
            with self._lock:
                if self._waiting >= self.queue:
                    raise LoginBusy("too many password checks waiting")
                self._waiting += 1
            try:
                taken = self.slots.acquire(timeout=self.wait)
            finally:
                with self._lock:
                    self._waiting -= 1
            if not taken:
                raise LoginBusy(f"no password check free within {self.wait:g}s")
        try:
            yield
        finally:
            self.slots.release()


@functools.cache
def _password_checks(slots: int, wait: float) -> _PasswordChecks:
    """The process's one set of slots (per setting: a test's other settings get their own)."""
    return _PasswordChecks(slots, wait)


def password_check_slot(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """A slot for one argon2 check (LoginBusy when none is free in time)."""
    return _password_checks(settings.login_max_concurrent_checks, settings.login_check_wait_seconds).slot()


LoginKind = Literal["partner", "user"]


@dataclass(frozen=True)
class LoginUser:
    """A logged-in partner or account user, detached from the store: what a protocol session needs.

    `partner_id` is the login's row id in its kind's table (`kind`: a partner, or an account user
    whose `name` is its e-mail address); `key` tells two kinds' ids apart.
    """

    partner_id: int
    account_id: int
    name: str
    can_delete_downloads: bool = True
    max_file_bytes: int | None = None
    max_connections: int | None = None
    uid: str = ""
    allowed_networks: tuple[str, ...] = ()
    started_at: datetime = field(default_factory=utcnow)
    kind: LoginKind = "partner"
    role: str | None = None  # an account user's role (admin, operator, read-only)

    @property
    def key(self) -> tuple[str, int]:
        """Which login this is, across both kinds (a partner and a user may share an id)."""
        return (self.kind, self.partner_id)

    @property
    def account_name(self) -> str:
        """The login's account's name: a partner's home is `<mailbox_root>/<account_name>/<name>`.
        Looked up when first needed (and cached), so a login costs no extra read."""
        from core.tenancy import account_name

        return account_name(self.account_id)

    @property
    def actor(self) -> str:
        """The audit actor: `partner:acme` or `user:alice@acme.example`."""
        return f"{self.kind}:{self.name}"

    @classmethod
    def of(cls, partner: Login) -> LoginUser:
        assert partner.id is not None
        if isinstance(partner, AccountUser):
            return cls(
                partner_id=partner.id,
                account_id=partner.account_id,
                name=partner.email,
                can_delete_downloads=False,
                uid=partner.uid,
                kind="user",
                role=partner.role,
            )
        return cls(
            partner_id=partner.id,
            account_id=partner.account_id,
            name=partner.name,
            can_delete_downloads=partner.can_delete_downloads,
            max_file_bytes=partner.max_file_bytes,
            max_connections=partner.max_connections,
            uid=partner.uid,
            allowed_networks=tuple(partner.allowed_networks),
        )


def ledger_address(remote_addr: str | None) -> str:
    """The key a source address is counted under: IPv4 as is, IPv6 by its /64 ("" if unknown)."""
    if not remote_addr:
        return ""
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return remote_addr[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def network_allowed(allowed: list[str] | tuple[str, ...], remote_addr: str | None) -> bool:
    """Whether remote_addr passes an allow-list of CIDRs (an empty list: anywhere)."""
    if not allowed:
        return True
    if not remote_addr:
        return False
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(net, strict=False) for net in allowed)


class Standable(Protocol):
    """What `standing` reads: a Partner or AccountUser row, or just those columns of one."""

    @property
    def removed_at(self) -> datetime | None: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def locked_until(self) -> datetime | None: ...


def is_locked(partner: Standable, now: datetime | None = None) -> bool:
    return partner.locked_until is not None and partner.locked_until > (now or utcnow())


class Standing(StrEnum):
    """Why a partner may do nothing at all now, whoever asks: a login, a live session, an upload."""

    REMOVED = "the partner was removed"
    DISABLED = "the partner is disabled"
    LOCKED = "the partner is locked"


def standing(partner: Standable | None, now: datetime | None = None) -> Standing | None:
    """What stops the partner (removed, disabled, locked), or None when it is in good standing."""
    if partner is None or partner.removed_at is not None:
        return Standing.REMOVED
    if not partner.enabled:
        return Standing.DISABLED
    if is_locked(partner, now):
        return Standing.LOCKED
    return None


def session_refusal(partner: Login | None, remote_addr: str | None, started_at: datetime) -> str | None:
    """Why a session (or API token) that began at `started_at` must end now; None if it may go on.

    The one rule for live sessions: the mailbox servers' watcher and every REST request ask it.
    """
    stopped = standing(partner)
    if stopped is not None:
        return stopped.value
    assert partner is not None
    if partner.sessions_ended_at is not None and started_at < partner.sessions_ended_at:
        return "the partner's sessions were ended (new password, unlock or change of access)"
    if not network_allowed(partner.allowed_networks, remote_addr):
        return f"{remote_addr} is not in the partner's allow-list"
    return None


def _find_partner(session: Session, username: str) -> Login | None:
    """The login of that name in whichever account: an account user when the name holds `@`, else a
    partner; login names are unique on the instance (core/logins.py), so the name says whose it is."""
    return find_login(session, username)


def _key_matches(partner: Login | None, key_type: str, key_blob: bytes) -> bool:
    import base64
    import binascii

    if not isinstance(partner, Partner):  # SSH keys are a partner feature; users log in by password
        return False
    for line in partner.ssh_public_keys:
        parts = line.split()
        if len(parts) < 2 or parts[0] != key_type:
            continue
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(blob, key_blob):
            return True
    return False


def _actor(username: str) -> str:
    """The audit actor of a login attempt: `user:` for an e-mail address, else `partner:`."""
    return f"{'user' if '@' in username else 'partner'}:{username[:100]}"


@dataclass
class _Outcome:
    user: LoginUser | None = None
    refused: LoginRefused | None = None


class LoginPolicy:
    """Logins for every protocol, decided from the store. Thread-safe; one per process is enough."""

    def __init__(self, settings: Settings | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self._settings = settings
        self.clock = clock
        self._pruned_at = 0.0
        self._prune_lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        """The settings given, else the process's current ones (read at each login)."""
        return self._settings or get_settings()

    # -- logins ---------------------------------------------------------------------------------

    def password(self, username: str, password: str, remote_addr: str | None, protocol: str) -> LoginUser:
        """The partner if the password is right and the login allowed; LoginRefused otherwise."""

        def check(partner: Login | None) -> str | None:
            stored = partner.password_hash if partner is not None else None
            with password_check_slot(self.settings):
                right = verify_password(stored or _DUMMY_HASH, password)
            if not right or stored is None:
                return WRONG_CREDENTIALS
            return None

        return self._login(username, remote_addr, protocol, "password", check)

    def key(
        self, username: str, key_type: str, key_blob: bytes, remote_addr: str | None, protocol: str
    ) -> LoginUser:
        """The partner if `key_blob` is one of its SSH keys (the signature was checked by the server)."""

        def check(partner: Login | None) -> str | None:
            return None if _key_matches(partner, key_type, key_blob) else KEY_NOT_ACCEPTED

        return self._login(username, remote_addr, protocol, "publickey", check)

    def key_is_known(self, username: str, key_type: str, key_blob: bytes, remote_addr: str | None) -> bool:
        """SSH's "would you accept this key?" probe: no strike, no audit; False while banned or locked."""
        now = self.clock()
        with session_scope() as session:
            if self._banned_for(session, ledger_address(remote_addr), now) > 0:
                return False
            partner = _find_partner(session, username)
            if standing(partner, now) is not None:
                return False
            return _key_matches(partner, key_type, key_blob)

    def banned_for(self, remote_addr: str | None) -> float:
        """Seconds the address stays banned (0 when it may log in)."""
        with session_scope() as session:
            return self._banned_for(session, ledger_address(remote_addr), self.clock())

    def _login(
        self,
        username: str,
        remote_addr: str | None,
        protocol: str,
        method: str,
        check: Callable[[Login | None], str | None],
    ) -> LoginUser:
        outcome = _Outcome()
        actor = _actor(username)
        with session_scope() as session:
            now = self.clock()
            address = ledger_address(remote_addr)
            wait = self._banned_for(session, address, now)
            if wait > 0:
                audit.record(
                    session,
                    "login.banned",
                    actor=actor,
                    target=username[:100],
                    remote_addr=remote_addr,
                    protocol=protocol,
                    retry_after=round(wait),
                )
                outcome.refused = LoginRefused(
                    f"{remote_addr} is banned for {wait:.0f}s more after repeated failed logins",
                    banned_for=wait,
                )
            else:
                partner = _find_partner(session, username)
                if partner is not None and partner.removed_at is not None:
                    partner = None  # its name was freed; whoever asks for it is nobody
                why = check(partner)
                if why is None and partner is not None:
                    stopped = standing(partner, now)
                    if stopped is Standing.DISABLED:
                        why = "the login is disabled"
                    elif stopped is Standing.LOCKED:
                        why = "the account is locked after failed logins from several addresses"
                        audit.record(
                            session,
                            "login.locked",
                            actor=actor,
                            account_id=partner.account_id,
                            target=partner.name,
                            remote_addr=remote_addr,
                            protocol=protocol,
                        )
                    elif not network_allowed(partner.allowed_networks, remote_addr):
                        why = f"{remote_addr} is not in the allow-list"
                if why is not None:
                    outcome.refused = self._fail(session, username, partner, remote_addr, protocol, why, now)
                else:
                    assert partner is not None
                    outcome.user = LoginUser.of(partner)
                    audit.record(
                        session,
                        "login",
                        actor=outcome.user.actor,  # the name as stored (an address in lower case)
                        account_id=partner.account_id,
                        target=partner.name,
                        remote_addr=remote_addr,
                        protocol=protocol,
                        method=method,
                    )
        # Raised outside the transaction, so the failure, its audit event and any ban are committed.
        if outcome.refused is not None:
            raise outcome.refused
        assert outcome.user is not None
        return outcome.user

    # -- the ledger -----------------------------------------------------------------------------

    def _banned_for(self, session: Session, address: str, now: datetime) -> float:
        if not address:
            return 0.0
        until = session.exec(
            select(func.max(AddressBan.until)).where(AddressBan.address == address, AddressBan.until > now)
        ).one()
        return (until - now).total_seconds() if until is not None else 0.0

    def _fail(
        self,
        session: Session,
        username: str,
        partner: Login | None,
        remote_addr: str | None,
        protocol: str,
        why: str,
        now: datetime,
    ) -> LoginRefused:
        s = self.settings
        address = ledger_address(remote_addr)
        # Counted under the login's own name (an address in lower case), so every spelling counts.
        counted = partner.name if partner is not None else username[:200]
        session.add(LoginFailure(address=address, username=counted, protocol=protocol, at=now))
        session.flush()
        window_start = now - timedelta(seconds=s.lockout_window_seconds)
        banned = self._maybe_ban(session, address, now, window_start) if address else False
        locked = False
        if partner is not None and not is_locked(partner, now):
            locked = self._maybe_lock(session, partner, now, window_start)
        audit.record(
            session,
            "login.failed",
            actor=_actor(username),
            account_id=partner.account_id if partner is not None else None,
            target=username[:100],
            remote_addr=remote_addr,
            protocol=protocol,
            reason=why,
            banned=banned,
            locked=locked,
        )
        self._prune(session, now)
        # The attempt that earns the ban is answered as the wrong login it was; the next is refused.
        return LoginRefused(why)

    def _maybe_ban(self, session: Session, address: str, now: datetime, window_start: datetime) -> bool:
        """Ban the address once it failed often enough since the window began (or its last ban ended)."""
        s = self.settings
        last_ban = session.exec(select(func.max(AddressBan.until)).where(AddressBan.address == address)).one()
        since = max(window_start, last_ban) if last_ban is not None else window_start
        failures = session.exec(
            select(func.count()).where(LoginFailure.address == address, col(LoginFailure.at) > since)
        ).one()
        if failures < s.lockout_failures:
            return False
        session.add(
            AddressBan(
                address=address,
                until=now + timedelta(seconds=s.lockout_cooldown_seconds),
                failures=failures,
                at=now,
            )
        )
        audit.record(session, "address.ban", actor="login", target=address, failures=failures)
        return True

    def _maybe_lock(self, session: Session, partner: Login, now: datetime, window_start: datetime) -> bool:
        """Lock the account on failures from several distinct addresses (since the last lock ended)."""
        s = self.settings
        since = window_start
        if partner.locked_until is not None:
            since = max(since, partner.locked_until)
        if partner.sessions_ended_at is not None:  # an unlock (or new password) starts the count again
            since = max(since, partner.sessions_ended_at)
        failures, addresses = session.exec(
            select(func.count(), func.count(distinct(col(LoginFailure.address)))).where(
                LoginFailure.username == partner.name,
                col(LoginFailure.at) > since,
                LoginFailure.address != "",
            )
        ).one()
        if failures < s.lockout_account_failures or addresses < s.lockout_account_addresses:
            return False
        partner.locked_until = now + timedelta(seconds=s.lockout_account_seconds)
        partner.sessions_ended_at = now
        session.add(partner)
        audit.record(
            session,
            "partner.lock" if isinstance(partner, Partner) else "account.user.lock",
            actor="login",
            account_id=partner.account_id,
            target=partner.name,
            failures=failures,
            addresses=addresses,
            until=partner.locked_until.isoformat(),
        )
        return True

    def _prune(self, session: Session, now: datetime) -> None:
        """Forget failures and bans too old to matter, at most a few times per window."""
        s = self.settings
        keep = max(s.lockout_window_seconds, s.lockout_cooldown_seconds)
        with self._prune_lock:
            if time.monotonic() - self._pruned_at < keep / 4:
                return
            self._pruned_at = time.monotonic()
        cutoff = now - timedelta(seconds=keep)
        session.exec(delete(LoginFailure).where(col(LoginFailure.at) < cutoff))
        session.exec(delete(AddressBan).where(col(AddressBan.until) < cutoff))


# -- what operators do ----------------------------------------------------------------------------


def unlock(session: Session, partner: Partner, actor: str = "cli") -> bool:
    """Lift an account lock and forget the failures that led to it; True if it was locked."""
    was_locked = is_locked(partner)
    partner.locked_until = None
    session.add(partner)
    session.exec(delete(LoginFailure).where(col(LoginFailure.username) == partner.name))
    audit.record(session, "partner.unlock", actor=actor, account_id=partner.account_id, target=partner.name)
    return was_locked


def unban(session: Session, remote_addr: str, actor: str = "cli") -> int:
    """Lift the bans on a source address and forget its failures; how many bans were active."""
    address = ledger_address(remote_addr)
    now = utcnow()
    active = session.exec(
        select(func.count()).where(AddressBan.address == address, AddressBan.until > now)
    ).one()
    session.exec(delete(AddressBan).where(col(AddressBan.address) == address))
    session.exec(delete(LoginFailure).where(col(LoginFailure.address) == address))
    audit.record(session, "address.unban", actor=actor, target=address)
    return int(active)


def active_bans(session: Session) -> list[AddressBan]:
    return list(
        session.exec(select(AddressBan).where(AddressBan.until > utcnow()).order_by(col(AddressBan.until)))
    )


@functools.cache
def shared_policy() -> LoginPolicy:
    """The process's policy object (its state is in the store: two, built by a race, would agree)."""
    return LoginPolicy()

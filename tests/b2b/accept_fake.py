"""An in-memory AcceptService: a unit of page logic, so the page's tests need no connections core.

It answers as DESIGN-12 §2.3/§7 says the real one does (shape, unknown, used, declined, expired,
own account, admin only, one account per token) and records every call that changes something,
so a test can tell that a GET or a refused POST changed nothing.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from api.web.service import AcceptForm, EndpointChoice, InvitationView, Outcome, Refused, WebLogin

TOKEN_PREFIX = "tlc1_"
TOKEN_CHARS = 43


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass
class FakeInvitation:
    view: InvitationView
    state: str = "pending"
    signup_account: str | None = None


@dataclass
class FakeUser:
    login: WebLogin
    password: str


@dataclass
class FakeAcceptService:
    invitations: dict[str, FakeInvitation] = field(default_factory=dict)
    users: dict[str, FakeUser] = field(default_factory=dict)  # by e-mail
    endpoints_of: dict[str, list[EndpointChoice]] = field(default_factory=dict)
    changes: list[tuple[str, ...]] = field(default_factory=list)  # every call that changed something
    sessions: dict[str, str] = field(default_factory=dict)  # cookie value -> the login's subject
    broken: set[str] = field(default_factory=set)  # tokens whose look-up fails as a bug would
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- arranging ------------------------------------------------------------------------------

    def invite(
        self,
        direction: str = "send",
        *,
        inviter: str = "acme",
        name: str = "to-globex",
        email: str = "bob@globex.test",
        expires_in: timedelta = timedelta(days=7),
    ) -> str:
        token = new_token()
        view = InvitationView(
            inviter_account=inviter,
            inviter_email=f"admin@{inviter}.test",
            connection_name=name,
            direction="send" if direction == "send" else "receive",
            expires_at=datetime.now(UTC) + expires_in,
            invitee_email=email,
        )
        self.invitations[token] = FakeInvitation(view)
        return token

    def add_user(self, email: str, password: str, account: str, *, admin: bool = True) -> WebLogin:
        login = WebLogin(subject=str(uuid.uuid4()), email=email, account=account, is_admin=admin)
        self.users[email] = FakeUser(login, password)
        return login

    # --- the protocol -----------------------------------------------------------------------------

    def _pending(self, token: str) -> FakeInvitation:
        if not token.startswith(TOKEN_PREFIX):
            raise Refused(400, "not an invitation token or link")
        rest = token[len(TOKEN_PREFIX) :]
        if len(rest) != TOKEN_CHARS:
            raise Refused(
                400,
                f"the invitation token is incomplete ({len(rest)} of {TOKEN_CHARS} characters after "
                f"{TOKEN_PREFIX}): copy the whole link",
            )
        found = self.invitations.get(token)
        if found is None:
            raise Refused(404, "no such invitation: check that the link is complete and unchanged")
        if found.state != "pending":
            raise Refused(409, f"this invitation was already {found.state}")
        if found.view.expires_at <= datetime.now(UTC):
            raise Refused(410, f"this invitation expired; ask {found.view.inviter_account} for a new one")
        return found

    def invitation(self, token: str) -> InvitationView:
        if token in self.broken:
            raise RuntimeError("the store went away")
        with self.lock:
            return self._pending(token).view

    def log_in(self, email: str, password: str, remote_addr: str | None) -> WebLogin:
        user = self.users.get(email.lower())
        if user is None or not secrets.compare_digest(user.password, password):
            raise Refused(401, "wrong e-mail or password")
        return user.login

    def start_session(self, login: WebLogin, remote_addr: str | None, user_agent: str | None) -> str:
        value = secrets.token_urlsafe(32)
        with self.lock:
            self.sessions[value] = login.subject
        return value

    def session_login(self, cookie: str, remote_addr: str | None) -> WebLogin | None:
        subject = self.sessions.get(cookie)
        return next((u.login for u in self.users.values() if u.login.subject == subject), None)

    def end_session(self, cookie: str, remote_addr: str | None) -> None:
        with self.lock:
            self.sessions.pop(cookie, None)

    def sign_up(
        self, token: str, account: str, email: str, password: str, remote_addr: str | None
    ) -> WebLogin:
        with self.lock:
            found = self._pending(token)
            if found.signup_account is not None:
                raise Refused(409, "an account was already created with this invitation; log in with it")
            if any(u.login.account == account for u in self.users.values()):
                raise Refused(409, f"there is already an account named {account!r}")
            if len(password) < 12:
                raise Refused(400, "the password must be at least 12 characters long")
            found.signup_account = account
            self.changes.append(("sign_up", account, email))
            return self.add_user(email.lower(), password, account)

    def endpoints(self, login: WebLogin) -> list[EndpointChoice]:
        return list(self.endpoints_of.get(login.account, []))

    def accept(self, token: str, login: WebLogin, form: AcceptForm) -> Outcome:
        with self.lock:
            found = self._pending(token)
            view = found.view
            if not login.is_admin:
                raise Refused(403, "accepting an invitation needs the admin role")
            if login.account == view.inviter_account:
                raise Refused(
                    403,
                    f"an account cannot accept its own invitation (connection {view.connection_name!r} "
                    f"was created by {view.inviter_account})",
                )
            if not form.name:
                raise Refused(400, "give the connection a name")
            if view.invitee_sends:
                if not form.outbox:
                    raise Refused(400, "this invitation asks you to send files: name an outbox")
                message = f"active: put files into b2b/{form.outbox}/"
            else:
                names = [e.name for e in self.endpoints(login)]
                if form.endpoint not in names:
                    raise Refused(404, f"no endpoint named {form.endpoint!r} in account {login.account!r}")
                where = f"{form.endpoint}:{form.dir}" if form.dir else form.endpoint
                message = f"active: files from {view.inviter_account} will land in {where}"
            found.state = "accepted"
            self.changes.append(("accept", token, login.account, form.name))
            return Outcome(f"Connection {form.name} is active", message)

    def decline(self, token: str) -> Outcome:
        with self.lock:
            found = self._pending(token)
            found.state = "declined"
            self.changes.append(("decline", token))
            return Outcome("Invitation declined", f"{found.view.inviter_account} will see it declined")

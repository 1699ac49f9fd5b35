"""What the accept page needs from the core: the `AcceptService` protocol and the values it passes.

The page (api/web/connect.py) only renders and checks forms; every decision (is the token valid,
who is logged in, may they accept, what does accepting do) is the service's. The connections core
(core/b2b/connections.py, with the one login policy and core/accounts.py) implements it; a refusal
is `Refused(status, message)`, the same status and words the CLI and REST API give.

The clear token is passed in and never kept: the service looks it up by its hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

Direction = Literal["send", "receive"]


class Refused(Exception):
    """A refusal the page shows as is: an HTTP status and a message for the person at the browser."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class InvitationView:
    """A pending, unexpired invitation, as the invitee may see it (nothing of the inviter's storage)."""

    inviter_account: str
    inviter_email: str | None
    connection_name: str  # the inviter's name for it
    direction: Direction  # what the inviter does
    expires_at: datetime
    invitee_email: str

    @property
    def invitee_sends(self) -> bool:
        """Whether accepting makes the invitee the sender (it then names an outbox, not a destination)."""
        return self.direction == "receive"


@dataclass(frozen=True)
class WebLogin:
    """Someone logged in on the page: an account user."""

    subject: str  # stable and opaque (the user's uid): what the page's session cookie names
    email: str
    account: str
    is_admin: bool


@dataclass(frozen=True)
class EndpointChoice:
    """One of the account's endpoints, as the accept form lists it: its name and type only."""

    name: str
    type: str


@dataclass(frozen=True)
class AcceptForm:
    """What the invitee chose: its name for the connection, and an outbox (sender) or a destination."""

    name: str
    outbox: str | None = None
    endpoint: str | None = None
    dir: str = ""


@dataclass(frozen=True)
class Outcome:
    """What the page says after accept or decline, e.g. `files from acme will land in lake:in/acme`."""

    title: str
    message: str


class AcceptService(Protocol):
    def invitation(self, token: str) -> InvitationView:
        """The invitation the token opens, without using it up; Refused (400/404/409/410) otherwise."""
        ...

    def log_in(self, email: str, password: str, remote_addr: str | None) -> WebLogin:
        """The one login policy, protocol `web`; Refused(401, ...) with what may be said on failure."""
        ...

    def start_session(self, login: WebLogin, remote_addr: str | None, user_agent: str | None) -> str:
        """A web session for `login` (the web's one session, core/web_sessions.py): its cookie value."""
        ...

    def session_login(self, cookie: str, remote_addr: str | None) -> WebLogin | None:
        """The account user whose live session this cookie value names (logged in here or at
        /login); None when there is none, it ended, or it is a partner's."""
        ...

    def end_session(self, cookie: str, remote_addr: str | None) -> None:
        """Log out: the session ends and the cookie value is refused from then on."""
        ...

    def sign_up(
        self, token: str, account: str, email: str, password: str, remote_addr: str | None
    ) -> WebLogin:
        """Create an account and its admin with a valid pending token (at most one per token), logged in."""
        ...

    def endpoints(self, login: WebLogin) -> list[EndpointChoice]:
        """The login's account's endpoints, for an invitee who will receive."""
        ...

    def accept(self, token: str, login: WebLogin, form: AcceptForm) -> Outcome:
        """Accept the invitation as the login's account (admins only); uses the token up."""
        ...

    def decline(self, token: str) -> Outcome:
        """Decline the invitation (the token is the authority); uses the token up."""
        ...

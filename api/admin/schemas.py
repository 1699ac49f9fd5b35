"""What the admin API and the console take and give: one set of models for both surfaces.

Inputs (`PartnerCreate`, `PartnerSettings`, `EndpointCreate`, `FlowCreate`, `UserCreate`, ...)
check what can be checked without the store by calling core's own checks (`partners.check_networks`,
`validators.parse_size`, `validators.parse_cli_spec`, ...), so a bad size, CIDR or check is refused
with the same words wherever it is typed: the admin API answers 400 `invalid request: FIELD: WORDS`,
the console shows WORDS next to FIELD (`problems(exc)`). Unknown fields are refused, never ignored.

Answers (`PartnerPublic`, `EndpointPublic`, `FlowPublic`, `UserPublic`, `TransferPublic`,
`AuditPublic`) are built by their `of(...)` from the rows, with exactly the fields and values the
CLI's `--json` prints for the same objects. No answer holds a secret: endpoint secrets are named,
never shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from api.ids import MAX_ROW_ID
from core import concurrency_limits
from core.errors import said
from core.links import flow_run_url
from core.models import TransferState

if TYPE_CHECKING:
    from sqlmodel import Session

    from core.endpoints.probe import Probe
    from core.models import AccountUser, AuditEvent, DataFlow, Partner
    from core.models import Endpoint as EndpointRow
    from core.tenancy import Scope
    from core.transfers import TransferView

T = TypeVar("T")


def _checked(check: Callable[[Any], T]) -> Callable[[Any], T]:
    """A core check as a pydantic validator: its refusal becomes the field's message, word for word
    (without pydantic's "Value error, " prefix or the CLI's status prefix)."""

    def validate(value: Any) -> T:
        try:
            return check(value)
        except ValueError as exc:  # core's StatusErrors are ValueErrors too
            raise PydanticCustomError("invalid", "{reason}", {"reason": said(exc)}) from None

    return validate


def _size(value: Any) -> int:
    from core.validators import parse_size

    return parse_size(value)  # core.partners.configure refuses 0, in its words


def _networks(value: list[str]) -> list[str]:
    from core.partners import check_networks

    return check_networks(value)


def _email(value: str) -> str:
    from core.partners import check_email

    return check_email(value)


def _public_key(value: str) -> str:
    from core.partners import check_public_key

    return check_public_key(value)


def _check_specs(value: Any) -> list[dict[str, Any]]:
    """Checks in the CLI's short form (`json`, `max_size=10MiB`) or as full specs (`{"type": "json"}`),
    as stored: refused by `parse_specs` with the words `flow add --validate` shows."""
    from core.validators import parse_cli_spec, parse_specs

    if not isinstance(value, list):
        raise ValueError('validators must be a list, e.g. ["json", "max_size=10MiB"]')
    specs = [parse_cli_spec(item) if isinstance(item, str) else item for item in value]
    parse_specs(specs)  # refuses anything that is not a spec, naming it
    return specs


def _interval(value: Any) -> float:
    from core.dataflows import parse_interval

    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not an interval: {value!r} (e.g. 60s, 5m, 1h, or seconds)")
    return float(value) if isinstance(value, int | float) else parse_interval(value)


ByteSize = Annotated[int, BeforeValidator(_checked(_size))]
Networks = Annotated[list[str], AfterValidator(_checked(_networks))]
Email = Annotated[str, AfterValidator(_checked(_email))]
PublicKey = Annotated[str, AfterValidator(_checked(_public_key))]
Checks = Annotated[list[dict[str, Any]], BeforeValidator(_checked(_check_specs))]
Interval = Annotated[float, BeforeValidator(_checked(_interval))]
Password = Annotated[str, Field(max_length=1024)]  # the policy (core.passwords) checks the rest


# Files carried at once for a partner or to/from an endpoint on every worker; null or 0: unlimited.
MaxConcurrent = Annotated[int, Field(ge=0, le=concurrency_limits.MOST)]


class Input(BaseModel):
    """An input model: unknown fields are refused (a setting accepted but ignored is worse than none)."""

    model_config = ConfigDict(extra="forbid")


def problems(exc: ValidationError) -> dict[str, str]:
    """A refused input's messages by field (`allowed_networks.0` → `not an IP network: ...`), for a
    form that shows each next to its field; the admin API says the same in one 400 message."""
    found: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(form)"
        found.setdefault(where, error["msg"])
    return found


# -- partners -------------------------------------------------------------------------------------


class PartnerCreate(Input):
    """A new partner login: a password, SSH public keys, or both."""

    name: str
    password: Password | None = None
    ssh_public_keys: list[PublicKey] = Field(default_factory=list)
    email: Email | None = None

    @model_validator(mode="after")
    def _has_a_way_in(self) -> PartnerCreate:
        if not self.password and not self.ssh_public_keys:
            raise PydanticCustomError("invalid", "give a password or an SSH public key")
        return self


class PartnerSettings(Input):
    """A change to a partner's settings: only the fields given change. `null` takes `email` away and
    `max_file_bytes`/`max_sessions` back to the server's defaults; `allowed_networks: []` allows
    logins from anywhere. Disabling ends the partner's sessions (`enabled: false`: the console's
    "Disable"; a lock after failed logins is lifted by `unlock`)."""

    email: Email | None = None
    allowed_networks: Networks | None = None
    max_file_bytes: ByteSize | None = Field(default=None, description="bytes, or a size like 50MiB")
    max_sessions: int | None = None
    max_concurrent: MaxConcurrent | None = None
    enabled: bool | None = None
    can_delete_downloads: bool | None = None
    contact_emails: list[str] | None = Field(
        default=None, description="who is told of notices (bare addresses); `null` or `[]` clears"
    )
    tell_rejected: bool | None = Field(default=None, description="e-mail the contacts a rejected upload")
    tell_downloads: bool | None = Field(default=None, description="e-mail the contacts files in download/")

    def changes(self) -> dict[str, Any]:
        """The keyword arguments of `core.partners.configure`: the fields given, and only those."""
        from core.partners import UNCHANGED

        given = self.model_fields_set
        return {
            "email": self.email if "email" in given else UNCHANGED,
            "allowed_networks": self.allowed_networks,
            "max_file_bytes": self.max_file_bytes if "max_file_bytes" in given else UNCHANGED,
            "max_sessions": self.max_sessions if "max_sessions" in given else UNCHANGED,
            "max_concurrent": self.max_concurrent if "max_concurrent" in given else UNCHANGED,
            "enabled": self.enabled,
            "can_delete_downloads": self.can_delete_downloads,
            "contact_emails": ",".join(self.contact_emails or []) if "contact_emails" in given else UNCHANGED,
            "tell_rejected": self.tell_rejected,
            "tell_downloads": self.tell_downloads,
        }


class PasswordChange(Input):
    """A new password (the password policy applies); the login's sessions and tokens end."""

    password: Password


class KeyAdd(Input):
    """An OpenSSH public key line: `ssh-ed25519 AAAA... comment`."""

    key: PublicKey


class PartnerPublic(BaseModel):
    """A partner as `tradelane partner list --json` prints it."""

    name: str
    enabled: bool
    locked_until: str | None
    password: bool
    ssh_keys: int
    email: str | None
    allowed_networks: list[str]
    max_file_bytes: int | None
    max_sessions: int | None
    max_concurrent: int | None
    can_delete_downloads: bool
    contact_emails: list[str]
    tell_rejected: bool
    tell_downloads: bool
    created: str

    @classmethod
    def of(cls, partner: Partner) -> PartnerPublic:
        from core.login import is_locked

        locked = is_locked(partner) and partner.locked_until is not None
        return cls(
            name=partner.name,
            enabled=partner.enabled,
            locked_until=partner.locked_until.isoformat() if locked and partner.locked_until else None,
            password=bool(partner.password_hash),
            ssh_keys=len(partner.ssh_public_keys),
            email=partner.email,
            allowed_networks=list(partner.allowed_networks),
            max_file_bytes=partner.max_file_bytes,
            max_sessions=partner.max_connections,
            max_concurrent=partner.max_concurrent,
            can_delete_downloads=partner.can_delete_downloads,
            contact_emails=partner.contact_emails.split(",") if partner.contact_emails else [],
            tell_rejected=partner.tell_rejected,
            tell_downloads=partner.tell_downloads,
            created=partner.created_at.isoformat(),
        )


class KeyPublic(BaseModel):
    """One of a partner's SSH keys as `tradelane partner key list` shows it (numbered from 1)."""

    index: int
    type: str
    fingerprint: str
    comment: str

    @classmethod
    def all_of(cls, partner: Partner) -> list[KeyPublic]:
        import base64
        import hashlib

        keys = []
        for index, line in enumerate(partner.ssh_public_keys, 1):
            parts = line.split(None, 2)
            digest = hashlib.sha256(base64.b64decode(parts[1])).digest()
            fingerprint = "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
            comment = parts[2] if len(parts) > 2 else ""
            keys.append(cls(index=index, type=parts[0], fingerprint=fingerprint, comment=comment))
        return keys


class PartnerDetail(PartnerPublic):
    """One partner, with its keys."""

    keys: list[KeyPublic]

    @classmethod
    def of_detail(cls, partner: Partner) -> PartnerDetail:
        return cls(**PartnerPublic.of(partner).model_dump(), keys=KeyPublic.all_of(partner))


class PartnerChanged(PartnerDetail):
    """A partner after a change, and what changed, in words."""

    changed: list[str]


class PartnerRemoved(BaseModel):
    """What removing a partner did: the data flows and AS2 profiles it disabled (`force`)."""

    name: str
    flows_disabled: list[str]
    as2_disabled: list[str]
    purged: bool


class Unlocked(BaseModel):
    """A login's lock after failed logins was lifted (`was_locked`: there was one)."""

    name: str
    was_locked: bool


# -- endpoints ------------------------------------------------------------------------------------


class EndpointCreate(Input):
    """A new endpoint: its type's settings and secrets, checked by the type's own models
    (`tradelane endpoint schema TYPE` prints them; secrets are the `writeOnly` ones)."""

    name: str
    type: str
    settings: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, Any] = Field(default_factory=dict)
    max_concurrent: MaxConcurrent | None = None


class EndpointUpdate(Input):
    """A change to an endpoint: the settings and secrets given replace those keys, `unset` takes
    keys back to their defaults, everything else stays (a secret left out is kept);
    `max_concurrent` changes only when given (null or 0: unlimited)."""

    settings: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, Any] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
    max_concurrent: MaxConcurrent | None = None


class EndpointPublic(BaseModel):
    """An endpoint as `tradelane endpoint list --json` prints it: settings with any secret value
    hidden, and the names (never the values) of the secrets it has."""

    name: str
    type: str
    config: dict[str, Any]
    has_secrets: bool
    secrets: list[str]
    max_concurrent: int | None

    @classmethod
    def of(cls, row: EndpointRow) -> EndpointPublic:
        from core.endpoints import rows as endpoint_rows

        return cls(
            name=row.name,
            type=row.type,
            config=endpoint_rows.shown_settings(row),
            has_secrets=bool(row.secrets),
            secrets=endpoint_rows.row_secret_names(row),
            max_concurrent=row.max_concurrent,
        )


class EndpointChanged(EndpointPublic):
    """An endpoint after a change, and which settings and secrets (names only) changed."""

    changed: list[str]


class EndpointRemoved(BaseModel):
    """What removing an endpoint did: the data flows it disabled (`force`)."""

    name: str
    flows_disabled: list[str]


class EndpointType(BaseModel):
    """An endpoint type an account may add; its schema is at `schema`."""

    type: str
    schema_url: str


class ProbePublic(BaseModel):
    """What the Test of an endpoint found (`tradelane endpoint test`): reachable at `uri`, or the
    kind of failure (DNS, authentication, TLS, host key, ...) and its message, secrets scrubbed."""

    name: str
    ok: bool
    kind: str | None
    message: str
    uri: str | None
    seconds: float

    @classmethod
    def of(cls, probe: Probe) -> ProbePublic:
        return cls(**asdict(probe))


# -- data flows -----------------------------------------------------------------------------------


class FlowCreate(Input):
    """A new data flow, as `tradelane flow add` takes it. `source`: `mailbox:PARTNER` (its upload/
    folder) or an endpoint to poll (then `every` or `cron`); `dest`: an endpoint or `mailbox:PARTNER`
    (not for a routing template such as edi-route). `validators`: the CLI's `--validate` words
    (`json`, `max_size=10MiB`, `name=*.json`) or full specs (`{"type": "json"}`)."""

    name: str
    source: str
    dest: str | None = None
    pattern: str = "*"
    dest_path: str = "{name}"
    validators: Checks = Field(default_factory=list)
    retries: int = 5
    retry_delay_seconds: float = 2.0
    every: Interval | None = Field(default=None, description="polling sources: 60s, 5m, 1h")
    cron: str | None = None
    after_pull: str = "keep"
    source_folder: str | None = None
    on_conflict: str | None = Field(default=None, description="rename, overwrite or fail")
    template: str = "transfer"
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True


class FlowUpdate(Input):
    """A change to a data flow: only the fields given change (`validators: []` removes every
    check; `on_conflict: "default"` goes back to the destination type's own; a new `template`
    takes only the `params` given, else `params` are merged into the flow's; `clear_params` drops
    them all, so the template's defaults apply)."""

    pattern: str | None = None
    dest: str | None = None
    dest_path: str | None = None
    validators: Checks | None = None
    retries: int | None = None
    retry_delay_seconds: float | None = None
    enabled: bool | None = None
    on_conflict: str | None = Field(default=None, description="rename, overwrite, fail or default")
    template: str | None = None
    params: dict[str, Any] | None = None
    clear_params: bool = False

    @model_validator(mode="after")
    def _params_or_clear(self) -> FlowUpdate:
        if self.params and self.clear_params:
            raise PydanticCustomError("invalid", "give params or clear_params, not both")
        return self


class FlowPublic(BaseModel):
    """A data flow as `tradelane flow list --json` prints it."""

    name: str
    source: str
    pattern: str
    dest: str
    dest_path: str
    validators: list[dict[str, Any]]
    retries: int
    enabled: bool
    schedule: str
    after_pull: str | None
    on_conflict: str
    template: str
    params: dict[str, Any]

    @classmethod
    def of(cls, session: Session, flow: DataFlow) -> FlowPublic:
        from core import dataflows
        from core.models import Endpoint
        from tradelane.templates import routed_destinations

        dest = session.get(Endpoint, flow.dest_endpoint_id)
        routed = routed_destinations(flow.template, flow.params)
        if flow.schedule_interval_seconds:
            schedule = f"every {flow.schedule_interval_seconds:g}s"
        elif flow.schedule_cron:
            schedule = f"cron {flow.schedule_cron}"
        else:
            schedule = "on upload"
        # A routing template's flow goes where its rules say: named so, not as one endpoint.
        shown_dest = dest.name if dest else "?"
        if routed:
            shown_dest = "by rules: " + ", ".join(dict.fromkeys(routed))
        return cls(
            name=flow.name,
            source=dataflows.source_label(session, flow),
            pattern=flow.pattern,
            dest=shown_dest,
            dest_path=flow.dest_path,
            validators=list(flow.validators),
            retries=flow.retries,
            enabled=flow.enabled,
            schedule=schedule,
            after_pull=flow.after_pull if dataflows.polls(flow) else None,
            on_conflict=dataflows.on_conflict_label(session, flow),
            template=flow.template,
            params=dict(flow.params),
        )


class FlowChanged(FlowPublic):
    """A data flow after a change, and what changed, in words."""

    changed: list[str]


class FlowRemoved(BaseModel):
    """What removing a data flow did: transfers it marked failed (`force`); `kept` when its history
    keeps it, disabled, under `<name>.removed.<id>`."""

    name: str
    cancelled: int
    kept: bool


# -- account users --------------------------------------------------------------------------------


class UserCreate(Input):
    """A person who logs in for the account with their e-mail address (admins only)."""

    email: str
    password: Password
    role: str = Field(default="read-only", description="admin, operator or read-only")


class UserUpdate(Input):
    """A change to a user: a new password, role or enabled state ends the user's sessions."""

    password: Password | None = None
    role: str | None = Field(default=None, description="admin, operator or read-only")
    enabled: bool | None = None


class UserPublic(BaseModel):
    """A user as `tradelane account user list --json` prints it."""

    email: str
    role: str
    enabled: bool
    locked: bool
    created_at: str

    @classmethod
    def of(cls, user: AccountUser) -> UserPublic:
        from core.login import is_locked

        return cls(
            email=user.email,
            role=user.role,
            enabled=user.enabled,
            locked=is_locked(user),
            created_at=user.created_at.isoformat(),
        )


class UserChanged(UserPublic):
    """A user after a change, and what changed, in words."""

    changed: list[str]


class Me(BaseModel):
    """Who the token is: the account it acts in and the role it has there."""

    account: str
    email: str
    role: str
    may: list[str]  # the actions of core/roles.py this login may do

    @classmethod
    def of(cls, scope: Scope, email: str) -> Me:
        from core.roles import ACTIONS, may

        return cls(
            account=scope.account_name,
            email=email,
            role=scope.role,
            may=[action for action in ACTIONS if may(scope, action)],
        )


# -- history --------------------------------------------------------------------------------------


def _utc(value: datetime | None) -> datetime | None:
    """A time without a zone is UTC (the console's `datetime-local` fields, the store's times)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcTime = Annotated[datetime | None, AfterValidator(_utc)]


class TransferFilter(Input):
    """Which transfers a history page shows; `since` inclusive, `until` exclusive (ISO times, UTC
    unless they say), on the time the file was received; `run` a Prefect flow run id; `before` a
    transfer id (the page older than it: the previous page's `next_before`)."""

    state: TransferState | None = None
    flow: str | None = None
    partner: str | None = None
    dest: str | None = None
    since: UtcTime = None
    until: UtcTime = None
    run: str | None = Field(default=None, max_length=64)
    # Checked by core.transfers.page, in its words (1 to 200 rows, since before until, ...).
    before: int | None = Field(default=None, le=MAX_ROW_ID)
    limit: int = 50


class TransferPublic(BaseModel):
    """A transfer as `tradelane transfers --json` prints it (errors scrubbed of every secret)."""

    id: int
    file: str
    flow: str
    partner: str
    dest: str
    state: str
    attempts: int
    size: int
    sha256: str
    received_at: str
    finished_at: str | None
    flow_run_id: str | None
    destination_uri: str | None
    destination_answer: dict[str, Any] | None
    derived: list[dict[str, Any]]
    envelope: dict[str, Any] | None
    error: str | None
    replay_of: int | None
    next_attempt_at: str | None
    run_url: str | None

    @classmethod
    def of(cls, view: TransferView, prefect_ui: str | None) -> TransferPublic:
        item: dict[str, Any] = asdict(view)
        item["received_at"] = view.received_at.isoformat()
        item["finished_at"] = view.finished_at.isoformat() if view.finished_at else None
        item["next_attempt_at"] = view.next_attempt_at.isoformat() if view.next_attempt_at else None
        item["run_url"] = flow_run_url(prefect_ui, view.flow_run_id)
        return cls(**item)


class TransferPage(BaseModel):
    """One page of transfers, newest first; `next_before` asks for the older page (null: none)."""

    transfers: list[TransferPublic]
    next_before: int | None


class AuditFilter(Input):
    """Which audit events a page shows: `partner` (what it did and what was done to it), `action`
    (an action or its family: `login` also finds `login.failed`), a time window, `before` an
    event id."""

    partner: str | None = None
    action: str | None = None
    since: UtcTime = None
    until: UtcTime = None
    before: int | None = Field(default=None, ge=1, le=MAX_ROW_ID)
    limit: int = Field(default=100, ge=1, le=500)


class AuditPublic(BaseModel):
    """An audit event as `tradelane audit --json` prints it."""

    id: int | None
    at: str
    actor: str
    action: str
    target: str | None
    remote_addr: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, event: AuditEvent) -> AuditPublic:
        return cls(
            id=event.id,
            at=event.at.isoformat(),
            actor=event.actor,
            action=event.action,
            target=event.target,
            remote_addr=event.remote_addr,
            detail=dict(event.detail),
        )


class AuditPage(BaseModel):
    """One page of the audit trail, newest first; `next_before` asks for the older page."""

    events: list[AuditPublic]
    next_before: int | None

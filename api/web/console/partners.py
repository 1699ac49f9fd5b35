"""Console partner pages: the list and the add form, a partner's settings and the forms that change
them. Every change is core's (`partners.add`, `configure`, `set_password`, `add_key`, `remove_key`,
`unlock`, `remove`): the same checks, messages and role table as the CLI and the admin API.

    GET  /console/partners                       list + add form
    POST /console/partners                       add (name, password, e-mail, allow-list, limits)
    GET  /console/partners/{name}                detail + forms
    POST /console/partners/{name}/password       new password (its sessions end)
    POST /console/partners/{name}/settings       e-mail, allow-list, limits, may delete downloads
    POST /console/partners/{name}/keys           add an SSH key
    POST /console/partners/{name}/keys/{n}/remove
    POST /console/partners/{name}/disable | enable   the operator's lock (sessions end at once)
    POST /console/partners/{name}/unlock         lift a lockout set on password guessing
    POST /console/partners/{name}/remove         (`purge`: its files deleted, admins only)

The input words are the CLI's (`50MiB`, one CIDR per line); the admin API's shared input models
(api/admin/schemas.py) are meant to replace `_settings_of` when both are merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from api.web.console.deps import ConsoleError, ConsoleFormDep, ConsoleScope, allowed, back, in_database, page
from core import partners
from core.errors import StatusError, said
from core.models import Partner
from core.tenancy import Scope
from core.validators.base import parse_size

router = APIRouter(prefix="/console/partners")
LIST = "/console/partners"
ACTIONS = ("password", "settings", "keys", "disable", "enable", "unlock", "remove")


def _url(name: str) -> str:
    return f"{LIST}/{quote(name, safe='')}"


@dataclass(frozen=True)
class Shown:
    name: str
    url: str
    state: str
    keys: list[str]
    networks: list[str]
    max_file_bytes: int | None
    max_sessions: int | None
    email: str
    can_delete_downloads: bool
    max_concurrent: int | None


def _state(partner: Partner) -> str:
    if not partner.enabled:
        return "disabled"
    locked = partner.locked_until
    if locked is not None:
        locked = locked if locked.tzinfo else locked.replace(tzinfo=UTC)
        if locked > datetime.now(UTC):
            return f"locked until {locked:%Y-%m-%d %H:%M} UTC"
    return "active"


def _short_key(line: str) -> str:
    """`TYPE BASE64 comment` with the key cut short: enough to tell keys apart."""
    kind, blob, *comment = line.split(None, 2)
    return " ".join([kind, blob[:16] + "…", *comment])


def _shown(partner: Partner) -> Shown:
    return Shown(
        partner.name,
        _url(partner.name),
        _state(partner),
        [_short_key(key) for key in partner.ssh_public_keys],
        list(partner.allowed_networks),
        partner.max_file_bytes,
        partner.max_connections,
        partner.email or "",
        partner.can_delete_downloads,
        partner.max_concurrent,
    )


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _number(text: str, what: str, size: bool = False) -> int | None:
    """A limit as typed: blank for the server default, a count, or a size like 50MiB."""
    if not text.strip():
        return None
    try:
        return parse_size(text.strip()) if size else int(text.strip())
    except ValueError as exc:
        raise partners.PartnerError(
            f"{what}: {exc}" if size else f"{what}: not a whole number: {text[:20]!r}"
        ) from None


def _settings_of(fields: dict[str, str]) -> dict[str, Any]:
    return {
        "email": fields.get("email", "").strip(),
        "allowed_networks": _lines(fields.get("allowed_networks", "")),
        "max_file_bytes": _number(fields.get("max_file_bytes", ""), "largest file", size=True),
        "max_sessions": _number(fields.get("max_sessions", ""), "sessions at once"),
        # Blank or 0: unlimited; a form without the field leaves the limit as it is.
        "max_concurrent": fields.get("max_concurrent", partners.UNCHANGED),
    }


@router.get("")
async def list_partners(request: Request, scope: ConsoleScope) -> Response:
    found = await in_database(lambda session: [_shown(p) for p in partners.list_all(session, scope)])
    return page(request, "console/partners.html", scope, partners=found, problem="", given={})


@router.post("")
async def add_partner(request: Request, fields: ConsoleFormDep, scope: ConsoleScope) -> Response:
    allowed(scope, "partners.change")
    name = fields.get("name", "").strip()

    def add(session: Session) -> None:
        settings = _settings_of(fields)
        partner = partners.add(
            session, scope, name, password=fields.get("password") or None, email=settings["email"] or None
        )
        partners.configure(
            session,
            scope,
            partner,
            allowed_networks=settings["allowed_networks"],
            max_file_bytes=settings["max_file_bytes"],
            max_sessions=settings["max_sessions"],
            max_concurrent=settings["max_concurrent"],
        )

    try:
        await in_database(add)
    except StatusError as error:
        found = await in_database(lambda session: [_shown(p) for p in partners.list_all(session, scope)])
        given = {k: v for k, v in fields.items() if k not in ("password", "csrf")}  # never the password
        return page(
            request,
            "console/partners.html",
            scope,
            error.status,
            partners=found,
            problem=said(error),
            given=given,
        )
    return back(_url(name), "added", name)


def _status(error: Exception) -> int:
    return error.status if isinstance(error, StatusError) else 400


def _detail(session: Session, scope: Scope, name: str) -> Shown:
    return _shown(partners.require(session, scope, name))


@router.get("/{name}")
async def show_partner(request: Request, scope: ConsoleScope, name: str) -> Response:
    try:
        shown = await in_database(_detail, scope, name)
    except StatusError as error:
        raise ConsoleError(error.status, said(error)) from None
    return page(request, "console/partner.html", scope, partner=shown, problem="")


def _change(session: Session, scope: Scope, name: str, action: str, fields: dict[str, str]) -> str:
    """Do `action` to the partner; the flash code of what was done."""
    if action == "remove":
        partners.remove(
            session, scope, name, purge=bool(fields.get("purge")), force=bool(fields.get("force"))
        )
        return "removed"
    if action == "unlock":
        partners.unlock(session, scope, name)
        return "saved"
    if action == "keys":
        partners.add_key(session, scope, name, fields.get("key", ""))
        return "saved"
    partner = partners.require(session, scope, name)
    if action == "password":
        if not fields.get("password"):
            raise partners.PartnerError("type the new password")
        partners.set_password(session, scope, partner, fields["password"])
        return "saved"
    if action in ("disable", "enable"):
        partners.configure(session, scope, partner, enabled=action == "enable")
        return "saved"
    settings = _settings_of(fields)
    changes = partners.configure(
        session,
        scope,
        partner,
        email=settings["email"] or None,
        allowed_networks=settings["allowed_networks"],
        max_file_bytes=settings["max_file_bytes"],
        max_sessions=settings["max_sessions"],
        max_concurrent=settings["max_concurrent"],
        can_delete_downloads=fields.get("can_delete_downloads") == "yes",
    )
    return "saved" if changes else "unchanged"


async def _do(
    request: Request, fields: dict[str, str], scope: Scope, name: str, action: str, work: Any
) -> Response:
    allowed(scope, "partners.change")  # purging also needs partners.purge: core checks it
    try:
        done = await in_database(work, scope, name, action, fields)
    except ValueError as error:  # StatusError, WeakPassword, ...: the message never holds a password
        try:
            shown = await in_database(_detail, scope, name)
        except StatusError:
            raise ConsoleError(_status(error), said(error)) from None
        return page(
            request, "console/partner.html", scope, _status(error), partner=shown, problem=said(error)
        )
    return back(LIST if done == "removed" else _url(name), done, name)


@router.post("/{name}/{action}")
async def change_partner(
    request: Request, fields: ConsoleFormDep, scope: ConsoleScope, name: str, action: str
) -> Response:
    if action not in ACTIONS:
        raise ConsoleError(404, f"no partner action {action!r}")
    return await _do(request, fields, scope, name, action, _change)


@router.post("/{name}/keys/{number}/remove")
async def remove_key(
    request: Request, fields: ConsoleFormDep, scope: ConsoleScope, name: str, number: int
) -> Response:
    def work(session: Session, scope: Scope, name: str, action: str, fields: dict[str, str]) -> str:
        partners.remove_key(session, scope, name, number)
        return "saved"

    return await _do(request, fields, scope, name, "keys", work)

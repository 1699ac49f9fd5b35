"""Per-partner and per-endpoint concurrency: how many files are carried at once, on every worker.

A partner's or an endpoint's `max_concurrent` (None: unlimited) is kept in the store and mirrored
into a Prefect global concurrency limit of the same name (deployments/limits.py creates, updates and
removes them; the push and pull tasks take a slot of each limit a file touches, tasks/slots.py), so
the cap holds across all runners and workers and shows on the Prefect UI's Concurrency page as

* `partner:<account>:<partner>`: files that partner sent being pushed at once (by every data flow
  they go to; a polling data flow's files have no partner);
* `endpoint:<account>:<endpoint>`: files pushed to, or pulled from, that endpoint at once.

(`:` separates: account, partner and endpoint names never hold one; Prefect refuses `/` in names.)
This module is the store's side only: names, values and the rows' limits, no Prefect.
"""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session, col, select

from core import audit
from core.endpoints.registry import endpoint_class
from core.endpoints.rows import NoSuchEndpoint
from core.endpoints.rows import get as get_endpoint
from core.errors import Invalid
from core.models import Account, Endpoint, Partner
from core.tenancy import Scope

PARTNER = "partner"
ENDPOINT = "endpoint"
PREFIXES = (f"{PARTNER}:", f"{ENDPOINT}:")
# Prefect keeps one row per slot holder; a cap far above any real fan-out is a typing slip.
MOST = 10_000
WHOLE = re.compile(r"-?[0-9]{1,12}")


class BadLimit(Invalid):
    """Not a concurrency limit (400)."""


def limit_name(kind: str, account: str, name: str) -> str:
    """The Prefect global concurrency limit that caps `kind` (partner or endpoint) `name`."""
    return f"{kind}:{account}:{name}"


def parse(value: Any) -> int | None:
    """A limit as the CLI, YAML, API and console give it: a whole number 0 to `MOST` (ASCII digits),
    `none` or empty; 0, `none`, empty and None all mean unlimited (None)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in ("", "none"):
        return None
    if isinstance(value, str) and WHOLE.fullmatch(value.strip()):
        number = int(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        shown = repr(value if not isinstance(value, str) else value[:20])
        raise BadLimit(f"not a concurrency limit: {shown} (a whole number; 0 or 'none' for unlimited)")
    if number < 0 or number > MOST:
        raise BadLimit(f"a concurrency limit is 0 (unlimited) to {MOST}, not {number}")
    return number or None


def describe(limit: int | None) -> str:
    return "unlimited" if limit is None else f"{limit} at once"


def set_endpoint(session: Session, scope: Scope, name: str, limit: int | str | None) -> bool:
    """Set an endpoint's `max_concurrent` (0, None, 'none': unlimited); whether it changed (audited)."""
    scope.require_to("endpoints.change")
    row = get_endpoint(session, scope, name)
    if row is None or row.removed_at is not None or endpoint_class(row.type).internal:
        raise NoSuchEndpoint(f"no endpoint named {name!r}")
    value = parse(limit)
    if row.max_concurrent == value:
        return False
    before = row.max_concurrent
    row.max_concurrent = value
    session.add(row)
    audit.record(
        session,
        "endpoint.set",
        actor=scope.actor,
        account_id=row.account_id,
        target=row.name,
        changes=[f"files carried at once: {describe(value)}"],
        before={"max_concurrent": before},
    )
    return True


def wanted(session: Session) -> dict[str, int]:
    """Every limit the store asks for, on every account: Prefect limit name → slots."""
    limits: dict[str, int] = {}
    for kind, model in ((PARTNER, Partner), (ENDPOINT, Endpoint)):
        rows = session.exec(
            select(Account.name, model.name, model.max_concurrent)
            .join(Account, col(Account.id) == col(model.account_id))
            .where(col(model.max_concurrent).is_not(None), col(model.removed_at).is_(None))
        ).all()
        for account, name, limit in rows:
            if limit:
                limits[limit_name(kind, account, name)] = limit
    return limits


def for_files(session: Session, files: list[tuple[int | None, int | None]]) -> list[dict[str, int]]:
    """For each file, carried for partner id `files[i][0]` to or from endpoint id `files[i][1]`
    (None: no partner), the limits it takes a slot of: Prefect limit name → slots."""
    found: dict[tuple[str, int], tuple[str, int]] = {}
    for kind, model, index in ((PARTNER, Partner, 0), (ENDPOINT, Endpoint, 1)):
        ids = {file[index] for file in files if file[index] is not None}
        if not ids:
            continue
        rows = session.exec(
            select(model.id, Account.name, model.name, model.max_concurrent)
            .join(Account, col(Account.id) == col(model.account_id))
            .where(col(model.id).in_(ids), col(model.max_concurrent).is_not(None))
        ).all()
        for row_id, account, name, limit in rows:
            if row_id is not None and limit:
                found[kind, row_id] = (limit_name(kind, account, name), limit)
    limits: list[dict[str, int]] = []
    for partner_id, endpoint_id in files:
        taken = [found.get((PARTNER, partner_id or 0)), found.get((ENDPOINT, endpoint_id or 0))]
        limits.append(dict(pair for pair in taken if pair is not None))
    return limits

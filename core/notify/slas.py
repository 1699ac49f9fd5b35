"""SLAs: a partner's files expected by a time of day on some weekdays (`tradelane sla add`).

A deadline is the SLA's local time (`by`, in its `timezone`) on each of its `days`. When one
passes, `check_due` counts the partner's receipts whose name matches the SLA's glob, received after
the previous deadline and by this one, in the store (the truth: a receipt is written before
anything else happens to a file). Fewer than `min_files`: the SLA is missed and its channel is
told once. Each deadline is checked once, whichever of several checkers gets there first: the
check claims it with a conditional update of `last_deadline`. Only the latest passed deadline is
checked (a checker that was down for several deadlines reports the latest one, not each).

Pure store logic (no Prefect): the deployments' reconciler calls `check_due` every few seconds
(deployments/sla_watch.py) and sends what it returns.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from core import partners
from core.errors import Conflict, Invalid, NotFound
from core.models import NotifyChannel, Partner, Receipt, Sla
from core.notify import channels
from core.notify.notices import Notice
from core.object_names import InvalidName, validate_name
from core.tenancy import Scope, account_name

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")
PATTERN_CHARS = 200


class NoSuchSla(NotFound):
    pass


def parse_by(text: str) -> time:
    """'09:00' or '09:00:30' (24-hour) → a time of day."""
    match = TIME.fullmatch(text)
    if match is None:
        raise Invalid(f"--by is a 24-hour time of day, HH:MM or HH:MM:SS (e.g. 09:00), not {text!r}")
    return time(int(match[1]), int(match[2]), int(match[3] or 0))


def parse_days(text: str) -> list[str]:
    """'mon-fri', 'mon,wed,fri', 'sat-sun', 'fri-mon' or 'daily' → the weekdays, in week order."""
    spec = text.strip().lower()
    if spec in ("daily", "*", "all"):
        return list(DAYS)
    chosen: set[int] = set()
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        if first not in DAYS or (dash and last not in DAYS):
            raise Invalid(
                f"--days is weekdays ({', '.join(DAYS)}) or ranges of them, comma-separated "
                f"(mon-fri, mon,wed,fri, daily), not {text!r}"
            )
        start = DAYS.index(first)
        stop = DAYS.index(last) if dash else start
        day = start
        while True:  # a range may wrap past Sunday (fri-mon)
            chosen.add(day)
            if day == stop:
                break
            day = (day + 1) % 7
    return [DAYS[day] for day in sorted(chosen)]


def parse_timezone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"--timezone is an IANA time zone name (Europe/Berlin, UTC), not {text!r}") from None


def check_pattern(text: str) -> str:
    if not text or len(text) > PATTERN_CHARS or any(not c.isprintable() for c in text):
        raise Invalid(f"--pattern is a glob of at most {PATTERN_CHARS} printable characters")
    return text


def add(
    session: Session,
    scope: Scope,
    name: str,
    *,
    partner: str,
    by: str,
    days: str,
    channel: str,
    pattern: str = "*",
    timezone: str = "UTC",
    min_files: int = 1,
) -> Sla:
    scope.require_to("endpoints.change")
    try:
        validate_name(name)
    except InvalidName as exc:
        raise Invalid(str(exc)) from None
    deadline_time, weekdays, zone = parse_by(by), parse_days(days), parse_timezone(timezone)
    if min_files < 1:
        raise Invalid("--min-files is at least 1")
    partner_row = partners.require(session, scope, partner)
    target = channels.require(session, scope, channel)
    if session.exec(select(Sla).where(Sla.account_id == scope.account_id, Sla.name == name)).first():
        raise Conflict(f"an SLA named {name!r} exists")
    sla = Sla(
        account_id=scope.account_id,
        name=name,
        partner_id=partner_row.id or 0,
        pattern=check_pattern(pattern),
        by=deadline_time.isoformat(),
        days=",".join(weekdays),
        timezone=zone.key,
        min_files=min_files,
        channel_id=target.id or 0,
    )
    session.add(sla)
    session.flush()
    return sla


def require(session: Session, scope: Scope, name: str) -> Sla:
    sla = session.exec(select(Sla).where(Sla.account_id == scope.account_id, Sla.name == name)).first()
    if sla is None:
        raise NoSuchSla(f"no SLA named {name!r}")
    return sla


def remove(session: Session, scope: Scope, name: str) -> None:
    scope.require_to("endpoints.change")
    session.delete(require(session, scope, name))


# --- deadlines ---------------------------------------------------------------------------------


def deadline_on(sla: Sla, day: date) -> datetime:
    """The SLA's deadline on local `day`, in UTC (a time skipped or repeated by a clock change is
    read as zoneinfo does: the earlier offset)."""
    local = datetime.combine(day, time.fromisoformat(sla.by), tzinfo=ZoneInfo(sla.timezone))
    return local.astimezone(UTC)


def last_deadline_by(sla: Sla, moment: datetime) -> datetime | None:
    """The latest deadline at or before `moment` (within the last 8 days)."""
    weekdays = {DAYS.index(day) for day in sla.days.split(",")}
    today = moment.astimezone(ZoneInfo(sla.timezone)).date()
    for back in range(9):
        day = today - timedelta(days=back)
        if day.weekday() in weekdays:
            deadline = deadline_on(sla, day)
            if deadline <= moment:
                return deadline
    return None


def previous_deadline(sla: Sla, deadline: datetime) -> datetime | None:
    return last_deadline_by(sla, deadline - timedelta(microseconds=1))


def next_deadline(sla: Sla, moment: datetime) -> datetime | None:
    weekdays = {DAYS.index(day) for day in sla.days.split(",")}
    today = moment.astimezone(ZoneInfo(sla.timezone)).date()
    for ahead in range(9):
        day = today + timedelta(days=ahead)
        if day.weekday() in weekdays:
            deadline = deadline_on(sla, day)
            if deadline > moment:
                return deadline
    return None


# --- checks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """One deadline checked: met or missed; a miss has the notice to tell through `channel_id`."""

    sla_id: int
    sla: str
    account_id: int
    partner_id: int
    deadline: datetime
    outcome: str  # "met" or "missed"
    count: int
    expected: int
    channel_id: int
    notice: Notice | None  # None when met


def received_between(session: Session, sla: Sla, after: datetime | None, until: datetime) -> int:
    """The partner's files matching the SLA's glob received in (after, until]."""
    query = select(Receipt.name).where(
        Receipt.account_id == sla.account_id,
        Receipt.partner_id == sla.partner_id,
        col(Receipt.received_at) <= until,
    )
    if after is not None:
        query = query.where(col(Receipt.received_at) > after)
    return sum(1 for name in session.exec(query) if fnmatch.fnmatchcase(name, sla.pattern))


def check_due(session: Session, now: datetime) -> list[Checked]:
    """Check every SLA whose latest deadline passed and is not checked yet; record met or missed,
    and return what was checked (a miss with its notice to tell). Several checkers at once: each
    deadline is claimed by one."""
    checked: list[Checked] = []
    for sla in list(session.exec(select(Sla).order_by(col(Sla.id)))):
        deadline = last_deadline_by(sla, now)
        if deadline is None or deadline <= sla.created_at:
            continue
        if sla.last_deadline is not None and deadline <= sla.last_deadline:
            continue
        claimed = session.execute(
            update(Sla)
            .where(
                col(Sla.id) == sla.id,
                or_(col(Sla.last_deadline).is_(None), col(Sla.last_deadline) < deadline),
            )
            .values(last_deadline=deadline)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue  # another checker took this deadline
        count = received_between(session, sla, previous_deadline(sla, deadline), deadline)
        outcome = "met" if count >= sla.min_files else "missed"
        session.execute(
            update(Sla).where(col(Sla.id) == sla.id).values(last_outcome=outcome, last_count=count)
        )
        notice = missed_notice(session, sla, deadline, count) if outcome == "missed" else None
        checked.append(
            Checked(
                sla_id=sla.id or 0,
                sla=sla.name,
                account_id=sla.account_id,
                partner_id=sla.partner_id,
                deadline=deadline,
                outcome=outcome,
                count=count,
                expected=sla.min_files,
                channel_id=sla.channel_id,
                notice=notice,
            )
        )
    session.expire_all()
    return checked


def missed_notice(session: Session, sla: Sla, deadline: datetime, count: int) -> Notice:
    partner = session.get(Partner, sla.partner_id)
    local = deadline.astimezone(ZoneInfo(sla.timezone))
    return Notice(
        what="sla-missed",
        account=account_name(sla.account_id),
        items=[],
        total=count,
        filters={
            "sla": sla.name,
            "partner": partner.name if partner else str(sla.partner_id),
            "pattern": sla.pattern,
            "deadline": f"{local:%Y-%m-%d %H:%M:%S} {sla.timezone}",
            "received": str(count),
            "expected": str(sla.min_files),
        },
    )


# --- listing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlaView:
    name: str
    partner: str
    pattern: str
    by: str
    days: str
    timezone: str
    min_files: int
    channel: str
    last_deadline: datetime | None
    last_outcome: str | None
    last_count: int | None
    next_deadline: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "partner": self.partner,
            "pattern": self.pattern,
            "by": self.by,
            "days": self.days,
            "timezone": self.timezone,
            "min_files": self.min_files,
            "channel": self.channel,
            "last_deadline": self.last_deadline.isoformat() if self.last_deadline else None,
            "last_outcome": self.last_outcome,
            "last_count": self.last_count,
            "next_deadline": self.next_deadline.isoformat() if self.next_deadline else None,
        }


def listed(session: Session, scope: Scope, now: datetime) -> list[SlaView]:
    rows = session.exec(
        select(Sla, Partner.name, NotifyChannel.name)
        .join(Partner, col(Sla.partner_id) == Partner.id)
        .join(NotifyChannel, col(Sla.channel_id) == NotifyChannel.id)
        .where(Sla.account_id == scope.account_id)
        .order_by(col(Sla.name))
    ).all()
    return [
        SlaView(
            sla.name,
            partner,
            sla.pattern,
            sla.by,
            sla.days,
            sla.timezone,
            sla.min_files,
            channel,
            sla.last_deadline,
            sla.last_outcome,
            sla.last_count,
            next_deadline(sla, now),
        )
        for sla, partner, channel in rows
    ]

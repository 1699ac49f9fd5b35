"""An SLA's deadlines (pure logic): local time on chosen weekdays in a time zone, across DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import Invalid
from core.models import Sla
from core.notify import slas


def sla(by: str = "09:00:00", days: str = "mon,tue,wed,thu,fri", timezone: str = "Europe/Berlin") -> Sla:
    return Sla(account_id=1, name="s", partner_id=1, by=by, days=days, timezone=timezone, channel_id=1)


def test_days_ranges_lists_and_wraps() -> None:
    assert slas.parse_days("mon-fri") == ["mon", "tue", "wed", "thu", "fri"]
    assert slas.parse_days("fri-mon") == ["mon", "fri", "sat", "sun"]
    assert slas.parse_days("MON, wed,fri") == ["mon", "wed", "fri"]
    assert slas.parse_days("daily") == list(slas.DAYS)
    for bad in ("", "monday", "mon-", "mon-fri,xyz"):
        with pytest.raises(Invalid):
            slas.parse_days(bad)


def test_by_is_a_24_hour_time() -> None:
    assert slas.parse_by("9:05").isoformat() == "09:05:00"
    assert slas.parse_by("23:59:59").isoformat() == "23:59:59"
    for bad in ("24:00", "09:60", "9", "09:00:00:00", "09:00\n"):
        with pytest.raises(Invalid):
            slas.parse_by(bad)


def test_the_last_deadline_skips_days_off_and_follows_the_zone_across_dst() -> None:
    weekdays = sla()
    # Monday 2026-03-30 08:00 Berlin (summer time, +02:00): the last deadline is Friday's, 08:00 UTC
    # (winter time, +01:00, ended on Sunday the 29th).
    monday_early = datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    assert slas.last_deadline_by(weekdays, monday_early) == datetime(2026, 3, 27, 8, 0, tzinfo=UTC)
    assert slas.next_deadline(weekdays, monday_early) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    monday_late = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # exactly the deadline: it has passed
    assert slas.last_deadline_by(weekdays, monday_late) == monday_late
    assert slas.previous_deadline(weekdays, monday_late) == datetime(2026, 3, 27, 8, 0, tzinfo=UTC)

"""SLAs through a real `tradelane up`: a deadline a few seconds ahead with no matching upload sends
exactly one signed alert; one whose file came in time is met and sends nothing; bad input is
refused with a clear message."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.helpers import PartnerClient, prefect_events, unique
from tests.notify.receiver import Receiver, http_receiver
from tests.system import System

PASSWORD = "Notify_sla_P@ssw0rd!"
SECRET = "sla-hook-secret-" + "Wm7" * 8
ZONE = "Asia/Kolkata"  # +05:30: the deadline is read in the SLA's zone, not UTC


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as running:
        yield running


def local_time_in(seconds: float) -> str:
    return (datetime.now(ZoneInfo(ZONE)) + timedelta(seconds=seconds)).strftime("%H:%M:%S")


def slas(system: System) -> dict[str, Any]:
    return {sla["name"]: sla for sla in json.loads(system.cli("sla", "list", "--json").stdout)}


def wait_for_outcome(system: System, name: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: dict[str, Any] = slas(system)[name]
        if found["last_outcome"] is not None:
            return found
        time.sleep(0.5)
    raise AssertionError(f"SLA {name} not checked after {timeout} s: {slas(system)[name]}")


def test_a_missed_deadline_alerts_once_and_a_met_one_not_at_all(
    notify_system: System, receiver: Receiver
) -> None:
    system = notify_system
    hook, late, punctual = unique("sla-hook"), unique("sla-late"), unique("sla-ok")
    system.cli("notify", "channel", "add", hook, "--webhook", receiver.url, "--secret", SECRET)
    for partner in (late, punctual):
        system.cli("partner", "add", partner, "--password", PASSWORD)
    # `late` sends a file, but not one the SLA counts; `punctual` sends the expected one in time.
    system.cli(
        "sla", "add", f"{late}-csv", "--partner", late, "--pattern", "*.csv", "--by", local_time_in(10),
        "--days", "daily", "--timezone", ZONE, "--to", hook,
    )  # fmt: skip
    system.cli(
        "sla", "add", f"{punctual}-csv", "--partner", punctual, "--pattern", "*.csv",
        "--by", local_time_in(16), "--days", "daily", "--timezone", ZONE, "--to", hook,
    )  # fmt: skip
    with PartnerClient(system, late, PASSWORD) as client:
        assert client.upload("notes.txt", b"not a csv").status_code == 201
    with PartnerClient(system, punctual, PASSWORD) as client:
        assert client.upload("orders.csv", b"a,b\n1,2\n").status_code == 201

    # The later deadline checked means the checker ran several times after the earlier one.
    met = wait_for_outcome(system, f"{punctual}-csv")
    assert (met["last_outcome"], met["last_count"]) == ("met", 1)
    missed = slas(system)[f"{late}-csv"]
    assert (missed["last_outcome"], missed["last_count"]) == ("missed", 0)

    [alert] = receiver.wait_for(lambda got: len(got) >= 1)
    assert (
        alert.headers["x-tradelane-signature"]
        == "sha256=" + hmac.new(SECRET.encode(), alert.body, hashlib.sha256).hexdigest()
    )
    body = json.loads(alert.body)
    assert body["what"] == "sla-missed"
    assert body["filters"]["sla"] == f"{late}-csv"
    assert body["filters"]["partner"] == late
    assert (body["filters"]["received"], body["filters"]["expected"]) == ("0", "1")
    assert body["filters"]["deadline"].endswith(ZONE)
    assert f"SLA {late}-csv missed" in body["summary"]
    assert SECRET not in alert.body.decode()
    # Exactly one: no alert for the met SLA, no second one for the missed deadline.
    assert len(receiver.requests) == 1
    # Both checks are in Prefect's event feed too.
    seen = sla_events(system, {f"{late}-csv", f"{punctual}-csv"})
    assert seen[f"{late}-csv"]["event"] == "tradelane.sla.missed"
    assert seen[f"{late}-csv"]["payload"]["received"] == 0
    assert seen[f"{punctual}-csv"]["event"] == "tradelane.sla.met"


def sla_events(system: System, names: set[str], timeout: float = 60) -> dict[str, Any]:
    """The `tradelane.sla.*` events of these SLAs in Prefect's feed, by SLA name, once all came."""
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = {
            e["resource"]["prefect.resource.name"]: e
            for e in prefect_events(system.prefect_api)
            if e["event"].startswith("tradelane.sla.") and e["resource"].get("prefect.resource.name") in names
        }
        if set(found) == names:
            return found
        time.sleep(0.5)
    raise AssertionError(f"SLA events: {sorted(found)}, wanted {sorted(names)}")


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--by", "25:00", "--by is a 24-hour time of day"),
        ("--by", "9am", "--by is a 24-hour time of day"),
        ("--days", "mon-fry", "--days is weekdays"),
        ("--timezone", "Mars/Olympus", "--timezone is an IANA time zone name"),
        ("--to", "no-such-channel", "no-such-channel"),
        ("--partner", "no-such-partner", "no-such-partner"),
        ("--min-files", "0", "--min-files is at least 1"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    notify_system: System, receiver: Receiver, option: str, value: str, said: str
) -> None:
    system = notify_system
    hook, partner, name = unique("sla-bad-hook"), unique("sla-bad"), unique("sla-bad")
    system.cli("notify", "channel", "add", hook, "--webhook", receiver.url)
    system.cli("partner", "add", partner, "--password", PASSWORD)
    good = {
        "--partner": partner, "--by": "09:00", "--days": "mon-fri", "--timezone": "Europe/Berlin",
        "--to": hook, "--min-files": "1",
    }  # fmt: skip
    good[option] = value
    result = system.cli("sla", "add", name, *[part for pair in good.items() for part in pair], check=False)
    assert result.returncode == 1
    assert said in result.stderr
    assert "Traceback" not in result.stderr
    assert name not in system.cli("sla", "list").stdout

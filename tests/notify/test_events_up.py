"""The `tradelane.file.*` events through a real `tradelane up`: received at intake, validated,
rejected, delivered, failed (after the last try only) and replayed, each naming the file and
relating its partner, data flow, account and flow run, as Prefect's event feed shows them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.e2e.helpers import PartnerClient, prefect_events, settled, unique
from tests.system import System

PASSWORD = "Notify_events_P@ssw0rd!"


def file_events(system: System, partner: str, wanted: int, timeout: float = 60) -> list[Any]:
    """The tradelane.file.* events of this partner's files, once there are `wanted` of them."""
    deadline = time.monotonic() + timeout
    found: list[Any] = []
    while time.monotonic() < deadline:
        found = [
            e
            for e in prefect_events(system.prefect_api)
            if e["event"].startswith("tradelane.file.") and e["payload"].get("partner") == partner
        ]
        if len(found) >= wanted:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{len(found)} events, wanted {wanted}: {[e['event'] for e in found]}")


def related(event: Any, role: str) -> dict[str, str]:
    [found] = [r for r in event["related"] if r["prefect.resource.role"] == role]
    return dict(found)


def test_every_file_event_names_the_file_and_relates_who_and_what(
    notify_system: System, tmp_path: Path
) -> None:
    system = notify_system
    partner, good_flow, bad_flow = unique("ev"), unique("ev-json"), unique("ev-taken")
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "taken.txt").write_bytes(b"already here")
    system.cli("partner", "add", partner, "--password", PASSWORD)
    system.cli("endpoint", "add", good_flow, "--type", "file", "--path", str(archive))
    system.cli(
        "flow", "add", good_flow, "--source", f"mailbox:{partner}", "--dest", good_flow,
        "--pattern", "*.json", "--validate", "json",
    )  # fmt: skip
    system.cli(
        "flow", "add", bad_flow, "--source", f"mailbox:{partner}", "--dest", good_flow,
        "--pattern", "*.txt", "--dest-path", "taken.txt", "--on-conflict", "fail", "--retries", "0",
    )  # fmt: skip
    with PartnerClient(system, partner, PASSWORD) as client:
        for name, body in (("ok.json", b'{"a": 1}'), ("bad.json", b"{nope"), ("late.txt", b"late")):
            assert client.upload(name, body).status_code == 201
    rows = system.wait_for(settled(3), partner=partner)
    by_name = {row["file"]: row for row in rows}
    assert {r["file"]: r["state"] for r in rows} == {
        "ok.json": "delivered",
        "bad.json": "rejected",
        "late.txt": "failed",
    }
    system.cli("replay", str(by_name["ok.json"]["id"]))

    # received ×3; ok.json validated and delivered, then replayed, validated and delivered again;
    # bad.json rejected; late.txt failed (no validators: no validated event)
    events = file_events(system, partner, wanted=10)
    seen = sorted((e["event"], e["resource"]["prefect.resource.name"]) for e in events)
    assert seen == sorted(
        [
            ("tradelane.file.received", "ok.json"),
            ("tradelane.file.received", "bad.json"),
            ("tradelane.file.received", "late.txt"),
            ("tradelane.file.validated", "ok.json"),
            ("tradelane.file.delivered", "ok.json"),
            ("tradelane.file.rejected", "bad.json"),
            ("tradelane.file.failed", "late.txt"),
            ("tradelane.file.replayed", "ok.json"),
            ("tradelane.file.validated", "ok.json"),
            ("tradelane.file.delivered", "ok.json"),
        ]
    ), seen
    received = next(
        e for e in events if e["event"] == "tradelane.file.received" and e["payload"]["file"] == "ok.json"
    )
    receipt = received["payload"]["receipt"]
    assert received["resource"]["prefect.resource.id"] == f"tradelane.file.{receipt}"
    assert all(
        e["resource"]["prefect.resource.id"] == f"tradelane.file.{receipt}"
        for e in events
        if e["payload"]["file"] == "ok.json"
    )
    assert received["resource"]["tradelane.file.name"] == "ok.json"
    assert received["payload"]["size"] == 8 and received["payload"]["protocol"] == "rest"
    assert received["payload"]["sha256"] == by_name["ok.json"]["sha256"]
    assert related(received, "partner")["prefect.resource.name"] == partner
    assert related(received, "data-flow")["prefect.resource.name"] == good_flow
    assert related(received, "account")["prefect.resource.name"] == "home"

    failed = next(e for e in events if e["event"] == "tradelane.file.failed")
    assert "taken.txt" in failed["payload"]["error"]
    assert related(failed, "data-flow")["prefect.resource.name"] == bad_flow
    run_id = by_name["late.txt"]["flow_run_id"]
    assert related(failed, "flow-run")["prefect.resource.id"] == f"prefect.flow-run.{run_id}"
    assert failed["resource"]["tradelane.transfer.id"] == str(by_name["late.txt"]["id"])
    # Of the run's own related resources (what Prefect joins to an event of a run), the deployment;
    # not those that repeat what the event says or are the same for every run (flows/events.py).
    assert related(failed, "deployment")["prefect.resource.id"].startswith("prefect.deployment.")
    roles = {r["prefect.resource.role"] for e in events for r in e["related"]}
    assert roles.isdisjoint({"flow", "work-queue", "work-pool", "tag"}), roles
    assert all(len({r["prefect.resource.id"] for r in e["related"]}) == len(e["related"]) for e in events)

    rejected = next(e for e in events if e["event"] == "tradelane.file.rejected")
    assert rejected["payload"]["error"]
    delivered = [e for e in events if e["event"] == "tradelane.file.delivered"]
    assert all(
        str(archive) in e["payload"]["destination"] or "ok" in e["payload"]["destination"] for e in delivered
    )
    replayed = next(e for e in events if e["event"] == "tradelane.file.replayed")
    assert replayed["payload"]["replay_of"] == by_name["ok.json"]["id"]

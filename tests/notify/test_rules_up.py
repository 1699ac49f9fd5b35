"""Rules through a real `tradelane up`: `notify on …` becomes a Prefect automation within seconds,
whose run of the notify deployment sends through the channel: one e-mail and one signed webhook
for a file that failed after its retries, one digest message for a burst."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import PartnerClient, prefect_paged, settled, unique
from tests.endpoint_servers.mail import SmtpServer
from tests.notify.receiver import Receiver, http_receiver
from tests.servers import free_port
from tests.system import System

PASSWORD = "Notify_rules_P@ssw0rd!"
SECRET = "hook-secret-" + "Zq9" * 8
S3_SECRET = "s3-secret-" + "Kp4" * 8
# The burst: 200 files taken in while their flow is disabled, then carried by one run
# (TRADELANE_DISPATCH_BATCH_SIZE=200 in conftest.py), fail within a second or two (a `fail` conflict
# policy on a taken name: refused at once, never retried).
BURST = 200
NAME = "po <!channel> & Bcc: x@evil.test.txt"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as running:
        yield running


def wait_for_automation(system: System, rule_id: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    name = f"tradelane notify rule {rule_id}"
    while time.monotonic() < deadline:
        found = [a for a in prefect_paged(f"{system.prefect_api}/automations/filter") if a["name"] == name]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no automation {name!r} in Prefect after {timeout} s")


def notify_runs_settled(system: System, rule_ids: list[int], wanted: int, timeout: float = 90) -> list[Any]:
    """The notify flow runs of these rules, once `wanted` of them are final."""
    deadline = time.monotonic() + timeout
    runs: list[Any] = []
    while time.monotonic() < deadline:
        names = {f"notify rule {rule_id}" for rule_id in rule_ids}
        runs = [r for r in prefect_paged(f"{system.prefect_api}/flow_runs/filter") if r["name"] in names]
        final = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
        if len(final) >= wanted and len(final) == len(runs):
            return runs
        time.sleep(0.5)
    raise AssertionError(f"notify runs not settled: {[(r['name'], r['state_type']) for r in runs]}")


def rule(system: System, *args: str) -> int:
    return int(json.loads(system.cli("notify", "on", *args, "--json").stdout)["id"])


def test_a_failed_file_sends_one_email_and_one_signed_webhook(
    notify_system: System, smtp_server: SmtpServer, receiver: Receiver
) -> None:
    system = notify_system
    partner, flow, endpoint = unique("nf"), unique("nf-flow"), unique("nf-s3")
    mailbox = smtp_server.root.create()
    mail, hook = unique("mail"), unique("hook")
    system.cli("notify", "channel", "add", mail, "--email", smtp_server.address(mailbox))
    system.cli("notify", "channel", "add", hook, "--webhook", receiver.url, "--secret", SECRET)
    system.cli("partner", "add", partner, "--password", PASSWORD)
    system.cli(
        "endpoint", "add", endpoint, "--type", "s3", "--bucket", "nowhere",
        "--endpoint-url", f"http://127.0.0.1:{free_port()}",
        "--access-key-id", "k", "--secret-access-key", S3_SECRET,
    )  # fmt: skip
    system.cli(
        "flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint,
        "--retries", "2", "--retry-delay", "0.2",
    )  # fmt: skip
    rules = [
        rule(system, "failed", "--flow", flow, "--to", mail),
        rule(system, "failed", "--flow", flow, "--to", hook),
    ]
    for rule_id in rules:
        wait_for_automation(system, rule_id)
    with PartnerClient(system, partner, PASSWORD) as client:
        # (Control characters never get this far: every door refuses them in names, README.)
        assert client.upload(NAME, b"hello").status_code == 201
    [row] = system.wait_for(settled(1), timeout=90, flow=flow)
    assert row["state"] == "failed" and row["attempts"] == 3, row
    notify_runs_settled(system, rules, wanted=2)

    [request] = receiver.requests
    signed = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-tradelane-signature"] == signed
    body = json.loads(request.body)
    [file] = body["files"]
    assert file["file"] == row["file"] and file["partner"] == partner and file["flow"] == flow
    assert file["transfer"] == row["id"] and file["error"]
    assert file["next"] == f"fix the cause, then carry it again: tradelane replay {row['id']}"
    assert file["prefect_run"] and row["flow_run_id"] in file["prefect_run"]

    [message] = smtp_server.root.messages(mailbox)
    assert message["Bcc"] is None
    assert message["Subject"].strip() == f"[tradelane] {NAME} from {partner} failed"  # (folded: unfolded)
    content = message.get_content()
    assert f"tradelane replay {row['id']}" in content and flow in content
    for secret in (SECRET, S3_SECRET, smtp_server.password, system.env["TRADELANE_PREFECT_AUTH"]):
        assert secret not in content and secret not in request.body.decode()


def test_a_burst_of_failures_with_a_digest_sends_one_message_listing_them(
    notify_system: System, receiver: Receiver, tmp_path: Path
) -> None:
    system = notify_system
    partner, flow, burst = unique("nd"), unique("nd-flow"), BURST
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "taken.txt").write_bytes(b"here first")
    hook = unique("digest")
    system.cli("notify", "channel", "add", hook, "--webhook", receiver.url)
    system.cli("partner", "add", partner, "--password", PASSWORD)
    system.cli("endpoint", "add", flow, "--type", "file", "--path", str(folder))
    system.cli(
        "flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", flow,
        "--dest-path", "taken.txt", "--on-conflict", "fail",
    )  # fmt: skip
    rule_id = rule(system, "failed", "--flow", flow, "--to", hook, "--digest", "10s")
    wait_for_automation(system, rule_id)
    system.cli("flow", "disable", flow)  # the burst is taken in first, then carried at once
    with PartnerClient(system, partner, PASSWORD) as client:
        upload = client.folder_ids()["upload"]
        for n in range(burst):
            assert client.upload(f"f{n:03}.txt", b"x", upload).status_code == 201
    system.cli("flow", "enable", flow)
    rows = system.wait_for(settled(burst), timeout=300, flow=flow)
    assert {r["state"] for r in rows} == {"failed"}
    everyone = [f"f{n:03}.txt" for n in range(burst)]

    def listed(requests: list[Any]) -> list[str]:
        return [f["file"] for request in requests for f in json.loads(request.body)["files"]]

    receiver.wait_for(lambda requests: sorted(set(listed(requests))) == everyone, timeout=120)
    [run] = notify_runs_settled(system, [rule_id], wanted=1)
    assert run["state_type"] == "COMPLETED", run
    # One run carried the burst: its failures are recorded together, well within one 10 s window,
    # so the rule fires once and its one message lists all 200.
    assert len({r["flow_run_id"] for r in rows}) == 1
    [request] = receiver.requests
    body = json.loads(request.body)
    assert body["digest_seconds"] == 10 and body["count"] == burst
    assert sorted(f["file"] for f in body["files"]) == everyone


def test_removing_a_rule_removes_its_automation(notify_system: System, receiver: Receiver) -> None:
    system = notify_system
    hook = unique("gone")
    system.cli("notify", "channel", "add", hook, "--webhook", receiver.url)
    rule_id = rule(system, "delivered", "--to", hook)
    wait_for_automation(system, rule_id)
    assert str(rule_id) in system.cli("notify", "rules").stdout
    system.cli("notify", "off", str(rule_id))
    deadline = time.monotonic() + 30
    name = f"tradelane notify rule {rule_id}"
    while any(a["name"] == name for a in prefect_paged(f"{system.prefect_api}/automations/filter")):
        assert time.monotonic() < deadline, "the automation outlived its rule"
        time.sleep(0.5)
    assert httpx.get(system.api + "/api/health").status_code == 200

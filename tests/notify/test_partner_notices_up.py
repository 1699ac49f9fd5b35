"""Partner notices through a real `tradelane up`: a partner whose contacts asked to be told gets one
e-mail (at the test SMTP server) when its upload is rejected, with the reason and how to resend,
and nothing of the operator's (no Prefect link, no destination); a partner that did not ask gets none."""

from __future__ import annotations

import time
from email.message import EmailMessage
from pathlib import Path

from tests.e2e.helpers import PartnerClient, prefect_paged, settled, unique
from tests.endpoint_servers.mail import SmtpServer
from tests.system import System

PASSWORD = "Notify_partner_P@ssw0rd!"


def wait_for_mail(smtp_server: SmtpServer, mailbox: str, timeout: float = 90) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = smtp_server.root.messages(mailbox)
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no mail for {mailbox} after {timeout} s")


def notice_runs_done(system: System, transfer_ids: list[int], timeout: float = 90) -> None:
    """The partner notice runs of these transfers, once all of them completed."""
    names = {f"tell partner: transfer {transfer_id}" for transfer_id in transfer_ids}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in prefect_paged(f"{system.prefect_api}/flow_runs/filter") if r["name"] in names]
        if {r["name"] for r in runs if r["state_type"] == "COMPLETED"} == names:
            return
        time.sleep(0.5)
    raise AssertionError(f"partner notice runs of {transfer_ids} not all completed")


def test_a_rejected_upload_tells_the_partners_contacts_why_and_how_to_resend(
    notify_system: System, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    system = notify_system
    told, quiet, flow = unique("pn-told"), unique("pn-quiet"), unique("pn-json")
    contact, other = smtp_server.root.create(), smtp_server.root.create()
    archive = tmp_path / "archive"
    archive.mkdir()
    system.cli("endpoint", "add", flow, "--type", "file", "--path", str(archive))
    for partner, mailbox, tell in ((told, contact, "--tell-rejected"), (quiet, other, "--no-tell-rejected")):
        system.cli("partner", "add", partner, "--password", PASSWORD)
        system.cli("partner", "set", partner, "--contact-email", smtp_server.address(mailbox), tell)
        system.cli(
            "flow", "add", f"{flow}-{partner}", "--source", f"mailbox:{partner}", "--dest", flow,
            "--pattern", "*.json", "--validate", "json",
        )  # fmt: skip
    # The partner whose contacts did not ask is rejected first: its rejection must send nothing.
    with PartnerClient(system, quiet, PASSWORD) as client:
        assert client.upload("orders.json", b"{broken").status_code == 201
    [quiet_row] = system.wait_for(settled(1), partner=quiet)
    with PartnerClient(system, told, PASSWORD) as client:
        assert client.upload("orders.json", b"{broken").status_code == 201
    [row] = system.wait_for(settled(1), partner=told)
    assert row["state"] == "rejected"

    [message] = wait_for_mail(smtp_server, contact)
    assert message["To"] == smtp_server.address(contact)
    assert "your file orders.json was rejected" in message["Subject"]
    body = message.get_content()
    assert "Reason:" in body and "json" in body.lower()
    assert "upload it again" in body and "upload/" in body
    assert "http" not in body  # no Prefect run or console links: those are the operator's
    notice_runs_done(system, [quiet_row["id"], row["id"]])
    assert smtp_server.root.messages(other) == []

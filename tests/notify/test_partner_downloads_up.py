"""Partner notices of files waiting in download/, through a real `tradelane up`: a data flow that
delivers into a partner's mailbox (`--dest mailbox:P`) makes one e-mail to P's contacts (at the
test SMTP server) if P asked (`--tell-downloads`), naming the files of the digest window (a burst is
one message), where to fetch them and that they stay; a partner that did not ask gets none, and
no partner's contact (of this account or another) ever hears of another partner's files."""

from __future__ import annotations

import time

from tests.e2e.helpers import PartnerClient, prefect_events, prefect_paged, settled, unique
from tests.endpoint_servers.mail import SmtpServer
from tests.notify.test_partner_notices_up import wait_for_mail
from tests.system import System

PASSWORD = "Notify_downloads_P@ssw0rd!"
RUN_PREFIX = "tell partner: download, transfer "


def download_runs_done(system: System, windows: list[set[int]], timeout: float = 120) -> None:
    """Once each window (the transfers delivered into one partner's mailbox in it) has its
    partner-download run completed: the run is named for the transfer whose event opened it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = prefect_paged(f"{system.prefect_api}/flow_runs/filter")
        done = {r["name"].removeprefix(RUN_PREFIX) for r in runs if r["state_type"] == "COMPLETED"}
        if all(done & {str(transfer_id) for transfer_id in window} for window in windows):
            return
        time.sleep(0.5)
    raise AssertionError(f"partner-download runs of {windows} not all completed")


def test_files_delivered_into_a_partners_download_tell_its_contacts_once(
    notify_system: System, smtp_server: SmtpServer
) -> None:
    system = notify_system
    sender, told, quiet, far = unique("dl-from"), unique("dl-told"), unique("dl-quiet"), unique("dl-far")
    elsewhere = unique("dlacct")
    told_box, quiet_box, far_box = (smtp_server.root.create() for _ in range(3))
    system.cli("account", "add", elsewhere, "--email", f"boss@{elsewhere}.example", "--password", PASSWORD)
    system.cli("partner", "add", sender, "--password", PASSWORD)
    for partner, mailbox, tell in (
        (told, told_box, "--tell-downloads"),
        (quiet, quiet_box, "--no-tell-downloads"),
    ):
        system.cli("partner", "add", partner, "--password", PASSWORD)
        system.cli(
            "partner",
            "set",
            partner,
            "--contact-email",
            smtp_server.address(mailbox),
            tell,
            "--tell-rejected",
        )
        system.cli(
            "flow", "add", f"to-{partner}", "--source", f"mailbox:{sender}",
            "--dest", f"mailbox:{partner}", "--pattern", f"{partner}-*",
        )  # fmt: skip
    # Another account's partner, told too, fed by its own sender.
    far_sender = unique("dl-farfrom")
    for partner in (far_sender, far):
        system.cli("partner", "add", partner, "--password", PASSWORD, "--account", elsewhere)
    system.cli("partner", "set", far, "--contact-email", smtp_server.address(far_box), "--tell-downloads",
               "--account", elsewhere)  # fmt: skip
    system.cli("flow", "add", f"to-{far}", "--source", f"mailbox:{far_sender}", "--dest", f"mailbox:{far}",
               "--account", elsewhere)  # fmt: skip

    burst = [f"{told}-{n}.edi" for n in range(3)]
    system.cli("flow", "disable", f"to-{told}")  # the burst is taken in first, then carried at once
    with PartnerClient(system, sender, PASSWORD) as client:
        for name in [*burst, f"{quiet}-1.edi"]:
            assert client.upload(name, b"ISA*00*~\n").status_code == 201
    system.cli("flow", "enable", f"to-{told}")
    with PartnerClient(system, far_sender, PASSWORD) as client:
        assert client.upload("far-order.edi", b"ISA*01*~\n").status_code == 201
    rows = system.wait_for(settled(4), partner=sender)
    [far_row] = system.wait_for(settled(1), partner=far_sender, account=elsewhere)
    assert {row["state"] for row in [*rows, far_row]} == {"delivered"}

    [message] = wait_for_mail(smtp_server, told_box)
    assert message["To"] == smtp_server.address(told_box)
    assert "3 files are waiting for you in download/" in message["Subject"]
    body = message.get_content()
    for name in burst:
        assert f"* download/{name} (9 bytes, delivered " in body
    assert f"sftp -P {system.env['TRADELANE_SFTP_PORT']} {told}@" in body and "/portal/download" in body
    assert "until they are fetched" in body
    assert quiet not in body and "far-order" not in body and PASSWORD not in body
    assert "/runs/" not in body and "flow-run" not in body  # no Prefect or console links: the operator's
    [far_message] = wait_for_mail(smtp_server, far_box)
    far_body = far_message.get_content()
    assert "download/far-order.edi is waiting for you" in far_message["Subject"]
    assert told not in far_body and "far-order.edi" in far_body

    # The delivered events relate the partner whose download/ got the file, role `recipient` (what
    # the automation matches and buckets on), beside the partner the file came from.
    [event] = [
        e for e in prefect_events(system.prefect_api)
        if e["event"] == "tradelane.file.delivered" and e["payload"].get("file") == burst[0]
    ]  # fmt: skip
    roles = {r["prefect.resource.role"]: r for r in event["related"]}
    assert roles["recipient"]["prefect.resource.name"] == told and event["payload"]["recipient"] == told
    assert roles["recipient"]["prefect.resource.id"].startswith("tradelane.partner.")
    assert roles["partner"]["prefect.resource.name"] == sender
    # Every window's run has ended: the partner that did not ask got nothing, the others one each.
    windows = [{row["id"] for row in rows if row["file"].startswith(p)} for p in (told, quiet)]
    download_runs_done(system, [*windows, {far_row["id"]}])
    assert smtp_server.root.messages(quiet_box) == []
    assert len(smtp_server.root.messages(told_box)) == 1 and len(smtp_server.root.messages(far_box)) == 1

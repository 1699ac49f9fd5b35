"""A data flow delivers into another partner's download/, where that partner fetches it."""

from __future__ import annotations

import hashlib
import os

from tests.e2e.helpers import PartnerClient, delivered, unique
from tests.system import System

PASSWORD = "mailbox-dest-Pass-1"


def test_flow_delivers_into_partner_download_folder(system: System) -> None:
    sender, receiver, flow = unique("send"), unique("recv"), unique("relay")
    for name in (sender, receiver):
        system.cli("partner", "add", name, "--password", PASSWORD)
    system.cli("flow", "add", flow, "--source", f"mailbox:{sender}", "--dest", f"mailbox:{receiver}")
    payload = os.urandom(300_000)
    alice = PartnerClient(system, sender, PASSWORD)
    assert alice.upload("invoice_810.edi", payload).status_code == 201
    rows = system.wait_for(delivered(1), flow=flow)
    assert rows[0]["destination_uri"] == f"mailbox://{receiver}/download/invoice_810.edi"

    bob = PartnerClient(system, receiver, PASSWORD)
    download_id = bob.folder_ids()["download"]
    files = bob.http.get(f"/api/folders/{download_id}/files").json()["resources"]
    [resource] = [f for f in files if f["name"] == "invoice_810.edi"]
    assert resource["length"] == len(payload)
    content = bob.http.get(f"/api/files/{resource['id']}/content")
    assert content.status_code == 200
    assert hashlib.sha256(content.content).hexdigest() == hashlib.sha256(payload).hexdigest()
    # The sender cannot see the receiver's folder.
    assert alice.http.get(f"/api/folders/{download_id}/files").status_code == 403
    alice.close()
    bob.close()

"""Issue 10's data-loss items end to end, against a real `tradelane up`: same-name uploads and
deliveries (items 1 and 6), a delivered replay leaving upload/ (item 4), Prefect's Retry button
(item 5) and 255-byte names (item 16)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from tests.e2e.helpers import PartnerClient, delivered, finished_run, settled, unique
from tests.system import System
from tests.waiting import wait_for

PASSWORD = "noloss-partner-pw-1"
Partners = Callable[[], "tuple[str, PartnerClient]"]


@pytest.fixture
def partners(system: System) -> Iterator[Partners]:
    """New partners and their REST clients, closed even when a test fails (an open socket left to
    the garbage collector fails whichever test happens to run when it is collected)."""
    clients: list[PartnerClient] = []

    def add() -> tuple[str, PartnerClient]:
        name = unique("nl")
        system.cli("partner", "add", name, "--password", PASSWORD)
        clients.append(PartnerClient(system, name, PASSWORD))
        return name, clients[-1]

    yield add
    for client in clients:
        client.close()


def _upload_dir(system: System, partner: str) -> Path:
    return system.home / "mailboxes" / "home" / partner / "upload"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_two_uploads_of_one_name_held_by_a_disabled_flow_are_both_delivered(
    system: System, partners: Partners, tmp_path: Path
) -> None:
    """Item 6: v1 acknowledged, v2 of the same name replaced it before it was carried, v1 failed
    'changed since it was received' and could not be replayed. Item 1: the destination replaced
    one with the other. Now each upload keeps its bytes and the destination keeps both."""
    partner, client = partners()
    endpoint, flow = unique("dir"), unique("flow")
    dest = tmp_path / "dest"
    system.cli("endpoint", "add", endpoint, "--type", "file", "--path", str(dest))
    system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint)
    system.cli("flow", "disable", flow)
    v1, v2 = b"ISA*v1*first version~", b"ISA*v2*second, longer version~"
    assert client.upload("invoice_812.edi", v1).status_code == 201
    assert client.upload("invoice_812.edi", v2).status_code == 201
    rows = system.transfers(flow=flow)
    assert [r["state"] for r in rows] == ["pending", "pending"]
    system.cli("flow", "enable", flow)
    rows = system.wait_for(delivered(2), flow=flow)
    assert sorted(os.listdir(dest)) == ["invoice_812 (2).edi", "invoice_812.edi"]
    assert {(dest / n).read_bytes() for n in os.listdir(dest)} == {v1, v2}
    for row in rows:  # each transfer names the file that holds its own bytes
        landed = Path(unquote(urlsplit(row["destination_uri"]).path))
        assert _sha(landed.read_bytes()) == row["sha256"]
    assert sorted(r["sha256"] for r in rows) == sorted([_sha(v1), _sha(v2)])
    assert list(_upload_dir(system, partner).iterdir()) == []


def test_a_second_delivery_into_download_keeps_the_first_unread(system: System, partners: Partners) -> None:
    """Item 1: a second invoice_812.edi delivered into a partner's download/ replaced the first."""
    sender, client = partners()
    receiver, receiving = partners()
    flow = unique("relay")
    system.cli("flow", "add", flow, "--source", f"mailbox:{sender}", "--dest", f"mailbox:{receiver}")
    assert client.upload("invoice_812.edi", b"first invoice").status_code == 201
    system.wait_for(delivered(1), flow=flow)
    assert client.upload("invoice_812.edi", b"second invoice").status_code == 201
    rows = system.wait_for(delivered(2), flow=flow)
    assert rows[0]["destination_uri"] == f"mailbox://{receiver}/download/invoice_812 (2).edi"
    download_id = receiving.folder_ids()["download"]
    files = receiving.http.get(f"/api/folders/{download_id}/files").json()["resources"]
    contents = {f["name"]: receiving.http.get(f"/api/files/{f['id']}/content").content for f in files}
    assert contents == {"invoice_812.edi": b"first invoice", "invoice_812 (2).edi": b"second invoice"}


def _failing_file_flow(system: System, partner: str, dest: Path, *extra: str) -> str:
    """A file flow whose folder cannot be made yet (a file is in its way) and that does not retry."""
    dest.write_bytes(b"a file where the destination folder should be")
    endpoint, flow = unique("dir"), unique("flow")
    system.cli("endpoint", "add", endpoint, "--type", "file", "--path", str(dest))
    system.cli(
        "flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint, "--retries", "0", *extra
    )
    return flow


def test_a_delivered_replay_takes_the_file_out_of_upload(
    system: System, partners: Partners, tmp_path: Path
) -> None:
    """Item 4: a replayed transfer that was delivered left the file in upload/ for ever."""
    partner, client = partners()
    dest = tmp_path / "dest"
    flow = _failing_file_flow(system, partner, dest)
    assert client.upload("po.json", b'{"po": 1}').status_code == 201
    [row] = system.wait_for(settled(1), flow=flow)
    assert row["state"] == "failed" and "in the way" in row["error"]
    assert (_upload_dir(system, partner) / "po.json").exists()
    dest.unlink()
    system.cli("replay", str(row["id"]))
    rows = system.wait_for(lambda rs: len(rs) == 2 and rs[0]["state"] == "delivered", flow=flow)
    assert rows[0]["replay_of"] == row["id"]
    assert (dest / "po.json").read_bytes() == b'{"po": 1}'
    wait_for(
        lambda: not (_upload_dir(system, partner) / "po.json").exists(),
        "po.json to leave upload/",
        timeout=30,
    )


def _press_retry(system: System, flow_run_id: str, *, force: bool) -> None:
    """What the Prefect UI's Retry button sends (ui: force false; ui-v2: force true). The button
    shows on a finished run only: a transfer is recorded before its run ends, so wait for the end
    (a Retry accepted while the run still ran is overwritten by the run's own final state)."""
    assert finished_run(system, flow_run_id)["state_type"] in {"COMPLETED", "FAILED", "CRASHED"}
    response = httpx.post(
        f"{system.prefect_api}/flow_runs/{flow_run_id}/set_state",
        json={
            "state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"},
            "force": force,
        },
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
    assert response.json()["status"] == "ACCEPT", response.text


def _run_after_retry(system: System, flow_run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120  # a busy machine (two test workers): generous
    while True:
        run = finished_run(system, flow_run_id, timeout=120)
        if run["run_count"] >= 2 and run["state_type"] in {"COMPLETED", "FAILED", "CRASHED"}:
            return run
        assert time.monotonic() < deadline, f"the retried run did not finish: {run['state']}"
        time.sleep(0.3)


@pytest.mark.parametrize("force", [False, True], ids=["ui", "ui-v2"])
def test_prefect_retry_carries_the_failed_file_again(
    system: System, partners: Partners, tmp_path: Path, force: bool
) -> None:
    """Item 5: Retry on a failed run ended `Completed: nothing left to carry` with the file failed."""
    partner, client = partners()
    dest = tmp_path / "dest"
    flow = _failing_file_flow(system, partner, dest)
    assert client.upload("po.json", b'{"po": 5}').status_code == 201
    [failed] = system.wait_for(settled(1), flow=flow)
    assert failed["state"] == "failed"
    run_id = failed["flow_run_id"]
    assert finished_run(system, run_id)["state_type"] == "FAILED"
    dest.unlink()  # the destination works now
    _press_retry(system, run_id, force=force)
    run = _run_after_retry(system, run_id)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert "1 of 1 files delivered (1 failed before, carried again by this retry)" in run["state"]["message"]
    rows = system.transfers(flow=flow)
    assert [(r["state"], r["replay_of"], r["flow_run_id"]) for r in rows] == [
        ("delivered", failed["id"], run_id),
        ("failed", None, run_id),
    ]
    assert (dest / "po.json").read_bytes() == b'{"po": 5}'
    wait_for(
        lambda: not (_upload_dir(system, partner) / "po.json").exists(),
        "po.json to leave upload/",
        timeout=30,
    )


def test_prefect_retry_of_a_rejected_file_fails_and_says_why(
    system: System, partners: Partners, tmp_path: Path
) -> None:
    partner, client = partners()
    endpoint, flow = unique("dir"), unique("flow")
    system.cli("endpoint", "add", endpoint, "--type", "file", "--path", str(tmp_path / "dest"))
    system.cli(
        "flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint, "--validate", "json"
    )
    assert client.upload("bad.json", b'{"po": ').status_code == 201
    [rejected] = system.wait_for(settled(1), flow=flow)
    assert rejected["state"] == "rejected"
    _press_retry(system, rejected["flow_run_id"], force=False)
    run = _run_after_retry(system, rejected["flow_run_id"])
    assert run["state_type"] == "FAILED"
    assert "bad.json: rejected" in run["state"]["message"]
    assert "a retry does not change that" in run["state"]["message"]
    assert [r["state"] for r in system.transfers(flow=flow)] == ["rejected"]
    assert (_upload_dir(system, partner) / "bad.json").exists()


def test_prefect_retry_of_a_delivered_run_says_so(system: System, partners: Partners, tmp_path: Path) -> None:
    partner, client = partners()
    endpoint, flow = unique("dir"), unique("flow")
    system.cli("endpoint", "add", endpoint, "--type", "file", "--path", str(tmp_path / "dest"))
    system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint)
    assert client.upload("ok.json", b"{}").status_code == 201
    [row] = system.wait_for(delivered(1), flow=flow)
    assert finished_run(system, row["flow_run_id"])["state_type"] == "COMPLETED"
    _press_retry(system, row["flow_run_id"], force=True)
    run = _run_after_retry(system, row["flow_run_id"])
    assert run["state_type"] == "COMPLETED"
    assert run["state"]["message"] == "nothing left to carry: 1 file delivered before"
    assert len(system.transfers(flow=flow)) == 1


def test_a_255_byte_name_is_delivered_renamed_and_leaves_upload(
    system: System, partners: Partners, tmp_path: Path
) -> None:
    """Item 16: names of ~252 bytes or more could not be archived (ENAMETOOLONG), stayed in upload/."""
    partner, client = partners()
    endpoint, flow = unique("dir"), unique("flow")
    dest = tmp_path / "dest"
    system.cli("endpoint", "add", endpoint, "--type", "file", "--path", str(dest))
    system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint)
    name = "n" * 251 + ".edi"
    assert len(name.encode()) == 255
    assert client.upload(name, b"first").status_code == 201
    system.wait_for(delivered(1), flow=flow)
    assert client.upload(name, b"second").status_code == 201
    system.wait_for(delivered(2), flow=flow)
    renamed = "n" * 247 + " (2).edi"  # shortened so the numbered name still fits 255 bytes
    assert sorted(os.listdir(dest)) == sorted([name, renamed])
    assert (dest / name).read_bytes() == b"first" and (dest / renamed).read_bytes() == b"second"
    wait_for(lambda: list(_upload_dir(system, partner).iterdir()) == [], "upload/ to empty", timeout=30)

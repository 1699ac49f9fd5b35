"""The issue's walkthrough, end to end against `tradelane up`: REST upload → data flow → file and S3."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from tests.e2e.helpers import PartnerClient, finished_run, prefect_paged, sha256, unique
from tests.servers import moto_client
from tests.system import System
from tests.waiting import wait_for

PURCHASE_ORDER = json.dumps(
    {"po": "850-0001", "buyer": "Claudio App", "lines": [{"sku": "A-1", "qty": 12, "price": 9.5}]},
    indent=2,
).encode()
PASSWORD = "Cl@udio_@pp_P@ssword"


def test_walkthrough_delivers_to_file_and_s3(system: System, moto_server: str, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    bucket = unique("lake")
    s3 = moto_client(moto_server)
    s3.create_bucket(Bucket=bucket)
    system.cli("partner", "add", "claudioapp", "--password", PASSWORD)
    system.cli("endpoint", "add", "archive", "--type", "file", "--path", str(archive))
    system.cli(
        "endpoint",
        "add",
        "lake",
        "--type",
        "s3",
        "--bucket",
        bucket,
        "--prefix",
        "inbound/",
        "--endpoint-url",
        moto_server,
        "--access-key-id",
        "test",
        "--secret-access-key",
        "test",
    )
    system.cli("flow", "add", "claudio-archive", "--source", "mailbox:claudioapp", "--dest", "archive")
    system.cli(
        "flow",
        "add",
        "claudio-lake",
        "--source",
        "mailbox:claudioapp",
        "--dest",
        "lake",
        "--pattern",
        "*.json",
        "--validate",
        "json",
    )

    # The walkthrough, with curl exactly as a partner would type it.
    def curl(*args: str) -> dict:
        out = subprocess.run(["curl", "-sS", "--fail-with-body", *args], capture_output=True, check=True)
        return json.loads(out.stdout)

    auth = curl(
        "-X",
        "POST",
        f"{system.api}/api/authentication",
        "-d",
        f"grant_type=password&username=claudioapp&password={PASSWORD}",
    )
    assert auth["token_type"] == "bearer" and auth["access_token"] and auth["user_id"]
    bearer = f"Authorization: Bearer {auth['access_token']}"
    folders = curl(f"{system.api}/api/folders", "-H", bearer)
    assert folders["totalResults"] == 1
    home = folders["resources"][0]
    assert (home["type"], home["space"], home["name"]) == ("folder", "home", "claudioapp")
    assert home["_links"]["self"]["href"] == f"/api/folders/{home['id']}"
    children = curl(f"{system.api}/api/folders/{home['id']}/children", "-H", bearer)["resources"]
    upload = next(c for c in children if c["subspace"] == "upload")
    assert upload["permissions"] == ["upload"]
    assert upload["systemProtected"] == {"delete": True, "rename": True}
    po_file = tmp_path / "purchase_order_850.json"
    po_file.write_bytes(PURCHASE_ORDER)
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            f"{system.api}/api/folders/{upload['id']}/files",
            "-H",
            bearer,
            "-H",
            "Content-Disposition: attachment;filename=purchase_order_850.json",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            f"@{po_file}",
        ],
        capture_output=True,
        check=True,
        text=True,
    )
    body, status = out.stdout.rsplit("\n", 1)
    assert status == "201"
    resource = json.loads(body)
    assert resource["name"] == "purchase_order_850.json"
    assert resource["length"] == len(PURCHASE_ORDER)
    assert resource["parentId"] == upload["id"]
    assert resource["_links"]["self"]["href"] == f"/api/files/{resource['id']}"

    rows = system.wait_for(
        lambda rs: (
            {r["flow"] for r in rs if r["state"] == "delivered"} >= {"claudio-archive", "claudio-lake"}
        ),
        timeout=90,
    )
    mine = [r for r in rows if r["file"] == "purchase_order_850.json"]
    assert (archive / "purchase_order_850.json").read_bytes() == PURCHASE_ORDER
    obj = s3.get_object(Bucket=bucket, Key="inbound/purchase_order_850.json")["Body"].read()
    assert obj == PURCHASE_ORDER
    assert all(r["sha256"] == sha256(PURCHASE_ORDER) for r in mine)

    # The Prefect API shows the Completed run, with its tags and its table artifact.
    run_id = next(r["flow_run_id"] for r in mine if r["flow"] == "claudio-lake")
    run = finished_run(system, run_id)
    assert run["state_type"] == "COMPLETED"
    assert {"partner:claudioapp", "flow:claudio-lake"} <= set(run["tags"])
    assert run["name"] == "claudioapp → claudio-lake: purchase_order_850.json"
    artifacts = httpx.post(
        f"{system.prefect_api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}}
    ).json()
    table = next(a for a in artifacts if a["type"] == "table")
    row = json.loads(table["data"])[0] if isinstance(table["data"], str) else table["data"][0]
    assert row["file"] == "purchase_order_850.json"
    assert row["sha256"] == sha256(PURCHASE_ORDER)
    assert row["result"] == "delivered"
    # And a link back to the console's page of this run's files (core/links.py).
    link = next(a for a in artifacts if a["type"] == "markdown" and a["key"] == "tradelane-console")
    assert f"/console/transfers?run={run_id})" in link["data"]

    # Its task runs say what each step did: start marks the transfer running, push carries the file.
    # (Prefect records task runs from their events, which a busy server may take a moment to file.)
    def task_run_names() -> list[str]:
        body = {"task_runs": {"flow_run_id": {"any_": [run_id]}}}
        return sorted(t["name"] for t in prefect_paged(f"{system.prefect_api}/task_runs/filter", body))

    wait_for(lambda: len(task_run_names()) >= 3, "the run's task runs", timeout=60, interval=0.5)
    assert task_run_names() == [
        "push purchase_order_850.json",
        "start 1 transfer",
        "validate purchase_order_850.json",
    ]

    # Delivered by every flow, the file has left the partner's upload/ folder.
    partner = PartnerClient(system, "claudioapp", PASSWORD)
    listing = partner.http.get(f"/api/folders/{upload['id']}/files").json()
    assert all(f["name"] != "purchase_order_850.json" for f in listing["resources"])
    partner.close()

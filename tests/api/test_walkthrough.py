"""The issue's walkthrough, verbatim: with curl (as a user would type it) and with httpx."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx

from core.db import HOME_ACCOUNT
from core.endpoints.mailbox import mailbox_root_for
from core.models import Partner
from tests.api.conftest import WALKTHROUGH_PASSWORD, WALKTHROUGH_USER, Server, latest_receipt

PURCHASE_ORDER = json.dumps(
    {
        "transactionSet": "850",
        "purchaseOrderNumber": "PO-4471-2026",
        "buyer": {"name": "Claudio Apparel", "id": "CLAUDIOAPP"},
        "lines": [{"sku": "TSHIRT-M-BLK", "qty": 240, "unitPrice": "4.15"}],
    },
    indent=2,
).encode()
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def curl(*args: str) -> tuple[int, Any]:
    """Run curl; returns (HTTP status, parsed JSON body)."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "60", "-w", "\n%{http_code}", *args],
        capture_output=True,
        check=True,
        text=True,
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body) if body.strip() else None


def check_folder(folder: dict[str, Any]) -> None:
    assert folder["type"] == "folder"
    assert folder["space"] == "home"
    assert folder["systemProtected"] == {"delete": True, "rename": True}
    assert folder["_links"]["self"]["href"] == f"/api/folders/{folder['id']}"
    assert ISO_MS_Z.match(folder["meta"]["lastModified"])


def check_stored(partner: Partner, name: str, data: bytes) -> None:
    stored = mailbox_root_for(HOME_ACCOUNT, partner.name) / "upload" / name
    assert stored.read_bytes() == data
    assert partner.id is not None
    receipt = latest_receipt(partner.id, name)
    assert receipt is not None
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    assert receipt.size == len(data)
    assert receipt.protocol == "rest"
    assert receipt.folder == "upload"


def check_uploaded(
    resource: dict[str, Any], home: dict[str, Any], upload: dict[str, Any], data: bytes
) -> None:
    assert resource["type"] == "file"
    assert resource["space"] == "home"
    assert resource["subspace"] == "upload"
    assert resource["name"] == "purchase_order_850.json"
    assert resource["parentId"] == upload["id"]
    assert resource["length"] == len(data)
    assert resource["path"] == [
        {"href": f"/api/folders/{home['id']}", "id": home["id"], "name": WALKTHROUGH_USER},
        {"href": f"/api/folders/{upload['id']}", "id": upload["id"], "name": "upload"},
    ]
    assert resource["systemProtected"]["rename"] is True
    assert isinstance(resource["permissions"], list)
    assert resource["_links"]["self"]["href"] == f"/api/files/{resource['id']}"
    assert resource["_links"]["parent"]["href"] == f"/api/folders/{upload['id']}"
    assert ISO_MS_Z.match(resource["meta"]["lastModified"])
    assert resource["meta"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_walkthrough_with_curl(server: Server, walkthrough_partner: Partner, tmp_path: Path) -> None:
    url = server.url
    status, token = curl(
        "-X",
        "POST",
        f"{url}/api/authentication",
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        "-d",
        f"grant_type=password&username={WALKTHROUGH_USER}&password={WALKTHROUGH_PASSWORD}",
    )
    assert status == 200, token
    assert token["token_type"] == "bearer"
    assert token["user_id"] == walkthrough_partner.uid
    bearer = f"Authorization: Bearer {token['access_token']}"

    status, folders = curl(f"{url}/api/folders", "-H", bearer)
    assert status == 200, folders
    assert folders["totalResults"] == 1 and folders["startIndex"] == 0 and folders["count"] == 1
    home = folders["resources"][0]
    check_folder(home)
    assert home["name"] == WALKTHROUGH_USER

    status, children = curl(f"{url}/api/folders/{home['id']}/children", "-H", bearer)
    assert status == 200, children
    by_subspace = {f["subspace"]: f for f in children["resources"]}
    assert set(by_subspace) == {"download", "upload"}
    for sub, folder in by_subspace.items():
        check_folder(folder)
        assert folder["parentId"] == home["id"]
        assert folder["permissions"][0] == sub
    upload = by_subspace["upload"]
    assert upload["permissions"] == ["upload"]

    source = tmp_path / "purchase_order_850.json"
    source.write_bytes(PURCHASE_ORDER)
    status, resource = curl(
        "-X",
        "POST",
        f"{url}/api/folders/{upload['id']}/files",
        "-H",
        bearer,
        "-H",
        "Content-Disposition: attachment;filename=purchase_order_850.json",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        f"@{source}",
    )
    assert status == 201, resource
    check_uploaded(resource, home, upload, PURCHASE_ORDER)
    check_stored(walkthrough_partner, "purchase_order_850.json", PURCHASE_ORDER)


def test_walkthrough_with_httpx(server: Server, walkthrough_partner: Partner) -> None:
    data = PURCHASE_ORDER.replace(b"240", b"480")
    with httpx.Client(base_url=server.url) as client:
        r = client.post(
            "/api/authentication",
            data={"grant_type": "password", "username": WALKTHROUGH_USER, "password": WALKTHROUGH_PASSWORD},
        )
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == walkthrough_partner.uid
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

        home = client.get("/api/folders").json()["resources"][0]
        children = client.get(f"/api/folders/{home['id']}/children").json()
        assert [f["subspace"] for f in children["resources"]] == ["download", "upload"]
        upload = children["resources"][1]

        r = client.post(
            f"/api/folders/{upload['id']}/files",
            content=data,
            headers={
                "Content-Disposition": "attachment;filename=purchase_order_850.json",
                "Content-Type": "application/octet-stream",
            },
        )
        assert r.status_code == 201, r.text
        resource = r.json()
        assert r.headers["location"] == resource["_links"]["self"]["href"]
        check_uploaded(resource, home, upload, data)
        check_stored(walkthrough_partner, "purchase_order_850.json", data)

        # The file is listed in upload/ and its metadata reads back the same.
        listed = client.get(f"/api/folders/{upload['id']}/files").json()
        assert [f["id"] for f in listed["resources"]] == [resource["id"]]
        assert client.get(resource["_links"]["self"]["href"]).json() == resource
        assert listed["resources"][0] == resource

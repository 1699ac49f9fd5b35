"""Folders: the home folder, its children, ids, paging, other partners' folders, and JSON errors."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from api.ids import folder_id
from tests.api.conftest import PartnerLogin

MakePartner = Callable[..., PartnerLogin]


def test_home_and_children(make_partner: MakePartner) -> None:
    p = make_partner()
    listing = p.get("/api/folders").json()
    assert listing["totalResults"] == 1 and listing["count"] == 1 and listing["startIndex"] == 0
    home = listing["resources"][0]
    assert home["id"] == folder_id(p.uid, "")
    assert home["name"] == p.name
    assert "subspace" not in home and "parentId" not in home
    assert home["_links"] == {"self": {"href": f"/api/folders/{home['id']}"}}
    assert p.get(f"/api/folders/{home['id']}").json() == home

    children = p.get(f"/api/folders/{home['id']}/children").json()
    assert children["totalResults"] == 2
    download, upload = children["resources"]
    assert (download["subspace"], upload["subspace"]) == ("download", "upload")
    assert download["name"] == "download" and upload["name"] == "upload"
    assert download["id"] == folder_id(p.uid, "download")
    assert upload["id"] == folder_id(p.uid, "upload")
    assert download["permissions"] == ["download", "delete"]
    assert upload["permissions"] == ["upload"]
    for folder in (download, upload):
        assert folder["systemProtected"] == {"delete": True, "rename": True}
        assert folder["parentId"] == home["id"]
        assert folder["_links"]["parent"]["href"] == f"/api/folders/{home['id']}"
        assert p.get(f"/api/folders/{folder['id']}").json() == folder
        empty = p.get(f"/api/folders/{folder['id']}/children").json()
        assert empty == {"totalResults": 0, "startIndex": 0, "count": 0, "resources": []}
    # Folder ids are stable: the same on a second look, and upper-case UUIDs resolve too.
    assert p.get(f"/api/folders/{upload['id'].upper()}").json()["id"] == upload["id"]


def test_download_permissions_without_delete(make_partner: MakePartner) -> None:
    p = make_partner(can_delete_downloads=False)
    assert p.folder("download")["permissions"] == ["download"]


def test_other_partners_folders_are_forbidden(make_partner: MakePartner) -> None:
    a, b = make_partner(), make_partner()
    for name in ("", "upload", "download"):
        other = folder_id(b.uid, name)
        for suffix in ("", "/children", "/files"):
            r = a.get(f"/api/folders/{other}{suffix}")
            assert r.status_code == 403, r.text
            assert r.json()["message"]


# A fresh UUID under a fixed id: pytest-xdist's workers must collect the same test names.
@pytest.mark.parametrize(
    "value", [pytest.param(str(uuid.uuid4()), id="unknown-uuid"), "not-a-uuid", "..%2F..%2Fetc"]
)
def test_unknown_folder(make_partner: MakePartner, value: str) -> None:
    p = make_partner()
    for suffix in ("", "/children", "/files"):
        r = p.get(f"/api/folders/{value}{suffix}")
        assert r.status_code == 404
        assert r.json()["message"]


def test_file_paging(make_partner: MakePartner) -> None:
    p = make_partner()
    names = [f"invoice_{i:02d}.edi" for i in range(7)]
    for name in reversed(names):
        p.put_download(name, name.encode())
    page = p.files("download")
    assert page["totalResults"] == 7 and page["count"] == 7 and page["startIndex"] == 0
    assert [f["name"] for f in page["resources"]] == names
    seen = []
    for start in (0, 3, 6):
        page = p.files("download", startIndex=start, count=3)
        assert page["totalResults"] == 7 and page["startIndex"] == start
        assert page["count"] == len(page["resources"]) == min(3, 7 - start)
        seen += [f["name"] for f in page["resources"]]
    assert seen == names
    assert p.files("download", startIndex=100)["resources"] == []
    assert p.files("download", count=0)["count"] == 0
    assert p.files("download", count=5000)["count"] == 7  # over the maximum: cut to 1000, not refused


@pytest.mark.parametrize("params", [{"startIndex": -1}, {"count": -5}, {"startIndex": "x"}])
def test_bad_paging(make_partner: MakePartner, params: dict[str, object]) -> None:
    p = make_partner()
    for url in (
        "/api/folders",
        f"/api/folders/{p.home()['id']}/children",
        f"/api/folders/{p.home()['id']}/files",
    ):
        r = p.get(url, params=params)
        assert r.status_code == 400, r.text
        assert r.json()["message"].startswith("invalid request")


def test_folder_paging(make_partner: MakePartner) -> None:
    p = make_partner()
    home_id = p.home()["id"]
    page = p.get(f"/api/folders/{home_id}/children", params={"startIndex": 1, "count": 1}).json()
    assert page["totalResults"] == 2 and page["count"] == 1
    assert page["resources"][0]["subspace"] == "upload"
    assert p.get("/api/folders", params={"startIndex": 1}).json()["resources"] == []


def test_home_folder_lists_no_files(make_partner: MakePartner) -> None:
    p = make_partner()
    (p.root / "stray.txt").write_text("not in a folder")
    assert p.get(f"/api/folders/{p.home()['id']}/files").json()["totalResults"] == 0


def test_unknown_route_is_json_404(client: httpx.Client) -> None:
    for url in ("/api/nothing-here", "/nothing-here"):
        r = client.get(url)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"message": f"not found: {url}"}


def test_wrong_method_is_json_405(client: httpx.Client) -> None:
    r = client.put("/api/authentication")
    assert r.status_code == 405
    assert "not allowed" in r.json()["message"]


def test_docs_and_openapi(client: httpx.Client) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "tradelane"
    for path in (
        "/api/authentication",
        "/api/folders",
        "/api/folders/{folder_id}",
        "/api/folders/{folder_id}/children",
        "/api/folders/{folder_id}/files",
        "/api/files/{file_id}",
        "/api/files/{file_id}/content",
    ):
        assert path in schema["paths"]
    upload = schema["paths"]["/api/folders/{folder_id}/files"]["post"]
    assert "application/octet-stream" in upload["requestBody"]["content"]
    folder = schema["components"]["schemas"]["FolderResource"]["properties"]
    assert {"_links", "systemProtected", "parentId"} <= set(folder)

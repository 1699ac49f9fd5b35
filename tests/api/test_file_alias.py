"""The Cleo blog's own cURL upload posts to `.../file` (singular): accepted with POST, explained with GET.

The commands are the seed's (/work/shared/seeds/001-cleo-rest-api-upload.txt) letter for letter,
with only the host, token and folder id filled in.
"""

from __future__ import annotations

import hashlib

from tests.api.conftest import PartnerLogin, Server, latest_receipt
from tests.api.test_walkthrough import curl

PAYLOAD = '[ { "type": "850", "value": "$99.99" } ]'


def blog_upload(server: Server, partner: PartnerLogin, method: str) -> tuple[int, object]:
    folder = partner.folder("upload")["id"]
    return curl(
        "-X",
        method,
        "-H",
        f"Authorization: Bearer {partner.token}",
        "-H",
        "Content-Disposition: attachment;filename=purchase_order_850.json",
        "-H",
        "Content-Type: application/octet-stream",
        f"-d{PAYLOAD}",
        f"{server.url}/api/folders/{folder}/file",
    )


def test_post_to_file_uploads_like_files(server: Server, make_partner) -> None:  # type: ignore[no-untyped-def]
    partner: PartnerLogin = make_partner()
    status, resource = blog_upload(server, partner, "POST")
    assert status == 201, resource
    assert isinstance(resource, dict)
    assert resource["name"] == "purchase_order_850.json"
    assert resource["length"] == len(PAYLOAD)
    assert resource["meta"]["sha256"] == hashlib.sha256(PAYLOAD.encode()).hexdigest()
    assert (partner.root / "upload" / "purchase_order_850.json").read_text() == PAYLOAD
    receipt = latest_receipt(partner.id, "purchase_order_850.json")
    assert receipt is not None and receipt.protocol == "rest"


def test_get_with_a_body_says_to_post_to_files(server: Server, make_partner) -> None:  # type: ignore[no-untyped-def]
    partner: PartnerLogin = make_partner()
    folder = partner.folder("upload")["id"]
    status, answer = blog_upload(server, partner, "GET")
    assert status == 405
    assert answer == {
        "message": f"uploads are sent with POST to /api/folders/{folder}/files (the body is the file's bytes)"
    }
    assert not (partner.root / "upload" / "purchase_order_850.json").exists()
    plain_get = partner.get(f"/api/folders/{folder}/file")
    assert plain_get.status_code == 405 and plain_get.headers["Allow"] == "POST"


def test_alias_is_a_deprecated_operation_in_openapi(server: Server) -> None:
    status, spec = curl(f"{server.url}/openapi.json")
    assert status == 200 and isinstance(spec, dict)
    alias = spec["paths"]["/api/folders/{folder_id}/file"]
    assert set(alias) == {"post"}
    assert alias["post"]["deprecated"] is True
    assert "deprecated" not in spec["paths"]["/api/folders/{folder_id}/files"]["post"]

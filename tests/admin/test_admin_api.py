"""The admin REST API (/api/admin/…) over real HTTP with account users' bearer tokens: each resource's
routes, answers equal to what the CLI's `--json` prints for the same objects, the refusals of core
with their statuses and words, and another account's objects not found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from typer.testing import CliRunner

from cli.main import app as cli_app
from core import partners
from core.db import session_scope
from core.tenancy import scope_for_cli
from tests.admin.conftest import PASSWORD, Users, cli_json, log_in
from tests.admin.helpers import carry_pending, ssh_key, upload, without


def test_openapi_lists_every_admin_route_under_an_admin_tag_with_its_refusals(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    admin = {(m, p): op for p, ops in paths.items() if p.startswith("/api/admin/") for m, op in ops.items()}
    assert len(admin) >= 30
    assert {tag for op in admin.values() for tag in op["tags"]} == {
        "admin: partners",
        "admin: endpoints",
        "admin: flows",
        "admin: transfers",
        "admin: audit",
        "admin: users",
    }
    for (method, path), op in admin.items():
        assert {"401", "403", "404"} <= set(op["responses"]), (method, path)
        if method != "get":  # every changing route says which action of core/roles.py it needs
            assert op["x-tradelane-action"], (method, path)


def test_a_partner_token_and_no_token_are_refused(users: Users, client: httpx.Client) -> None:
    with session_scope() as session:
        partners.add(session, scope_for_cli(session, "acme"), "tokenholder", password=PASSWORD)
    partner = log_in(client, "tokenholder")
    refused = client.get("/api/admin/partners", headers=partner)
    assert refused.status_code == 403
    assert refused.json() == {"message": "only the account's users may do this; this is a partner login"}
    assert client.get("/api/admin/partners").status_code == 401


def test_me_says_the_account_role_and_what_it_may_do(users: Users) -> None:
    assert users.reader.get("/api/admin/me").json() == {
        "account": "acme",
        "email": "ro@acme.example",
        "role": "read-only",
        "may": [],
    }
    operator = users.operator.get("/api/admin/me").json()
    assert operator["role"] == "operator" and "flows.change" in operator["may"]
    assert "users.change" not in operator["may"] and "partners.purge" not in operator["may"]
    assert "users.change" in users.admin.get("/api/admin/me").json()["may"]


def test_partners_from_added_to_removed(users: Users, client: httpx.Client) -> None:
    op = users.operator
    made = op.post(
        "/api/admin/partners", json={"name": "p-life", "password": PASSWORD, "email": "x@p.example"}
    )
    assert made.status_code == 201, made.text
    assert made.headers["Location"] == "/api/admin/partners/p-life"
    assert made.json()["keys"] == [] and made.json()["password"] is True

    listed = op.get("/api/admin/partners").json()
    assert listed == cli_json("partner", "list", "--account", "acme")
    assert "p-life" in [p["name"] for p in listed]

    no_way_in = op.post("/api/admin/partners", json={"name": "p-nokey"})
    assert no_way_in.status_code == 400
    assert no_way_in.json()["message"] == "invalid request: body: give a password or an SSH public key"
    taken = op.post("/api/admin/partners", json={"name": "p-life", "password": PASSWORD})
    assert taken.status_code == 409 and taken.json()["message"] == "partner 'p-life' already exists"

    # Settings: the same checks and words as `tradelane partner set`; only the fields given change.
    bad = op.patch("/api/admin/partners/p-life", json={"allowed_networks": ["10.0.0.0/8", "nonsense"]})
    assert bad.status_code == 400
    assert bad.json()["message"] == (
        "invalid request: allowed_networks: "
        "not an IP network: 'nonsense' (e.g. 203.0.113.0/24 or 2001:db8::/48)"
    )
    unknown = op.patch("/api/admin/partners/p-life", json={"max_files": 3})
    assert unknown.status_code == 400 and "max_files" in unknown.json()["message"]
    changed = op.patch(
        "/api/admin/partners/p-life",
        json={"max_file_bytes": "50MiB", "allowed_networks": ["10.1.2.3/8"], "enabled": False},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["max_file_bytes"] == 50 * 1024 * 1024 and body["allowed_networks"] == ["10.0.0.0/8"]
    assert body["enabled"] is False and body["email"] == "x@p.example"  # not given: kept
    assert "disabled (its sessions end)" in body["changed"]
    back = op.patch(
        "/api/admin/partners/p-life", json={"max_file_bytes": None, "enabled": True, "allowed_networks": []}
    ).json()
    assert back["max_file_bytes"] is None and back["enabled"] is True and back["allowed_networks"] == []

    # Keys, numbered from 1 as `partner key list` numbers them.
    key = ssh_key("laptop")
    with_key = op.post("/api/admin/partners/p-life/keys", json={"key": key})
    assert with_key.status_code == 201, with_key.text
    [shown] = with_key.json()["keys"]
    assert shown["index"] == 1 and shown["type"] == "ssh-ed25519" and shown["comment"] == "laptop"
    assert shown["fingerprint"].startswith("SHA256:")
    assert op.post("/api/admin/partners/p-life/keys", json={"key": key}).status_code == 409
    not_a_key = op.post("/api/admin/partners/p-life/keys", json={"key": "ssh-ed25519 !!!"})
    assert not_a_key.status_code == 400 and "base64" in not_a_key.json()["message"]
    assert op.delete("/api/admin/partners/p-life/keys/2").status_code == 400
    assert op.delete("/api/admin/partners/p-life/keys/1").json()["keys"] == []

    # A new password ends the old one's logins; the new one works.
    old = log_in(client, "p-life")
    assert (
        op.put("/api/admin/partners/p-life/password", json={"password": "Other-Pass-1234"}).status_code == 204
    )
    assert client.get("/api/folders", headers=old).status_code == 401
    assert client.get("/api/folders", headers=log_in(client, "p-life", "Other-Pass-1234")).status_code == 200

    assert op.post("/api/admin/partners/p-life/unlock").json() == {"name": "p-life", "was_locked": False}

    # Another account's partner is not found, by any route.
    other = users.other
    assert other.get("/api/admin/partners/p-life").status_code == 404
    assert other.patch("/api/admin/partners/p-life", json={"enabled": False}).json() == {
        "message": "no partner named 'p-life'"
    }
    assert other.delete("/api/admin/partners/p-life").status_code == 404

    purge = op.delete("/api/admin/partners/p-life", params={"purge": True})
    assert purge.status_code == 403
    assert purge.json()["message"] == "this needs the role admin; this login is operator"
    removed = op.delete("/api/admin/partners/p-life")
    assert removed.status_code == 200, removed.text
    assert removed.json() == {"name": "p-life", "flows_disabled": [], "as2_disabled": [], "purged": False}
    assert op.get("/api/admin/partners/p-life").status_code == 404


def test_endpoints_never_show_a_secret(users: Users, tmp_path: Path) -> None:
    op = users.operator
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY-never-shown"
    made = op.post(
        "/api/admin/endpoints",
        json={
            "name": "bucket",
            "type": "s3",
            "settings": {"bucket": "orders", "endpoint_url": "http://127.0.0.1:9"},
            "secrets": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": secret},
        },
    )
    assert made.status_code == 201, made.text
    assert made.json()["secrets"] == ["access_key_id", "secret_access_key"]
    listed = op.get("/api/admin/endpoints")
    assert listed.json() == cli_json("endpoint", "list", "--account", "acme")
    shown = op.get("/api/admin/endpoints/bucket")
    assert shown.json()["config"] == {"bucket": "orders", "endpoint_url": "http://127.0.0.1:9"}

    changed = op.patch(
        "/api/admin/endpoints/bucket",
        json={"settings": {"region": "eu-west-1"}, "secrets": {"secret_access_key": secret + "2"}},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["changed"] == ["region", "secret_access_key (secret)"]
    kept = op.patch("/api/admin/endpoints/bucket", json={"unset": ["region"]}).json()
    assert kept["changed"] == ["region"] and kept["secrets"] == ["access_key_id", "secret_access_key"]
    events = op.get("/api/admin/audit", params={"action": "endpoint"})
    for answer in (made, listed, shown, changed, events):
        assert secret not in answer.text

    bad = op.post(
        "/api/admin/endpoints", json={"name": "b2", "type": "s3", "settings": {"bukket": "x", "bucket": "y"}}
    )
    assert bad.status_code == 400
    assert bad.json()["message"].startswith("s3 endpoint: unknown setting 'bukket' (known: ")
    unknown_type = op.post("/api/admin/endpoints", json={"name": "b3", "type": "gopher"})
    assert unknown_type.status_code == 400 and unknown_type.json()["message"].startswith(
        "no endpoint type 'gopher'"
    )
    assert op.post("/api/admin/endpoints", json={"name": "b4", "type": "mailbox"}).status_code == 400
    assert op.patch("/api/admin/endpoints/bucket", json={"unset": ["colour"]}).status_code == 400
    assert users.other.get("/api/admin/endpoints/bucket").status_code == 404

    types = op.get("/api/admin/endpoint-types").json()
    assert {"type": "s3", "schema_url": "/api/admin/endpoint-types/s3/schema"} in types
    schema = op.get("/api/admin/endpoint-types/s3/schema").json()
    printed = CliRunner().invoke(cli_app, ["endpoint", "schema", "s3"])
    assert schema == __import__("json").loads(printed.output)
    assert op.get("/api/admin/endpoint-types/mailbox/schema").status_code == 404

    assert op.delete("/api/admin/endpoints/bucket").json() == {"name": "bucket", "flows_disabled": []}
    assert op.get("/api/admin/endpoints/bucket").status_code == 404


def test_the_test_button_says_what_failed(users: Users, acme_files: Path) -> None:
    op = users.operator
    folder = acme_files / "drop"
    folder.mkdir()
    assert op.post(
        "/api/admin/endpoints", json={"name": "drop", "type": "file", "settings": {"path": str(folder)}}
    ).is_success
    ok = op.post("/api/admin/endpoints/drop/test").json()
    assert ok["ok"] is True and ok["kind"] is None and ok["name"] == "drop"
    assert ok["message"] == f"reachable ({ok['uri']})"

    password = "ftp-Secret-in-no-message-77"
    assert op.post(
        "/api/admin/endpoints",
        json={
            "name": "far",
            "type": "ftp",
            "settings": {"host": "ftp.nowhere.invalid", "user": "u"},
            "secrets": {"password": password},
        },
    ).is_success
    dns = op.post("/api/admin/endpoints/far/test")
    assert dns.status_code == 200 and dns.json()["ok"] is False and dns.json()["kind"] == "DNS"
    assert password not in dns.text
    assert op.post(
        "/api/admin/endpoints",
        json={"name": "closed", "type": "ftp", "settings": {"host": "127.0.0.1", "port": 9, "user": "u"}},
    ).is_success
    assert op.post("/api/admin/endpoints/closed/test").json()["kind"] == "unreachable (refused or timed out)"

    tested = op.get("/api/admin/audit", params={"action": "endpoint.test", "limit": 3}).json()["events"]
    assert [(e["target"], e["actor"], e["detail"]["kind"]) for e in tested] == [
        ("closed", "user:op@acme.example", "unreachable (refused or timed out)"),
        ("far", "user:op@acme.example", "DNS"),
        ("drop", "user:op@acme.example", None),
    ]
    assert tested[0]["remote_addr"] == "127.0.0.1"
    assert users.reader.post("/api/admin/endpoints/drop/test").status_code == 403
    assert users.other.post("/api/admin/endpoints/drop/test").status_code == 404


def test_flows_from_added_to_removed(users: Users, acme_files: Path) -> None:
    op = users.operator
    assert op.post("/api/admin/partners", json={"name": "p-flows", "password": PASSWORD}).is_success
    assert op.post(
        "/api/admin/endpoints", json={"name": "shelf", "type": "file", "settings": {"path": str(acme_files)}}
    ).is_success
    bad_check = op.post(
        "/api/admin/flows",
        json={"name": "f1", "source": "mailbox:p-flows", "dest": "shelf", "validators": ["jsn"]},
    )
    assert bad_check.status_code == 400
    assert bad_check.json()["message"].startswith("invalid request: validators: unknown validator 'jsn'")
    no_dest = op.post("/api/admin/flows", json={"name": "f1", "source": "mailbox:p-flows", "dest": "nowhere"})
    assert no_dest.status_code == 404
    assert no_dest.json()["message"] == "destination 'nowhere': no endpoint named 'nowhere'"
    every_on_upload = op.post(
        "/api/admin/flows", json={"name": "f1", "source": "mailbox:p-flows", "dest": "shelf", "every": "5m"}
    )
    assert every_on_upload.status_code == 400 and "--every/--cron are for polling" in every_on_upload.text

    made = op.post(
        "/api/admin/flows",
        json={
            "name": "f1",
            "source": "mailbox:p-flows",
            "dest": "shelf",
            "pattern": "*.json",
            "validators": ["json", "max_size=1MiB"],
        },
    )
    assert made.status_code == 201, made.text
    assert made.json()["validators"] == [{"type": "json"}, {"type": "max_size", "bytes": 1024 * 1024}]
    to_mailbox = op.post(
        "/api/admin/flows", json={"name": "f2", "source": "mailbox:p-flows", "dest": "mailbox:p-flows"}
    )
    assert to_mailbox.status_code == 201 and to_mailbox.json()["dest_path"] == "download/{name}"
    assert op.get("/api/admin/flows").json() == cli_json("flow", "list", "--account", "acme")
    assert (
        op.post(
            "/api/admin/flows", json={"name": "f1", "source": "mailbox:p-flows", "dest": "shelf"}
        ).status_code
        == 409
    )

    changed = op.patch("/api/admin/flows/f1", json={"retries": 2, "on_conflict": "overwrite"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["retries"] == 2 and changed.json()["changed"]
    assert op.post("/api/admin/flows/f1/disable").json()["enabled"] is False
    assert op.post("/api/admin/flows/f1/enable").json()["enabled"] is True
    assert users.other.get("/api/admin/flows/f1").status_code == 404
    assert op.delete("/api/admin/flows/f2").json() == {"name": "f2", "cancelled": 0, "kept": False}
    assert op.get("/api/admin/flows/f2").status_code == 404


def _transfers(user: Any, **params: Any) -> dict[str, Any]:
    answer = user.get("/api/admin/transfers", params=params)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_transfers_page_by_keyset_filter_and_replay(
    users: Users, client: httpx.Client, acme_files: Path
) -> None:
    op = users.operator
    assert op.post("/api/admin/partners", json={"name": "p-hist", "password": PASSWORD}).is_success
    assert op.post(
        "/api/admin/endpoints",
        json={"name": "archive", "type": "file", "settings": {"path": str(acme_files)}},
    ).is_success
    assert op.post(
        "/api/admin/flows", json={"name": "hist", "source": "mailbox:p-hist", "dest": "archive"}
    ).is_success
    for n in range(3):
        upload(client, "p-hist", f"a{n}.txt", b"x" * (n + 1))
    run_id = carry_pending()
    for n in range(2):
        upload(client, "p-hist", f"b{n}.txt", b"y")

    everything = _transfers(op, flow="hist")
    assert [t["file"] for t in everything["transfers"]] == ["b1.txt", "b0.txt", "a2.txt", "a1.txt", "a0.txt"]
    assert everything["next_before"] is None
    cli = cli_json("transfers", "--account", "acme", "--flow", "hist")
    assert everything["transfers"] == cli

    # Keyset pages: no duplicate and no gap, even with files arriving between pages.
    first = _transfers(op, flow="hist", limit=2)
    upload(client, "p-hist", "c0.txt", b"z")
    second = _transfers(op, flow="hist", limit=2, before=first["next_before"])
    third = _transfers(op, flow="hist", limit=2, before=second["next_before"])
    paged = [t["file"] for page in (first, second, third) for t in page["transfers"]]
    assert paged == ["b1.txt", "b0.txt", "a2.txt", "a1.txt", "a0.txt"] and third["next_before"] is None

    delivered = _transfers(op, flow="hist", state="delivered")["transfers"]
    assert [t["file"] for t in delivered] == ["a2.txt", "a1.txt", "a0.txt"]
    by_run = _transfers(op, run=run_id)["transfers"]
    assert [t["file"] for t in by_run] == ["a2.txt", "a1.txt", "a0.txt"]
    assert by_run[0]["run_url"].endswith(f"/runs/flow-run/{run_id}")
    assert [t["file"] for t in _transfers(op, partner="p-hist", state="pending")["transfers"]] == [
        "c0.txt",
        "b1.txt",
        "b0.txt",
    ]
    assert _transfers(op, flow="hist", since="2000-01-01", until="2000-01-02")["transfers"] == []
    assert _transfers(users.other, flow="hist")["transfers"] == []

    for params, words in (
        ({"before": 0}, "before"),
        ({"state": "lost"}, "state"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-02", "until": "2026-01-01"}, "since must be earlier than until"),
        ({"limit": 1000}, "a page holds 1 to 200 transfers, not 1000"),
        ({"colour": "red"}, "colour"),
    ):
        refused = op.get("/api/admin/transfers", params=params)
        assert refused.status_code == 400 and words in refused.json()["message"], (params, refused.text)

    one = delivered[0]
    assert op.get(f"/api/admin/transfers/{one['id']}").json() == one
    assert users.other.get(f"/api/admin/transfers/{one['id']}").status_code == 404
    assert op.get("/api/admin/transfers/999999").json() == {"message": "no transfer 999999"}

    assert users.reader.post(f"/api/admin/transfers/{one['id']}/replay").status_code == 403
    pending = _transfers(op, state="pending", flow="hist")["transfers"][0]
    still = op.post(f"/api/admin/transfers/{pending['id']}/replay")
    assert still.status_code == 409
    replayed = op.post(f"/api/admin/transfers/{one['id']}/replay")
    assert replayed.status_code == 200, replayed.text
    copy = replayed.json()
    assert copy["replay_of"] == one["id"] and copy["state"] == "pending" and copy["file"] == one["file"]
    assert copy["id"] > one["id"] and copy["sha256"] == one["sha256"]


def test_audit_pages_say_who_did_what_from_where(users: Users) -> None:
    op = users.operator
    for n in range(3):
        assert op.post("/api/admin/partners", json={"name": f"p-audit{n}", "password": PASSWORD}).is_success
    page = op.get("/api/admin/audit", params={"action": "partner.add", "limit": 2}).json()
    assert [(e["action"], e["target"], e["actor"], e["remote_addr"]) for e in page["events"]] == [
        ("partner.add", "p-audit2", "user:op@acme.example", "127.0.0.1"),
        ("partner.add", "p-audit1", "user:op@acme.example", "127.0.0.1"),
    ]
    older = op.get(
        "/api/admin/audit", params={"action": "partner.add", "limit": 2, "before": page["next_before"]}
    )
    assert older.json()["events"][0]["target"] == "p-audit0"
    assert (
        cli_json("audit", "--account", "acme", "--limit", "2")
        == op.get("/api/admin/audit", params={"limit": 2}).json()["events"]
    )
    mine = users.other.get("/api/admin/audit", params={"partner": "p-audit0"}).json()
    assert mine == {"events": [], "next_before": None}


def test_users_are_the_admins_business(users: Users, client: httpx.Client) -> None:
    admin = users.admin
    assert users.operator.get("/api/admin/users").status_code == 403
    made = admin.post(
        "/api/admin/users", json={"email": "New@Acme.example", "password": PASSWORD, "role": "operator"}
    )
    assert made.status_code == 201, made.text
    assert made.json()["email"] == "new@acme.example" and made.json()["role"] == "operator"
    assert (
        admin.post(
            "/api/admin/users", json={"email": "x@acme.example", "password": PASSWORD, "role": "root"}
        ).status_code
        == 400
    )
    assert admin.get("/api/admin/users").json() == cli_json("account", "user", "list", "--account", "acme")

    token = log_in(client, "new@acme.example")
    changed = admin.patch("/api/admin/users/new@acme.example", json={"role": "read-only"})
    assert changed.status_code == 200 and changed.json()["role"] == "read-only"
    assert changed.json()["changed"] == ["role read-only (its sessions end)"]
    assert client.get("/api/admin/me", headers=token).status_code == 401  # a role change ends its tokens

    last = admin.patch("/api/admin/users/admin@acme.example", json={"role": "operator"})
    assert last.status_code == 409 and "last admin" in last.json()["message"]
    assert admin.post("/api/admin/users/new@acme.example/unlock").json() == {
        "name": "new@acme.example",
        "was_locked": False,
    }
    assert users.other.delete("/api/admin/users/new@acme.example").status_code == 404
    assert admin.delete("/api/admin/users/new@acme.example").status_code == 204
    assert admin.patch("/api/admin/users/new@acme.example", json={"enabled": False}).status_code == 404
    assert without(admin.get("/api/admin/me").json(), "may") == {
        "account": "acme",
        "email": "admin@acme.example",
        "role": "admin",
    }


def test_concurrency_limits_of_partners_and_endpoints(users: Users, acme_files: Path) -> None:
    op = users.operator
    made = op.post(
        "/api/admin/endpoints",
        json={"name": "capped", "type": "file", "settings": {"path": str(acme_files)}, "max_concurrent": 2},
    )
    assert made.status_code == 201, made.text
    assert made.json()["max_concurrent"] == 2
    changed = op.patch("/api/admin/endpoints/capped", json={"max_concurrent": 0})
    assert changed.status_code == 200 and changed.json()["changed"] == ["max_concurrent"]
    assert changed.json()["max_concurrent"] is None
    assert op.patch("/api/admin/endpoints/capped", json={}).json()["changed"] == []
    assert op.patch("/api/admin/endpoints/capped", json={"max_concurrent": -1}).status_code in (400, 422)

    assert op.post("/api/admin/partners", json={"name": "capped-p", "password": PASSWORD}).status_code == 201
    partner = op.patch("/api/admin/partners/capped-p", json={"max_concurrent": 3})
    assert partner.status_code == 200, partner.text
    assert partner.json()["max_concurrent"] == 3
    assert op.get("/api/admin/partners/capped-p").json()["max_concurrent"] == 3
    assert (
        op.patch("/api/admin/partners/capped-p", json={"max_concurrent": None}).json()["max_concurrent"]
        is None
    )
    assert op.patch("/api/admin/partners/capped-p", json={"max_concurrent": 10_001}).status_code in (400, 422)
    assert op.get("/api/admin/endpoints").json() == cli_json("endpoint", "list", "--account", "acme")


def test_a_partners_contacts_and_notices_are_set_over_rest_as_on_the_command_line(users: Users) -> None:
    op = users.operator
    assert op.post("/api/admin/partners", json={"name": "p-told", "password": PASSWORD}).status_code == 201
    nobody = op.patch("/api/admin/partners/p-told", json={"tell_rejected": True})
    assert nobody.status_code == 400 and "needs a --contact-email" in nobody.json()["message"]
    hostile = op.patch(
        "/api/admin/partners/p-told", json={"contact_emails": ["a@p.example\r\nBcc: x@evil.example"]}
    )
    assert hostile.status_code == 400
    told = op.patch(
        "/api/admin/partners/p-told",
        json={
            "contact_emails": ["ops@p.example", "edi@p.example"],
            "tell_rejected": True,
            "tell_downloads": True,
        },
    )
    assert told.status_code == 200, told.text
    body = told.json()
    assert body["contact_emails"] == ["ops@p.example", "edi@p.example"]
    assert body["tell_rejected"] is True and body["tell_downloads"] is True
    assert op.get("/api/admin/partners/p-told").json()["tell_downloads"] is True
    cleared = op.patch("/api/admin/partners/p-told", json={"contact_emails": None})
    assert cleared.status_code == 400 and "turn --no-tell-rejected" in cleared.json()["message"]
    quiet = op.patch(
        "/api/admin/partners/p-told",
        json={"contact_emails": [], "tell_rejected": False, "tell_downloads": False},
    )
    assert quiet.status_code == 200 and quiet.json()["contact_emails"] == []
    assert users.reader.patch("/api/admin/partners/p-told", json={"tell_rejected": False}).status_code == 403

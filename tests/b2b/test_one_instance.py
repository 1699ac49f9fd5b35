"""B2B Connect on one instance, through a real `tradelane up`: two accounts, invitation and accept by
the CLI, files held while pending and delivered once active, `connect send`, the receiver-owned
landing flow `b2b:<id>` run by Prefect with its run name and tags, the receiver's file and moto S3
endpoints, a receiving folder that vanished, revoke, and a grep of everything the sender is shown.

Accounts are made with `tradelane account add`. The outbox write of a pending connection is the core
outbox write (`core.b2b.outbox.write`) that the REST/SFTP outbox folders of account users call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import moto_client
from tests.system import System
from tests.waiting import wait_for

WAIT = 90.0  # a busy machine: generous, and never a timing assertion


@pytest.fixture
def up(system: System) -> System:
    """The session's `tradelane up`: every test makes its own accounts and connection names."""
    return system


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def py(system: System, code: str) -> str:
    """Run Python against the running instance's home (what a stand-in surface would do)."""
    done = subprocess.run(
        [sys.executable, "-c", code], env=system.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def new_account(system: System, name: str) -> None:
    system.cli(
        "account", "add", name, "--email", f"admin@{name}.example", "--password", "connect-Owner-Pass-41"
    )


def put_in_outbox(system: System, account: str, conn: str, path: Path) -> dict[str, Any]:
    out = py(
        system,
        "import json\n"
        "from core.db import session_scope\n"
        "from core.b2b import outbox\n"
        "from core.b2b.caller import cli_caller\n"
        f"with session_scope() as s: caller = cli_caller(s, {account!r})\n"
        f"with open({str(path)!r}, 'rb') as f: sent = outbox.write(caller, {conn!r}, {path.name!r}, f, "
        "require_active=False)\n"
        "print(json.dumps({'receipt': sent.receipt.id, 'held': sent.held, 'transfer': sent.transfer_id}))\n",
    )
    result: dict[str, Any] = json.loads(out)
    return result


def cli_json(system: System, *args: str) -> Any:
    return json.loads(system.cli(*args, "--json").stdout)


def history(system: System, account: str, conn: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = cli_json(system, "transfers", "--connection", conn, "--account", account)
    return rows


def wait_state(system: System, account: str, conn: str, file: str, state: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        return next(
            (r for r in history(system, account, conn) if r["file"] == file and r["state"] == state), None
        )

    return wait_for(done, f"{file} {state} in connection {conn}", timeout=WAIT, interval=0.3)


def file_of(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def connect_pair(system: System, tmp: Path, dest: str, endpoint_flags: list[str]) -> dict[str, str]:
    """A sender account invites home to receive into `dest`; returns the names and ids."""
    sender, endpoint = unique("acme"), dest.split(":", 1)[0]
    new_account(system, sender)
    system.cli("endpoint", "add", endpoint, *endpoint_flags)
    invited = cli_json(
        system,
        "connect",
        "invite",
        "--account",
        sender,
        "--send",
        "--outbox",
        "orders",
        "--email",
        "ops@home.example",
        "--name",
        "to-home",
    )
    assert invited["email_sent"] is False and invited["link"].startswith(
        system.api + "/connect/accept?token=tlc1_"
    )
    receiver_name = f"from-{sender}"
    return {
        "sender": sender,
        "receiver_name": receiver_name,
        "id": str(invited["id"]),
        "link": invited["link"],
        "dest": dest,
    }


def accept(system: System, pair: dict[str, str]) -> dict[str, Any]:
    answer: dict[str, Any] = cli_json(
        system,
        "connect",
        "accept",
        pair["link"],
        "--account",
        "home",
        "--name",
        pair["receiver_name"],
        "--dest",
        pair["dest"],
    )
    return answer


def test_a_held_file_and_a_sent_file_land_in_the_receivers_folder(up: System, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    (lake / "in" / "acme").mkdir(parents=True)
    pair = connect_pair(up, tmp_path, f"{unique('lake')}:in/acme", ["--type", "file", "--path", str(lake)])
    sender = pair["sender"]

    early = os.urandom(200_000)
    held = put_in_outbox(up, sender, "to-home", file_of(tmp_path, "early.bin", early))
    assert held["held"] is True and held["transfer"] is None
    assert [r["state"] for r in history(up, sender, "to-home")] == ["held"]
    listed = cli_json(up, "connect", "list", "--account", sender)
    assert listed[0]["state"] == "pending" and listed[0]["role"] == "send"

    accepted = accept(up, pair)
    assert accepted["state"] == "active" and accepted["role"] == "receive" and accepted["with"] == sender
    assert cli_json(up, "connect", "show", "to-home", "--account", sender)["state"] == "active"
    wait_state(up, sender, "to-home", "early.bin", "delivered")
    assert (lake / "in" / "acme" / "early.bin").read_bytes() == early

    later = os.urandom(70_000)
    sent = up.cli("connect", "send", "to-home", str(file_of(tmp_path, "po.json", later)), "--account", sender)
    assert "po.json: received (receipt" in sent.stdout
    row = wait_state(up, sender, "to-home", "po.json", "delivered")
    assert row["outcome"] == "delivered" and row["receipt"]["sha256"] == row["sha256"]
    assert (lake / "in" / "acme" / "po.json").read_bytes() == later

    theirs = history(up, "home", pair["receiver_name"])
    assert {r["file"] for r in theirs} == {"early.bin", "po.json"}
    assert all(r["destination_uri"].endswith(f"in/acme/{r['file']}") for r in theirs)
    # The receiver's plain history lists its landing flow's transfers too.
    flow = f"b2b:{pair['id']}"
    assert {r["file"] for r in up.transfers(flow=flow)} == {"early.bin", "po.json"}

    runs = httpx.post(
        f"{up.prefect_api}/flow_runs/filter",
        json={"flow_runs": {"tags": {"all_": [f"connection:{pair['id']}"]}}, "limit": 50},
        timeout=30,
    ).json()
    names = {run["name"] for run in runs}
    assert f"b2b {sender}/to-home → home/{pair['receiver_name']}: early.bin" in names
    assert f"b2b {sender}/to-home → home/{pair['receiver_name']}: po.json" in names
    for run in runs:
        assert {
            f"connection:{pair['id']}",
            "b2b",
            f"account:{sender}",
            "account:home",
            f"flow:{flow}",
        } <= set(run["tags"])
        assert set(run["parameters"]) == {"data_flow_id", "transfer_ids"}

    up.cli("connect", "revoke", "to-home", "--account", sender)
    refused = up.cli(
        "connect", "send", "to-home", str(tmp_path / "po.json"), "--account", sender, check=False
    )
    assert (
        refused.returncode == 1
        and "409: connection 'to-home' was revoked on" in refused.stderr + refused.stdout
    )


def test_files_land_in_a_moto_bucket_under_prefix_and_dir(
    up: System, tmp_path: Path, moto_server: str
) -> None:
    bucket = unique("bucket")
    client = moto_client(moto_server)
    client.create_bucket(Bucket=bucket)
    flags = ["--type", "s3", "--bucket", bucket, "--endpoint-url", moto_server, "--region", "us-east-1"]
    flags += [
        "--access-key-id",
        "AKIAB2BTEST",
        "--secret-access-key",
        "b2b-secret-key",
        "--prefix",
        "inbound",
    ]
    pair = connect_pair(up, tmp_path, f"{unique('vault')}:from/acme", flags)
    accept(up, pair)
    data = os.urandom(300_000)
    up.cli(
        "connect", "send", "to-home", str(file_of(tmp_path, "invoice.edi", data)), "--account", pair["sender"]
    )
    wait_state(up, pair["sender"], "to-home", "invoice.edi", "delivered")
    body = client.get_object(Bucket=bucket, Key="inbound/from/acme/invoice.edi")["Body"].read()
    assert body == data


def test_a_vanished_folder_fails_visibly_and_the_receiver_replays(up: System, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    (lake / "in" / "acme").mkdir(parents=True)
    pair = connect_pair(up, tmp_path, f"{unique('lake')}:in/acme", ["--type", "file", "--path", str(lake)])
    accept(up, pair)
    (lake / "in" / "acme").rmdir()
    data = b"<order/>"
    up.cli(
        "connect", "send", "to-home", str(file_of(tmp_path, "order.xml", data)), "--account", pair["sender"]
    )
    mine = wait_state(up, pair["sender"], "to-home", "order.xml", "failed")
    assert mine["outcome"] == "the receiving folder is missing; the receiver was told"
    [theirs] = history(up, "home", pair["receiver_name"])
    assert theirs["state"] == "failed"
    assert (
        theirs["error"]
        == f"the receiving folder 'in/acme' no longer exists in endpoint '{pair['dest'].split(':')[0]}'"
    )
    assert not (lake / "in" / "acme").exists(), "the delivery re-created the folder"

    (lake / "in" / "acme").mkdir()
    up.cli("replay", str(theirs["id"]))
    wait_state(up, pair["sender"], "to-home", "order.xml", "delivered")
    assert (lake / "in" / "acme" / "order.xml").read_bytes() == data
    assert sorted(p.name for p in (lake / "in" / "acme").iterdir()) == ["order.xml"]


def test_the_sender_is_never_shown_the_receivers_storage(
    up: System, tmp_path: Path, moto_server: str
) -> None:
    """Every answer the sender can get, grepped for the receiver's bucket, prefix, DIR, endpoint name,
    endpoint URL, access key, path and destination URIs — with a delivery and a failing landing."""
    bucket = unique("secretbucket")
    moto_client(moto_server).create_bucket(Bucket=bucket)
    endpoint = unique("hiddenvault")
    flags = ["--type", "s3", "--bucket", bucket, "--endpoint-url", moto_server, "--region", "us-east-1"]
    flags += [
        "--access-key-id",
        "AKIAHIDDENKEY",
        "--secret-access-key",
        "hidden-secret",
        "--prefix",
        "hiddenprefix",
    ]
    pair = connect_pair(up, tmp_path, f"{endpoint}:hiddendir/sub", flags)
    accept(up, pair)
    sender = pair["sender"]
    up.cli("connect", "allow-view", pair["receiver_name"])
    up.cli("connect", "send", "to-home", str(file_of(tmp_path, "ok.json", b"{}")), "--account", sender)
    wait_state(up, sender, "to-home", "ok.json", "delivered")
    # A failing landing: the bucket is gone, so the receiver's error names it; the sender's must not.
    client = moto_client(moto_server)
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)
    up.cli("connect", "send", "to-home", str(file_of(tmp_path, "bad.json", b"[]")), "--account", sender)
    wait_state(up, sender, "to-home", "bad.json", "failed")
    receiver = history(up, "home", pair["receiver_name"])
    uris = [r["destination_uri"] for r in receiver if r["destination_uri"]]
    errors = [r["error"] for r in receiver if r["error"]]
    assert uris and errors and any(bucket in e for e in errors), (uris, errors)

    answers = {
        "connect list": up.cli("connect", "list", "--account", sender, "--json").stdout,
        "connect list (table)": up.cli("connect", "list", "--account", sender).stdout,
        "connect show": up.cli("connect", "show", "to-home", "--account", sender, "--json").stdout,
        "connect show (text)": up.cli("connect", "show", "to-home", "--account", sender).stdout,
        "connect files": up.cli(
            "connect", "files", "to-home", "--account", sender, "--json", check=False
        ).stdout,
        "transfers --connection": up.cli(
            "transfers", "--connection", "to-home", "--account", sender, "--json"
        ).stdout,
        "transfers --connection (table)": up.cli(
            "transfers", "--connection", "to-home", "--account", sender
        ).stdout,
        "refusals": "".join(
            up.cli(*args, check=False).stderr
            for args in (
                ("connect", "allow-view", "to-home", "--account", sender),
                ("connect", "send", pair["receiver_name"], str(tmp_path / "ok.json"), "--account", sender),
                ("connect", "show", pair["receiver_name"], "--account", sender),
            )
        ),
        # The sender account's audit trail (what `audit --account` shows once accounts land).
        "audit": py(
            up,
            "import json\n"
            "from sqlmodel import select\n"
            "from core.db import session_scope\n"
            "from core.models import Account, AuditEvent\n"
            "with session_scope() as s:\n"
            f"    a = s.exec(select(Account).where(Account.name == {sender!r})).one()\n"
            "    rows = s.exec(select(AuditEvent).where(AuditEvent.account_id == a.id)).all()\n"
            "    print(json.dumps([r.model_dump(mode='json') for r in rows]))\n",
        ),
    }
    assert "ok.json" in answers["transfers --connection"] and "connection.accept" in answers["audit"]
    secrets = [
        bucket,
        "hiddenprefix",
        "hiddendir",
        endpoint,
        moto_server,
        "AKIAHIDDENKEY",
        "hidden-secret",
        *uris,
    ]
    for where, text in answers.items():
        for secret in secrets:
            assert secret not in text, f"the sender's {where} shows {secret!r}:\n{text}"


def test_the_token_is_nowhere_under_the_home(up: System, tmp_path: Path) -> None:
    """After invite, accept and decline, no file of the instance (database, Prefect's, logs) holds a token."""
    from urllib.parse import quote

    lake = tmp_path / "lake"
    lake.mkdir()
    accepted = connect_pair(up, tmp_path, unique("lake"), ["--type", "file", "--path", str(lake)])
    accept(up, accepted)
    up.cli(
        "connect", "send", "to-home", str(file_of(tmp_path, "t.txt", b"t")), "--account", accepted["sender"]
    )
    wait_state(up, accepted["sender"], "to-home", "t.txt", "delivered")
    declined = cli_json(
        up,
        "connect",
        "invite",
        "--account",
        accepted["sender"],
        "--send",
        "--outbox",
        "other",
        "--email",
        "x@home.example",
        "--name",
        "declined",
    )
    up.cli("connect", "decline", declined["link"])
    tokens = [link.split("token=", 1)[1] for link in (accepted["link"], declined["link"])]
    needles = [form.encode() for token in tokens for form in (token, quote(token, safe=""), token[5:])]
    looked = 0
    for path in up.home.rglob("*"):
        if path.is_file():
            looked += 1
            data = path.read_bytes()
            for needle in needles:
                assert needle not in data, f"{path} holds an invitation token"
    assert looked > 3 and (up.home / "up.log").exists()

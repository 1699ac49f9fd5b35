"""B2B Connect across two instances, through two real `tradelane up`s (fixture `peer_pair`): A invites,
B accepts the link (CLI and REST) and both show `active`; decline across; revoke on either side shows
`revoked` on the other within 60 s, also when the other instance was down when it was revoked; an
e-mailed invitation accepted across carries OpenSSH `sftp` uploads into B's S3 bucket (moto).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.b2b.peers_pair import Pair, unique
from tests.endpoint_servers.mail import SmtpServer
from tests.servers import moto_client, require_tool
from tests.system import start, stop
from tests.waiting import wait_for

PASSWORD = "Across-Pass-2024x"


def accept(pair: Pair, link: str, name: str, *flags: str, account: str = "home") -> dict[str, Any]:
    answer: dict[str, Any] = pair.b.json(
        "connect", "accept", link, "--account", account, "--name", name, *flags
    )
    return answer


def test_a_sends_b_accepts_by_cli_and_both_are_active(peer_pair: Pair) -> None:
    pair = peer_pair
    name, theirs = unique("to-globex"), unique("from-acme")
    invited = pair.invite(send=True, name=name)
    assert invited["state"] == "pending" and invited["link"].startswith(pair.a.url + "/connect/accept?token=")

    accepted = accept(pair, invited["link"], theirs, "--dest", "lake:in")
    assert accepted["state"] == "active" and accepted["role"] == "receive"
    assert accepted["peer"] == {"url": pair.a.url, "account": "home"}

    on_a = pair.a.connection(name)
    assert on_a["state"] == "active" and on_a["role"] == "send"
    assert on_a["with"] == f"peer {pair.b.url.removeprefix('http://')}"
    assert on_a["peer"]["account"] == "home" and on_a["peer"]["url"] == pair.b.url
    on_b = pair.b.connection(theirs)
    assert on_b["state"] == "active" and on_b["role"] == "receive" and on_b["dest"] == "lake:in"
    assert on_b["with"] == f"peer {pair.a.url.removeprefix('http://')}"
    # The sender never learns where the receiver lands files.
    assert "lake" not in str(on_a) and str(pair.b.lake) not in str(on_a)
    shown = pair.a.cli("connect", "show", name).stdout
    assert f"with: peer {pair.b.url.removeprefix('http://')}" in shown and "'account': 'home'" in shown


def test_a_receives_b_accepts_as_sender(peer_pair: Pair) -> None:
    pair = peer_pair
    name, theirs = unique("from-globex"), unique("to-acme")
    invited = pair.invite(send=False, name=name)
    refused = pair.b.cli(
        "connect", "accept", invited["link"], "--name", theirs, "--dest", "lake:in", check=False
    )
    assert (
        refused.returncode == 1
        and "400: this invitation asks you to send files" in refused.stderr + refused.stdout
    )

    accepted = accept(pair, invited["link"], theirs, "--outbox", theirs)
    assert accepted["state"] == "active" and accepted["role"] == "send"
    on_a = pair.a.connection(name)
    assert on_a["state"] == "active" and on_a["role"] == "receive" and on_a["dest"] == "lake:in"
    on_b = pair.b.connection(theirs)
    assert on_b["state"] == "active" and on_b["outbox"] == theirs and "dest" not in on_b


def test_accept_across_over_rest(peer_pair: Pair) -> None:
    pair = peer_pair
    account, email, password = unique("globex"), f"{unique('admin')}@globex.example", "Peer-Admin-Pass-41x"
    pair.b.cli("account", "add", account, "--email", email, "--password", password)
    name, theirs = unique("to-globex"), unique("from-acme")
    invited = pair.invite(send=True, name=name)
    with httpx.Client(base_url=pair.b.url, timeout=60) as rest:
        login = rest.post(
            "/api/authentication", data={"grant_type": "password", "username": email, "password": password}
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        answer = rest.post(
            "/api/connections/accept",
            json={"token": invited["link"], "name": theirs, "dest": "lake:in"},
            headers=headers,
        )
        # The new account has no endpoint `lake`: refused on B before anything is written, A unchanged.
        assert answer.status_code == 404, answer.text
        assert pair.a.connection(name)["state"] == "pending"
        pair.b.cli(
            "endpoint", "add", "lake", "--account", account, "--type", "file", "--path", str(pair.b.lake)
        )
        answer = rest.post(
            "/api/connections/accept",
            json={"token": invited["link"], "name": theirs, "dest": "lake:in"},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "active" and answer.json()["peer"]["account"] == "home"
    assert pair.a.connection(name)["state"] == "active"
    assert pair.a.connection(name)["peer"]["account"] == account
    assert pair.b.connection(theirs, account=account)["state"] == "active"

    declined_name = unique("to-globex")
    link = pair.invite(send=True, name=declined_name)["link"]
    with httpx.Client(base_url=pair.b.url, timeout=60) as rest:
        answer = rest.post("/api/connections/decline", json={"token": link}, headers=headers)
    assert answer.status_code == 200 and answer.json() == {"id": None, "state": "declined"}, answer.text
    assert pair.a.connection(declined_name)["state"] == "declined"


def test_decline_across(peer_pair: Pair) -> None:
    pair = peer_pair
    name = unique("to-nobody")
    invited = pair.invite(send=True, name=name)
    before_b = pair.b.settled()
    declined = pair.b.json("connect", "decline", invited["link"])
    assert declined == {"id": None, "state": "declined"}
    assert pair.a.connection(name)["state"] == "declined"
    assert pair.b.settled() == before_b
    again = pair.b.cli("connect", "decline", invited["link"], check=False)
    assert again.returncode == 1 and "409: this invitation was declined" in again.stderr + again.stdout


def test_revoke_on_either_side_shows_on_the_other(peer_pair: Pair) -> None:
    pair = peer_pair
    name, theirs = unique("to-globex"), unique("from-acme")
    accept(pair, pair.invite(send=True, name=name)["link"], theirs, "--dest", "lake:in")
    pair.a.cli("connect", "revoke", name)
    assert pair.a.connection(name)["state"] == "revoked"
    revoked = pair.b.wait_state(theirs, "revoked")
    assert "by the sender" in revoked["state_text"]

    name, theirs = unique("from-globex"), unique("to-acme")
    accept(pair, pair.invite(send=False, name=name)["link"], theirs, "--outbox", theirs)
    pair.b.cli("connect", "revoke", theirs)
    revoked = pair.a.wait_state(name, "revoked")
    assert "by the sender" in revoked["state_text"]


def test_a_lost_revoke_notice_is_repaired_by_the_state_check(peer_pair: Pair) -> None:
    pair = peer_pair
    name, theirs = unique("to-globex"), unique("from-acme")
    accept(pair, pair.invite(send=True, name=name)["link"], theirs, "--dest", "lake:in")
    # Revoked on A with no notice owed (as if it was lost): B learns it from its state check alone.
    pair.a.py(
        "from sqlmodel import select\n"
        "from core.b2b import connections\n"
        "from core.db import session_scope\n"
        "from core.models import Connection\n"
        "with session_scope() as s:\n"
        f"    c = s.exec(select(Connection).where(Connection.sender_name == {name!r})).one()\n"
        "    connections.end(s, c, actor='test', side='sender')\n"
    )
    revoked = pair.b.wait_state(theirs, "revoked")
    assert "by the sender" in revoked["state_text"]
    actions = [e["action"] for e in pair.b.json("audit", "--action", "peer")]
    assert "peer.revoke.received" in actions


def a_peer(pair: Pair, name: str) -> dict[str, Any]:
    shown: dict[str, Any] = pair.a.connection(name)["peer"]
    return shown


def test_a_revoke_while_b_is_down_reaches_b_when_it_is_back(peer_pair: Pair) -> None:
    pair = peer_pair
    name, theirs = unique("to-globex"), unique("from-acme")
    accept(pair, pair.invite(send=True, name=name)["link"], theirs, "--dest", "lake:in")
    stays = unique("to-globex")
    accept(pair, pair.invite(send=True, name=stays)["link"], unique("from-acme"), "--dest", "lake:in")
    stop(pair.b.system)
    try:
        # A's state check finds B gone: shown unreachable, with why, never revoked.
        down = wait_for(
            lambda: not a_peer(pair, stays)["reachable"] and a_peer(pair, stays),
            "B unreachable",
            timeout=60,
            interval=0.5,
        )
        assert "did not answer" in down["last_error"]
        assert pair.a.connection(stays)["state"] == "active"
        pair.a.cli("connect", "revoke", name)

        def notice_failed() -> bool:
            out = pair.a.py(
                "from sqlmodel import select\n"
                "from core.db import session_scope\n"
                "from core.models import Connection, Peer\n"
                "with session_scope() as s:\n"
                f"    c = s.exec(select(Connection).where(Connection.sender_name == {name!r})).one()\n"
                "    p = s.exec(select(Peer).where(Peer.connection_id == c.id)).one()\n"
                "    print(p.revoke_to_send, p.notice_attempts)\n"
            )
            to_send, attempts = out.split()
            return to_send == "True" and int(attempts) >= 1

        wait_for(notice_failed, "A's revoke notice to fail while B is down", timeout=60, interval=0.5)
    finally:
        start(pair.b.system)
    pair.b.wait_state(theirs, "revoked")
    wait_for(lambda: a_peer(pair, stays)["reachable"], "B reachable again", timeout=60, interval=0.5)
    assert a_peer(pair, stays)["last_error"] is None
    actions = [e["action"] for e in pair.a.json("audit", "--action", "peer")]
    assert "peer.unreachable" in actions and "peer.reachable" in actions


def test_an_emailed_invitation_accepted_across_carries_sftp_uploads_into_bs_bucket(
    peer_pair: Pair, smtp_server: SmtpServer, moto_server: str, tmp_path: Path
) -> None:
    """The whole story across: A invites by e-mail, B accepts the link read from that e-mail into an
    S3 endpoint (moto), A's account user puts a file into the outbox with OpenSSH `sftp`, and it
    lands byte for byte in B's bucket under the folder B chose; A sees the state and B's signed
    receipt, never B's bucket or folder."""
    pair = peer_pair
    outbox, name = unique("box"), unique("to-b")
    bucket, vault = unique("bucket"), unique("vault")
    moto_client(moto_server).create_bucket(Bucket=bucket)
    pair.b.cli(
        "endpoint", "add", vault, "--type", "s3", "--bucket", bucket, "--endpoint-url", moto_server,
        "--region", "us-east-1", "--access-key-id", "AKIAACROSS", "--secret-access-key", "across-secret",
        "--prefix", "inbound",
    )  # fmt: skip
    mailbox = smtp_server.root.create()
    invited = pair.a.json(
        "connect", "invite", "--email", smtp_server.address(mailbox), "--name", name,
        "--send", "--outbox", outbox,
    )  # fmt: skip
    assert invited["email_sent"] is True, invited
    [message] = wait_for(lambda: smtp_server.root.messages(mailbox), "the invitation e-mail", timeout=60)
    body = message.get_body(("plain",))
    assert body is not None
    found = re.search(r"(http://\S+/connect/accept\?token=\S+)", body.get_content())
    assert found and found.group(1) == invited["link"]
    accept(pair, found.group(1), f"from-{name}", "--dest", f"{vault}:in/a")
    pair.a.wait_state(name, "active")

    user = f"ops-{uuid.uuid4().hex[:6]}@acme.example"
    pair.a.cli("account", "user", "add", user, "--role", "operator", "--password", PASSWORD)
    data = os.urandom(333_333)
    (tmp_path / "po.edi").write_bytes(data)
    done = subprocess.run(
        [require_tool("sshpass"), "-p", PASSWORD, require_tool("sftp"), "-o", "BatchMode=no",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "PubkeyAuthentication=no", "-o", "LogLevel=ERROR", "-o", f"User={user}",
         "-P", pair.a.system.env["TRADELANE_SFTP_PORT"], "-b", "-", "127.0.0.1"],
        input=f"put po.edi /b2b/{outbox}/po.edi\n".encode(), capture_output=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    s3 = moto_client(moto_server)

    def landed() -> bytes | None:
        try:
            got: bytes = s3.get_object(Bucket=bucket, Key="inbound/in/a/po.edi")["Body"].read()
            return got
        except s3.exceptions.NoSuchKey:
            return None

    assert wait_for(landed, "po.edi in B's bucket", timeout=180, interval=0.5) == data

    def receipted() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = pair.a.json("transfers", "--connection", name)
        return rows if rows and rows[0]["state"] == "delivered" else None

    [row] = wait_for(receipted, "A's transfer delivered with B's receipt", timeout=60, interval=0.5)
    assert row["file"] == "po.edi" and row["signed_receipt"]
    shown = json.dumps(row) + json.dumps(pair.a.json("connect", "show", name))
    for secret in (bucket, vault, "inbound", "in/a", moto_server, "AKIAACROSS"):
        assert secret not in shown, secret

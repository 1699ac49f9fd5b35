"""Across two `tradelane up` instances (separate homes and ports): a file put into A's outbox by REST is
pushed by A's Prefect flow to B (DESIGN-12 §5.5), lands byte for byte in B's receiving folder through
B's intake and landing flow (§5.9), and A keeps B's signed receipt, which verifies with B's key
(§5.6). A replay of the same transfer is answered "complete" (no second receipt, no second file);
a connection cut mid-body resumes from B's offset; and B killed with SIGKILL while it holds part of
an upload, then started again on the same home and ports, takes the file exactly once.

The instances are the session's `peer_pair` (tests/b2b/peers_pair.py), paired here by the real
handshake: acme on A invites, globex on B runs `connect accept <link>`. B's public URL is a `Relay`
in front of B's API, so A reaches B through it, and the relay can cut, slow or hold the connection.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.b2b.outbox_doors import folder_named, upload
from tests.b2b.peer_pair import Relay, Side, in_home
from tests.b2b.peers_pair import Pair as PeerPair
from tests.system import System, start
from tests.waiting import wait_for

PASSWORD = "Peer-push-Pass-41"
WAIT = 180.0  # two instances on a busy machine: generous, and never a timing assertion


@dataclass
class Pair:
    a: System  # acme sends through outbox `orders`
    b: System  # globex receives into file endpoint `lake`, folder `in`
    relay: Relay  # A reaches B's API through it
    a_side: Side
    b_side: Side
    lake: Path

    def send(self, name: str, data: bytes) -> None:
        """acme's admin puts a file into b2b/orders/ over REST (A's intake, protocol b2b)."""
        token = httpx.post(
            f"{self.a.api}/api/authentication",
            data={"grant_type": "password", "username": "admin@acme.example", "password": PASSWORD},
            timeout=30,
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=self.a.api, headers=headers, timeout=120) as rest:
            sent = upload(rest, folder_named(rest, "b2b", "orders")["id"], name, data)
        assert sent.status_code == 201, sent.text

    def sent(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = in_home(self.a.env, "sent", connection_id=self.a_side.connection_id)
        return rows

    def delivered(self, name: str, count: int = 1) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            rows = [r for r in self.sent() if r["name"] == name]
            if len(rows) >= count and all(r["state"] == "delivered" for r in rows):
                return rows
            if any(r["state"] in ("failed", "rejected") for r in rows):
                raise AssertionError(f"{name} did not go through: {json.dumps(rows, indent=1)}")
            return None

        return wait_for(done, f"{name} delivered by A", timeout=WAIT, interval=0.5)

    def landed(self, name: str) -> bytes:
        path = self.lake / "in" / name
        return wait_for(lambda: path.exists() and path.read_bytes(), f"{name} in B's folder", WAIT, 0.3)

    def uploads(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = in_home(self.b.env, "uploads", connection_id=self.b_side.connection_id)
        return rows

    def receipts_on_b(self, name: str) -> list[dict[str, Any]]:
        rows = in_home(self.b.env, "receipts_of", connection_id=self.b_side.connection_id)
        return [r for r in rows if r["name"] == name]

    def copies_in_lake(self, name: str) -> list[str]:
        stem = Path(name).stem
        return sorted(p.name for p in (self.lake / "in").iterdir() if p.name.startswith(stem))


@pytest.fixture(scope="module")
def pair(peer_pair: PeerPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """The session's two instances (B's public URL is the relay), paired here by acme on A and
    globex on B, names no other module uses."""
    a, b, relay = peer_pair.a.system, peer_pair.b.system, peer_pair.b.relay
    assert relay is not None
    lake = tmp_path_factory.mktemp("lake")
    (lake / "in").mkdir()
    b.cli("account", "add", "globex", "--email", "admin@globex.example", "--password", PASSWORD)
    b.cli("endpoint", "add", "lake", "--type", "file", "--path", str(lake), "--account", "globex")
    a.cli("account", "add", "acme", "--email", "admin@acme.example", "--password", PASSWORD)
    invited = json.loads(
        a.cli(
            "connect", "invite", "--account", "acme", "--send", "--outbox", "orders",
            "--email", "admin@globex.example", "--name", "to-globex", "--json",
        ).stdout
    )  # fmt: skip
    b.cli(
        "connect", "accept", invited["link"], "--account", "globex", "--name", "from-acme",
        "--dest", "lake:in",
    )  # fmt: skip
    a_side = in_home(a.env, "side_named", account="acme", name="to-globex")
    b_side = in_home(b.env, "side_named", account="globex", name="from-acme")
    shown = json.loads(a.cli("connect", "show", "to-globex", "--account", "acme", "--json").stdout)
    assert shown["state"] == "active", shown
    try:
        yield Pair(a, b, relay, a_side, b_side, lake)
    finally:  # the relay passes everything again for the modules after this one
        relay.rate = None
        relay.release()


def test_an_outbox_file_lands_on_the_other_instance_with_a_signed_receipt(pair: Pair) -> None:
    data = os.urandom(1_200_000)
    pair.send("po-1.edi", data)
    assert pair.landed("po-1.edi") == data
    [row] = pair.delivered("po-1.edi")
    # A keeps B's signed receipt, and it verifies with B's key (the peer row's) for what A sent.
    assert row["receipt_problem"] is None and row["receipt"] is not None
    facts = row["receipt"]
    assert (facts["name"], facts["size"], facts["sha256"]) == ("po-1.edi", len(data), row["sha256"])
    assert facts["connection"] == pair.b_side.uid and facts["peer_connection"] == pair.a_side.uid
    assert facts["key"] == f"{pair.b_side.uid}/{row['id']}/{row['sha256']}"
    assert row["answer"]["summary"] == "received by globex (signed receipt)"
    assert row["uri"] == f"tradelane-peer://127.0.0.1/{pair.b_side.uid}/po-1.edi"
    # A learns nothing of B's storage: no path, no endpoint name.
    assert str(pair.lake) not in json.dumps(row) and "lake" not in json.dumps(row)
    # B took it in once: one receipt (the one the signed receipt names), one upload, one file.
    [on_b] = pair.receipts_on_b("po-1.edi")
    assert on_b["id"] == facts["receipt_id"] and on_b["protocol"] == "b2b"
    [up] = [u for u in pair.uploads() if u["name"] == "po-1.edi"]
    assert up["state"] == "complete" and up["receipt_id"] == on_b["id"]
    assert pair.copies_in_lake("po-1.edi") == ["po-1.edi"]
    # acme's own history of the connection shows the signed receipt, and nothing of B's storage.
    shown = pair.a.cli("transfers", "--connection", "to-globex", "--account", "acme", "--json").stdout
    [mine] = [r for r in json.loads(shown) if r["file"] == "po-1.edi"]
    assert mine["outcome"] == "delivered (signed receipt)"
    assert mine["signed_receipt"] == {k: row["answer"][k] for k in ("receipt", "signature", "key_id")}
    assert "lake" not in shown and str(pair.lake) not in shown


def test_a_replay_of_the_same_transfer_is_answered_complete_and_lands_nothing_more(pair: Pair) -> None:
    data = os.urandom(300_000)
    pair.send("po-2.edi", data)
    [first] = pair.delivered("po-2.edi")
    assert pair.landed("po-2.edi") == data
    pair.a.cli("replay", str(first["id"]), "--account", "acme")
    rows = pair.delivered("po-2.edi", count=2)
    replay = next(r for r in rows if r["replay_of"] == first["id"])
    # The same key (the original transfer, the same SHA-256): B answers with the receipt it gave.
    assert replay["receipt"]["key"] == first["receipt"]["key"]
    assert replay["receipt"]["receipt_id"] == first["receipt"]["receipt_id"]
    assert replay["answer"]["receipt"] == first["answer"]["receipt"]
    assert len(pair.receipts_on_b("po-2.edi")) == 1
    assert pair.copies_in_lake("po-2.edi") == ["po-2.edi"]


def test_a_connection_cut_mid_body_resumes_from_the_receivers_offset(pair: Pair) -> None:
    data = os.urandom(3_000_000)
    pair.relay.cut_after(1_200_000)  # the next connection towards B breaks after ~1.2 MB of its body
    pair.send("big-1.bin", data)
    assert pair.landed("big-1.bin") == data
    [row] = pair.delivered("big-1.bin")
    assert pair.relay.cuts == 1 and row["attempts"] >= 2 and row["receipt_problem"] is None
    [up] = [u for u in pair.uploads() if u["name"] == "big-1.bin"]
    assert up["state"] == "complete" and up["resumes"] >= 1
    assert len(pair.receipts_on_b("big-1.bin")) == 1
    assert pair.copies_in_lake("big-1.bin") == ["big-1.bin"]


def _port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_the_receiver_killed_mid_upload_and_started_again_takes_the_file_exactly_once(pair: Pair) -> None:
    data = os.urandom(3_000_000)
    staged = pair.b.home / "mailboxes" / ".peer" / pair.b_side.uid
    before = {p.name for p in staged.glob("*")} if staged.exists() else set()
    pair.relay.rate = 150_000.0  # bytes per second towards B: the upload takes ~20 s
    try:
        pair.send("big-2.bin", data)

        def part_staged() -> bool:
            sizes = (
                [p.stat().st_size for p in staged.glob("*") if p.name not in before]
                if staged.exists()
                else []
            )
            return any(0 < size < len(data) for size in sizes)

        wait_for(part_staged, "part of big-2.bin staged on B", timeout=WAIT, interval=0.1)
        pair.relay.hold()  # A's next tries wait at the relay until B is back
        assert pair.b.proc is not None
        pair.b.proc.send_signal(signal.SIGKILL)
        pair.b.proc.wait()
        api_port = int(pair.b.api.rsplit(":", 1)[1])
        wait_for(lambda: _port_closed(api_port), "B's API port to come free", 60, 0.2)
    finally:
        pair.relay.rate = None
    start(pair.b)
    pair.relay.release()
    assert pair.landed("big-2.bin") == data
    [row] = pair.delivered("big-2.bin")
    assert row["receipt_problem"] is None and row["receipt"]["size"] == len(data)
    [up] = [u for u in pair.uploads() if u["name"] == "big-2.bin"]
    assert up["state"] == "complete" and up["resumes"] >= 1
    assert len(pair.receipts_on_b("big-2.bin")) == 1
    assert pair.copies_in_lake("big-2.bin") == ["big-2.bin"]


def test_a_file_waits_while_the_peer_is_down_and_goes_as_soon_as_it_answers(pair: Pair) -> None:
    """B down: A's tries fail, the transfer waits (never failed, never lost); B back: A's state check
    finds it reachable and wakes the file at once, before its own next try was due."""
    data = os.urandom(80_000)
    pair.relay.refuse()
    try:
        pair.send("late.edi", data)

        def waiting() -> dict[str, Any] | None:
            row = next((r for r in pair.sent() if r["name"] == "late.edi"), None)
            assert row is None or row["state"] in ("pending", "running", "waiting"), row
            return row if row is not None and row["state"] == "waiting" else None

        waited = wait_for(waiting, "late.edi waiting on A", WAIT, 0.5)
        assert "unreachable" in waited["error"] and waited["next_attempt_at"] is not None
        shown = json.loads(
            pair.a.cli("transfers", "--connection", "to-globex", "--account", "acme", "--json").stdout
        )
        assert [r["state"] for r in shown if r["file"] == "late.edi"] == ["waiting"]
        peer = json.loads(pair.a.cli("connect", "show", "to-globex", "--account", "acme", "--json").stdout)
        assert peer["state"] == "active"  # a peer that is down does not end the connection
    finally:
        pair.relay.release()
    [row] = pair.delivered("late.edi")
    assert pair.landed("late.edi") == data and len(pair.receipts_on_b("late.edi")) == 1
    # Woken by B's answer to the state check, not by the backoff's own clock.
    assert row["finished_at"] < waited["next_attempt_at"], (row, waited)


def test_the_sender_lists_the_receivers_folder_across_only_while_the_receiver_allows_it(pair: Pair) -> None:
    data = os.urandom(4321)
    pair.send("viewed.txt", data)
    assert pair.landed("viewed.txt") == data

    def files_on_a() -> subprocess.CompletedProcess[str]:
        return pair.a.cli("connect", "files", "to-globex", "--account", "acme", "--json", check=False)

    refused = files_on_a()
    assert refused.returncode == 1 and "403" in refused.stdout + refused.stderr
    assert "globex has not allowed viewing its folder" in refused.stdout + refused.stderr

    pair.b.cli("connect", "allow-view", "from-acme", "--account", "globex")
    shown = files_on_a()
    assert shown.returncode == 0, shown.stdout + shown.stderr
    listed = {f["name"]: f["size"] for f in json.loads(shown.stdout)}
    assert listed["viewed.txt"] == len(data)
    assert str(pair.lake) not in shown.stdout and "lake" not in shown.stdout  # never where it is
    token = httpx.post(
        f"{pair.a.api}/api/authentication",
        data={"grant_type": "password", "username": "admin@acme.example", "password": PASSWORD},
        timeout=30,
    ).json()["access_token"]
    with httpx.Client(base_url=pair.a.api, headers={"Authorization": f"Bearer {token}"}, timeout=60) as rest:
        box = folder_named(rest, "b2b", "orders")
        through_folder = rest.get(f"/api/folders/{box['id']}/files")
        assert through_folder.status_code == 200, through_folder.text
        assert ("viewed.txt", len(data)) in [
            (f["name"], f["length"]) for f in through_folder.json()["resources"]
        ]

        pair.b.cli("connect", "allow-view", "from-acme", "--account", "globex", "--off")
        again = rest.get(f"/api/folders/{box['id']}/files")
        assert again.status_code == 403 and "has not allowed viewing" in again.json()["message"]

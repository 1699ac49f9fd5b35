"""Issue 12 item 7 ("if the peer is down, A retries with backoff and shows the transfer as waiting,
never lost"), for any destination that says "not now", through a real `tradelane up`.

The destination is a test-only endpoint type (tests/endpoint_types/deferring.py), added as a third
party adds one: an entry point in an installed distribution, found by every process of `up`. It
is a folder that raises `Deferrable` while a flag file exists. The longest wait is set to a few
seconds (TRADELANE_WAIT_RETRY_MAX_SECONDS) so the backoff is seen working within the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import PartnerClient, finished_run, unique
from tests.system import System, run_system
from tests.waiting import wait_for

WAIT = 120.0  # a busy machine: generous, and never a timing assertion
PASSWORD = "waiting-partner-pw-1"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def up() -> Iterator[System]:
    with tempfile.TemporaryDirectory(prefix="tradelane-site-") as site:
        dist = Path(site) / "tradelane_deferring-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tradelane-deferring\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(
            "[tradelane.endpoints]\ndeferring = tests.endpoint_types.deferring:DeferringEndpoint\n"
        )
        path = os.pathsep.join(p for p in (site, str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        with run_system(PYTHONPATH=path, TRADELANE_WAIT_RETRY_MAX_SECONDS="3") as system:
            yield system


def py(system: System, code: str) -> str:
    """Python against the running instance's store (what another process of it, e.g. the peer
    worker, does)."""
    done = subprocess.run(
        [sys.executable, "-c", code], env=system.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def away_flow(system: System, tmp: Path) -> tuple[str, str, Path, Path, PartnerClient]:
    """A partner, and a flow (no retries within a run) to a folder that is away while `flag` exists."""
    partner, endpoint, flow = unique("wt"), unique("away"), unique("flow")
    dest, flag = tmp / "dest", tmp / "away.flag"
    flag.touch()
    system.cli("partner", "add", partner, "--password", PASSWORD)
    system.cli(
        "endpoint", "add", endpoint, "--type", "deferring", "--path", str(dest), "--away-while", str(flag)
    )
    system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint, "--retries", "0")
    return partner, flow, dest, flag, PartnerClient(system, partner, PASSWORD)


def one(system: System, flow: str, file: str, predicate: Any, what: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        rows = [r for r in system.transfers(flow=flow) if r["file"] == file]
        assert len(rows) <= 1, rows  # never a second transfer of the file
        return rows[0] if rows and predicate(rows[0]) else None

    return wait_for(found, f"{file} {what}", timeout=WAIT, interval=0.3)


def waiting(row: dict[str, Any]) -> bool:
    return bool(row["state"] == "waiting")


def hold(system: System, transfer_id: int) -> None:
    """Put a waiting transfer's next try an hour off (as after many waits), so only what the test
    does next (Retry, wake_waiting) can make it go before then."""
    py(
        system,
        "from datetime import timedelta\n"
        "from sqlalchemy import update\n"
        "from core.db import session_scope\n"
        "from core.models import Transfer, utcnow\n"
        "import time\n"
        "while True:\n"
        "    with session_scope() as s:\n"
        f"        done = s.exec(update(Transfer).where(Transfer.id == {transfer_id}, Transfer.state == "
        "'waiting').values(next_attempt_at=utcnow() + timedelta(hours=1))).rowcount\n"
        "    if done: break\n"
        "    time.sleep(0.05)\n",
    )


def test_a_file_waits_while_its_destination_is_away_and_is_delivered_once_it_is_back(
    up: System, tmp_path: Path
) -> None:
    partner, flow, dest, flag, client = away_flow(up, tmp_path)
    with client:
        assert client.upload("po.json", b'{"po": 7}').status_code == 201
    row = one(up, flow, "po.json", waiting, "waiting")
    assert row["error"].startswith("destination unreachable: ") and "is away" in row["error"]
    assert row["next_attempt_at"] is not None and row["finished_at"] is None

    # The run tells the truth in the Prefect UI: not Completed, a state named Waiting.
    run = finished_run(up, row["flow_run_id"], timeout=WAIT)
    assert (run["state_type"], run["state_name"]) == ("FAILED", "Waiting"), run["state"]
    message = run["state"]["message"]
    assert message.startswith("0 of 1 files delivered; po.json waiting: destination unreachable: ")
    assert ", next try " in message and message.endswith("the file is kept and a later run carries it")

    # The operator's list shows when it is tried next; --state waiting finds it (it is tried
    # every few seconds here, so between two tries).
    wait_for(
        lambda: [r["id"] for r in up.transfers(flow=flow, state="waiting")] == [row["id"]],
        "po.json in transfers --state waiting",
        timeout=WAIT,
        interval=0.1,
    )
    wait_for(
        lambda: "waiting, next try " in up.cli("transfers", "--flow", flow, "--wide").stdout,
        "po.json's next try in the transfers table",
        timeout=WAIT,
        interval=0.1,
    )

    # Backoff: it is tried again and waits again (the longest wait here is 3 s) ...
    one(up, flow, "po.json", lambda r: r["attempts"] >= 2 and r["state"] == "waiting", "tried again")
    assert not dest.exists() or os.listdir(dest) == []
    # ... and once the destination is back, it is delivered, once.
    flag.unlink()
    done = one(up, flow, "po.json", lambda r: r["state"] == "delivered", "delivered")
    assert os.listdir(dest) == ["po.json"] and (dest / "po.json").read_bytes() == b'{"po": 7}'
    assert done["replay_of"] is None and done["next_attempt_at"] is None
    assert finished_run(up, done["flow_run_id"], timeout=WAIT)["state_type"] == "COMPLETED"
    wait_for(
        lambda: not (up.home / "mailboxes" / "home" / partner / "upload" / "po.json").exists(),
        "po.json to leave upload/",
        timeout=WAIT,
    )


def test_retry_on_a_waiting_run_carries_its_file_at_once(up: System, tmp_path: Path) -> None:
    _, flow, dest, flag, client = away_flow(up, tmp_path)
    with client:
        assert client.upload("po.json", b'{"po": 8}').status_code == 201
    row = one(up, flow, "po.json", waiting, "waiting")
    hold(up, row["id"])
    row = one(up, flow, "po.json", waiting, "waiting")
    run_id = row["flow_run_id"]
    assert finished_run(up, run_id, timeout=WAIT)["state_name"] == "Waiting"
    flag.unlink()
    response = httpx.post(  # what the Prefect UI's Retry button sends
        f"{up.prefect_api}/flow_runs/{run_id}/set_state",
        json={"state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"}},
        timeout=30,
    )
    assert response.status_code in (200, 201) and response.json()["status"] == "ACCEPT", response.text
    done = one(up, flow, "po.json", lambda r: r["state"] == "delivered", "delivered")
    assert done["flow_run_id"] == run_id and os.listdir(dest) == ["po.json"]

    def completed() -> dict[str, Any] | None:
        run = finished_run(up, run_id, timeout=WAIT)
        return run if run["run_count"] >= 2 and run["state_type"] == "COMPLETED" else None

    run = wait_for(completed, "the retried run to complete", timeout=WAIT, interval=0.3)
    assert (
        run["state"]["message"] == "1 of 1 files delivered (1 waiting before, carried at once by this retry)"
    )


def test_wake_waiting_makes_a_waiting_file_go_at_once(up: System, tmp_path: Path) -> None:
    _, flow, dest, flag, client = away_flow(up, tmp_path)
    with client:
        assert client.upload("po.json", b'{"po": 9}').status_code == 201
    row = one(up, flow, "po.json", waiting, "waiting")
    hold(up, row["id"])
    held = one(up, flow, "po.json", waiting, "waiting")
    assert datetime.fromisoformat(held["next_attempt_at"]) > datetime.now(UTC).replace(microsecond=0)
    flag.unlink()
    woken = py(
        up,
        "from sqlmodel import select\n"
        "from core import transfers\n"
        "from core.db import session_scope\n"
        "from core.models import DataFlow\n"
        "with session_scope() as s:\n"
        f"    flow_id = s.exec(select(DataFlow.id).where(DataFlow.name == {flow!r})).one()\n"
        "    print(transfers.wake_waiting(s, data_flow_id=flow_id))\n",
    )
    assert json.loads(woken) == 1
    one(up, flow, "po.json", lambda r: r["state"] == "delivered", "delivered")
    assert os.listdir(dest) == ["po.json"]


def test_revoke_fails_a_connections_waiting_file(up: System, tmp_path: Path) -> None:
    """A B2B connection lands into a destination that is away: the sent file waits (once the landing
    flow's own retries are spent), and revoking the connection fails it, "revoked before delivery"."""
    sender, endpoint = unique("acme"), unique("away")
    dest, flag = tmp_path / "dest", tmp_path / "away.flag"
    (dest / "in").mkdir(parents=True)
    flag.touch()
    up.cli(
        "account", "add", sender, "--email", f"admin@{sender}.example", "--password", "connect-Owner-Pass-41"
    )
    up.cli("endpoint", "add", endpoint, "--type", "deferring", "--path", str(dest), "--away-while", str(flag))
    invite = ["--send", "--outbox", "orders", "--email", "ops@home.example", "--name", "to-home"]
    invited = json.loads(up.cli("connect", "invite", "--account", sender, *invite, "--json").stdout)
    up.cli(
        "connect",
        "accept",
        invited["link"],
        "--account",
        "home",
        "--name",
        f"from-{sender}",
        "--dest",
        f"{endpoint}:in",
    )
    flow = f"b2b:{invited['id']}"
    # The landing flow spends its own retries (5, the first after 2 s, doubling: a minute) before
    # the file waits; from 0.1 s they are spent in seconds. A landing flow takes no `flow set`, so
    # the row is changed as another process of the instance would.
    py(
        up,
        "from sqlmodel import select\n"
        "from core.db import session_scope\n"
        "from core.models import DataFlow\n"
        "with session_scope() as s:\n"
        f"    landing = s.exec(select(DataFlow).where(DataFlow.name == {flow!r})).one()\n"
        "    assert (landing.retries, landing.retry_delay_seconds) == (5, 2.0), landing\n"
        "    landing.retry_delay_seconds = 0.1\n"
        "    s.add(landing)\n",
    )
    po = tmp_path / "po.json"
    po.write_bytes(b'{"po": 10}')
    up.cli("connect", "send", "to-home", str(po), "--account", sender)
    row = one(up, flow, "po.json", waiting, "waiting")
    hold(up, row["id"])  # no run is on it while it is revoked

    def seen_by_sender() -> list[tuple[str, str]]:
        rows = json.loads(
            up.cli("transfers", "--connection", "to-home", "--account", sender, "--json").stdout
        )
        return [(r["state"], r["outcome"]) for r in rows]

    assert seen_by_sender()[0][0] == "waiting"
    up.cli("connect", "revoke", "to-home", "--account", sender)
    failed = one(up, flow, "po.json", lambda r: r["state"] == "failed", "failed")
    assert failed["error"] == "connection revoked before delivery" and failed["next_attempt_at"] is None
    assert seen_by_sender() == [("failed", "revoked before delivery")]
    assert os.listdir(dest / "in") == []

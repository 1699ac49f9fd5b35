"""The admin API on a real `tradelane up` (the session's shared system): an account's operator sets up
a partner, an endpoint and a data flow over REST alone, the partner's file is carried by a real
Prefect flow run, the transfers page finds it by that run, and a replay is delivered again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.system import System

PASSWORD = "Up-Admin-Pass-2026"


def _token(client: httpx.Client, username: str) -> dict[str, str]:
    answer = client.post(
        "/api/authentication", data={"grant_type": "password", "username": username, "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _wait(
    client: httpx.Client, headers: dict[str, str], transfer_id: int, timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        shown: dict[str, Any] = client.get(f"/api/admin/transfers/{transfer_id}", headers=headers).json()
        if shown["state"] in ("delivered", "failed", "rejected") or time.monotonic() > deadline:
            return shown
        time.sleep(0.2)


def test_an_operator_sets_up_a_flow_over_rest_and_replays_its_transfer(
    system: System, tmp_path: Path
) -> None:
    system.cli("account", "add", "adminup", "--email", "boss@adminup.example", "--password", PASSWORD)
    system.cli(
        "account", "user", "add", "ops@adminup.example", "--role", "operator", "--password", PASSWORD,
        "--account", "adminup",
    )  # fmt: skip
    shelf = system.home.resolve() / "files" / "adminup" / "shelf"  # the account's allowed root
    shelf.mkdir(parents=True)
    with httpx.Client(base_url=system.api, timeout=60) as client:
        ops = _token(client, "ops@adminup.example")
        for path, body in (
            ("/api/admin/partners", {"name": "upbuyer", "password": PASSWORD}),
            ("/api/admin/endpoints", {"name": "shelf", "type": "file", "settings": {"path": str(shelf)}}),
            ("/api/admin/flows", {"name": "to-shelf", "source": "mailbox:upbuyer", "dest": "shelf"}),
        ):
            made = client.post(path, json=body, headers=ops)
            assert made.status_code == 201, made.text
        listed = client.get("/api/admin/flows", headers=ops).json()
        assert listed == json.loads(system.cli("flow", "list", "--account", "adminup", "--json").stdout)

        buyer = _token(client, "upbuyer")
        home = client.get("/api/folders", headers=buyer).json()["resources"][0]["id"]
        children = client.get(f"/api/folders/{home}/children", headers=buyer).json()["resources"]
        upload = next(f["id"] for f in children if f["subspace"] == "upload")
        sent = client.post(
            f"/api/folders/{upload}/files",
            content=b'{"po": 1}',
            headers={**buyer, "Content-Disposition": "attachment; filename=po.json"},
        )
        assert sent.status_code == 201, sent.text

        [first] = client.get("/api/admin/transfers", params={"flow": "to-shelf"}, headers=ops).json()[
            "transfers"
        ]
        done = _wait(client, ops, first["id"])
        assert done["state"] == "delivered", done
        assert (shelf / "po.json").read_bytes() == b'{"po": 1}'
        run = done["flow_run_id"]
        assert run and done["run_url"].endswith(f"/runs/flow-run/{run}")
        by_run = client.get("/api/admin/transfers", params={"run": run}, headers=ops).json()["transfers"]
        assert [t["id"] for t in by_run] == [first["id"]]

        replayed = client.post(f"/api/admin/transfers/{first['id']}/replay", headers=ops)
        assert replayed.status_code == 200, replayed.text
        again = _wait(client, ops, replayed.json()["id"])
        assert again["state"] == "delivered" and again["replay_of"] == first["id"], again
        assert again["flow_run_id"] != run

        actions = client.get("/api/admin/audit", params={"limit": 50}, headers=ops).json()["events"]
        mine = [(e["action"], e["actor"]) for e in actions if e["actor"] == "user:ops@adminup.example"]
        assert ("flow.add", "user:ops@adminup.example") in mine
        assert ("transfer.replay", "user:ops@adminup.example") in mine

"""Two accounts through a real `tradelane up`: each account's data flow is its own Prefect deployment
(`<account>:<flow>`; home's keeps its bare name), runs are tagged with the account, and the same flow
name in two accounts carries each account's files to its own destination only."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.helpers import PartnerClient, delivered, finished_run, unique
from tests.system import System

PASSWORD = "Accounts-Up-Pass-1"


def test_the_same_flow_name_in_two_accounts_runs_as_two_deployments(system: System, tmp_path: Path) -> None:
    account = unique("acct")
    system.cli("account", "add", account, "--email", f"admin@{account}.example", "--password", PASSWORD)
    flow = unique("inbound")  # one name, in both accounts
    partners = {"home": unique("hp"), account: unique("gp")}
    for owner, partner in partners.items():
        out = tmp_path / owner
        out.mkdir()
        system.cli("partner", "add", partner, "--password", PASSWORD, "--account", owner)
        system.cli("endpoint", "add", "out", "--type", "file", "--path", str(out), "--account", owner)
        system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", "out", "--account", owner)
    for owner, partner in partners.items():
        client = PartnerClient(system, partner, PASSWORD)
        try:
            assert client.upload(f"{owner}.json", f'{{"from": "{owner}"}}'.encode()).status_code == 201
        finally:
            client.close()
    rows = {
        "home": system.wait_for(delivered(1), flow=flow),
        account: system.wait_for(delivered(1), flow=flow, account=account),
    }
    for owner in partners:
        assert [r["file"] for r in rows[owner]] == [f"{owner}.json"]
        assert sorted(p.name for p in (tmp_path / owner).iterdir()) == [f"{owner}.json"]
        run = finished_run(system, rows[owner][0]["flow_run_id"])
        assert f"account:{owner}" in run["tags"] and f"flow:{flow}" in run["tags"]
        deployment = httpx.get(f"{system.prefect_api}/deployments/{run['deployment_id']}", timeout=30).json()
        assert deployment["name"] == (flow if owner == "home" else f"{account}:{flow}")

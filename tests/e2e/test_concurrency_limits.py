"""Per-endpoint and per-partner concurrency limits on a real `tradelane up`, set with the CLI.

The destination is the small HTTP file service on 127.0.0.1 with slow uploads; it counts the uploads
it is answering at once. With `endpoint set --max-concurrent 1`, two partners' bursts (two data
flows, so several flow runs at once, each pushing several files at a time) never reach it two at a
time; the limit is a Prefect global concurrency limit named after the endpoint, changed and removed
in Prefect when it is changed or removed in tradelane. Without it, the same bursts do overlap (so
the count above proves the limit, not a quiet machine).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import PartnerClient, delivered, unique
from tests.endpoint_servers.http_app import HttpApp
from tests.system import System
from tests.waiting import wait_for

WAIT = 120.0  # a busy machine; never a timing assertion
FILES_EACH = 4
BEARER = ("--bearer", "test-token-rw")
Partners = list[tuple[str, PartnerClient]]


@pytest.fixture
def slow_http(http_app: HttpApp) -> HttpApp:
    http_app.reset()
    http_app.write_delay = 0.4  # long enough that uploads would overlap if nothing held them back
    return http_app


@pytest.fixture
def two_partners(system: System) -> Iterator[Partners]:
    clients = []
    try:
        for _ in range(2):
            name, password = unique("p"), unique("Partner-pw-9")
            system.cli("partner", "add", name, "--password", password)
            clients.append((name, PartnerClient(system, name, password)))
        yield clients
    finally:
        for _, client in clients:
            client.close()


def prefect_limit(system: System, name: str) -> dict[str, Any] | None:
    response = httpx.get(f"{system.prefect_api}/v2/concurrency_limits/{name}", timeout=30)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    found: dict[str, Any] = response.json()
    return found


def burst(
    system: System, partners: list[tuple[str, PartnerClient]], flows: list[str]
) -> list[dict[str, Any]]:
    """Each partner uploads FILES_EACH files at once; wait until all are delivered; their transfers."""
    for name, client in partners:
        for i in range(FILES_EACH):
            assert client.upload(f"{unique(name)}-{i}.txt", b"x" * 100).status_code == 201
    rows = []
    for flow in flows:
        rows += system.wait_for(delivered(FILES_EACH), timeout=WAIT, flow=flow)
    return rows


def overlapping_runs(system: System, rows: list[dict[str, Any]]) -> bool:
    """Whether two of the flow runs that carried `rows` ran at the same time (Prefect's own times)."""
    spans = []
    for run_id in {row["flow_run_id"] for row in rows}:
        run = httpx.get(f"{system.prefect_api}/flow_runs/{run_id}", timeout=30).json()
        spans.append(
            (dt.datetime.fromisoformat(run["start_time"]), dt.datetime.fromisoformat(run["end_time"]))
        )
    spans.sort()
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_endpoint_limit_holds_across_runs_and_follows_changes(
    system: System, slow_http: HttpApp, two_partners: Partners
) -> None:
    endpoint = unique("slow")
    system.cli("endpoint", "add", endpoint, "--type", "http", "--url", f"{slow_http.url}/files", *BEARER)
    system.cli("endpoint", "set", endpoint, "--max-concurrent", "1")
    flows = []
    for partner, _ in two_partners:
        flow = unique("to-slow")
        system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint)
        flows.append(flow)
    limit_name = f"endpoint:home:{endpoint}"
    shown = wait_for(
        lambda: prefect_limit(system, limit_name), f"limit {limit_name} in Prefect", timeout=WAIT
    )
    assert shown["limit"] == 1 and shown["active"]
    [listed] = [
        e for e in json.loads(system.cli("endpoint", "list", "--json").stdout) if e["name"] == endpoint
    ]
    assert listed["max_concurrent"] == 1

    rows = burst(system, two_partners, flows)
    assert overlapping_runs(system, rows), "the bursts were carried by runs one after another"
    assert slow_http.most_writes_at_once == 1

    system.cli("endpoint", "set", endpoint, "--max-concurrent", "3")
    wait_for(lambda: (prefect_limit(system, limit_name) or {}).get("limit") == 3, "limit 3", timeout=WAIT)

    system.cli("endpoint", "set", endpoint, "--max-concurrent", "none")
    wait_for(lambda: prefect_limit(system, limit_name) is None, f"{limit_name} removed", timeout=WAIT)
    slow_http.most_writes_at_once = 0
    burst(system, two_partners, flows)
    assert slow_http.most_writes_at_once >= 2  # unlimited again: the same bursts overlap


def test_partner_limit_holds_and_shows_in_prefect(
    system: System, slow_http: HttpApp, two_partners: Partners
) -> None:
    endpoint = unique("slow")
    system.cli("endpoint", "add", endpoint, "--type", "http", "--url", f"{slow_http.url}/files", *BEARER)
    (partner, client), _ = two_partners
    flow = unique("to-slow")
    system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint)
    system.cli("partner", "set", partner, "--max-concurrent", "1")
    limit_name = f"partner:home:{partner}"
    shown = wait_for(
        lambda: prefect_limit(system, limit_name), f"limit {limit_name} in Prefect", timeout=WAIT
    )
    assert shown["limit"] == 1

    burst(system, [(partner, client)], [flow])
    assert slow_http.most_writes_at_once == 1

    system.cli("partner", "set", partner, "--max-concurrent", "0")
    wait_for(lambda: prefect_limit(system, limit_name) is None, f"{limit_name} removed", timeout=WAIT)

"""Issue 10, items 11 and 12, through a real `tradelane up`.

11: an HTTP destination that echoes its request (query-string key, credential headers) gets files
delivered, one of them refused with the echo in its body; none of its secrets then shows up in
Prefect's logs, artifacts, events or runs (read through Prefect's API, as anyone reaching it
could), in `$TRADELANE_HOME/logs/*.log`, in the store's audit table, or in what the CLI shows.
12: a polled HTTP source whose server answers `302 → Prefect's /api/admin/settings` takes nothing:
the poll fails naming the Location, and no file is made of Prefect's settings.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

import httpx

from tests.e2e.helpers import PartnerClient, prefect_events, prefect_paged, settled, unique
from tests.endpoint_servers.http_app import HttpApp
from tests.system import System
from tests.waiting import wait_for

WAIT = 120.0  # a busy 2-core machine: generous, and never a timing assertion


def echo_flags(app: HttpApp, query_key: str, header_key: str, custom: str, status: str = "") -> list[str]:
    query = f"status={status}&" if status else ""
    return [
        "--type",
        "http",
        "--url",
        f"{app.url}/echo?{query}key={query_key}&format=json",
        "--public-param",
        "format",
        "--public-param",
        "status",
        "--header",
        f"X-Api-Key: {header_key}",
        "--header",
        "X-Partner: acme",
        "--secret-header",
        f"X-Custom: {custom}",
    ]


def failed_poll(system: System, flow: str) -> dict[str, object]:
    deadline = time.monotonic() + WAIT
    while True:
        runs = httpx.post(
            f"{system.prefect_api}/flow_runs/filter",
            json={"flow_runs": {"tags": {"all_": [f"flow:{flow}", "poll"]}}, "limit": 20},
            timeout=30,
        ).json()
        failed = [run for run in runs if run["state_type"] == "FAILED"]
        if failed:
            return dict(failed[0])
        assert time.monotonic() < deadline, f"no failed poll of {flow}: {[r['state_type'] for r in runs]}"
        time.sleep(0.5)


def test_echoed_secrets_leave_no_trace_and_redirects_are_not_followed(
    system: System, http_app: HttpApp, tmp_path: Path
) -> None:
    query_key, header_key, custom = unique("qkey"), unique("hkey"), unique("custom")
    secrets = (query_key, header_key, custom)
    http_app.reset()
    http_app.auth = "key"
    http_app.api_keys = {header_key}
    http_app.query_keys = {query_key}

    partner, password = unique("p"), unique("partner-pw")
    system.cli("partner", "add", partner, "--password", password)
    client = PartnerClient(system, partner, password)
    good, bad = unique("echo"), unique("echo500")
    system.cli("endpoint", "add", good, *echo_flags(http_app, query_key, header_key, custom))
    system.cli("endpoint", "add", bad, *echo_flags(http_app, query_key, header_key, custom, status="500"))
    flow_good, flow_bad = unique("to-echo"), unique("to-echo500")
    system.cli(
        "flow", "add", flow_good, "--source", f"mailbox:{partner}", "--dest", good, "--pattern", "*.json"
    )
    system.cli(
        "flow",
        "add",
        flow_bad,
        "--source",
        f"mailbox:{partner}",
        "--dest",
        bad,
        "--pattern",
        "*.edi",
        "--retries",
        "0",
    )

    # 12: a polled source redirected to Prefect's settings (the same server as this Prefect API).
    # The address Prefect's settings are at, as an attacker would name it (no auth string in it).
    settings_url = str(
        httpx.URL(f"{system.prefect_api}/admin/settings").copy_with(username=None, password=None)
    )
    source, dest_dir, poll = unique("redirected"), tmp_path / "polled", unique("poll-redirect")
    pull_url = f"{http_app.url}/redirect-to?location={quote(settings_url, safe='')}&key={query_key}"
    system.cli(
        "endpoint",
        "add",
        source,
        "--type",
        "http",
        "--url",
        f"{http_app.url}/files",
        "--pull-url",
        pull_url,
        "--public-param",
        "location",
        "--header",
        f"X-Api-Key: {header_key}",
    )
    dest = unique("dir")
    system.cli("endpoint", "add", dest, "--type", "file", "--path", str(dest_dir))

    good_name, bad_name = f"{unique('po')}.json", f"{unique('inv')}.edi"
    try:
        assert client.upload(good_name, b'{"po": 850}').status_code == 201
        assert client.upload(bad_name, b"ISA*00*").status_code == 201
        system.cli("flow", "add", poll, "--source", source, "--dest", dest, "--every", "2s")
        rows = {
            r["file"]: r
            for flow in (flow_good, flow_bad)
            for r in system.wait_for(settled(1), timeout=WAIT, flow=flow)
        }
        run = failed_poll(system, poll)
    finally:
        client.close()
        system.cli("flow", "disable", poll, check=False)

    # The delivery happened with every secret sent, and the refusal was recorded.
    assert rows[good_name]["state"] == "delivered", rows[good_name]
    assert (http_app.root / good_name).read_bytes() == b'{"po": 850}'
    answer = rows[good_name]["destination_answer"]
    assert json.loads(answer["body"])["request"]["target"] == "/echo?key=***&format=json"
    assert rows[bad_name]["state"] == "failed" and "HTTP 500" in rows[bad_name]["error"], rows[bad_name]
    assert "key=***" in rows[bad_name]["error"]

    # 12: the poll failed naming where it was sent, and took nothing.
    message = str(run["state"]["message"])  # type: ignore[index]
    assert f"redirect to {settings_url}" in message and "not followed" in message, message
    assert not dest_dir.exists() or not list(dest_dir.iterdir())
    assert system.transfers(flow=poll) == []

    # 11: nowhere a secret.
    api = system.prefect_api
    places: dict[str, str] = {}
    for log in sorted((system.home / "logs").glob("*.log")):
        places[f"logs/{log.name}"] = log.read_text(errors="replace")
    places["up.log"] = (system.home / "up.log").read_text(errors="replace")
    places["prefect logs"] = json.dumps(prefect_paged(f"{api}/logs/filter"))
    places["prefect artifacts"] = json.dumps(prefect_paged(f"{api}/artifacts/filter"))

    def events_naming_both() -> str:
        text = json.dumps(prefect_events(api))
        return text if bad_name in text and good_name in text else ""

    # The server stores events in batches (every 5 s at the latest): wait for the files' own.
    places["prefect events"] = wait_for(
        events_naming_both, "both files' events to be stored by the Prefect server", timeout=30, interval=0.5
    )
    places["prefect flow runs"] = json.dumps(prefect_paged(f"{api}/flow_runs/filter"))
    places["prefect task runs"] = json.dumps(prefect_paged(f"{api}/task_runs/filter"))
    with sqlite3.connect(system.home / "tradelane.db") as db:
        places["audit table"] = json.dumps(db.execute("select detail from auditevent").fetchall())
        places["endpoint config"] = json.dumps(db.execute("select config from endpoint").fetchall())
    places["endpoint list --json"] = system.cli("endpoint", "list", "--json").stdout
    places["endpoint list"] = system.cli("endpoint", "list").stdout
    places["transfers --json"] = system.cli("transfers", "--json").stdout
    places["transfers"] = system.cli("transfers").stdout
    tested = system.cli("endpoint", "test", bad, check=False)
    places["endpoint test"] = tested.stdout + tested.stderr

    # Sanity: these places do hold what happened, so the search below looks at the right text.
    assert bad_name in places["prefect logs"] and bad_name in places["logs/runner.log"]
    assert good_name in places["prefect artifacts"] and bad_name in places["prefect artifacts"]
    assert "key=***" in places["prefect artifacts"]  # the echo's summary, scrubbed
    assert bad_name in places["prefect events"]

    leaks = [f"{secret} in {where}" for secret in secrets for where, text in places.items() if secret in text]
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)

"""The console's transfers page under a big history: time to first byte through `tradelane up`
(DESIGN-13 §7.5, §13.4; goal p95 ≤ 300 ms at 100,000 transfers).

    python -m bench.console_ttfb            # 100,000 transfers, 40 GETs per view
    python -m bench.console_ttfb --quick    # 5,000 transfers, 20 GETs per view

One `up`; two accounts (`home` and `globex`), each with 10 partners, a folder endpoint and 4 data
flows made by the CLI; then the history is inserted straight into the store through the models'
tables (receipts + transfers, half per account, 95 % delivered, 3 % failed, 2 % rejected, one
minute apart, final states only so the dispatcher has nothing to do). An operator of `home` logs
in at `/login` (a real session cookie) and GETs `/console/transfers` in seven views: newest, a state,
a flow, a partner, a flow run (`run=`, the Prefect back-link), a 7-day window, an older keyset page
(`before=`); as a control, `/api/admin/transfers` with the operator's bearer token. TTFB = until the
answer's headers are read (httpx stream; the page is then read to its end). Prints p50/p95/max.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import sqlalchemy as sa

from core.models import Receipt, Transfer
from tests.b2b.web_server import forms_of
from tests.system import System, run_system

PASSWORD = "Pw-bench-console-1"
ACCOUNTS = ("home", "globex")
PARTNERS, FLOWS = 10, 4
GOAL_MS = 300.0
ADMIN = "/api/admin/transfers"  # the control: newest transfers as JSON, same core query
RUN = "b5e1c0de" * 4  # one seeded transfer's flow run id, for the `run=` view (the Prefect back-link)


def configure(system: System) -> str:
    """Accounts, partners, endpoints and flows by the CLI; the operator of `home` who logs in."""
    system.cli("account", "add", "globex", "--email", "admin@globex.example", "--password", PASSWORD)
    dest = system.home / "bench-out"
    dest.mkdir()
    for account in ACCOUNTS:
        system.cli(
            "endpoint", "add", f"{account}-dir", "--type", "file", "--path", str(dest), "--account", account
        )
        for p in range(PARTNERS):
            system.cli("partner", "add", f"{account}-p{p}", "--password", PASSWORD, "--account", account)
        for f in range(FLOWS):
            system.cli("flow", "add", f"{account}-f{f}", "--source", f"mailbox:{account}-p{f}",
                       "--dest", f"{account}-dir", "--account", account)  # fmt: skip
    operator = "ops@home.example"
    system.cli("account", "user", "add", operator, "--role", "operator", "--password", PASSWORD)
    return operator


def seed(system: System, count: int) -> None:
    """`count` receipts with one final transfer each, straight into the store, in one transaction."""
    engine = sa.create_engine(f"sqlite:///{system.home / 'tradelane.db'}")
    receipts, transfers = Receipt.__table__, Transfer.__table__  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    with engine.begin() as db:
        ids: dict[str, dict[str, int]] = {}
        for table in ("account", "partner", "dataflow"):
            ids[table] = dict(db.execute(sa.text(f"SELECT name, id FROM {table}")).all())
        account_of = {name: ids["account"][name.split("-")[0]] for name in ids["partner"]}
        first = (db.execute(sa.text("SELECT max(id) FROM receipt")).scalar() or 0) + 1
        r_rows, t_rows = [], []
        for n in range(count):
            # Accounts alternate; the rest follows the pair number, so each account gets every state,
            # partner and flow.
            account, pair = ACCOUNTS[n % 2], n // 2
            partner = f"{account}-p{pair % FLOWS}"
            at = now - timedelta(minutes=count - n)
            state = "rejected" if pair % 50 == 7 else "failed" if pair % 100 in (3, 13, 23) else "delivered"
            r_rows.append(
                {"id": first + n, "account_id": account_of[partner], "partner_id": ids["partner"][partner],
                 "protocol": "rest", "folder": "upload", "name": f"po-{n:06d}.json", "size": 1024,
                 "sha256": "0" * 64, "storage_path": f".store/bench/{n}", "received_at": at, "held": False}
            )  # fmt: skip
            t_rows.append(
                {"receipt_id": first + n, "data_flow_id": ids["dataflow"][f"{account}-f{pair % FLOWS}"],
                 "account_id": account_of[partner], "state": state, "attempts": 1, "waits": 0,
                 "flow_run_id": RUN if n == count // 2 else os.urandom(16).hex(), "destination_uri": f"file:///bench-out/po-{n:06d}.json",
                 "error": "a bench error" if state != "delivered" else None,
                 "created_at": at, "updated_at": at, "finished_at": at}
            )  # fmt: skip
        db.execute(receipts.insert(), r_rows)
        db.execute(transfers.insert(), t_rows)
    engine.dispose()


def admin_api(system: System, email: str) -> httpx.Client:
    """The control: the same history over the admin REST API with the operator's bearer token."""
    client = httpx.Client(base_url=system.api, timeout=60)
    answer = client.post(
        "/api/authentication", data={"grant_type": "password", "username": email, "password": PASSWORD}
    )
    answer.raise_for_status()
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return client


def log_in(system: System, email: str) -> httpx.Client:
    client = httpx.Client(
        base_url=system.api, timeout=60, headers={"Origin": system.api, "Sec-Fetch-Site": "same-origin"}
    )
    form = forms_of(client.get("/login"))["/login"]
    answer = client.post("/login", data={**form, "name": email, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    return client


def ttfb_ms(client: httpx.Client, url: str) -> float:
    began = time.perf_counter()
    with client.stream("GET", url) as answer:
        took = (time.perf_counter() - began) * 1000
        assert answer.status_code == 200, f"{url}: {answer.status_code}"
        for _ in answer.iter_bytes():
            pass
    return took


def views(client: httpx.Client) -> dict[str, str]:
    since = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    base = "/console/transfers"
    first = client.get(base).text
    # The "Older →" link of the newest page: its keyset `before=`.
    marker = "before="
    at = first.index(marker) + len(marker)
    before = first[at : first.index('"', at)].split("&")[0]
    return {
        "newest": base,
        "state=failed": f"{base}?{urlencode({'state': 'failed'})}",
        "flow": f"{base}?{urlencode({'flow': 'home-f2'})}",
        "partner": f"{base}?{urlencode({'partner': 'home-p1'})}",
        "run": f"{base}?{urlencode({'run': RUN})}",
        "7-day window": f"{base}?{urlencode({'since': since})}",
        "older page": f"{base}?before={before}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transfers", type=int, default=100_000)
    parser.add_argument("--gets", type=int, default=40, help="GETs per view")
    parser.add_argument("--quick", action="store_true", help="5,000 transfers, 20 GETs per view")
    args = parser.parse_args()
    count, gets = (5_000, 20) if args.quick else (args.transfers, args.gets)
    with run_system() as system:
        operator = configure(system)
        began = time.perf_counter()
        seed(system, count)
        print(f"{count:,} transfers in two accounts, inserted in {time.perf_counter() - began:.1f} s")
        client, control = log_in(system, operator), admin_api(system, operator)
        try:
            shown = views(client)
            for name, url in shown.items():  # warm (imports, caches), and each view shows transfers
                assert "po-0" in client.get(url).text, f"{name}: no transfer on {url}"
            assert "po-0" in control.get(ADMIN).text
            timings: dict[str, list[float]] = {name: [] for name in [*shown, "admin API"]}
            for _ in range(gets):
                for name, url in shown.items():  # interleaved: a slow moment spreads over every view
                    timings[name].append(ttfb_ms(client, url))
                timings["admin API"].append(ttfb_ms(control, ADMIN))
        finally:
            client.close()
            control.close()
    everything = [t for name, ts in timings.items() if name != "admin API" for t in ts]
    print(f"{'view':<14} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, ts in [*timings.items(), ("all pages", everything)]:
        p95 = statistics.quantiles(ts, n=20)[-1]
        print(f"{name:<14} {statistics.median(ts):8.1f} {p95:8.1f} {max(ts):8.1f}")
    worst = max(statistics.quantiles(ts, n=20)[-1] for name, ts in timings.items() if name != "admin API")
    verdict = "met" if worst <= GOAL_MS else "NOT met"
    print(f"worst view p95 {worst:.1f} ms: goal p95 ≤ {GOAL_MS:.0f} ms {verdict}")


if __name__ == "__main__":
    main()

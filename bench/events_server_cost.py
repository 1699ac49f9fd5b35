"""What the Prefect server spends on each `tradelane.file.*` event (issue 16's events cost, server side).

    python -m bench.events_server_cost [--events N] [--rounds R]

One `tradelane up` (its worker subscribed to the event stream, as always). Each round sends N file
events shaped like the ones a delivered file makes (core/notify/events.py's `build`: a file with
its partner, data flow, account and flow run) over one Prefect events websocket, as fast as it
takes them, and waits until the server has stored them all. The Prefect server's CPU over the
round, less what it spends idle over the same time (measured just before), divided by N, is the
CPU one event costs it: parsed, stored, streamed and matched against automations. A file makes two
events (received, delivered), three when its data flow has validators (validated): their share of
a file's cost on the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import httpx
from prefect.events import Event
from prefect.events.clients import PrefectEventsClient
from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

from bench.burst_cpu import tree_cpu
from core.notify.events import FileFacts, build
from tests.system import System, run_system

SERVER = "prefect server"


# What Prefect joins to an event sent from inside a flow run (prefect.events.related): its flow,
# deployment, work queue, work pool and tags, as a delivered file's event of a run carries them.
RUN_KINDS = [
    ("flow", "transfer"),
    ("deployment", "acme-to-archive"),
    ("work-queue", "default"),
    ("work-pool", "tradelane"),
]
RUN_RELATED = [
    {"prefect.resource.id": f"prefect.{kind}.{uuid.UUID(int=k)}", "prefect.resource.role": kind,
     "prefect.resource.name": name}
    for k, (kind, name) in enumerate(RUN_KINDS)
] + [
    {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
    for tag in ("flow:acme-to-archive", "account:default")
]  # fmt: skip


RUN_SETS = {
    "none": [],
    "kept": [r for r in RUN_RELATED if r["prefect.resource.role"] == "deployment"],
    "all": RUN_RELATED,
}


def event(n: int, flow_run_id: str, run_related: str = "none") -> Event:
    facts = FileFacts(
        receipt_id=10_000_000 + n, name=f"invoice-{n}.edi", size=2048, sha256="ab" * 32, account_id=1,
        account="default", partner_id=3, partner="acme", protocol="rest", flows=((2, "acme-to-archive"),),
        transfer_id=n, flow_run_id=flow_run_id,
    )  # fmt: skip
    built = build("delivered", facts, destination="file:///srv/archive")
    related = built.related + RUN_SETS[run_related]
    return Event(event=built.event, resource=built.resource, related=related, payload=built.payload)


def server_cpu(system: System) -> float:
    assert system.proc is not None
    return tree_cpu(system.proc.pid)[SERVER]


def stored(system: System, name: str) -> int:
    """How many events called `name` the server has stored (counted by its own API)."""
    body = {"filter": {"event": {"name": [name]}, "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 1}
    answer = httpx.post(f"{system.prefect_api}/events/filter", json=body, timeout=30)
    answer.raise_for_status()
    return int(answer.json()["total"])


async def send(url: str, auth: str, events: list[Event]) -> None:
    with temporary_settings({PREFECT_API_AUTH_STRING: auth}):
        async with PrefectEventsClient(api_url=url) as client:
            for each in events:
                await client.emit(each)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--run-related", choices=sorted(RUN_SETS), default="none",
        help="what else each event relates of its run: none (as the bench's events always did), kept "
        "(the deployment, as a run's file events do now: flows/events.py), all (the run's flow, "
        "deployment, work queue, work pool and tags, as Prefect joins them to an event of a run)",
    )  # fmt: skip
    args = parser.parse_args()
    with run_system() as system:
        url = system.prefect_api.replace(system.env["TRADELANE_PREFECT_AUTH"] + "@", "")
        costs = []
        for r in range(args.rounds):
            cost = round_once(system, url, args.events, f".r{r}", args.run_related)
            costs.append(cost)
            print(
                f"  round {r + 1}: {cost:.3f} ms of Prefect server CPU per file event"
                f" (load {os.getloadavg()[0]:.1f})"
            )
        median = statistics.median(costs)
        print(
            f"{args.events} events per round, median: {median:.3f} ms per event; per file:"
            f" {2 * median:.2f} ms (2 events), {3 * median:.2f} ms (3, with validators)"
        )


def round_once(system: System, url: str, n: int, tag: str, run_related: str = "none") -> float:
    """CPU ms the server spent per event of a round of `n` (named for the round, to count them)."""
    idle_from, idle_cpu = time.monotonic(), server_cpu(system)
    time.sleep(3)
    idle_rate = (server_cpu(system) - idle_cpu) / (time.monotonic() - idle_from)
    run_id = str(uuid.uuid4())
    name = f"tradelane.file.delivered{tag}"
    events = [event(k, run_id, run_related).model_copy(update={"event": name}) for k in range(n)]
    began, cpu = time.monotonic(), server_cpu(system)
    asyncio.run(send(url, system.env["TRADELANE_PREFECT_AUTH"], events))
    while stored(system, name) < n:
        time.sleep(0.5)
    spent = server_cpu(system) - cpu - idle_rate * (time.monotonic() - began)
    return 1000 * spent / n


if __name__ == "__main__":
    main()

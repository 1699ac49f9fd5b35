"""Workers on the tradelane work pool: `tradelane worker` and Prefect's own `prefect worker start`
take runs of the same deployments next to `up`'s worker, each no more than its limit."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.helpers import PartnerClient, delivered, unique
from tests.system import System, run_system
from tests.waiting import wait_for

PASSWORD = "partner-pw-1"
RUNS = 3  # `up`'s worker and the two started here, one run at a time each
BARRIER_SECONDS = 120.0  # generous on a busy machine; a broken barrier fails the labels' assertion


class BarrierDestination:
    """An HTTP destination that answers an upload only once RUNS of them are open at the same time.

    Each worker takes one run at a time, so the uploads of RUNS runs can only all be open at once
    if every worker holds one of them: the barrier passing proves the runs spread.
    """

    def __init__(self) -> None:
        self.barrier = threading.Barrier(RUNS, timeout=BARRIER_SECONDS)
        self.received: dict[str, bytes] = {}
        self.broken = False
        destination = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http endpoint's default upload: the file as the body
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    destination.barrier.wait()
                except threading.BrokenBarrierError:
                    destination.broken = True
                destination.received[self.path] = body
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[BarrierDestination]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join()


@contextmanager
def worker_process(
    system: System, args: list[str], log_name: str, **env_extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    auth = system.env["TRADELANE_PREFECT_AUTH"]
    # The system's own Prefect server, named as a user of a second machine would name it.
    api = f"http://127.0.0.1:{system.env['TRADELANE_PREFECT_PORT']}/api"
    env = {**system.env, "PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": auth, **env_extra}
    with (system.home / f"{log_name}.log").open("ab") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_workers_on_the_pool_share_a_burst(tmp_path: Path) -> None:
    ours, prefects = unique("tl-worker"), unique("prefect-worker")
    tradelane_worker = [sys.executable, "-m", "cli.main", "worker", "--name", ours, "--limit", "1"]
    prefect_worker = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "tradelane"]
    prefect_worker += ["--name", prefects, "--limit", "1"]
    with (
        BarrierDestination().running() as destination,
        run_system(TRADELANE_RUNNER_LIMIT="1") as system,
        worker_process(system, tradelane_worker, "worker-ours"),
        # Prefect's own worker asks every 10 s unless told otherwise, as a user would.
        worker_process(system, prefect_worker, "worker-prefect", PREFECT_WORKER_QUERY_SECONDS="1"),
    ):
        partner = unique("p")
        system.cli("partner", "add", partner, "--password", PASSWORD)
        flows = []
        for i in range(RUNS):
            endpoint, flow = unique("http"), unique("flow")
            system.cli("endpoint", "add", endpoint, "--type", "http", "--url", f"{destination.url}/d{i}")
            system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint)
            flows.append(flow)
        with PartnerClient(system, partner, PASSWORD) as client:
            assert client.upload("order.edi", b"one order").status_code == 201
        runs = []
        for flow in flows:
            rows = system.wait_for(delivered(1), timeout=BARRIER_SECONDS + 60, flow=flow)
            runs.append(rows[0]["flow_run_id"])
        assert not destination.broken, "the runs were never all open at once"
        # Several workers online on the pool: runs of up to 50 files, to share a burst among them.
        up_log = system.home / "up.log"
        shared = re.compile(r"runs of up to 50 files \([23] workers online on pool tradelane\)")
        wait_for(lambda: shared.search(up_log.read_text()), "batches for a shared pool", timeout=60)
        assert sorted(destination.received) == [f"/d{i}" for i in range(RUNS)]
        assert set(destination.received.values()) == {b"one order"}
        deployment = _deployment(system, f"transfer/{flows[0]}")
        assert deployment is not None
        assert deployment["work_pool_name"] == "tradelane"
        # The code is installed where workers run: imported by module path, never downloaded.
        assert deployment["entrypoint"] == "flows.transfer.transfer" and not deployment["pull_steps"]
        assert f"flow:{flows[0]}" in deployment["tags"]
        names = set()
        for run_id in runs:
            run = httpx.get(f"{system.prefect_api}/flow_runs/{run_id}").json()
            names.add(run["labels"]["prefect.worker.name"])
        # One run each: `up`'s own worker, `tradelane worker` and Prefect's plain process worker.
        assert len(names) == RUNS and {ours, prefects} <= names, names

        # A polling data flow's schedule is a deployment on the pool too, one poll at a time.
        (tmp_path / "remote").mkdir()
        source, poller = unique("src"), unique("poller")
        system.cli("endpoint", "add", source, "--type", "file", "--path", str(tmp_path / "remote"))
        system.cli("flow", "add", poller, "--source", source, "--dest", endpoint, "--every", "1h")
        poll = wait_for(
            lambda: _deployment(system, f"poll/{poller}"), "the poll deployment", timeout=BARRIER_SECONDS
        )
        assert poll["work_pool_name"] == "tradelane" and poll["entrypoint"] == "flows.poll.poll"
        assert poll["global_concurrency_limit"]["limit"] == 1
        assert poll["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
        assert [s["schedule"]["interval"] for s in poll["schedules"]] == [3600.0]

        # A pool of that name but another type cannot run our deployments: refused, by name.
        odd = unique("odd-pool")
        created = httpx.post(f"{system.prefect_api}/work_pools/", json={"name": odd, "type": "docker"})
        assert created.status_code == 201, created.text
        env = {**system.env, "PREFECT_API_AUTH_STRING": system.env["TRADELANE_PREFECT_AUTH"]}
        refused = subprocess.run(
            [sys.executable, "-m", "cli.main", "worker"],
            env={**env, "TRADELANE_WORK_POOL": odd},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"work pool {odd!r} is of type 'docker'" in refused.stderr
        assert "TRADELANE_WORK_POOL" in refused.stderr

        # A deployment the Runner of earlier versions served (no pool, a file entrypoint) moves
        # onto the pool when the reconciler registers its data flow, keeping its name and id.
        legacy = unique("legacy")
        flow_id = httpx.post(f"{system.prefect_api}/flows/", json={"name": "transfer"}).json()["id"]
        old = httpx.post(
            f"{system.prefect_api}/deployments/",
            json={"name": legacy, "flow_id": flow_id, "entrypoint": "flows/transfer.py:transfer"},
        ).json()
        assert old["work_pool_name"] is None
        system.cli("flow", "add", legacy, "--source", f"mailbox:{partner}", "--dest", endpoint)
        moved = wait_for(
            lambda: (d := _deployment(system, f"transfer/{legacy}")) and d["work_pool_name"] and d,
            "the old deployment to move onto the pool",
            timeout=BARRIER_SECONDS,
        )
        assert moved["id"] == old["id"] and moved["work_pool_name"] == "tradelane"
        assert moved["entrypoint"] == "flows.transfer.transfer"


def _deployment(system: System, name: str) -> dict[str, Any] | None:
    response = httpx.get(f"{system.prefect_api}/deployments/name/{name}")
    return response.json() if response.status_code == 200 else None

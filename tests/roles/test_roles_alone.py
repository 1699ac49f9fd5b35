"""Each role alone (`tradelane serve prefect|api|mailboxes|dispatcher`), as its own process with its
own empty home, on one PostgreSQL store: files uploaded over REST and SFTP are delivered, and no
role made up in its home what the roles share."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paramiko
import pytest
from sqlalchemy import create_engine, text

from deployments.naming import transfer_deployment
from tests.e2e.helpers import PartnerClient, delivered, finished_run, unique
from tests.endpoint_servers.http_app import HttpApp
from tests.roles.topology import Topology, run_topology, start_process, wait_until_up
from tests.waiting import wait_for

PASSWORD = "roles-partner-pw-1"
# What a role on its own may keep in its home: its own logs and Prefect client state, nothing shared.
SHARED_IN_A_HOME = {"tradelane.db", "secret.key", "mailboxes", "prefect-auth", "tls_cert.pem", "tls_key.pem"}


@pytest.fixture(scope="module")
def topology(postgres_url: str) -> Iterator[Topology]:
    with run_topology(postgres_url) as running:
        yield running


def _flow_to_folder(topology: Topology, partner: str, folder: Path) -> str:
    cli = topology.system.cli
    endpoint, flow = unique("dir"), unique("flow")
    cli("endpoint", "add", endpoint, "--type", "file", "--path", str(folder))
    cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint)
    # Served once the dispatcher has registered it (every TRADELANE_RECONCILE_INTERVAL_SECONDS):
    # before that a run of it waits for the dispatcher's next sweep, which here is an hour away.
    url = f"{topology.prefect_api}/deployments/name/{transfer_deployment(flow, 'home')}"
    wait_for(
        lambda: httpx.get(url).status_code == 200, "the dispatcher to register the data flow", timeout=60
    )
    return flow


def test_a_rest_upload_to_the_api_alone_is_delivered_by_the_dispatcher_and_a_worker_alone(
    topology: Topology, tmp_path: Path
) -> None:
    partner = unique("p")
    topology.system.cli("partner", "add", partner, "--password", PASSWORD)
    flow = _flow_to_folder(topology, partner, tmp_path / "out")
    with PartnerClient(topology.system, partner, PASSWORD) as client:
        assert client.upload("order.csv", b"po,qty\n1,2\n").status_code == 201
    rows = topology.system.wait_for(delivered(1), timeout=90, flow=flow)
    assert (tmp_path / "out" / "order.csv").read_bytes() == b"po,qty\n1,2\n"
    # The run is on the Prefect server `serve prefect` started, which keeps its runs in PostgreSQL.
    assert finished_run(topology.system, rows[0]["flow_run_id"])["state_type"] == "COMPLETED"


def test_an_sftp_upload_to_the_mailboxes_alone_is_delivered(topology: Topology, tmp_path: Path) -> None:
    partner = unique("s")
    topology.system.cli("partner", "add", partner, "--password", PASSWORD)
    flow = _flow_to_folder(topology, partner, tmp_path / "out")
    port = int(topology.roles["mailboxes"].env["TRADELANE_SFTP_PORT"])
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.connect(username=partner, password=PASSWORD)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        with sftp.open("/upload/invoice.edi", "wb") as remote:
            remote.write(b"UNA:+.? '")
        sftp.close()
    finally:
        transport.close()
    topology.system.wait_for(delivered(1), timeout=90, flow=flow)
    assert (tmp_path / "out" / "invoice.edi").read_bytes() == b"UNA:+.? '"


def test_no_role_keeps_shared_state_in_its_own_home(topology: Topology) -> None:
    # After the deliveries above: the store, the key, the files and the certificate are shared.
    for name in ("api", "mailboxes", "dispatcher", "worker"):
        kept = {path.name for path in topology.roles[name].home.iterdir()}
        assert not kept & SHARED_IN_A_HOME, (name, kept)
    assert list((topology.root / "hostkeys").iterdir())  # the SFTP host keys, in the folder given


def test_upload_to_run_created_latency_across_processes(topology: Topology, tmp_path: Path) -> None:
    """The API's process wakes the dispatcher's through the store (LISTEN/NOTIFY; the dispatcher
    here sweeps once an hour). Prints upload → run created for a few uploads one after another."""
    partner = unique("l")
    topology.system.cli("partner", "add", partner, "--password", PASSWORD)
    flow = _flow_to_folder(topology, partner, tmp_path / "out")
    engine = create_engine(topology.shared["TRADELANE_DATABASE_URL"])
    latencies = []
    try:
        with PartnerClient(topology.system, partner, PASSWORD) as client:
            for n in range(5):
                began = time.monotonic()
                assert client.upload(f"f{n}.txt", b"x").status_code == 201
                while True:
                    with engine.connect() as connection:
                        launched = connection.execute(
                            text(
                                "SELECT count(*) FROM transfer JOIN dataflow ON dataflow.id = data_flow_id"
                                " WHERE dataflow.name = :flow AND flow_run_id IS NOT NULL"
                            ),
                            {"flow": flow},
                        ).scalar_one()
                    if launched > n:
                        break
                    assert time.monotonic() - began < 60, "no run was created for the upload"
                    time.sleep(0.01)
                latencies.append(time.monotonic() - began)
    finally:
        engine.dispose()
    topology.system.wait_for(delivered(5), timeout=90, flow=flow)
    print(f"upload → run created across processes: {', '.join(f'{s * 1000:.0f} ms' for s in latencies)}")


def test_up_uses_a_user_set_prefect_api_url_and_starts_no_prefect_server(
    topology: Topology, tmp_path: Path
) -> None:
    from tests.system import run_system

    auth = topology.shared["TRADELANE_PREFECT_AUTH"]
    with run_system(PREFECT_API_URL=topology.shared["PREFECT_API_URL"], TRADELANE_PREFECT_AUTH=auth) as up:
        own_port = int(up.env["TRADELANE_PREFECT_PORT"])  # where up's own server would listen
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", own_port), 1):
            pass
        assert not (up.home / "logs" / "prefect-server.log").exists()
        assert "(yours)" in (up.home / "up.log").read_text()
        partner = unique("u")
        up.cli("partner", "add", partner, "--password", PASSWORD)
        endpoint, flow = unique("dir"), unique("flow")
        up.cli("endpoint", "add", endpoint, "--type", "file", "--path", str(tmp_path / "out"))
        up.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint)
        with PartnerClient(up, partner, PASSWORD) as client:
            assert client.upload("via-up.txt", b"up").status_code == 201
        rows = up.wait_for(delivered(1), timeout=90, flow=flow)
    # The run was made on the user's server (the one `serve prefect` runs), not on one of up's own.
    assert finished_run(topology.system, rows[0]["flow_run_id"])["state_type"] == "COMPLETED"


def test_a_dispatcher_restarted_alone_leaves_the_workers_runs_alone(
    topology: Topology, http_app: HttpApp
) -> None:
    """`serve dispatcher` restarting while a run is in flight on the worker (another process, which
    carries on) neither marks that run Crashed nor dispatches its file again."""
    http_app.reset()
    partner = unique("r")
    cli = topology.system.cli
    cli("partner", "add", partner, "--password", PASSWORD)
    endpoint, flow = unique("web"), unique("flow")
    cli(
        "endpoint",
        "add",
        endpoint,
        "--type",
        "http",
        "--url",
        f"{http_app.url}/files",
        "--bearer",
        "test-token-rw",
    )
    cli(
        "flow",
        "add",
        flow,
        "--source",
        f"mailbox:{partner}",
        "--dest",
        endpoint,
        "--retries",
        "12",
        "--retry-delay",
        "1",
    )
    url = f"{topology.prefect_api}/deployments/name/{transfer_deployment(flow, 'home')}"
    wait_for(
        lambda: httpx.get(url).status_code == 200, "the dispatcher to register the data flow", timeout=60
    )
    http_app.stop()  # the destination is down: the run retries the push, Running meanwhile
    try:
        with PartnerClient(topology.system, partner, PASSWORD) as client:
            assert client.upload("restart.csv", b"a,b\n").status_code == 201
        rows = topology.system.wait_for(
            lambda rows: bool(rows) and rows[0]["state"] == "running", timeout=90, flow=flow
        )
        run_id = rows[0]["flow_run_id"]
        old = topology.roles["dispatcher"]
        old.stop()
        # Started again as a container would be: the same settings, a new empty home.
        again_home = old.home.with_name("dispatcher-again")
        again = start_process("dispatcher", ["-m", "cli.main", "serve", "dispatcher"], old.env, again_home)
        topology.roles["dispatcher"] = again
        wait_until_up(again, "runs in flight at start checked")  # its boot check is done
    finally:
        http_app.start()
    rows = topology.system.wait_for(delivered(1), timeout=240, flow=flow)
    assert rows[0]["flow_run_id"] == run_id  # carried by the run it was in, never dispatched again
    assert finished_run(topology.system, run_id)["state_type"] == "COMPLETED"
    assert (http_app.root / "restart.csv").read_bytes() == b"a,b\n"


def test_dispatchers_alone_keep_the_deployments_registered_and_two_are_harmless(
    topology: Topology, tmp_path: Path
) -> None:
    """Nothing but the issue's roles runs here (no `python -m deployments.serve`): each `serve
    dispatcher` keeps the data flows' deployments registered on the work pool, and a second one
    (its own home) only repeats the first one's writes: a flow added while both run is served,
    and its files are carried once each."""
    first = topology.roles["dispatcher"]
    second = start_process(
        "dispatcher-2", ["-m", "cli.main", "serve", "dispatcher"], first.env, topology.root / "dispatcher-2"
    )
    topology.roles["dispatcher-2"] = second
    wait_until_up(second, "deployments registered on work pool tradelane")
    partner = unique("k")
    topology.system.cli("partner", "add", partner, "--password", PASSWORD)
    flow = _flow_to_folder(topology, partner, tmp_path / "out")
    url = f"{topology.prefect_api}/deployments/name/{transfer_deployment(flow, 'home')}"
    assert httpx.get(url).json()["work_pool_name"] == "tradelane"
    with PartnerClient(topology.system, partner, PASSWORD) as client:
        for n in range(4):
            assert client.upload(f"k{n}.csv", f"{n}\n".encode()).status_code == 201
    rows = topology.system.wait_for(delivered(4), timeout=120, flow=flow)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"k{n}.csv" for n in range(4)]
    assert {row["attempts"] for row in rows} == {1}  # one run each, none carried twice
    # Both registered (the flow above by either), neither failed at it.
    for dispatcher in (first, second):
        log = dispatcher.log()
        assert "deployments registered on work pool tradelane" in log
        assert "could not register the deployments" not in log
        assert "could not reconcile deployments" not in log
    second.stop()
    del topology.roles["dispatcher-2"]


def test_a_dispatcher_alone_refuses_a_work_pool_of_another_type_by_name(topology: Topology) -> None:
    odd = unique("odd-pool")
    created = httpx.post(f"{topology.prefect_api}/work_pools/", json={"name": odd, "type": "docker"})
    assert created.status_code == 201, created.text
    env = {**topology.roles["dispatcher"].env, "TRADELANE_WORK_POOL": odd}
    refused = start_process(
        "dispatcher-odd", ["-m", "cli.main", "serve", "dispatcher"], env, topology.root / "odd"
    )
    assert refused.proc.wait(timeout=120) == 1, refused.log()
    assert f"work pool {odd!r} is of type 'docker'" in refused.log()
    assert "TRADELANE_WORK_POOL" in refused.log()

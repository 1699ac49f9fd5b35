"""The whole topology as plain processes on 127.0.0.1, under load and faults (issue 15's test).

PostgreSQL for the store and for Prefect, one `tradelane serve prefect`, `serve api`, `serve
mailboxes`, `serve dispatcher` (which keeps the deployments registered) and two `tradelane
worker`s, each process with its own empty home; the
storage is shared (`STORAGE`). A burst of 500 small files (REST, SFTP and FTPS at once) and three
200 MiB files (REST) go to a versioned moto bucket, where every write of a key, even of identical
bytes, adds a version: one version per key is exactly once. Mid-burst the dispatcher is SIGKILLed
and started again; mid-push of a 200 MiB file the worker pushing it is SIGKILLed with its fork
server and flow runs (and started again, as a container would be). Nothing is lost, nothing is
written twice, and the runs are spread over both workers (their `prefect.worker.name` labels).
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import paramiko
import pytest
from sqlalchemy import create_engine, text

from deployments.dead_runs import CRASH_MESSAGE
from deployments.naming import transfer_deployment
from tests.e2e.helpers import PartnerClient, unique
from tests.roles.topology import Topology, run_topology
from tests.servers import moto_client, run_moto_server
from tests.waiting import wait_for

# Where the roles' shared storage lives: "folder" (one local folder) or "s3" (a moto bucket).
STORAGE = "s3"
WORKERS = ("worker-a", "worker-b")
PASSWORD = "topology-Pass-1"
MIB = 1024 * 1024
SMALL = {"rest": 300, "sftp": 100, "ftp": 100}  # 500 small files, by how they arrive
REST_CLIENTS = 3
BIG_FILES, BIG_MIB = 3, 200
# The shortest bound the 30-s heartbeat allows (deployments/dead_runs.py): the test waits least.
DEAD_RUN_SECONDS = 52


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """A moto server of this module's own: the 600 MiB written to it go when the module ends."""
    with run_moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def topology(postgres_url: str, moto: str) -> Iterator[Topology]:
    env = {
        "TRADELANE_DEAD_RUN_SECONDS": str(DEAD_RUN_SECONDS),
        "TRADELANE_SWEEP_INTERVAL_SECONDS": "1",  # the default (tests/roles/topology.py sets an hour)
    }
    with run_topology(postgres_url, workers=WORKERS, storage=STORAGE, moto_url=moto, env=env) as running:
        yield running


class VersionedBucket:
    """A moto bucket with versioning on: every completed write of a key is a version of it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = moto_client(url)
        self.name = unique("delivered")
        self.client.create_bucket(Bucket=self.name)
        self.client.put_bucket_versioning(Bucket=self.name, VersioningConfiguration={"Status": "Enabled"})

    def versions(self) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
        """Every version of every key, and every delete marker."""
        found: dict[str, list[dict[str, Any]]] = {}
        markers: list[dict[str, Any]] = []
        for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.name):
            for version in page.get("Versions", []):
                found.setdefault(version["Key"], []).append(version)
            markers += page.get("DeleteMarkers", [])
        return found, markers

    def uploads_in_progress(self, prefix: str) -> list[dict[str, Any]]:
        uploads: list[dict[str, Any]] = self.client.list_multipart_uploads(
            Bucket=self.name, Prefix=prefix
        ).get("Uploads", [])
        return uploads

    def bytes_sent(self, upload: dict[str, Any]) -> int:
        """How much of a multipart upload in progress its parts hold so far."""
        parts = self.client.list_parts(Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"])
        return sum(int(part["Size"]) for part in parts.get("Parts", []))

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        body = self.client.get_object(Bucket=self.name, Key=key)["Body"]
        for chunk in body.iter_chunks(MIB):
            digest.update(chunk)
        body.close()
        return digest.hexdigest()


def big_body(n: int) -> Iterator[bytes]:
    """BIG_MIB MiB, each MiB numbered so that a part out of place changes the hash."""
    block = hashlib.sha256(f"big-{n}".encode()).digest() * (MIB // 32)
    for k in range(BIG_MIB):
        yield k.to_bytes(8, "big") + block[8:]


def small_body(name: str) -> bytes:
    return (name.encode() + b"\n") * 64


@dataclass
class Uploads:
    """What the uploading threads did."""

    sent: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, what: str, send: Callable[[], None]) -> threading.Thread:
        def guarded() -> None:
            try:
                send()
            except Exception as exc:  # said in the test's failure, with the protocol
                with self.lock:
                    self.errors.append(f"{what}: {type(exc).__name__}: {exc}")

        thread = threading.Thread(target=guarded, name=f"upload-{what}", daemon=True)
        thread.start()
        return thread

    def count(self, what: str) -> None:
        with self.lock:
            self.sent[what] += 1


@dataclass(frozen=True)
class RestLogin:
    """One login's token and upload folder, shared by the uploading threads: each password check
    costs ~50 ms of a core, and a burst of them at once is answered "busy" (core/login.py)."""

    api: str
    token: str
    folder: str

    @classmethod
    def of(cls, topology: Topology, partner: str) -> RestLogin:
        with PartnerClient(topology.system, partner, PASSWORD) as client:
            return cls(topology.system.api, client.token, client.folder_ids()["upload"])

    def upload(self, http: httpx.Client, name: str, body: Any) -> None:
        response = http.post(
            f"{self.api}/api/folders/{self.folder}/files",
            content=body,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Disposition": f"attachment;filename={name}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert response.status_code == 201, response.text


def _rest(login: RestLogin, names: list[str], uploads: Uploads) -> None:
    with httpx.Client(timeout=120) as http:
        for name in names:
            login.upload(http, name, small_body(name))
            uploads.count("rest")


def _sftp(topology: Topology, partner: str, names: list[str], uploads: Uploads) -> None:
    port = int(topology.roles["mailboxes"].env["TRADELANE_SFTP_PORT"])
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.connect(username=partner, password=PASSWORD)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        for name in names:
            with sftp.open(f"/upload/{name}", "wb") as remote:
                remote.write(small_body(name))
            uploads.count("sftp")
        sftp.close()
    finally:
        transport.close()


def _ftps(topology: Topology, partner: str, names: list[str], uploads: Uploads) -> None:
    env = topology.roles["mailboxes"].env
    context = ssl.create_default_context(cafile=env["TRADELANE_TLS_CERT_FILE"])
    with ftplib.FTP_TLS(context=context, timeout=60) as ftp:
        ftp.connect("127.0.0.1", int(env["TRADELANE_FTP_PORT"]))
        ftp.login(partner, PASSWORD)
        ftp.prot_p()
        for name in names:
            ftp.storbinary(f"STOR upload/{name}", io.BytesIO(small_body(name)))
            uploads.count("ftp")


def _big(login: RestLogin, uploads: Uploads) -> None:
    with httpx.Client(timeout=120) as http:
        for n in range(BIG_FILES):
            login.upload(http, f"big-{n}.bin", big_body(n))
            uploads.count("big")


class Store:
    """The shared store, read directly: cheap enough to poll many times a second."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def counts(self, flow: str) -> Counter[str]:
        """The data flow's transfers: by state, and "launched" (a run was created for them)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT transfer.state, transfer.flow_run_id IS NOT NULL, count(*) FROM transfer"
                    " JOIN dataflow ON dataflow.id = transfer.data_flow_id WHERE dataflow.name = :flow"
                    " GROUP BY 1, 2"
                ),
                {"flow": flow},
            ).all()
        counts: Counter[str] = Counter()
        for state, launched, n in rows:
            counts[state] += n
            counts["all"] += n
            if launched:
                counts["launched"] += n
        return counts

    def times(self, flow: str) -> list[dict[str, Any]]:
        """Each transfer's file, attempts and when it was received and finished."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT receipt.name, transfer.attempts, receipt.received_at, transfer.finished_at"
                    " FROM transfer JOIN dataflow ON dataflow.id = transfer.data_flow_id"
                    " JOIN receipt ON receipt.id = transfer.receipt_id WHERE dataflow.name = :flow"
                    " ORDER BY receipt.received_at"
                ),
                {"flow": flow},
            ).all()
        return [dict(row._mapping) for row in rows]

    def transfer(self, flow: str, file: str) -> dict[str, Any]:
        with self.engine.connect() as connection:
            row = connection.execute(
                text(
                    "SELECT transfer.id, transfer.state, transfer.flow_run_id, transfer.attempts"
                    " FROM transfer JOIN dataflow ON dataflow.id = transfer.data_flow_id"
                    " JOIN receipt ON receipt.id = transfer.receipt_id"
                    " WHERE dataflow.name = :flow AND receipt.name = :file"
                ),
                {"flow": flow, "file": file},
            ).one()
        return dict(row._mapping)


@pytest.fixture
def store(topology: Topology) -> Iterator[Store]:
    """The shared store's engine, disposed of when the test ends, failed or not (a connection left
    open is reported by whichever later test the collector runs in)."""
    shared = Store(topology.shared["TRADELANE_DATABASE_URL"])
    yield shared
    shared.engine.dispose()


def _flow_to_bucket(topology: Topology, bucket: VersionedBucket, partner: str, prefix: str) -> str:
    cli = topology.system.cli
    endpoint, flow = unique(f"{prefix}-s3"), unique(f"{prefix}-flow")
    cli(
        "endpoint", "add", endpoint, "--type", "s3", "--bucket", bucket.name, "--prefix", prefix,
        "--endpoint-url", bucket.url, "--region", "us-east-1",
        "--access-key-id", "delivery-key", "--secret-access-key", "delivery-secret",
    )  # fmt: skip
    cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint)
    url = f"{topology.prefect_api}/deployments/name/{transfer_deployment(flow, 'home')}"
    wait_for(lambda: httpx.get(url).status_code == 200, "the flow's deployment", timeout=60, interval=0.3)
    return flow


def _run(topology: Topology, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = httpx.get(f"{topology.prefect_api}/flow_runs/{run_id}", timeout=30).json()
    return run


def test_a_burst_and_big_files_survive_a_killed_dispatcher_and_worker_exactly_once(
    topology: Topology, store: Store, moto: str
) -> None:
    began = time.monotonic()
    bucket = VersionedBucket(moto)
    small_partner, big_partner = unique("burst"), unique("big")
    for partner in (small_partner, big_partner):
        topology.system.cli("partner", "add", partner, "--password", PASSWORD)
    small_flow = _flow_to_bucket(topology, bucket, small_partner, "small")
    big_flow = _flow_to_bucket(topology, bucket, big_partner, "big")
    names = {how: [f"{how}-{i:04}.edi" for i in range(n)] for how, n in SMALL.items()}
    expected_big = {}
    for n in range(BIG_FILES):
        digest = hashlib.sha256()
        for chunk in big_body(n):
            digest.update(chunk)
        expected_big[f"big/big-{n}.bin"] = digest.hexdigest()

    small_login, big_login = RestLogin.of(topology, small_partner), RestLogin.of(topology, big_partner)
    uploads = Uploads()
    began_uploads = time.monotonic()
    threads = [uploads.run("big", lambda: _big(big_login, uploads))]
    for k in range(REST_CLIENTS):
        part = names["rest"][k::REST_CLIENTS]
        threads.append(uploads.run("rest", lambda part=part: _rest(small_login, part, uploads)))
    threads.append(uploads.run("sftp", lambda: _sftp(topology, small_partner, names["sftp"], uploads)))
    threads.append(uploads.run("ftp", lambda: _ftps(topology, small_partner, names["ftp"], uploads)))

    # Mid-burst: the dispatcher dies once it has started runs, with files still to start runs for.
    wait_for(lambda: store.counts(small_flow)["launched"], "the first runs of the burst", 60, 0.05)
    topology.roles["dispatcher"].kill()
    at_kill = store.counts(small_flow)
    small_sent_at_kill = sum(uploads.sent[how] for how in SMALL)
    assert small_sent_at_kill < sum(SMALL.values()), "the burst ended before the dispatcher was killed"
    topology.restart("dispatcher", "tradelane dispatcher is up")

    # Mid-push: the worker writing a 200 MiB file dies with its fork server and flow runs.
    # One that has sent less than a third: a push already near its end (begun while the dispatcher
    # restarted) could complete before the kill lands, and then nothing would be cut.
    def barely_started() -> dict[str, Any] | None:
        uploads = bucket.uploads_in_progress("big/")
        return next((u for u in uploads if bucket.bytes_sent(u) < BIG_MIB * MIB // 3), None)

    # Both workers are frozen the moment the push is seen: finding which one pushes takes a
    # store query and a Prefect API call, time enough under load for the rest of the file to go.
    cut = wait_for(barely_started, "a 200 MiB push under way", timeout=120, interval=0.05)
    for name in WORKERS:
        topology.roles[name].pause()
    pushing = store.transfer(big_flow, cut["Key"].removeprefix("big/"))
    dead_run = pushing["flow_run_id"]
    assert dead_run is not None
    victim = _run(topology, dead_run)["labels"]["prefect.worker.name"]
    killed = topology.roles[victim].kill()
    killed_at = time.monotonic()
    for name in WORKERS:
        if name != victim:
            topology.roles[name].resume()
    assert len(killed) >= 3, killed  # the worker, its fork server, the flow run (at least)
    assert cut["UploadId"] in {u["UploadId"] for u in bucket.uploads_in_progress("big/")}
    topology.restart(victim)

    for thread in threads:
        thread.join(timeout=300)
    assert not uploads.errors, uploads.errors
    assert uploads.sent == Counter({**SMALL, "big": BIG_FILES})

    total_small = sum(SMALL.values())

    def all_delivered() -> bool:
        small, big = store.counts(small_flow), store.counts(big_flow)
        return small["delivered"] == total_small and big["delivered"] == BIG_FILES

    wait_for(all_delivered, "every file delivered", timeout=DEAD_RUN_SECONDS + 180, interval=0.5)
    delivered_after_kill = time.monotonic() - killed_at

    # Exactly once at the destination: each expected key has one version, nothing else was written.
    versions, markers = bucket.versions()
    expected_small = {f"small/{name}": small_body(name) for group in names.values() for name in group}
    assert set(versions) == set(expected_small) | set(expected_big)
    assert not markers
    twice = {key: len(v) for key, v in versions.items() if len(v) != 1}
    assert not twice, f"written more than once: {twice}"
    for key, body in expected_small.items():
        assert versions[key][0]["ETag"].strip('"') == hashlib.md5(body).hexdigest(), key
    for key, digest in expected_big.items():
        assert bucket.sha256(key) == digest, key
    # The push that was cut off never completed (its parts are an orphaned multipart upload);
    # the file was written once, by a later run.
    assert cut["UploadId"] in {u["UploadId"] for u in bucket.uploads_in_progress("big/")}
    carried = store.transfer(big_flow, cut["Key"].removeprefix("big/"))
    assert carried["state"] == "delivered" and carried["flow_run_id"] != dead_run
    crashed = _run(topology, dead_run)
    assert crashed["state_type"] == "CRASHED" and crashed["state"]["message"] == CRASH_MESSAGE

    # The history agrees, and the runs spread over both workers (the Prefect API says which).
    rows = topology.system.transfers(flow=small_flow) + topology.system.transfers(flow=big_flow)
    assert len(rows) == total_small + BIG_FILES
    assert {row["state"] for row in rows} == {"delivered"}
    run_ids = {row["flow_run_id"] for row in rows}
    by_worker = Counter(_run(topology, run_id)["labels"]["prefect.worker.name"] for run_id in run_ids)
    assert set(by_worker) == set(WORKERS), by_worker
    small_times, big_times = store.times(small_flow), store.times(big_flow)
    first = small_times[0]["received_at"]

    def since(moment: Any) -> str:
        return f"{(moment - first).total_seconds():.0f} s"

    print(f"\nphases: flows set up {began_uploads - began:.0f} s; from the first receipt:")
    print(
        f"  small: last received {since(max(t['received_at'] for t in small_times))}, last delivered "
        f"{since(max(t['finished_at'] for t in small_times))}"
    )
    for t in big_times:
        print(
            f"  {t['name']}: received {since(t['received_at'])}, delivered {since(t['finished_at'])}, "
            f"attempts {t['attempts']}"
        )
    print(
        f"\ndispatcher killed with {at_kill['launched']} of {at_kill['all']} received files launched "
        f"({small_sent_at_kill} of {total_small} sent); worker {victim} killed mid-push of {cut['Key']}, "
        f"all delivered {delivered_after_kill:.0f} s later; runs by worker {dict(by_worker)}"
    )

"""Data flow behaviour end to end: rejects, retries until a destination is back, replay, disable, bursts."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.helpers import PartnerClient, delivered, finished_run, settled, unique
from tests.servers import free_port, moto_client, tcp_forwarder
from tests.system import System

PASSWORD = "partner-pw-1"


def _partner(system: System) -> tuple[str, PartnerClient]:
    name = unique("p")
    system.cli("partner", "add", name, "--password", PASSWORD)
    return name, PartnerClient(system, name, PASSWORD)


def _file_flow(system: System, partner: str, dest_dir: Path, *extra: str) -> str:
    endpoint, flow = unique("dir"), unique("flow")
    system.cli("endpoint", "add", endpoint, "--type", "file", "--path", str(dest_dir))
    system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint, *extra)
    return flow


def test_validation_reject_keeps_file_and_says_why(system: System, tmp_path: Path) -> None:
    name, client = _partner(system)
    flow = _file_flow(system, name, tmp_path, "--validate", "json", "--validate", "max_size=1MiB")
    assert client.upload("order.json", b'{"po": 1,}').status_code == 201
    rows = system.wait_for(settled(1), flow=flow)
    assert rows[0]["state"] == "rejected"
    assert "json" in rows[0]["error"]
    assert not (tmp_path / "order.json").exists()
    # The rejected file stays in the partner's mailbox for the operator to see.
    upload_id = client.folder_ids()["upload"]
    names = [f["name"] for f in client.http.get(f"/api/folders/{upload_id}/files").json()["resources"]]
    assert "order.json" in names
    # The run is marked failed in Prefect so operators notice it.
    run = finished_run(system, rows[0]["flow_run_id"])
    assert run["state_type"] == "FAILED"
    client.close()


def test_destination_down_then_back_is_retried_and_delivered(system: System, moto_server: str) -> None:
    name, client = _partner(system)
    port = free_port()  # nothing listens here until the "outage" ends
    bucket = unique("late")
    s3 = moto_client(moto_server)
    s3.create_bucket(Bucket=bucket)
    endpoint, flow = unique("s3"), unique("flow")
    system.cli(
        "endpoint",
        "add",
        endpoint,
        "--type",
        "s3",
        "--bucket",
        bucket,
        "--endpoint-url",
        f"http://127.0.0.1:{port}",
        "--access-key-id",
        "k",
        "--secret-access-key",
        "s",
    )
    system.cli(
        "flow",
        "add",
        flow,
        "--source",
        f"mailbox:{name}",
        "--dest",
        endpoint,
        "--retries",
        "8",
        "--retry-delay",
        "0.5",
    )
    assert client.upload("late.csv", b"a,b\n1,2\n").status_code == 201
    system.wait_for(lambda rows: rows and rows[0]["attempts"] >= 2, timeout=60, flow=flow)
    # The destination comes back: its port now forwards to a live S3.
    with tcp_forwarder(port, int(moto_server.rsplit(":", 1)[1])):
        rows = system.wait_for(delivered(1), timeout=90, flow=flow)
    body = s3.get_object(Bucket=bucket, Key="late.csv")["Body"].read()
    assert body == b"a,b\n1,2\n"
    assert rows[0]["attempts"] >= 2
    client.close()


def test_wrong_credentials_are_not_retried(system: System, moto_auth_server) -> None:  # type: ignore[no-untyped-def]
    name, client = _partner(system)
    endpoint, flow = unique("s3"), unique("flow")
    system.cli(
        "endpoint",
        "add",
        endpoint,
        "--type",
        "s3",
        "--bucket",
        moto_auth_server.bucket,
        "--endpoint-url",
        moto_auth_server.url,
        "--access-key-id",
        moto_auth_server.access_key_id,
        "--secret-access-key",
        "definitely-wrong",
    )
    system.cli(
        "flow",
        "add",
        flow,
        "--source",
        f"mailbox:{name}",
        "--dest",
        endpoint,
        "--retries",
        "5",
        "--retry-delay",
        "0.2",
    )
    assert client.upload("x.txt", b"hello").status_code == 201
    rows = system.wait_for(settled(1), flow=flow)
    assert rows[0]["state"] == "failed"
    assert rows[0]["attempts"] == 1
    assert "SignatureDoesNotMatch" in rows[0]["error"]  # says why
    assert "definitely-wrong" not in rows[0]["error"]
    client.close()


def test_replay_delivers_again_and_disable_holds_files(system: System, tmp_path: Path) -> None:
    name, client = _partner(system)
    flow = _file_flow(system, name, tmp_path)
    assert client.upload("a.txt", b"first").status_code == 201
    rows = system.wait_for(delivered(1), flow=flow)
    (tmp_path / "a.txt").unlink()
    system.cli("replay", str(rows[0]["id"]))
    rows = system.wait_for(delivered(2), flow=flow)
    assert rows[0]["replay_of"] == rows[1]["id"]
    assert (tmp_path / "a.txt").read_bytes() == b"first"

    system.cli("flow", "disable", flow)
    assert client.upload("b.txt", b"second").status_code == 201
    # A witness that arrives after b.txt, for an enabled flow: once it is delivered, the dispatcher
    # has been through the pending transfers since b.txt's, and left b.txt's alone.
    other, other_client = _partner(system)
    witness = _file_flow(system, other, tmp_path / "witness")
    assert other_client.upload("w.txt", b"witness").status_code == 201
    system.wait_for(delivered(1), flow=witness)
    other_client.close()
    assert not (tmp_path / "b.txt").exists()
    assert system.transfers(flow=flow)[0]["state"] == "pending"
    system.cli("flow", "enable", flow)
    # A disabled flow holds what arrives; enabling it sends the held files.
    system.wait_for(delivered(3), flow=flow)
    assert (tmp_path / "b.txt").read_bytes() == b"second"
    client.close()


def test_burst_of_small_files_is_batched(system: System, tmp_path: Path) -> None:
    name, client = _partner(system)
    flow = _file_flow(system, name, tmp_path)
    for i in range(40):
        assert client.upload(f"f{i:03}.edi", f"file {i}".encode()).status_code == 201
    rows = system.wait_for(delivered(40), timeout=120, flow=flow)
    runs = {r["flow_run_id"] for r in rows}
    assert len(runs) < 20, f"40 files took {len(runs)} runs"
    for i in range(40):
        assert (tmp_path / f"f{i:03}.edi").read_bytes() == f"file {i}".encode()
    client.close()

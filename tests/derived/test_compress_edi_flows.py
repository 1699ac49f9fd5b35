"""compress, decompress and edi-route through real flow runs, checked with the gzip, zip and unzip tools."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from flows.compress import compress_flow
from flows.decompress import decompress_flow
from flows.edi_route import edi_route
from tests.derived.support import (
    add_dir_endpoint,
    add_flow,
    receive,
    run,
    sha256,
    staged_files,
    table_rows,
    view,
)
from tests.pgp.support import payload
from tests.servers import require_tool
from tests.transforms.edi_samples import edifact, x12


@pytest.fixture(scope="module")
def out(derived_home: Path, prefect_server: None) -> Path:
    folder = derived_home.parent / "out"
    add_dir_endpoint("out", folder)
    return folder


def test_compress_gzip_is_read_by_gzip_and_zip_by_unzip(out: Path) -> None:
    data = payload(400_000)
    gz_flow = add_flow("gz", "acme", "out", dest_path="gz/{name}")
    zip_flow = add_flow("zipped", "acme", "out", dest_path="zip/{name}")
    gz_id = receive("acme", "orders.csv", data, gz_flow)
    zip_id = receive("acme", "orders.csv", data, zip_flow)

    assert run(compress_flow, gz_flow, [gz_id], {}).is_completed()
    assert run(compress_flow, zip_flow, [zip_id], {"format": "zip"}).is_completed()

    gz_file, zip_file = out / "gz" / "orders.csv.gz", out / "zip" / "orders.csv.zip"
    assert (
        subprocess.run([require_tool("gzip"), "-dc", str(gz_file)], capture_output=True, check=True).stdout
        == data
    )
    unzipped = subprocess.run(
        [require_tool("unzip"), "-p", str(zip_file), "orders.csv"], capture_output=True, check=True
    )
    assert unzipped.stdout == data
    for transfer_id, delivered in ((gz_id, gz_file), (zip_id, zip_file)):
        body = delivered.read_bytes()
        assert view(transfer_id).derived == [
            {"step": "compress", "name": delivered.name, "size": len(body), "sha256": sha256(body)}
        ]
    assert staged_files() == []


def test_decompress_reads_what_gzip_and_zip_made(out: Path, tmp_path: Path) -> None:
    data = payload(300_000)
    (tmp_path / "inv.edi").write_bytes(data)
    subprocess.run([require_tool("gzip"), "-k", str(tmp_path / "inv.edi")], check=True)
    subprocess.run(
        [require_tool("zip"), "-q", "-j", str(tmp_path / "inv.zip"), str(tmp_path / "inv.edi")], check=True
    )
    flow_id = add_flow("unpack", "acme", "out", dest_path="plain/{name}")
    gz_id = receive("acme", "inv.edi.gz", (tmp_path / "inv.edi.gz").read_bytes(), flow_id)
    zip_id = receive("acme", "inv.zip", (tmp_path / "inv.zip").read_bytes(), flow_id)

    state = run(decompress_flow, flow_id, [gz_id, zip_id], {"max_ratio": "50"})

    assert state.is_completed(), state.message
    assert (out / "plain" / "inv.edi").read_bytes() == data
    assert view(gz_id).derived == [
        {"step": "decompress", "name": "inv.edi", "size": len(data), "sha256": sha256(data)}
    ]
    assert view(zip_id).derived == [
        {"step": "decompress", "name": "inv.edi", "size": len(data), "sha256": sha256(data)}
    ]
    assert staged_files() == []


def test_a_zip_bomb_and_a_corrupt_zip_are_rejected_and_nothing_lands(out: Path) -> None:
    flow_id = add_flow("unpack-hostile", "acme", "out", dest_path="hostile/{name}")
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))
    bomb_id = receive("acme", "bomb.gz", bomb, flow_id)
    corrupt_id = receive("acme", "broken.zip", b"PK\x03\x04" + b"\x00" * 200, flow_id)

    state = run(decompress_flow, flow_id, [bomb_id, corrupt_id], {})

    assert state.is_failed()
    bomb_row, corrupt_row = view(bomb_id), view(corrupt_id)
    assert bomb_row.state == corrupt_row.state == "rejected"
    assert bomb_row.error is not None and "max_ratio" in bomb_row.error
    assert corrupt_row.error is not None and "not a zip archive" in corrupt_row.error
    assert not (out / "hostile").exists()
    assert staged_files() == []


RULES = '[{"ST": "850", "dest": "erp-orders"}, {"UNH": "ORDERS", "dest": "eu-orders"}]'


def test_edi_route_sends_x12_and_edifact_to_their_endpoints_and_records_the_envelope(out: Path) -> None:
    add_dir_endpoint("erp-orders", out / "erp")
    add_dir_endpoint("eu-orders", out / "eu")
    flow_id = add_flow("edi-in", "acme", "erp-orders")  # the rules choose; this dest is never used alone
    x12_id = receive("acme", "po.x12", x12(sender="ACME", receiver="GLOBEX"), flow_id)
    # A UNA that changes every delimiter is honoured, not rejected.
    eu_body = edifact(("ORDERS", "ORDERS"), una="|*,! \n", sender="EU!*TRADER", newline="")
    eu_id = receive("acme", "orders.edi", eu_body, flow_id)
    stray_id = receive("acme", "invoice.x12", x12((("IN", ("810",)),), sender="NOBODY"), flow_id)

    run(edi_route, flow_id, [x12_id, eu_id, stray_id], {"rules": RULES})

    assert (out / "erp" / "po.x12").read_bytes() == x12(sender="ACME", receiver="GLOBEX")
    assert (out / "eu" / "orders.edi").read_bytes() == eu_body
    x12_row, eu_row, stray_row = view(x12_id), view(eu_id), view(stray_id)
    assert x12_row.state == eu_row.state == "delivered"
    assert x12_row.envelope is not None and x12_row.envelope["combinations"] == [
        {
            "sender": "ACME",
            "receiver": "GLOBEX",
            "GS": "PO",
            "ST": "850",
            "count": 1,
            "rule": 1,
            "dest": "erp-orders",
        }
    ]
    assert eu_row.envelope is not None and eu_row.envelope["standard"] == "edifact"
    assert eu_row.envelope["combinations"][0]["sender"] == "EU*TRADER"  # the release character honoured
    assert eu_row.envelope["combinations"][0]["count"] == 2
    assert eu_row.derived == []  # routing reads the file, it changes nothing
    assert stray_row.state == "rejected"
    assert stray_row.error is not None and "'NOBODY'" in stray_row.error and "'810'" in stray_row.error
    assert stray_row.envelope is not None and stray_row.envelope["standard"] == "x12"
    assert not (out / "erp" / "invoice.x12").exists()
    shown = {row["file"]: row for row in table_rows("edi-in")}  # the run's table artifact
    assert shown["po.x12"]["envelope"] == "x12: sender 'ACME', receiver 'GLOBEX', GS 'PO', ST '850' ×1"
    assert shown["orders.edi"]["envelope"].startswith("edifact: sender 'EU*TRADER'")

"""Through a real `tradelane up`: pgp-encrypt (gpg decrypts at the destination) and edi-route (X12 and
EDIFACT to two endpoints), with `derived` and `envelope` in `tradelane transfers --json`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.helpers import PartnerClient, settled, unique
from tests.pgp.support import PARTNER_EMAIL, GpgCli, make_gpg_cli
from tests.system import System
from tests.transforms.edi_samples import edifact, x12

PASSWORD = "derived-e2e-Pass-1"


def test_pgp_encrypt_and_edi_route_through_up(system: System, tmp_path: Path) -> None:
    partner = unique("dp")
    system.cli("partner", "add", partner, "--password", PASSWORD)
    bank: GpgCli = make_gpg_cli(tmp_path, "bank")
    try:
        bank.generate(f"Bank <{PARTNER_EMAIL}>")
        (tmp_path / "bank.asc").write_bytes(bank.export())
        system.cli("pgp", "key", "import", str(tmp_path / "bank.asc"))
        enc_out, erp, eu = tmp_path / "enc", tmp_path / "erp", tmp_path / "eu"
        for name, folder in ((f"{partner}-enc", enc_out), (f"{partner}-erp", erp), (f"{partner}-eu", eu)):
            system.cli("endpoint", "add", name, "--type", "file", "--path", str(folder))
        system.cli("flow", "add", f"{partner}-encrypt", "--source", f"mailbox:{partner}", "--dest",
                   f"{partner}-enc", "--pattern", "*.csv", "--template", "pgp-encrypt",
                   "--param", f"recipients={PARTNER_EMAIL}")  # fmt: skip
        rules = json.dumps(
            [{"ST": "850", "dest": f"{partner}-erp"}, {"UNH": "ORDERS", "dest": f"{partner}-eu"}]
        )
        # edi-route takes no --dest: each file goes to the endpoint its first matching rule names.
        system.cli("flow", "add", f"{partner}-route", "--source", f"mailbox:{partner}", "--pattern", "*.edi",
                   "--template", "edi-route", "--param", f"rules={rules}")  # fmt: skip

        body = b"sku,qty\n" + b"A-1,3\n" * 5000
        x12_body = x12()
        eu_body = edifact(("ORDERS",), una="|*,! \n", newline="")
        with PartnerClient(system, partner, PASSWORD) as client:
            upload = client.folder_ids()["upload"]
            for name, data in (("stock.csv", body), ("po.edi", x12_body), ("orders.edi", eu_body)):
                assert client.upload(name, data, upload).status_code == 201

        rows = {r["file"]: r for r in system.wait_for(settled(3), timeout=120, partner=partner)}
        assert {r["state"] for r in rows.values()} == {"delivered"}, rows
        sealed = (enc_out / "stock.csv.pgp").read_bytes()
        assert bank.run("--decrypt", data=sealed).stdout == body
        (link,) = rows["stock.csv"]["derived"]
        assert link["step"] == "pgp-encrypt" and link["name"] == "stock.csv.pgp"
        assert link["size"] == len(sealed)
        assert (erp / "po.edi").read_bytes() == x12_body
        assert (eu / "orders.edi").read_bytes() == eu_body
        assert rows["po.edi"]["envelope"]["combinations"][0]["ST"] == "850"
        assert rows["orders.edi"]["envelope"]["combinations"][0]["UNH"] == "ORDERS"
    finally:
        bank.close()

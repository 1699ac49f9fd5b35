"""`tradelane edi route`: a rule table tried on a sample file from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from tests.transforms.edi_samples import edifact, x12

runner = CliRunner()
RULES = '[{"ST":"850","dest":"erp-orders"},{"UNH":"ORDERS","dest":"eu-orders"}]'


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["edi", "route", *args])
    return result.exit_code, result.output


def test_route_prints_the_destination_and_the_envelope(tmp_path: Path) -> None:
    sample = tmp_path / "po.x12"
    sample.write_bytes(x12([("PO", ["850", "850"])]) + x12(control=2, sender="INITECH"))
    code, output = invoke(str(sample), "--rules", RULES)
    assert code == 0, output
    assert output.splitlines() == [
        "dest: erp-orders",
        "x12: 2 interchange(s), 3 transaction set(s)",
        "  sender=ACME, receiver=GLOBEX, GS=PO, ST=850: 2 → rule 1",
        "  sender=INITECH, receiver=GLOBEX, GS=PO, ST=850: 1 → rule 1",
    ]
    (tmp_path / "rules.json").write_text(RULES)
    orders = tmp_path / "orders.edi"
    orders.write_bytes(edifact(una="^|.\\ ~"))
    code, output = invoke(str(orders), "--rules", f"@{tmp_path / 'rules.json'}", "--json")
    assert code == 0, output
    assert json.loads(output) == {
        "dest": "eu-orders",
        "envelope": {
            "standard": "edifact",
            "interchanges": 1,
            "messages": 1,
            "combinations": [
                {
                    "sender": "5412345678908",
                    "receiver": "8798765432106",
                    "UNH": "ORDERS",
                    "count": 1,
                    "rule": 2,
                    "dest": "eu-orders",
                }
            ],
        },
    }


def test_refusals_exit_1_with_the_reason_and_bad_rules_exit_2(tmp_path: Path) -> None:
    invoice = tmp_path / "invoice.edi"
    invoice.write_bytes(edifact(["INVOIC"]))
    code, output = invoke(str(invoice), "--rules", RULES)
    assert code == 1
    assert (
        "refused: no edi-route rule matches sender '5412345678908', receiver '8798765432106', UNH 'INVOIC'"
        in (" ".join(output.split()))
    )
    code, output = invoke(str(invoice), "--rules", RULES, "--json")
    assert code == 1
    refused = json.loads(output)
    assert refused["error"].startswith("no edi-route rule matches")
    assert refused["envelope"] == {
        "standard": "edifact",
        "interchanges": 1,
        "messages": 1,
        "combinations": [],
    }
    broken = tmp_path / "broken.x12"
    broken.write_bytes(x12().replace(b"ISA*00*", b"ISA*0*", 1))
    code, output = invoke(str(broken), "--rules", RULES)
    assert code == 1
    assert "ISA must be 106 characters" in " ".join(output.split())
    code, output = invoke(str(invoice), "--rules", '[{"UNx": "INVOIC", "dest": "x"}]')
    assert code == 2
    assert "0.UNx: Extra inputs are not permitted" in " ".join(output.split())

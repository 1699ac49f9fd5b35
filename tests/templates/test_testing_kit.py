"""Issue 14, item 5: tradelane.testing runs a template in-process against a real Prefect test server
(the built-in `transfer` here: its behaviour through the registry is today's)."""

from __future__ import annotations

import hashlib

import pytest

from tradelane.templates import TemplateError
from tradelane.testing import TemplateHarness, prefect_test_server, receipt_from_bytes, tradelane_harness

__all__ = ["prefect_test_server", "tradelane_harness"]  # the kit's fixtures, used by the tests below


def test_transfer_runs_in_process_delivering_and_rejecting(tradelane_harness: TemplateHarness) -> None:
    flow = tradelane_harness.data_flow("transfer", validators=["json"], dest_path="in/{name}")
    run = flow.run({"good.json": b'{"po": 1}', "bad.json": b'{"po": '})
    assert run.states == {"good.json": "delivered", "bad.json": "rejected"}
    assert run.delivered == {"in/good.json": b'{"po": 1}'}
    assert run.destinations["bad.json"] is None and run.destinations["good.json"]
    assert "json" in run.errors["bad.json"]
    assert run.state.is_failed() and "1 of 2 files delivered" in run.state.message


def test_a_receipt_from_bytes_is_what_an_upload_makes(tradelane_harness: TemplateHarness) -> None:
    flow = tradelane_harness.data_flow("transfer")
    receipt = receipt_from_bytes("acme", "po.edi", b"ISA*00~")
    assert receipt.size == 7 and receipt.sha256 == hashlib.sha256(b"ISA*00~").hexdigest()
    run = flow.run({})  # carries the pending transfer the receipt made
    assert run.states == {"po.edi": "delivered"} and run.delivered == {"po.edi": b"ISA*00~"}


def test_params_are_checked_as_flow_add_checks_them(tradelane_harness: TemplateHarness) -> None:
    with pytest.raises(TemplateError, match="template 'transfer' has no param 'x'"):
        tradelane_harness.data_flow("transfer", params={"x": 1})
    with pytest.raises(TemplateError, match="unknown template 'nope'"):
        tradelane_harness.data_flow("nope")

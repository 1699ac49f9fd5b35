"""Item 9 (first half): an AS2 profile added without --sign no longer lets anyone be that partner.

Before: `as2 partner add GLOBEX ...` without `--sign` (the default) took an unsigned message
claiming `AS2-From: GLOBEX`, built by anyone who knows the two AS2 IDs, into GLOBEX's mailbox.
Now unsigned inbound messages are refused with `insufficient-message-security` unless the
profile says `--allow-unsigned`, which `as2 partner list` flags.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from core import partners
from core.db import session_scope
from tests.as2 import conftest as as2
from tests.as2.conftest import As2Server, Trading
from tests.as2.peer import Identity, judge_mdn, post, wire
from tests.tenancy import home_scope

# The AS2 fixtures (the real app on 127.0.0.1, our identity, partner profiles) of tests/as2.
as2_home, as2_server, trading, us = as2.as2_home, as2.as2_server, as2.trading, as2.us

runner = CliRunner()


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def unsigned_message_claiming(
    partner: Trading, data: bytes, name: str
) -> tuple[dict[str, str], bytes, object]:
    """What an attacker builds with pyas2lib knowing only the AS2 IDs (and our public certificate)."""
    message = partner.message(mdn_mode="SYNC")  # no sign=True: the attacker has no partner key
    message.build(data, filename=name, content_type="application/octet-stream")
    headers, body = wire(message)
    return headers, body, message


def test_unsigned_message_claiming_a_partner_is_refused(
    as2_server: As2Server, trading: Callable[..., Trading]
) -> None:
    partner = trading()  # as `as2 partner add` without --sign
    headers, body, message = unsigned_message_claiming(partner, b"pay account 666", "forged.edi")
    response = post(as2_server.receive_url, headers, body)
    assert response.status_code == 200, response.text
    assert judge_mdn(response, message)[:2] == ("processed/Error", "insufficient-message-security")
    assert not partner.upload.exists() or not any(partner.upload.iterdir())
    [row] = partner.rows()
    assert row.status == "failed" and "must be signed" in (row.error or "")
    assert "does not allow unsigned" in (row.error or "")

    # Encrypted to our public certificate changes nothing: encryption is not authentication.
    message = partner.message(mdn_mode="SYNC", encrypt=True, enc_alg="aes_256_cbc")
    message.build(b"still forged", filename="forged2.edi", content_type="application/octet-stream")
    response = post(as2_server.receive_url, *wire(message))
    assert judge_mdn(response, message)[:2] == ("processed/Error", "insufficient-message-security")
    assert not partner.upload.exists() or not any(partner.upload.iterdir())


def test_the_partner_itself_signs_and_is_taken_in(
    as2_server: As2Server, trading: Callable[..., Trading]
) -> None:
    partner = trading()  # no --sign on the profile: any digest the partner signs with is fine
    message = partner.message(mdn_mode="SYNC", sign=True, digest_alg="sha384")
    message.build(b"genuine", filename="genuine.edi", content_type="application/octet-stream")
    response = post(as2_server.receive_url, *wire(message))
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert (partner.upload / "genuine.edi").read_bytes() == b"genuine"


def test_allow_unsigned_is_an_explicit_flagged_opt_out(
    as2_server: As2Server, us: Identity, tmp_path: Path
) -> None:
    ident = Identity.new("AS2SEC-UNSIGNED")
    cert = tmp_path / "partner.pem"
    cert.write_text(ident.cert_pem)
    with session_scope() as session:
        partners.add(session, home_scope(session), "as2sec-unsigned", password="pw-" + os.urandom(6).hex())
    cli(
        "as2", "partner", "add", ident.as2_id, "--mailbox", "as2sec-unsigned", "--url",
        "http://127.0.0.1:9/as2", "--cert", str(cert), "--org", us.as2_id,
    )  # fmt: skip
    listed = {p["as2_id"]: p for p in json.loads(cli("as2", "partner", "list", "--json"))}
    assert listed[ident.as2_id]["allow_unsigned"] is False

    partner = Trading(ident, "as2sec-unsigned", us, {})
    headers, body, message = unsigned_message_claiming(partner, b"unsigned but allowed", "ok.edi")
    response = post(as2_server.receive_url, headers, body)
    assert judge_mdn(response, message)[:2] == ("processed/Error", "insufficient-message-security")

    out = cli("as2", "partner", "set", ident.as2_id, "--allow-unsigned")
    assert "inbound UNSIGNED" in out and "anyone who knows the AS2 IDs" in out
    listed = {p["as2_id"]: p for p in json.loads(cli("as2", "partner", "list", "--json"))}
    assert listed[ident.as2_id]["allow_unsigned"] is True
    table = cli("as2", "partner", "list")
    assert "UNSIGNED" in table and f"{ident.as2_id} may send unsigned messages" in table

    headers, body, message = unsigned_message_claiming(partner, b"unsigned but allowed", "ok.edi")
    response = post(as2_server.receive_url, headers, body)
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert (partner.upload / "ok.edi").read_bytes() == b"unsigned but allowed"

    cli("as2", "partner", "set", ident.as2_id, "--require-signed")
    headers, body, message = unsigned_message_claiming(partner, b"refused again", "again.edi")
    response = post(as2_server.receive_url, headers, body)
    assert judge_mdn(response, message)[:2] == ("processed/Error", "insufficient-message-security")
    assert not (partner.upload / "again.edi").exists()

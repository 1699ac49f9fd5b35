"""pgp-encrypt and pgp-decrypt through real flow runs, against GnuPG's command line on the other side."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from cli.history import transfers_json
from flows.pgp_decrypt import pgp_decrypt
from flows.pgp_encrypt import pgp_encrypt
from tests.derived.support import (
    add_dir_endpoint,
    add_flow,
    add_partner,
    receive,
    run,
    sha256,
    staged_files,
    table_rows,
    view,
)
from tests.pgp.support import PARTNER_EMAIL, GpgCli, payload


@pytest.fixture(scope="module")
def dest(pgp_home: Path, ours: str, partner: GpgCli, prefect_server: None) -> Path:
    add_partner("bank")
    folder = pgp_home.parent / "pgp-out"
    add_dir_endpoint("pgp-out", folder)
    return folder


def test_encrypted_here_decrypts_with_gpg_and_the_chain_is_recorded(dest: Path, partner: GpgCli) -> None:
    flow_id = add_flow("to-bank", "bank", "pgp-out", dest_path="enc/{name}")
    data = payload(300_000)
    transfer_id = receive("bank", "po.edi", data, flow_id)

    state = run(pgp_encrypt, flow_id, [transfer_id], {"recipients": PARTNER_EMAIL, "sign": "ours"})

    assert state.is_completed(), state.message
    delivered = dest / "enc" / "po.edi.pgp"  # the dest path template applied to the derived name
    done = partner.run("--decrypt", "--output", "-", str(delivered))
    assert done.stdout == data
    assert "[GNUPG:] GOODSIG" in partner.status(done)  # signed by our key "ours"
    row = view(transfer_id)
    assert row.state == "delivered"
    body = delivered.read_bytes()
    assert row.derived == [
        {"step": "pgp-encrypt", "name": "po.edi.pgp", "size": len(body), "sha256": sha256(body)}
    ]
    assert row.sha256 == sha256(data)  # the receipt is still what arrived
    assert transfers_json([row], ui="")[0]["derived"] == row.derived  # `tradelane transfers --json`
    (shown,) = table_rows("to-bank")  # the run's table artifact shows the chain
    assert shown["derived"] == f"pgp-encrypt: po.edi.pgp ({len(body)} bytes, sha256 {sha256(body)})"
    assert staged_files() == []  # final: its derived files are gone


def test_armored_output_is_named_asc(dest: Path, partner: GpgCli) -> None:
    flow_id = add_flow("to-bank-armored", "bank", "pgp-out", dest_path="armored/{name}")
    transfer_id = receive("bank", "inv.xml", b"<invoice/>\n", flow_id)
    state = run(pgp_encrypt, flow_id, [transfer_id], {"recipients": PARTNER_EMAIL, "armor": "true"})
    assert state.is_completed(), state.message
    body = (dest / "armored" / "inv.xml.asc").read_bytes()
    assert body.startswith(b"-----BEGIN PGP MESSAGE-----")
    assert partner.run("--decrypt", data=body).stdout == b"<invoice/>\n"


def test_gpg_encrypted_and_signed_file_is_delivered_as_plaintext(
    dest: Path, partner: GpgCli, ours: str
) -> None:
    flow_id = add_flow("from-bank", "bank", "pgp-out", dest_path="dec/{name}")
    data = payload(250_000)
    sealed = partner.run(
        "--trust-model", "always", "--encrypt", "--sign", "--recipient", ours, data=data
    ).stdout
    transfer_id = receive("bank", "statement.txt.gpg", sealed, flow_id)

    state = run(pgp_decrypt, flow_id, [transfer_id], {"verify": "required", "signers": PARTNER_EMAIL})

    assert state.is_completed(), state.message
    assert (dest / "dec" / "statement.txt").read_bytes() == data
    (link,) = view(transfer_id).derived
    assert link == {"step": "pgp-decrypt", "name": "statement.txt", "size": len(data), "sha256": sha256(data)}


def test_required_signature_missing_is_rejected_and_nothing_lands(
    dest: Path, partner: GpgCli, ours: str
) -> None:
    flow_id = add_flow("from-bank-strict", "bank", "pgp-out", dest_path="strict/{name}")
    sealed = partner.run(
        "--trust-model", "always", "--encrypt", "--recipient", ours, data=payload(100_000)
    ).stdout
    transfer_id = receive("bank", "unsigned.pgp", sealed, flow_id)

    state = run(pgp_decrypt, flow_id, [transfer_id], {"verify": "required"})

    assert state.is_failed()
    row = view(transfer_id)
    assert row.state == "rejected"
    assert row.error is not None and "signature is required" in row.error
    assert not (dest / "strict").exists() or list((dest / "strict").iterdir()) == []
    assert row.derived == []
    assert staged_files() == []


def test_signature_by_someone_else_than_the_signers_is_rejected(
    dest: Path, partner: GpgCli, ours: str
) -> None:
    flow_id = add_flow("from-bank-ours-only", "bank", "pgp-out", dest_path="only/{name}")
    sealed = partner.run(
        "--trust-model", "always", "--encrypt", "--sign", "--recipient", ours, data=b"hello\n"
    ).stdout
    transfer_id = receive("bank", "x.pgp", sealed, flow_id)
    run(pgp_decrypt, flow_id, [transfer_id], {"verify": "required", "signers": "ours"})
    row = view(transfer_id)
    assert row.state == "rejected"
    assert row.error is not None and "not one of the accepted signers" in row.error
    assert not (dest / "only").exists() or list((dest / "only").iterdir()) == []


def test_a_step_done_before_a_crash_is_not_done_again(dest: Path, partner: GpgCli) -> None:
    """Encryption makes different bytes each time (a fresh session key): a run that died after the
    step and before the push must deliver the file it made then, not a second, different one."""
    from core import delivery
    from flows.pgp_encrypt import Params, encrypt

    flow_id = add_flow("to-bank-crashy", "bank", "pgp-out", dest_path="again/{name}")
    data = payload(50_000)
    transfer_id = receive("bank", "again.edi", data, flow_id)
    (job,) = delivery.start([transfer_id])
    made = encrypt(job, Params.model_validate({"recipients": PARTNER_EMAIL})).carried  # then the run dies

    state = run(pgp_encrypt, flow_id, [transfer_id], {"recipients": PARTNER_EMAIL})

    assert state.is_completed(), state.message
    delivered = (dest / "again" / "again.edi.pgp").read_bytes()
    assert sha256(delivered) == made.sha256
    assert view(transfer_id).derived == [
        {"step": "pgp-encrypt", "name": "again.edi.pgp", "size": made.size, "sha256": made.sha256}
    ]
    assert partner.run("--decrypt", data=delivered).stdout == data


@flow(name="unpack-then-encrypt", persist_result=False)
async def unpack_then_encrypt(data_flow_id: int, transfer_ids: list[int], params: dict[str, str]) -> Any:
    """A template of two steps, as a newcomer composes one from the built-ins' step functions."""
    from flows.content import Step, carry_through
    from flows.decompress import Params as Limits
    from flows.decompress import decompress
    from flows.pgp_encrypt import Params, encrypt

    to = Params.model_validate(params)
    steps = [
        Step("decompress", lambda job: decompress(job, Limits())),
        Step("pgp-encrypt", lambda job: encrypt(job, to)),
    ]
    return await carry_through(transfer_ids, steps)


def test_two_steps_record_the_whole_chain(dest: Path, partner: GpgCli) -> None:
    flow_id = add_flow("unpack-encrypt", "bank", "pgp-out", dest_path="chain/{name}")
    data = payload(120_000)
    transfer_id = receive("bank", "ledger.csv.gz", gzip.compress(data), flow_id)

    state = run(unpack_then_encrypt, flow_id, [transfer_id], {"recipients": PARTNER_EMAIL})

    assert state.is_completed(), state.message
    sealed = (dest / "chain" / "ledger.csv.pgp").read_bytes()
    assert partner.run("--decrypt", data=sealed).stdout == data
    assert view(transfer_id).derived == [
        {"step": "decompress", "name": "ledger.csv", "size": len(data), "sha256": sha256(data)},
        {"step": "pgp-encrypt", "name": "ledger.csv.pgp", "size": len(sealed), "sha256": sha256(sealed)},
    ]
    assert staged_files() == []

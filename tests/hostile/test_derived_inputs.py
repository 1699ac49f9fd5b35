"""Hostile files through the content-changing templates: each ends rejected or failed with a clear
reason, never stuck, never a half-written destination, and staging is left empty."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.decompress import decompress_flow
from flows.edi_route import edi_route
from flows.pgp_decrypt import pgp_decrypt
from flows.pgp_encrypt import pgp_encrypt
from tests.derived.support import (
    add_dir_endpoint,
    add_flow,
    add_partner,
    receive,
    run,
    staged_files,
    view,
)
from tests.pgp.support import GpgCli, ours, partner, pgp_home, stranger  # noqa: F401
from tests.transforms.edi_samples import edifact, x12


@pytest.fixture(scope="module")
def out(pgp_home: Path, prefect_server: None) -> Iterator[Path]:  # noqa: F811
    add_partner("mallory")
    folder = pgp_home.parent / "hostile-out"
    add_dir_endpoint("hostile-out", folder)
    yield folder


def _ends(transfer_id: int, state: str, *words: str) -> None:
    row = view(transfer_id)
    assert row.state == state, (row.state, row.error)
    assert row.error is not None
    for word in words:
        assert word in row.error, row.error


def _nothing_in(folder: Path) -> None:
    assert not folder.exists() or [p.name for p in folder.rglob("*")] == []
    assert staged_files() == []


def test_pgp_file_for_a_key_we_do_not_have_is_rejected(out: Path, stranger: GpgCli) -> None:  # noqa: F811
    flow_id = add_flow("h-dec-stranger", "mallory", "hostile-out", dest_path="a/{name}")
    stranger.generate("Other <other@example.com>")
    sealed = stranger.run(
        "--trust-model", "always", "--encrypt", "--recipient", "other@example.com", data=b"x" * 5000
    )
    transfer_id = receive("mallory", "for-someone-else.pgp", sealed.stdout, flow_id)
    run(pgp_decrypt, flow_id, [transfer_id], {})
    _ends(transfer_id, "rejected", "pgp-decrypt", "private part of none")
    _nothing_in(out / "a")


def test_not_pgp_and_truncated_pgp_are_rejected(out: Path, partner: GpgCli, ours: str) -> None:  # noqa: F811
    flow_id = add_flow("h-dec-junk", "mallory", "hostile-out", dest_path="b/{name}")
    sealed = partner.run(
        "--trust-model", "always", "--encrypt", "--recipient", ours, data=b"y" * 200_000
    ).stdout
    junk = receive("mallory", "junk.pgp", b"hello, not pgp\n", flow_id)
    cut = receive("mallory", "cut.pgp", sealed[: len(sealed) // 2], flow_id)
    run(pgp_decrypt, flow_id, [junk, cut], {})
    _ends(junk, "rejected", "not OpenPGP data")
    _ends(cut, "rejected", "damaged or truncated")
    _nothing_in(out / "b")


def test_bad_signature_when_required_is_rejected(out: Path, partner: GpgCli, ours: str) -> None:  # noqa: F811
    flow_id = add_flow("h-dec-badsig", "mallory", "hostile-out", dest_path="c/{name}")
    signed = partner.run("--sign", data=b"signed text " * 1000).stdout  # signed, not encrypted
    forged = bytearray(signed)
    forged[len(forged) // 2] ^= 0x01  # a changed byte inside the signed data
    transfer_id = receive("mallory", "forged.gpg", bytes(forged), flow_id)
    run(pgp_decrypt, flow_id, [transfer_id], {"verify": "required"})
    row = view(transfer_id)
    assert row.state == "rejected", row.error
    _nothing_in(out / "c")


def test_unknown_recipient_fails_naming_it_and_delivers_nothing(out: Path) -> None:
    flow_id = add_flow("h-enc-nokey", "mallory", "hostile-out", dest_path="d/{name}")
    transfer_id = receive("mallory", "po.edi", b"ISA*...", flow_id)
    run(pgp_encrypt, flow_id, [transfer_id], {"recipients": "nobody@example.com"})
    _ends(transfer_id, "failed", "nobody@example.com")  # the keyring needs fixing, then a replay
    _nothing_in(out / "d")


def test_unknown_signer_fails_naming_it_and_delivers_nothing(out: Path, partner: GpgCli, ours: str) -> None:  # noqa: F811
    flow_id = add_flow("h-dec-nosigner", "mallory", "hostile-out", dest_path="g/{name}")
    sealed = partner.run(
        "--trust-model", "always", "--encrypt", "--sign", "--recipient", ours, data=b"z" * 999
    )
    transfer_id = receive("mallory", "z.pgp", sealed.stdout, flow_id)
    run(pgp_decrypt, flow_id, [transfer_id], {"verify": "required", "signers": "ghost@example.com"})
    _ends(transfer_id, "failed", "ghost@example.com")
    _nothing_in(out / "g")


def test_zip_of_several_files_traversal_and_encrypted_members_are_rejected(out: Path) -> None:
    flow_id = add_flow("h-unzip", "mallory", "hostile-out", dest_path="e/{name}")
    many, climbing = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(many, "w") as archive:
        archive.writestr("a.txt", "a")
        archive.writestr("b.txt", "b")
    with zipfile.ZipFile(climbing, "w") as archive:
        archive.writestr("../../etc/passwd", "root")
    several = receive("mallory", "many.zip", many.getvalue(), flow_id)
    traversal = receive("mallory", "climb.zip", climbing.getvalue(), flow_id)
    run(decompress_flow, flow_id, [several, traversal], {})
    _ends(several, "rejected", "2 files")
    _ends(traversal, "rejected", "climbs out")
    _nothing_in(out / "e")


def test_broken_isa_and_unrouted_edifact_are_rejected_with_their_values(out: Path) -> None:
    add_dir_endpoint("h-erp", out / "erp")
    flow_id = add_flow("h-edi", "mallory", "h-erp")
    rules = '[{"ST": "850", "dest": "h-erp"}]'
    broken = receive("mallory", "broken.x12", x12()[:50] + b"~GS*PO~", flow_id)
    unrouted = receive("mallory", "desadv.edi", edifact(("DESADV",)), flow_id)
    not_edi = receive("mallory", "hello.txt", b"hello", flow_id)
    run(edi_route, flow_id, [broken, unrouted, not_edi], {"rules": rules})
    _ends(broken, "rejected", "edi-route")
    _ends(unrouted, "rejected", "'DESADV'", "'5412345678908'")
    _ends(not_edi, "rejected", "not an X12 or EDIFACT interchange")
    assert view(unrouted).envelope is not None
    _nothing_in(out / "erp")


def test_bad_rules_fail_the_run_before_any_file_is_touched(out: Path) -> None:
    """Params are checked against the model before the run starts (and, by the template registry,
    when the data flow is added): the file is not touched, nothing is delivered."""
    flow_id = add_flow("h-edi-badrules", "mallory", "hostile-out", dest_path="f/{name}")
    transfer_id = receive("mallory", "po.x12", x12(), flow_id)
    state = run(edi_route, flow_id, [transfer_id], {"rules": '[{"XX": "1", "dest": "a"}]'})
    assert state.is_failed()
    assert "rules" in str(state.message)
    assert view(transfer_id).state == "pending"
    _nothing_in(out / "f")


def test_a_kept_file_changed_on_disk_is_not_decrypted_and_delivered(
    out: Path,
    partner: GpgCli,  # noqa: F811
    ours: str,  # noqa: F811
) -> None:
    """gpg reads the kept file by its path; what it read is still hashed against the receipt."""
    from core import delivery

    flow_id = add_flow("h-dec-changed", "mallory", "hostile-out", dest_path="h/{name}")
    # Another good message of the same size will take its place: gpg opens it; only the hash can
    # tell. Uncompressed, two texts of one length seal to the same length, give or take a byte of
    # the random session key's encryption (an RSA key's leading zero bits): encrypt both until two
    # have the same length.
    by_length: dict[bytes, dict[int, bytes]] = {b"w": {}, b"v": {}}
    for _ in range(50):
        for text, sealed_by_length in by_length.items():
            message = partner.run(
                "--trust-model",
                "always",
                "--compress-algo",
                "none",
                "--encrypt",
                "--recipient",
                ours,
                data=text * 10_000,
            ).stdout
            sealed_by_length.setdefault(len(message), message)
        if common := by_length[b"w"].keys() & by_length[b"v"].keys():
            break
    length = min(common)
    sealed, other = by_length[b"w"][length], by_length[b"v"][length]
    assert other != sealed
    transfer_id = receive("mallory", "w.pgp", sealed, flow_id)
    (job,) = delivery.start([transfer_id])
    with job.carried.path.open("r+b") as kept:
        kept.write(other)
    run(pgp_decrypt, flow_id, [transfer_id], {})
    _ends(transfer_id, "failed", "changed since it was received")
    _nothing_in(out / "h")

"""A PGP compression bomb through the pgp-decrypt template: a small message that inflates past
`max_size` is stopped there (gpg writes the staged file itself; its growth is watched) and rejected
with a reason naming the limit; nothing lands and nothing stays staged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.pgp_decrypt import pgp_decrypt
from tests.derived.support import (
    add_dir_endpoint,
    add_flow,
    add_partner,
    receive,
    run,
    staged_files,
    view,
)
from tests.pgp.support import GpgCli, ours, partner, pgp_home  # noqa: F401

ZEROS = bytes(64 * 1024 * 1024)


@pytest.fixture(scope="module")
def out(pgp_home: Path, prefect_server: None) -> Iterator[Path]:  # noqa: F811
    add_partner("bomber")
    folder = pgp_home.parent / "bomb-out"
    add_dir_endpoint("bomb-out", folder)
    yield folder


def bomb(partner: GpgCli, ours: str) -> bytes:  # noqa: F811
    message = partner.run(
        "--trust-model", "always", "--encrypt", "--recipient", ours,
        "--compress-algo", "zlib", "--compress-level", "9", data=ZEROS,
    ).stdout  # fmt: skip
    assert len(message) < 1024 * 1024
    return message


def test_a_message_inflating_past_max_size_is_rejected(out: Path, partner: GpgCli, ours: str) -> None:  # noqa: F811
    flow_id = add_flow("bomb-dec", "bomber", "bomb-out", dest_path="b/{name}")
    transfer_id = receive("bomber", "zeros.bin.pgp", bomb(partner, ours), flow_id)

    run(pgp_decrypt, flow_id, [transfer_id], {"max_size": "1MiB"})

    row = view(transfer_id)
    assert row.state == "rejected", (row.state, row.error)
    assert row.error is not None and "larger than the limit of 1048576 bytes" in row.error
    assert "max_size" in row.error
    assert not (out / "b").exists() or list((out / "b").iterdir()) == []
    assert staged_files() == []


def test_within_max_size_the_same_message_is_delivered(out: Path, partner: GpgCli, ours: str) -> None:  # noqa: F811
    flow_id = add_flow("bomb-ok", "bomber", "bomb-out", dest_path="ok/{name}")
    transfer_id = receive("bomber", "zeros.bin.pgp", bomb(partner, ours), flow_id)

    run(pgp_decrypt, flow_id, [transfer_id], {"max_size": "64MiB"})

    assert view(transfer_id).state == "delivered"
    landed = out / "ok" / "zeros.bin"
    assert landed.stat().st_size == len(ZEROS) and landed.read_bytes() == ZEROS

"""The work one received message costs: counted, not timed (the figures are in bench/as2_bench.py).

A 10 KiB signed+encrypted message (binary transfer encoding, as pyas2lib sends) with a signed sync
MDN is never serialized by the email package (its MDN is written out by core.as2.mdnbuild) and its
MDN is signed once. pyas2lib's Message.parse signed a second MDN of its own, and it and Mdn.build
serialized the message and MDN for debug lines whatever the log level: 2 signatures, 9
serializations; then, with pyas2lib's Mdn.build, 1 signature and 2 serializations.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyas2lib.as2
import pytest
from pyas2lib.utils import BinaryBytesGenerator

from core.as2 import mdn as mdns
from core.as2 import signing
from core.as2.settings import MIB, as2_settings
from tests.as2.conftest import As2Server, Trading
from tests.as2.peer import judge_mdn, post, wire


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    mdns._install_unlogged_serialization()  # so the count below is of MDN signatures, however made
    counts = {"sign": 0, "serialize": 0}
    sign, flatten = pyas2lib.as2.sign_message, BinaryBytesGenerator.flatten
    sign_detached = signing.sign_detached

    def counting_sign_detached(*args: Any, **kwargs: Any) -> Any:
        counts["sign"] += 1
        return sign_detached(*args, **kwargs)

    def counting_sign(*args: Any, **kwargs: Any) -> Any:
        counts["sign"] += 1
        return sign(*args, **kwargs)

    depth = threading.local()

    def counting_flatten(self: Any, msg: Any, *args: Any, **kwargs: Any) -> Any:
        level = getattr(depth, "level", 0)
        counts["serialize"] += level == 0  # a multipart's parts are flattened within it
        depth.level = level + 1
        try:
            return flatten(self, msg, *args, **kwargs)
        finally:
            depth.level = level

    counting_sign.tradelane_wrapped = True  # type: ignore[attr-defined]  # (left in place by mdns)
    monkeypatch.setattr(pyas2lib.as2, "sign_message", counting_sign)
    monkeypatch.setattr(signing, "sign_detached", counting_sign_detached)
    monkeypatch.setattr(BinaryBytesGenerator, "flatten", counting_flatten)
    yield counts


def test_one_signature_and_no_serialization_per_message(
    as2_server: As2Server, trading: Callable[..., Trading], counted: dict[str, int]
) -> None:
    partner = trading(sign="sha256", encrypt="aes256")
    message = partner.message(mdn_mode="SYNC", mdn_digest_alg="sha256", sign=True, encrypt=True,
                              enc_alg="aes_256_cbc")  # fmt: skip
    data = os.urandom(10 * 1024)
    message.build(data, filename="work.bin", content_type="application/octet-stream")
    headers, body = wire(message)  # built before counting starts
    counted.update(sign=0, serialize=0)
    response = post(as2_server.receive_url, headers, body)
    received = dict(counted)
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert (partner.upload / "work.bin").read_bytes() == data
    assert received == {"sign": 1, "serialize": 0}


def test_settings_are_built_once_and_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building As2Settings reads the whole environment; a message used to pay that three times."""
    monkeypatch.setenv("TRADELANE_AS2_MAX_MDN_BYTES", "12345")
    first = as2_settings()
    assert first.max_mdn_bytes == 12345 and as2_settings() is first
    monkeypatch.setenv("TRADELANE_AS2_MAX_MDN_BYTES", "54321")
    assert as2_settings().max_mdn_bytes == 54321
    monkeypatch.delenv("TRADELANE_AS2_MAX_MDN_BYTES")
    monkeypatch.setenv("tradelane_as2_max_mdn_bytes", "777")  # names are not case-sensitive
    assert as2_settings().max_mdn_bytes == 777
    monkeypatch.delenv("tradelane_as2_max_mdn_bytes")
    assert as2_settings().max_mdn_bytes == MIB


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_mdn_signature_by_openssl_is_what_pyas2lib_makes(digest: str) -> None:
    """core.as2.signing's detached signature: the same signed attributes and certificate as
    pyas2lib's sign_message, and pyas2lib verifies it."""
    from asn1crypto import cms
    from pyas2lib.cms import sign_message, verify_message

    from core.as2 import signing
    from tests.as2.peer import Identity

    org = Identity.new("SIGNING-TEST").organization()
    data = b"Content-Type: multipart/report\r\n\r\nreport\r\n"
    ours = signing.sign_detached(data, digest, org.sign_key, "rsassa_pkcs1v15")
    theirs = sign_message(data, digest, org.sign_key)
    assert ours is not None and verify_message(data, ours, org.sign_key[1]) == digest

    def shape(der: bytes) -> tuple[object, ...]:
        signed = cms.ContentInfo.load(der)["content"]
        [signer] = signed["signer_infos"]
        return (
            signed["encap_content_info"]["content"].native,  # None: detached
            [c.chosen.dump() for c in signed["certificates"]],
            signer["digest_algorithm"]["algorithm"].native,
            sorted(a["type"].dotted for a in signer["signed_attrs"]),
        )

    assert shape(ours) == shape(theirs)
    with pytest.raises(Exception, match="Message Digest does not match"):
        verify_message(data + b"x", ours, org.sign_key[1])


def test_replay_lookup_reads_the_digest_index(as2_home: Path) -> None:
    """The replay check finds a signature by its digest's index: with the partner in the query,
    SQLite chose the (direction, partner, Message-ID) index and read every message from the
    partner, for every message received (1.3 s a message at 200,000 messages)."""
    from sqlalchemy import event

    from core.as2 import replay
    from core.db import get_engine, session_scope

    engine = get_engine()
    if engine.dialect.name != "sqlite":
        pytest.skip("the query plan checked is SQLite's")
    statements: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if threading.get_ident() == here:  # the AS2 worker of an earlier test may be sweeping
            statements.append((statement, parameters))

    here = threading.get_ident()

    event.listen(engine, "before_cursor_execute", note)
    try:
        with session_scope() as session:
            assert not replay.seen_within_window("SOME-PARTNER", "0" * 64, session)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    # Only the lookup's own SELECT: the engine's pool may run statements too.
    ((statement, parameters),) = [
        (sql, params)
        for sql, params in statements
        if sql.lstrip().upper().startswith("SELECT") and "as2message" in sql
    ]
    with engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    assert any("ix_as2message_signed_digest" in str(row) for row in plan), plan

"""edi-route: envelope values read while streaming, routed by the rule table."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from collections.abc import Iterator

import pytest

from core.transforms.edi_route import (
    ConflictingRoutes,
    NoMatchingRule,
    RouteRules,
    UnreadableEnvelope,
    route_stream,
)
from tests.test_validators import ORDERS, X12_850, GeneratedStream
from tests.transforms.edi_samples import edifact, x12

RULES = [
    {"ST": "850", "dest": "erp-orders"},
    {"UNH": "ORDERS", "dest": "eu-orders"},
    {"receiver": "GLOBEX", "dest": "globex-as2"},
]


def route(data: bytes, rules: object = RULES, chunk_size: int = 1024 * 1024) -> tuple[str, dict[str, object]]:
    result = route_stream(io.BytesIO(data), rules, "file.edi", chunk_size=chunk_size)  # type: ignore[arg-type]
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    return result.dest, result.envelope.as_dict()


def test_x12_routes_by_transaction_set_and_records_the_envelope() -> None:
    dest, envelope = route(X12_850)
    assert dest == "erp-orders"
    assert envelope == {
        "standard": "x12",
        "interchanges": 1,
        "messages": 1,
        "combinations": [
            {
                "sender": "SENDERID",
                "receiver": "RECEIVERID",
                "GS": "PO",
                "ST": "850",
                "count": 1,
                "rule": 1,
                "dest": "erp-orders",
            }
        ],
    }


def test_edifact_routes_by_message_type() -> None:
    dest, envelope = route(ORDERS)
    assert dest == "eu-orders"
    assert envelope["combinations"] == [
        {
            "sender": "5412345678908",
            "receiver": "8798765432106",
            "UNH": "ORDERS",
            "count": 1,
            "rule": 2,
            "dest": "eu-orders",
        }
    ]


def test_all_keys_of_a_rule_must_match_and_the_first_match_wins() -> None:
    rules = [
        {"sender": "ACME", "ST": "810", "dest": "acme-invoices"},
        {"sender": "ACME", "receiver": "GLOBEX", "dest": "acme-to-globex"},
        {"ST": "810", "dest": "invoices"},
        {"dest": "catch-all"},
    ]
    assert route(x12([("IN", ["810"])]), rules)[0] == "acme-invoices"
    assert route(x12([("PO", ["850"])]), rules)[0] == "acme-to-globex"  # sender matches, ST does not
    assert route(x12([("IN", ["810"])], sender="INITECH"), rules)[0] == "invoices"
    assert route(x12([("PO", ["850"])], sender="INITECH"), rules)[0] == "catch-all"
    # GS and ST are X12's: an EDIFACT file never matches them, UNH never matches X12
    assert route(edifact(), [{"ST": "850", "dest": "x"}, {"UNH": "ORDERS", "dest": "y"}])[0] == "y"
    assert route(x12(), [{"UNH": "ORDERS", "dest": "x"}, {"GS": "PO", "dest": "y"}])[0] == "y"


def test_several_interchanges_groups_and_sets_to_one_destination() -> None:
    data = (
        x12([("PO", ["850", "850"]), ("PO", ["850"])], control=1)
        + x12([("PO", ["850"])], control=2, sep="|", comp="^", term="\n", newline="")
        + b"\r\n"
        + x12([("PO", ["850"])], control=3, sender="INITECH", sep="!", comp=":", term="'", newline="\r\n")
    )
    dest, envelope = route(data, [{"GS": "PO", "ST": "850", "dest": "erp-orders"}])
    assert dest == "erp-orders"
    assert envelope["interchanges"] == 3
    assert envelope["messages"] == 5
    assert envelope["combinations"] == [
        {
            "sender": "ACME",
            "receiver": "GLOBEX",
            "GS": "PO",
            "ST": "850",
            "count": 4,
            "rule": 1,
            "dest": "erp-orders",
        },
        {
            "sender": "INITECH",
            "receiver": "GLOBEX",
            "GS": "PO",
            "ST": "850",
            "count": 1,
            "rule": 1,
            "dest": "erp-orders",
        },
    ]
    # cut at every size: values straddling chunk boundaries are read the same
    for size in (1, 2, 3, 7, 105, 106, 107, 500):
        assert route(data, [{"GS": "PO", "ST": "850", "dest": "erp-orders"}], chunk_size=size)[1] == envelope


def test_sets_routing_to_different_destinations_are_refused_with_both() -> None:
    data = x12([("PO", ["850"]), ("IN", ["810"])])
    with pytest.raises(ConflictingRoutes) as caught:
        route(data, [{"ST": "850", "dest": "erp-orders"}, {"ST": "810", "dest": "invoices"}])
    assert str(caught.value) == (
        "one file routes to two destinations: sender 'ACME', receiver 'GLOBEX', GS 'PO', ST '850' → "
        "'erp-orders', but sender 'ACME', receiver 'GLOBEX', GS 'IN', ST '810' → 'invoices' "
        "(send them as separate files)"
    )
    assert caught.value.envelope is not None and caught.value.envelope.messages == 2


def test_an_unknown_combination_is_refused_with_its_values() -> None:
    data = x12([("PO", ["850"])]) + x12([("IN", ["810"])], control=2, receiver="HOOLI")
    with pytest.raises(NoMatchingRule) as caught:
        route(data, [{"ST": "850", "dest": "erp-orders"}])
    assert str(caught.value) == (
        "no edi-route rule matches sender 'ACME', receiver 'HOOLI', GS 'IN', ST '810' "
        "(x12 interchange 2, transaction set 2)"
    )
    with pytest.raises(
        NoMatchingRule, match=r"sender '5412345678908', receiver '8798765432106', UNH 'INVOIC' "
    ):
        route(edifact(["INVOIC"]), RULES)


def test_an_interchange_without_transaction_sets_routes_on_sender_and_receiver() -> None:
    from tests.transforms.edi_samples import isa_header

    ta1 = (isa_header(control=5) + "TA1*000000009*240115*1230*A*000~IEA*0*000000005~").encode()
    assert (
        route(ta1, [{"ST": "997", "dest": "acks"}, {"receiver": "GLOBEX", "dest": "globex"}])[0] == "globex"
    )
    with pytest.raises(
        NoMatchingRule, match=r"matches sender 'ACME', receiver 'GLOBEX' \(x12 interchange 1\)"
    ):
        route(ta1, [{"ST": "997", "dest": "acks"}])


def test_edifact_una_changes_delimiters_and_release_characters_are_resolved() -> None:
    custom = edifact(["ORDERS", "ORDERS"], una="^|.\\ ~", grouped=True, sender="AB\\|C\\^D", newline="")
    dest, envelope = route(custom, [{"sender": "AB|C^D", "UNH": "ORDERS", "dest": "eu-orders"}])
    assert dest == "eu-orders"
    assert envelope["combinations"] == [
        {
            "sender": "AB|C^D",
            "receiver": "8798765432106",
            "UNH": "ORDERS",
            "count": 2,
            "rule": 1,
            "dest": "eu-orders",
        }
    ]
    # default delimiters with a released '+' in the sender; no UNA at all
    assert route(edifact(sender="AB?+C"), [{"sender": "AB+C", "dest": "x"}])[0] == "x"
    assert route(edifact(una=None), RULES)[0] == "eu-orders"
    # several interchanges, each announcing its own delimiters
    two = edifact(una=":+.? '") + edifact(["ORDERS"], una="*#.! \n", control="779", newline="")
    assert route(two, RULES, chunk_size=5)[1]["interchanges"] == 2


def test_a_utf8_bom_and_leading_blank_lines_are_fine() -> None:
    assert route(b"\xef\xbb\xbf\r\n\n" + X12_850, RULES, chunk_size=2)[0] == "erp-orders"
    for chunk_size in (1000, 1 << 20):  # the same answer however it is read
        assert route(b"\n" * 60_000 + X12_850, RULES, chunk_size=chunk_size)[0] == "erp-orders"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("[]", "rules: List should have at least 1 item"),
        ('[{"ST": "850"}]', "0.dest: Field required"),
        ('[{"st": "850", "dest": "x"}]', "0.st: Extra inputs are not permitted"),
        ('[{"ST": "", "dest": "x"}]', "0.ST: String should have at least 1 character"),
        ('{"ST": "850"}', "Input should be a valid array"),
        ("not json", "invalid edi-route rules"),
    ],
)
def test_bad_rule_tables_are_refused(rules: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid edi-route rules") as caught:
        RouteRules.parse(rules)
    assert message in str(caught.value)


def test_rules_parse_from_json_text_and_lists_alike() -> None:
    text = (
        '[{"ST":"850","dest":"erp-orders"},{"UNH":"ORDERS","dest":"eu-orders"},'
        '{"receiver":"GLOBEX","dest":"globex-as2"}]'
    )
    assert RouteRules.parse(text) == RouteRules.parse(RULES)


def x12_stream(sets: int) -> Iterator[bytes]:
    """One interchange with `sets` 850s in one group, generated a thousand sets at a time."""
    yield x12()[: x12().index(b"ST*")]
    for first in range(1, sets + 1, 1000):
        yield b"".join(
            b"ST*850*%09d~\nBEG*00*SA*PO-%d**20240115~\nSE*3*%09d~\n" % (n, n, n)
            for n in range(first, min(first + 1000, sets + 1))
        )
    yield f"GE*{sets}*1~\nIEA*1*000000001~\n".encode()


def test_memory_stays_flat_over_many_transaction_sets() -> None:
    sets = 30_000  # about 2 MB, read 16 KiB at a time
    tracemalloc.start()
    try:
        result = route_stream(GeneratedStream(x12_stream(sets)), RULES, chunk_size=16 * 1024)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size > 1_800_000
    assert result.envelope.messages == sets
    assert result.envelope.combinations[0].count == sets
    assert peak < 512 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_a_refusal_comes_without_reading_the_rest() -> None:
    def forever() -> Iterator[bytes]:
        head = x12([("IN", ["810"])], receiver="HOOLI")
        yield head[: head.index(b"SE*")]
        while True:
            yield b"REF*DP*038~\n" * 1000

    stream = GeneratedStream(forever())
    with pytest.raises(NoMatchingRule):
        route_stream(stream, RULES, chunk_size=4096)  # type: ignore[arg-type]


def test_broken_envelopes_are_unreadable() -> None:
    with pytest.raises(UnreadableEnvelope, match=r"^x12: segment 1 \(ISA\): ISA must be 106 characters"):
        route(X12_850.replace(b"ISA*00*          *", b"ISA*00*         *"))
    with pytest.raises(UnreadableEnvelope, match="SE01 segment count '14' does not match 15"):
        route(X12_850.replace(b"SE*15*0001", b"SE*14*0001"))
    with pytest.raises(UnreadableEnvelope, match="UNZ missing"):
        route(ORDERS[: ORDERS.index(b"UNZ")])
    with pytest.raises(UnreadableEnvelope, match=r"expected ISA, UNA or UNB at the start, found '\{\"p'"):
        route(b'{"po": 1}')
    with pytest.raises(UnreadableEnvelope, match="the file is empty"):
        route(b"")

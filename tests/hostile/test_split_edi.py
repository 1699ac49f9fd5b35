"""Mangled X12 and EDIFACT interchanges through the one envelope engine: segments dropped, doubled,
swapped, cut short, bytes changed and stray envelope segments inserted. Whatever arrives, the
answer is a ValidationError naming the standard (or a pass), never another exception, and it is
the same however the stream is cut into chunks.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from core.validators import EdifactValidator, ValidationError, Validator, X12Validator
from tests.test_validators import ORDERS, X12_850, isa

GROUPED = ORDERS.replace(b"UNH+", b"UNG+ORDERS+A+B+240115:1230+42+UN+D:96A'UNH+").replace(
    b"UNZ+1+", b"UNE+1+42'UNZ+1+"
)
TA1_ONLY = (isa() + "TA1*000000009*240115*1230*A*000~IEA*0*000000001~").encode()
STRAYS = [b"UNE+1+42'", b"GS*X*1~", b"ST*1*~", b"UNG+A+B+C+D+9'", b"SE*2*1~", b"UNT+2+X'", b"IEA*1*1~"]
STRAYS += [b"UNZ+0+1'", b"UNA:+.? '", b"TA1*1~", b"UNB+UNOC:3+A+B+1+2'", b"ISA*00*~", b"??'", b"\xef\xbb\xbf"]


def mangled(rnd: random.Random, data: bytes, term: bytes) -> bytes:
    segments = data.split(term)
    match rnd.randrange(7):
        case 0 if len(segments) > 2:
            del segments[rnd.randrange(len(segments))]
        case 1:
            segments.insert(rnd.randrange(len(segments)), rnd.choice(segments))
        case 2:
            a, b = rnd.randrange(len(segments)), rnd.randrange(len(segments))
            segments[a], segments[b] = segments[b], segments[a]
        case 3:
            at = rnd.randrange(len(segments))
            chars = bytearray(segments[at]) or bytearray(b"X")
            chars[rnd.randrange(len(chars))] = rnd.choice(b"0123456789*+:'~?ABCUNSEGTHZ \n\x00\xff")
            segments[at] = bytes(chars)
        case 4:
            segments = segments[: rnd.randrange(1, len(segments) + 1)]
        case 5:
            at = rnd.randrange(len(segments))
            segments[at] = segments[at][: rnd.randrange(len(segments[at]) + 1)]
        case _:
            joined = term.join(segments)
            cut = rnd.randrange(len(joined) + 1)
            return joined[:cut] + rnd.choice(STRAYS) + joined[cut:]
    return term.join(segments)


def outcome(validator: Validator, data: bytes, cuts: list[int]) -> str | None:
    validator.start("mangled.edi")
    try:
        previous = 0
        for cut in [*cuts, len(data)]:
            validator.feed(data[previous:cut])
            previous = cut
        validator.finish(len(data), hashlib.sha256(data).hexdigest())
    except ValidationError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    ("make", "samples", "term"),
    [
        (X12Validator, [X12_850, TA1_ONLY, X12_850 + X12_850.replace(b"000000001", b"000000002")], b"~"),
        (EdifactValidator, [ORDERS, GROUPED, ORDERS + GROUPED], b"'"),
    ],
    ids=["x12", "edifact"],
)
def test_mangled_interchanges_get_a_clear_answer_whatever_the_chunks(
    make: type[Validator], samples: list[bytes], term: bytes
) -> None:
    rnd = random.Random(11)
    whole, chunked = make(), make()
    failures = 0
    for _ in range(300):
        data = mangled(rnd, rnd.choice(samples), term)
        expected = outcome(whole, data, [])
        if expected is not None:
            failures += 1
            assert expected.startswith(f"{whole.type}: ")
        cuts = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, 8))) if len(data) > 1 else []
        assert outcome(chunked, data, cuts) == expected, data
        assert outcome(chunked, data, list(range(1, len(data)))) == expected, data  # a byte at a time
    assert failures > 200  # the mangling did reach the checks

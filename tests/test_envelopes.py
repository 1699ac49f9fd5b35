"""core.validators.envelopes: one envelope engine for X12 and EDIFACT, driven by the standards' table.

The engine is pure logic, so it is driven here with segments built from the table itself: each
rule is checked once for both standards, and the messages come out in each standard's words.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace

import pytest

from core.validators import EdifactValidator, ValidationError, X12Validator, validate_stream
from core.validators.edi import SegmentValidator
from core.validators.envelopes import EDIFACT, X12, Envelope, EnvelopeEngine, EnvelopeError, Standard
from tests.test_validators import ORDERS, X12_850

Segment = tuple[bytes, list[bytes]]


def header(envelope: Envelope, control: str) -> Segment:
    """A header segment with every required element filled and `control` at its place."""
    size = max([envelope.control, *(index for index, _ in envelope.required)])
    elements = [envelope.header.encode()] + [b"X"] * size
    elements[envelope.control] = control.encode()
    return elements[0], elements


def trailer(envelope: Envelope, count: int | str, control: str) -> Segment:
    elements = [envelope.trailer.encode(), str(count).encode(), control.encode()]
    return elements[0], elements


def content(tag: str = "REF") -> Segment:
    return tag.encode(), [tag.encode(), b"1"]


def interchange(standard: Standard, messages: int = 1, contents: int = 2) -> list[Segment]:
    """One interchange holding one group (X12) or bare messages (EDIFACT), all counts right."""
    segments = [header(standard.interchange, "000000001")]
    grouped = not standard.groups_optional
    if grouped:
        segments.append(header(standard.group, "7"))
    for number in range(1, messages + 1):
        segments.append(header(standard.message, f"M{number}"))
        segments += [content() for _ in range(contents)]
        segments.append(trailer(standard.message, contents + 2, f"M{number}"))
    if grouped:
        segments.append(trailer(standard.group, messages, "7"))
    segments.append(trailer(standard.interchange, 1 if grouped else messages, "000000001"))
    return segments


def run(standard: Standard, segments: list[Segment], *, end: bool = True) -> str | None:
    """Feed the engine as the validators do; the first error, or None."""
    engine = EnvelopeEngine(standard)
    try:
        for tag, elements in segments:
            if not engine.content(tag):
                engine.envelope(tag, elements)
        if end:
            engine.end_of_file()
    except EnvelopeError as exc:
        return str(exc)
    return None


def where(segments: list[Segment], tag: str) -> int:
    return next(i for i, (found, _) in enumerate(segments) if found == tag.encode())


both = pytest.mark.parametrize("standard", [X12, EDIFACT], ids=lambda standard: standard.name)


# --- the shared code path --------------------------------------------------------------------


def test_both_standards_are_checked_by_the_one_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[bytes]] = {"x12": [], "edifact": []}
    envelope = EnvelopeEngine.envelope

    def spy(self: EnvelopeEngine, tag: bytes, elements: list[bytes]) -> None:
        seen[self.standard.name].append(tag)
        envelope(self, tag, elements)

    monkeypatch.setattr(EnvelopeEngine, "envelope", spy)
    validate_stream([{"type": "x12"}], "po.x12", io.BytesIO(X12_850))
    validate_stream([{"type": "edifact"}], "orders.edi", io.BytesIO(ORDERS))
    assert seen["x12"] == [b"ISA", b"GS", b"ST", b"SE", b"GE", b"IEA"]
    assert seen["edifact"] == [b"UNB", b"UNH", b"UNT", b"UNZ"]
    # An envelope error in either standard comes from the same engine.
    with pytest.raises(ValidationError, match="SE01 segment count"):
        validate_stream([{"type": "x12"}], "po.x12", io.BytesIO(X12_850.replace(b"SE*15", b"SE*14")))
    with pytest.raises(ValidationError, match="UNT01 segment count"):
        validate_stream([{"type": "edifact"}], "o.edi", io.BytesIO(ORDERS.replace(b"UNT+16", b"UNT+15")))
    assert seen["x12"][-1] == b"SE" and seen["edifact"][-1] == b"UNT"


def test_the_validators_hold_only_syntax() -> None:
    for cls in (X12Validator, EdifactValidator):
        assert issubclass(cls, SegmentValidator)
        assert "_segment" not in vars(cls)  # segments go to the engine the same way for both
        assert isinstance(cls()._engine, EnvelopeEngine)
    assert (X12Validator.standard, EdifactValidator.standard) == (X12, EDIFACT)


# --- the rules, once for both standards --------------------------------------------------------


@both
def test_a_balanced_interchange_passes(standard: Standard) -> None:
    assert run(standard, interchange(standard)) is None
    assert run(standard, interchange(standard, messages=3, contents=0)) is None
    assert run(standard, interchange(standard) + interchange(standard)) is None


@both
@pytest.mark.parametrize("level", ["interchange", "group", "message"])
def test_counts_and_references_must_match(standard: Standard, level: str) -> None:
    envelope: Envelope = getattr(standard, level)
    segments = interchange(standard)
    if level == "group" and standard.groups_optional:
        segments = grouped(standard)
    at = where(segments, envelope.trailer)
    tag, (_, count, control) = segments[at]
    wrong_count = [*segments[:at], (tag, [tag, b"99", control]), *segments[at + 1 :]]
    error = run(standard, wrong_count)
    assert error is not None
    assert error.startswith(f"{envelope.trailer}01 {envelope.count} '99' does not match {int(count)} ")
    if envelope.scope:
        assert error.endswith(f" in {envelope.scope} {control.decode()}")
    wrong_control = [*segments[:at], (tag, [tag, count, b"NOPE"]), *segments[at + 1 :]]
    assert run(standard, wrong_control) == (
        f"{envelope.trailer}02 'NOPE' does not match {envelope.reference} '{control.decode()}'"
    )


def grouped(standard: Standard) -> list[Segment]:
    """One interchange holding one group of one message."""
    return [
        header(standard.interchange, "1"),
        header(standard.group, "G"),
        header(standard.message, "M"),
        content(),
        trailer(standard.message, 3, "M"),
        trailer(standard.group, 1, "G"),
        trailer(standard.interchange, 1, "1"),
    ]


@both
def test_what_each_count_counts(standard: Standard) -> None:
    segments = grouped(standard)
    segments[-1] = trailer(standard.interchange, 5, "1")
    assert run(standard, segments) == (
        f"{standard.interchange.trailer}01 {standard.interchange.count} '5' does not match 1 "
        f"{standard.group.plural}"
    )
    segments = grouped(standard)
    segments[-2] = trailer(standard.group, 5, "G")
    assert run(standard, segments) == (
        f"{standard.group.trailer}01 {standard.group.count} '5' does not match 1 "
        f"{standard.message.plural} in group G"
    )


@both
def test_misplaced_headers_and_trailers(standard: Standard) -> None:
    message, group, top = standard.message, standard.group, standard.interchange
    opened = [header(top, "1"), header(group, "G"), header(message, "M")]
    assert run(standard, [*opened, header(message, "M2")]) == message.inside
    assert run(standard, [*opened, header(group, "G2")]) == group.inside
    assert run(standard, [*opened, header(top, "2")]) == top.inside
    assert run(standard, [*opened, trailer(group, 1, "G")]) == group.early
    assert run(standard, [*opened, trailer(top, 1, "1")]) == top.early
    assert run(standard, [*opened[:2], trailer(message, 1, "M")]) == message.without
    assert run(standard, [*opened[:1], trailer(group, 0, "G")]) == group.without
    assert run(standard, [*opened[:1], content()]) == standard.outside_message
    assert run(standard, [*opened[:2], content()]) == standard.outside_message
    assert run(standard, [content()]) == f"expected {top.header} (interchange header)"


@both
def test_required_header_elements(standard: Standard) -> None:
    for envelope in standard.envelopes:
        for index, name in envelope.required:
            tag, elements = header(envelope, "C")
            elements[index] = b""
            segments = [header(standard.interchange, "1"), header(standard.group, "G")][: envelope.depth - 1]
            assert run(standard, [*segments, (tag, elements)]) == f"{name} is missing"


@both
def test_end_of_file_names_the_missing_trailer(standard: Standard) -> None:
    segments = interchange(standard)
    for cut in range(1, len(segments)):
        error = run(standard, segments[:cut])
        if error is None:  # everything before the cut is closed
            continue
        assert error.startswith("unexpected end of file: ") and error.endswith(" missing (file truncated?)")
    assert run(standard, grouped(standard)[:3]) == (
        f"unexpected end of file: {standard.message.trailer} missing (file truncated?)"
    )


@both
def test_content_is_counted_only_inside_a_message(standard: Standard) -> None:
    engine = EnvelopeEngine(standard)
    assert not engine.content(b"REF")  # nothing open: the envelope checks decide
    for tag, elements in grouped(standard)[:3]:
        engine.envelope(tag, elements)
    assert engine.content(b"REF") and engine.content(b"UNS")
    assert not engine.content(standard.message.trailer.encode())
    assert not engine.idle


# --- where the table differs -------------------------------------------------------------------


def test_x12_groups_are_required_and_ta1_may_sit_between_them() -> None:
    assert run(X12, [header(X12.interchange, "1"), header(X12.message, "M")]) == (
        "ST outside a GS functional group"
    )
    ta1_only = [header(X12.interchange, "1"), content("TA1"), trailer(X12.interchange, 0, "1")]
    assert run(X12, ta1_only) is None
    assert run(EDIFACT, [header(EDIFACT.interchange, "1"), content("TA1")]) == EDIFACT.outside_message


def test_edifact_holds_groups_or_messages_not_both() -> None:
    bare = interchange(EDIFACT, messages=2)
    assert run(EDIFACT, bare) is None
    assert bare[-1] == trailer(EDIFACT.interchange, 2, "000000001")  # UNZ01 counts the messages
    mixed = [*grouped(EDIFACT)[:-1], header(EDIFACT.message, "M9")]
    assert run(EDIFACT, mixed) == "an interchange holds either groups or messages, not both"
    mixed = [*interchange(EDIFACT)[:-1], header(EDIFACT.group, "G")]
    assert run(EDIFACT, mixed) == "an interchange holds either groups or messages, not both"
    empty = [header(EDIFACT.interchange, "1"), trailer(EDIFACT.interchange, 1, "1")]
    assert run(EDIFACT, empty) == "UNZ01 control count '1' does not match 0 messages"


def test_a_third_standard_is_one_more_row() -> None:
    """Nothing about X12 or EDIFACT is in the engine: a made-up standard works from its row."""

    def renamed(envelope: Envelope, head: str, tail: str) -> Envelope:
        return replace(envelope, header=head, trailer=tail, control=1, required=((1, f"{head}01"),))

    made_up = replace(
        EDIFACT,
        name="made-up",
        interchange=renamed(EDIFACT.interchange, "AAA", "ZZZ"),
        group=renamed(EDIFACT.group, "BBB", "YYY"),
        message=renamed(EDIFACT.message, "CCC", "XXX"),
    )
    segments = interchange(made_up)
    assert [tag for tag, _ in segments] == [b"AAA", b"CCC", b"REF", b"REF", b"XXX", b"ZZZ"]
    assert run(made_up, segments) is None
    assert run(made_up, segments[:-2]) == "unexpected end of file: XXX missing (file truncated?)"
    assert run(EDIFACT, segments) == "expected UNB (interchange header)"


def all_segments(standard: Standard) -> Iterator[str]:
    for envelope in standard.envelopes:
        yield envelope.header
        yield envelope.trailer


def test_the_table_rows_are_whole() -> None:
    for standard in (X12, EDIFACT):
        tags = list(all_segments(standard))
        assert len(set(tags)) == 6
        assert [e.depth for e in standard.envelopes] == [1, 2, 3]
        assert standard.message.early is None  # nothing is deeper than a message
        assert all(e.inside and e.without for e in standard.envelopes)

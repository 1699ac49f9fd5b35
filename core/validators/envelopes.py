"""One envelope engine for X12 and EDIFACT, driven by a table of the two standards' differences.

Both standards wrap their content in three envelopes, each a header segment and a trailer segment:

    level        X12          EDIFACT
    interchange  ISA … IEA    UNB … UNZ
    group        GS  … GE     UNG … UNE   (optional in EDIFACT: an interchange holds groups or messages)
    message      ST  … SE     UNH … UNT

and check them alike: envelopes nest and balance; a header carries a control reference that its
trailer's second element repeats; a trailer's first element counts what the envelope holds (a
message its segments, header and trailer included; a group its messages; an interchange its
groups, or its messages when it has no groups). What differs - the tags, which header element
holds the reference, what the errors call things - is data: one `Standard` row per standard
(`X12`, `EDIFACT`). The segment syntax (delimiters, release characters, the fixed ISA header)
is not here: see `core.validators.edi`, which feeds this engine one segment at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

INTERCHANGE, GROUP, MESSAGE = 1, 2, 3


class EnvelopeError(Exception):
    """The segment just given (or the end of the file) breaks the envelope rules; str() says why."""


@dataclass(frozen=True)
class Envelope:
    """One envelope level of one standard: its segments, and how errors about it read."""

    depth: int  # INTERCHANGE, GROUP or MESSAGE
    header: str
    trailer: str
    control: int  # the header element holding the control reference the trailer repeats
    required: tuple[tuple[int, str], ...]  # header elements that must not be empty, and their names
    reference: str  # how a trailer's mismatching reference names the header's
    count: str  # what the trailer's first element is, after its name ("segment count", ...)
    plural: str  # envelopes of this level, as their parent counts them ("ST segments", "messages")
    scope: str | None  # "in <scope> <reference>" ends a count mismatch; None: nothing
    outside: str | None  # the header where no envelope it may go in is open (None: cannot happen)
    inside: str  # the header while an envelope of its level (or deeper) is still open
    without: str  # the trailer with no envelope of its level open
    early: str | None  # the trailer while a deeper envelope is still open (None: nothing is deeper)


@dataclass(frozen=True)
class Standard:
    """A standard's three envelopes and the few rules that are not about one of them."""

    name: str
    interchange: Envelope
    group: Envelope
    message: Envelope
    groups_optional: bool  # messages may sit directly in the interchange (not both kinds in one)
    interchange_segments: frozenset[str]  # other segments allowed between the interchange's groups
    outside_message: str  # a content segment outside any message

    @property
    def envelopes(self) -> tuple[Envelope, Envelope, Envelope]:
        return self.interchange, self.group, self.message


X12 = Standard(
    name="x12",
    interchange=Envelope(
        depth=INTERCHANGE,
        header="ISA",
        trailer="IEA",
        control=13,
        required=((13, "ISA13 control number"),),
        reference="ISA13 control number",
        count="group count",
        plural="interchanges",
        scope=None,
        outside=None,
        inside="ISA inside an interchange (IEA missing)",
        without="IEA without ISA",
        early="IEA before GE",
    ),
    group=Envelope(
        depth=GROUP,
        header="GS",
        trailer="GE",
        control=6,
        required=((6, "GS06 control number"),),
        reference="GS06 control number",
        count="transaction set count",
        plural="GS segments",
        scope="group",
        outside="GS outside an ISA interchange",
        inside="GS before GE",
        without="GE without GS",
        early="GE before SE",
    ),
    message=Envelope(
        depth=MESSAGE,
        header="ST",
        trailer="SE",
        control=2,
        required=((2, "ST02 control number"),),
        reference="ST02 control number",
        count="segment count",
        plural="ST segments",
        scope="transaction set",
        outside="ST outside a GS functional group",
        inside="ST before SE",
        without="SE without ST",
        early=None,
    ),
    groups_optional=False,
    interchange_segments=frozenset({"TA1"}),  # interchange acknowledgments
    outside_message="segment outside an ST/SE transaction set",
)

EDIFACT = Standard(
    name="edifact",
    interchange=Envelope(
        depth=INTERCHANGE,
        header="UNB",
        trailer="UNZ",
        control=5,
        required=((5, "UNB05 interchange control reference"),),
        reference="UNB05",
        count="control count",
        plural="interchanges",
        scope=None,
        outside=None,
        inside="UNB inside an interchange (UNZ missing)",
        without="UNZ without UNB",
        early="UNZ before UNT/UNE",
    ),
    group=Envelope(
        depth=GROUP,
        header="UNG",
        trailer="UNE",
        control=5,
        required=((5, "UNG05 group reference number"),),
        reference="UNG05",
        count="message count",
        plural="groups",
        scope="group",
        outside="UNG outside an interchange",
        inside="UNG inside a group or message",
        without="UNE without UNG",
        early="UNE before UNT",
    ),
    message=Envelope(
        depth=MESSAGE,
        header="UNH",
        trailer="UNT",
        control=1,
        required=((1, "UNH01 message reference number"), (2, "UNH02 message identifier")),
        reference="UNH01",
        count="segment count",
        plural="messages",
        scope="message",
        outside="UNH outside an interchange",
        inside="UNH before UNT",
        without="UNT without UNH",
        early=None,
    ),
    groups_optional=True,
    interchange_segments=frozenset(),
    outside_message="segment outside a UNH/UNT message",
)


def _show(data: bytes) -> str:
    return data.decode("latin-1")


def _number(text: bytes) -> int | None:
    text = text.strip(b" ")
    return int(text) if text.isdigit() else None


@dataclass
class _Open:
    """An envelope whose trailer has not come yet."""

    envelope: Envelope
    control: bytes
    count: int = 0  # what its trailer will count
    holds: Envelope | None = None  # an interchange: the kind of envelope it holds, once known


class EnvelopeEngine:
    """Checks one standard's envelopes, segment by segment, for one file after another.

    Feed every segment's tag to `content`; when it answers False (the segment is not counted
    content of an open message), give the segment's elements to `envelope`. Both raise
    `EnvelopeError`. `end_of_file` checks that nothing is left open.
    """

    def __init__(self, standard: Standard) -> None:
        self.standard = standard
        self._message = standard.message
        self._roles: dict[bytes, tuple[Envelope, bool]] = {}
        for envelope in standard.envelopes:
            self._roles[envelope.header.encode()] = (envelope, True)
            self._roles[envelope.trailer.encode()] = (envelope, False)
        self._extra = frozenset(tag.encode() for tag in standard.interchange_segments)
        self._open: list[_Open] = []
        self._in_message: _Open | None = None  # the open message, if one is: content is counted

    def reset(self) -> None:
        """Forget every open envelope."""
        self._open = []
        self._in_message = None

    @property
    def idle(self) -> bool:
        """Between interchanges: nothing is open."""
        return not self._open

    def content(self, tag: bytes) -> bool:
        """True, and counted, if a segment with this tag is content of the open message."""
        message = self._in_message
        if message is None or tag in self._roles:
            return False
        message.count += 1
        return True

    def envelope(self, tag: bytes, elements: Sequence[bytes]) -> None:
        """Check a segment that `content` did not take; elements[0] is the tag, the rest its
        elements as the syntax reads them (components and release characters resolved)."""
        standard = self.standard
        if not self._open and tag != standard.interchange.header.encode():
            raise EnvelopeError(f"expected {standard.interchange.header} (interchange header)")
        role = self._roles.get(tag)
        if role is None:
            if self._depth() == INTERCHANGE and tag in self._extra:
                return
            raise EnvelopeError(standard.outside_message)
        envelope, is_header = role
        if is_header:
            self._header(envelope, elements)
        else:
            self._trailer(envelope, elements)

    def end_of_file(self) -> None:
        if self._open:
            missing = self._open[-1].envelope.trailer
            raise EnvelopeError(f"unexpected end of file: {missing} missing (file truncated?)")

    def _depth(self) -> int:
        return self._open[-1].envelope.depth if self._open else 0

    def _header(self, envelope: Envelope, elements: Sequence[bytes]) -> None:
        depth = self._depth()
        if depth >= envelope.depth:
            raise EnvelopeError(envelope.inside)
        parents = {envelope.depth - 1}
        if envelope is self._message and self.standard.groups_optional:
            parents.add(INTERCHANGE)
        if depth not in parents:
            raise EnvelopeError(envelope.outside or envelope.inside)
        parent = self._open[-1] if self._open else None
        if parent is not None and parent.envelope.depth == INTERCHANGE:
            if parent.holds is not None and parent.holds is not envelope:
                raise EnvelopeError("an interchange holds either groups or messages, not both")
            parent.holds = envelope
        for index, name in envelope.required:
            if not _element(elements, index):
                raise EnvelopeError(f"{name} is missing")
        if parent is not None:
            parent.count += 1
        opened = _Open(envelope, _element(elements, envelope.control))
        if envelope is self._message:
            opened.count = 1  # a message's count includes its header
            self._in_message = opened
        self._open.append(opened)

    def _trailer(self, envelope: Envelope, elements: Sequence[bytes]) -> None:
        depth = self._depth()
        if depth < envelope.depth:
            raise EnvelopeError(envelope.without)
        if depth > envelope.depth:
            raise EnvelopeError(envelope.early or envelope.without)
        current = self._open[-1]
        if envelope is self._message:
            current.count += 1  # the trailer itself
        count, reference = _element(elements, 1), _element(elements, 2)
        if _number(count) != current.count:
            scope = f" in {envelope.scope} {_show(current.control)}" if envelope.scope else ""
            raise EnvelopeError(
                f"{envelope.trailer}01 {envelope.count} {_show(count)!r} does not match "
                f"{current.count} {self._counted(current)}{scope}"
            )
        if reference != current.control:
            raise EnvelopeError(
                f"{envelope.trailer}02 {_show(reference)!r} does not match {envelope.reference} "
                f"{_show(current.control)!r}"
            )
        self._open.pop()
        self._in_message = None

    def _counted(self, current: _Open) -> str:
        """What an envelope's count counts, in words."""
        if current.envelope is self._message:
            return "segments"
        if current.envelope.depth == GROUP:
            return self._message.plural
        held = current.holds or (self._message if self.standard.groups_optional else self.standard.group)
        return held.plural


def _element(elements: Sequence[bytes], index: int) -> bytes:
    return elements[index] if index < len(elements) else b""

"""Route an X12 or EDIFACT file by its envelopes: read them while streaming, pick a destination from a
rule table, and return what was read so a transfer can record it.

What is read (values as text, surrounding spaces stripped, EDIFACT release characters resolved):

    key        X12                          EDIFACT
    sender     ISA06 interchange sender id  UNB02 sender identification (first component)
    receiver   ISA08 interchange receiver   UNB03 recipient identification (first component)
    GS         GS01 functional id ("PO")    -
    ST         ST01 transaction set ("850") -
    UNH        -                            UNH02 message type (first component, "ORDERS")

The file is parsed by the validators' one parser and envelope engine (`core.validators.edi`), so
a file that routes is also a well-formed interchange (balanced envelopes, counts and control
numbers agree); X12 takes its delimiters from the ISA, EDIFACT from a UNA when there is one.

Matching. A file may hold several interchanges, groups and transaction sets (messages). Each
transaction set (EDIFACT: message) is routed on its own values - its interchange's sender and
receiver, its group's GS01 and its own ST01 (UNH02); an interchange with no transaction set at all
(an X12 TA1 acknowledgment only) is routed on its sender and receiver alone. A rule matches when
every key it names equals the value exactly (case-sensitive); a key the standard has not (GS, ST
for EDIFACT; UNH for X12) never equals anything; a rule naming only ``dest`` matches everything
(a catch-all, put it last). The first matching rule wins. The file is routed when every
transaction set routes to the same destination; it is refused when one matches no rule (the
reason names its values) or when two route to different destinations (the reason names both).
Refusal comes as soon as it is known, without reading the rest of the file.

Memory stays flat: besides the parser's one-segment carry-over, only the distinct value
combinations are kept (at most `MAX_COMBINATIONS`, each value at most `MAX_VALUE_LENGTH`
characters), with a count of the transaction sets that had each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, BinaryIO

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, ValidationError

from core.validators import CHUNK_SIZE
from core.validators import ValidationError as EdiSyntaxError
from core.validators.edi import EdifactValidator, SegmentValidator, X12Validator

# Distinct (sender, receiver, GS, ST/UNH) combinations one file may hold, and the longest value
# read. Real interchanges have a handful of combinations and values of at most 35 characters;
# the limits keep a hostile file from growing memory.
MAX_COMBINATIONS = 1000
MAX_VALUE_LENGTH = 256
# Blank bytes (spaces, line breaks) allowed before the first ISA / UNA / UNB.
MAX_LEADING_WHITESPACE = 64 * 1024

KEYS = ("sender", "receiver", "GS", "ST", "UNH")
_BOM = b"\xef\xbb\xbf"
_SPACE = b" \t\r\n"

Value = Annotated[str, StringConstraints(min_length=1, max_length=MAX_VALUE_LENGTH)]


class RouteRule(BaseModel):
    """One row of the table: the envelope values to match (all the keys given) and the destination."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sender: Value | None = None
    receiver: Value | None = None
    GS: Value | None = None
    ST: Value | None = None
    UNH: Value | None = None
    dest: Annotated[str, StringConstraints(min_length=1)]

    def conditions(self) -> dict[str, str]:
        """The keys this rule names, with their values."""
        return {key: value for key in KEYS if (value := getattr(self, key)) is not None}

    def matches(self, values: dict[str, str | None]) -> bool:
        return all(values.get(key) == wanted for key, wanted in self.conditions().items())


class RouteRules(RootModel[list[RouteRule]]):
    """The rule table: a non-empty list of rules, tried in order."""

    root: Annotated[list[RouteRule], Field(min_length=1)]

    @classmethod
    def parse(cls, rules: str | Sequence[Any] | RouteRules) -> RouteRules:
        """From JSON text (``--param rules='[...]'``) or a list of dicts; ValueError says what is wrong."""
        if isinstance(rules, RouteRules):
            return rules
        try:
            if isinstance(rules, str):
                return cls.model_validate_json(rules)
            return cls.model_validate(list(rules))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'rules'}: {err['msg']}" for err in exc.errors()
            )
            raise ValueError(
                f"invalid edi-route rules ({problems}); expected a list like "
                '[{"ST": "850", "dest": "erp-orders"}] with keys sender, receiver, GS, ST, UNH, dest'
            ) from None

    def route(self, values: dict[str, str | None]) -> tuple[int, str] | None:
        """The first rule matching `values`: its position (from 1) and destination; or None."""
        for position, rule in enumerate(self.root, 1):
            if rule.matches(values):
                return position, rule.dest
        return None


@dataclass
class Combination:
    """One distinct set of envelope values, how many transaction sets (messages) had it, and where
    it routes: the rule that matched (its position in the table, from 1) and its destination. A
    value the standard has not is None."""

    sender: str
    receiver: str
    GS: str | None
    ST: str | None
    UNH: str | None
    rule: int
    dest: str
    count: int = 1

    def values(self) -> dict[str, str | None]:
        return {key: getattr(self, key) for key in KEYS}

    def as_dict(self) -> dict[str, Any]:
        shown = {key: value for key, value in self.values().items() if value is not None}
        return {**shown, "count": self.count, "rule": self.rule, "dest": self.dest}


@dataclass
class EdiEnvelope:
    """What was read: the standard, how many interchanges and transaction sets (messages), and
    every distinct combination of values with its count and destination."""

    standard: str  # "x12" or "edifact"
    interchanges: int = 0
    messages: int = 0
    combinations: list[Combination] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the transfer's record and the run's artifact."""
        return {
            "standard": self.standard,
            "interchanges": self.interchanges,
            "messages": self.messages,
            "combinations": [c.as_dict() for c in self.combinations],
        }


@dataclass(frozen=True)
class RouteResult:
    """Where the file goes, what its envelopes said, and its size and SHA-256 as read."""

    dest: str
    envelope: EdiEnvelope
    size: int
    sha256: str


class EdiRouteError(Exception):
    """A file edi-route refuses. `reason` says why; `envelope` holds what was read before the
    refusal (None when nothing could be read). Subclasses say which refusal it is."""

    def __init__(self, reason: str, envelope: EdiEnvelope | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.envelope = envelope


class UnreadableEnvelope(EdiRouteError):
    """Not a well-formed X12 or EDIFACT interchange (a broken ISA, unbalanced envelopes, ...)."""


class NoMatchingRule(EdiRouteError):
    """A transaction set (message) whose envelope values match no rule."""


class ConflictingRoutes(EdiRouteError):
    """Transaction sets of one file that route to different destinations."""


def _describe(values: dict[str, str | None]) -> str:
    return ", ".join(f"{key} {value!r}" for key, value in values.items() if value is not None)


class _Router:
    """Collects envelope values segment by segment and routes each transaction set as it is seen."""

    def __init__(self, standard: str, rules: RouteRules, reader: SegmentValidator) -> None:
        self.rules = rules
        self.reader = reader
        self.envelope = EdiEnvelope(standard)
        self._by_values: dict[tuple[str | None, ...], Combination] = {}
        self._sender = self._receiver = ""
        self._gs: str | None = None
        self._messages_here = 0  # transaction sets (messages) in the open interchange

    def text(self, elements: list[bytes], index: int) -> str:
        raw = elements[index] if index < len(elements) else b""
        value = self.reader.value(raw).strip(" ")
        if len(value) > MAX_VALUE_LENGTH:
            tag = self.reader.value(elements[0])
            raise UnreadableEnvelope(
                f"{tag}{index:02d} is {len(value)} characters long (at most {MAX_VALUE_LENGTH} are read)",
                self.envelope,
            )
        return value

    def interchange(self, sender: str, receiver: str) -> None:
        self.envelope.interchanges += 1
        self._sender, self._receiver = sender, receiver
        self._gs = None
        self._messages_here = 0

    def group(self, gs: str | None) -> None:
        self._gs = gs

    def message(self, st: str | None, unh: str | None) -> None:
        self.envelope.messages += 1
        self._messages_here += 1
        self._add(self._gs, st, unh)

    def interchange_end(self) -> None:
        if self._messages_here == 0:  # e.g. an X12 interchange holding only a TA1
            self._add(None, None, None)

    def _where(self) -> str:
        envelope = self.envelope
        unit = "transaction set" if envelope.standard == "x12" else "message"
        where = f"{envelope.standard} interchange {envelope.interchanges}"
        return where + (f", {unit} {envelope.messages}" if self._messages_here else "")

    def _add(self, gs: str | None, st: str | None, unh: str | None) -> None:
        key = (self._sender, self._receiver, gs, st, unh)
        known = self._by_values.get(key)
        if known is not None:
            known.count += 1
            return
        values: dict[str, str | None] = dict(zip(KEYS, key, strict=True))
        routed = self.rules.route(values)
        if routed is None:
            raise NoMatchingRule(
                f"no edi-route rule matches {_describe(values)} ({self._where()})",
                self.envelope,
            )
        rule, dest = routed
        first = self.envelope.combinations[0] if self.envelope.combinations else None
        if first is not None and dest != first.dest:
            raise ConflictingRoutes(
                f"one file routes to two destinations: {_describe(first.values())} → {first.dest!r}, "
                f"but {_describe(values)} → {dest!r} (send them as separate files)",
                self.envelope,
            )
        if len(self._by_values) >= MAX_COMBINATIONS:
            raise UnreadableEnvelope(
                f"more than {MAX_COMBINATIONS} distinct envelope value combinations in one file",
                self.envelope,
            )
        combination = Combination(*key, rule=rule, dest=dest)
        self._by_values[key] = combination
        self.envelope.combinations.append(combination)


class _X12Reader(X12Validator):
    router: _Router

    def envelope_segment(self, tag: bytes, elements: list[bytes]) -> None:
        router = self.router
        if tag == b"ISA":
            router.interchange(router.text(elements, 6), router.text(elements, 8))
        elif tag == b"GS":
            router.group(router.text(elements, 1))
        elif tag == b"ST":
            router.message(router.text(elements, 1), None)
        elif tag == b"IEA":
            router.interchange_end()


class _EdifactReader(EdifactValidator):
    router: _Router

    def envelope_segment(self, tag: bytes, elements: list[bytes]) -> None:
        router = self.router
        if tag == b"UNB":
            router.interchange(router.text(elements, 2), router.text(elements, 3))
        elif tag == b"UNH":
            router.message(None, router.text(elements, 2))
        elif tag == b"UNZ":
            router.interchange_end()


def _detect(head: bytes) -> str | None:
    """ "x12", "edifact", or None when `head` does not start an interchange of either."""
    start = head[len(_BOM) :] if head.startswith(_BOM) else head
    start = start.lstrip(_SPACE)
    if start.startswith(b"ISA"):
        return "x12"
    if start.startswith((b"UNA", b"UNB")):
        return "edifact"
    return None


def route_stream(
    stream: BinaryIO,
    rules: str | Sequence[Any] | RouteRules,
    name: str = "",
    chunk_size: int = CHUNK_SIZE,
) -> RouteResult:
    """Read `stream` to its end once and route it by `rules` (see the module's docstring).

    Returns the destination, the envelope values (`RouteResult.envelope.as_dict()` for the record)
    and the size and SHA-256 of what was read. Raises `UnreadableEnvelope`, `NoMatchingRule` or
    `ConflictingRoutes` (all `EdiRouteError`), and ValueError for a bad rule table.
    """
    table = RouteRules.parse(rules)
    sha = hashlib.sha256()
    size = 0
    head = b""
    while True:  # read until the first non-blank bytes say which standard this is
        chunk = stream.read(chunk_size)
        head += chunk
        stripped = head.removeprefix(_BOM).lstrip(_SPACE)
        if len(head) - len(stripped) > MAX_LEADING_WHITESPACE:
            raise UnreadableEnvelope(
                f"more than {MAX_LEADING_WHITESPACE} blank bytes before the interchange (is it EDI at all?)"
            )
        if not chunk or len(stripped) >= 3:
            break
    standard = _detect(head)
    if standard is None:
        shown = head.removeprefix(_BOM).lstrip(_SPACE)[:3]
        found = f"found {shown.decode('latin-1')!r}" if shown else "the file is empty"
        raise UnreadableEnvelope(
            f"not an X12 or EDIFACT interchange: expected ISA, UNA or UNB at the start, {found}"
        )
    reader: _X12Reader | _EdifactReader = _X12Reader() if standard == "x12" else _EdifactReader()
    router = _Router(standard, table, reader)
    reader.router = router
    reader.start(name)
    chunk = head
    try:
        while chunk:
            size += len(chunk)
            sha.update(chunk)
            reader.feed(chunk)
            chunk = stream.read(chunk_size)
        digest = sha.hexdigest()
        reader.finish(size, digest)
    except EdiSyntaxError as exc:
        raise UnreadableEnvelope(str(exc), router.envelope) from None
    envelope = router.envelope
    return RouteResult(dest=envelope.combinations[0].dest, envelope=envelope, size=size, sha256=digest)

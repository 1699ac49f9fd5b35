"""``x12`` and ``edifact``: interchanges cut into segments as they stream, each segment checked by the
one envelope engine (`core.validators.envelopes`) with its standard's row of the table.

What is the standards' own here is syntax: how an interchange header sets the delimiters (X12's
fixed-length ISA; EDIFACT's optional UNA service string advice), where a segment ends (EDIFACT's
release character escapes a terminator), and how an element is read. Segment contents are not
checked against an implementation guide.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from typing import ClassVar, NoReturn

from core.validators.base import NoParams, register
from core.validators.envelopes import EDIFACT, X12, EnvelopeEngine, EnvelopeError, Standard

# Longest X12 / EDIFACT segment accepted. Real segments are a few hundred bytes at most; the limit
# only keeps memory bounded when a file has no segment terminators at all.
MAX_SEGMENT_BYTES = 1024 * 1024

_SEGMENT_ID = re.compile(rb"[A-Z0-9]{2,3}")
_BOM = b"\xef\xbb\xbf"
_HEADER_SPACE = b" \t\r\n"


def _show(data: bytes) -> str:
    return data.decode("latin-1")


class SegmentValidator(NoParams):
    """The shared driver: a header sets the delimiters, then segments are cut out of the stream
    (at most `MAX_SEGMENT_BYTES` carried between chunks) and handed to the envelope engine.

    A standard's validator names its `standard` (its row of the envelope table) and implements
    the syntax: `_header`, `_find_end`, `_tag` and `_elements`.
    """

    reads_content = True
    standard: ClassVar[Standard]

    def __init__(self) -> None:
        self._engine = EnvelopeEngine(self.standard)
        self.start("")

    def start(self, name: str) -> None:
        self._buf = b""
        self._in_header = True  # between interchanges: expecting a header
        self._seen_any = False  # an interchange has started
        self._at_start = True  # at the very start of the file (a BOM may come)
        self._segno = 0  # segments so far in the file
        self._term = b"~"
        self._engine.reset()
        self._reset_syntax()

    @abstractmethod
    def _reset_syntax(self) -> None:
        """Back to the default delimiters."""

    @abstractmethod
    def _header(self, buf: bytes, pos: int, final: bool) -> int:
        """Parse an interchange header at buf[pos:] (not whitespace). Returns the index after
        what was consumed, or -1 if more bytes are needed."""

    @abstractmethod
    def _find_end(self, buf: bytes, pos: int) -> int:
        """Index of the terminator ending the segment that starts at buf[pos:], or -1."""

    @abstractmethod
    def _tag(self, seg: bytes) -> bytes:
        """The segment's tag; fails if it is not a valid one."""

    @abstractmethod
    def _elements(self, seg: bytes) -> list[bytes]:
        """The tag, then each element's value as the envelope checks read it."""

    def _tag_end(self) -> bytes:
        """Characters that may end a tag (stripped from it in error messages)."""
        return b""

    def envelope_segment(self, tag: bytes, elements: list[bytes]) -> None:
        """Called with each envelope segment (header or trailer) the engine has accepted: its tag,
        then the tag and each element's value as `_elements` reads them. Does nothing here; a reader
        of envelope values (`core.transforms.edi_route`) overrides it, so the one parser serves both."""

    def value(self, raw: bytes) -> str:
        """An element's value as text: release characters resolved, UTF-8 if it decodes, else Latin-1."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    def _fail_at(self, seg: bytes | None, reason: str) -> NoReturn:
        where = f"segment {self._segno}"
        if seg is not None:
            sid = seg[:3].rstrip(self._tag_end())
            where += f" ({_show(sid)})"
        self.fail(f"{where}: {reason}")

    def _segment(self, seg: bytes) -> None:
        """Check one segment (without terminator and surrounding line breaks)."""
        tag = self._tag(seg)
        if self._engine.content(tag):
            return
        elements = self._elements(seg)
        try:
            self._engine.envelope(tag, elements)
        except EnvelopeError as exc:
            self._fail_at(seg, str(exc))
        self.envelope_segment(tag, elements)
        if self._engine.idle:  # the interchange ended: a header comes next
            self._in_header = True

    def feed(self, chunk: bytes) -> None:
        self._run(chunk, final=False)

    def finish(self, size: int, sha256: str) -> None:
        self._run(b"", final=True)
        self._end_of_file()

    def _end_of_file(self) -> None:
        if not self._seen_any:
            self.fail(f"no {self.standard.interchange.header} interchange found (the file is empty)")
        try:
            self._engine.end_of_file()
        except EnvelopeError as exc:
            self.fail(str(exc))

    def _run(self, chunk: bytes, final: bool) -> None:
        buf = self._buf + chunk if self._buf else chunk
        pos = 0
        n = len(buf)
        if self._at_start:
            if n < len(_BOM) and _BOM.startswith(buf) and not final:
                self._buf = buf
                return
            self._at_start = False
            if buf.startswith(_BOM):
                pos = len(_BOM)
        while pos < n:
            if self._in_header:
                while pos < n and buf[pos] in _HEADER_SPACE:
                    pos += 1
                if pos == n:
                    break
                end = self._header(buf, pos, final)
                if end < 0:
                    break
                pos = end
                self._in_header = False
                self._seen_any = True
                continue
            end = self._find_end(buf, pos)
            if end < 0:
                if final and buf[pos:].strip(b"\r\n"):
                    self._segno += 1
                    self._fail_at(buf[pos:].strip(b"\r\n"), "segment has no terminator (file truncated?)")
                if n - pos > MAX_SEGMENT_BYTES:
                    self._segno += 1
                    self._fail_at(None, f"segment longer than {MAX_SEGMENT_BYTES} bytes")
                if final:
                    pos = n
                break
            if end - pos > MAX_SEGMENT_BYTES:
                self._segno += 1
                self._fail_at(None, f"segment longer than {MAX_SEGMENT_BYTES} bytes")
            seg = buf[pos:end].strip(b"\r\n")
            pos = end + len(self._term)
            self._segno += 1
            self._segment(seg)
        self._buf = buf[pos:]


# --------------------------------------------------------------------------------------------
# X12

# Offsets of the element separators in the fixed-length ISA segment.
_ISA_SEPARATORS = (3, 6, 17, 20, 31, 34, 50, 53, 69, 76, 81, 83, 89, 99, 101, 103)
_ISA_LENGTH = 106


@register
class X12Validator(SegmentValidator):
    """``{"type": "x12"}``: an ASC X12 interchange with balanced, consistent envelopes.

    The fixed-length ISA header gives the element separator (position 3), component separator
    (ISA16, position 104) and segment terminator (position 105). Then: GS/GE and ST/SE nest and
    balance, SE01 counts the transaction set's segments (ST and SE included), GE01 counts its STs,
    IEA01 counts GSs, and ISA13/IEA02, GS06/GE02, ST02/SE02 match. Line breaks after segment
    terminators are allowed; several interchanges may follow each other. Segment contents are not
    checked against an implementation guide. BIN segments (binary data) are not supported.
    """

    type = "x12"
    standard = X12

    def _reset_syntax(self) -> None:
        self._sep = b"*"

    def _header(self, buf: bytes, pos: int, final: bool) -> int:
        head = buf[pos : pos + _ISA_LENGTH]
        if len(head) < 3 and not final:
            return -1
        if head[:3] != b"ISA":
            self._segno += 1
            what = "after IEA" if self._seen_any else "at the start"
            self.fail(f"segment {self._segno}: expected ISA {what}, found {_show(head[:3])!r}")
        if len(head) < _ISA_LENGTH:
            if not final:
                return -1
            self._segno += 1
            self.fail(f"segment {self._segno} (ISA): truncated ISA header ({len(head)} of 106 characters)")
        self._segno += 1
        sep = head[3:4]
        comp = head[104:105]
        term = head[105:106]
        if sep.isalnum() or any(head[i : i + 1] != sep for i in _ISA_SEPARATORS):
            self._fail_at(
                head,
                "ISA must be 106 characters with its element separator "
                f"{_show(sep)!r} exactly at the fixed positions (16 fixed-width elements)",
            )
        if term in (sep, comp) or comp == sep or term.isalnum() or comp.isalnum():
            self._fail_at(head, "separators in ISA (element, component, segment terminator) must differ")
        if head.count(sep) != len(_ISA_SEPARATORS):
            self._fail_at(head, f"element separator {_show(sep)!r} inside an ISA element")
        if not head[90:99].isdigit():
            self._fail_at(head, f"ISA13 control number {_show(head[90:99])!r} must be 9 digits")
        self._engine.reset()
        self._sep = sep
        self._term = term
        self._segment(head[:105])  # the ISA opens the interchange, as any header segment would
        return pos + _ISA_LENGTH

    def _find_end(self, buf: bytes, pos: int) -> int:
        return buf.find(self._term, pos)

    def _tag_end(self) -> bytes:
        return self._sep

    def _tag(self, seg: bytes) -> bytes:
        cut = seg.find(self._sep)
        sid = seg if cut < 0 else seg[:cut]
        if not _SEGMENT_ID.fullmatch(sid):
            self._fail_at(None, f"invalid segment id {_show(seg[:20])!r}")
        return sid

    def _elements(self, seg: bytes) -> list[bytes]:
        return [element.strip(b" ") for element in seg.split(self._sep)]


# --------------------------------------------------------------------------------------------
# EDIFACT

_UNA_DEFAULT = b":+.? '"
_UNOB_DEFAULT = b"\x1f\x1d.  \x1c"  # syntax level B: IS1..IS4 separators, no release character


@register
class EdifactValidator(SegmentValidator):
    """``{"type": "edifact"}``: a UN/EDIFACT interchange with balanced, consistent envelopes.

    An optional ``UNA`` service string advice (6 characters: component separator, data element
    separator, decimal mark, release character, reserved/repetition, segment terminator; default
    ``:+.? '``) sets the delimiters. Then UNB…UNZ, with either UNH…UNT messages or UNG…UNE groups of
    them: UNT01 counts the message's segments (UNH and UNT included), UNT02 = UNH01, UNE01 counts a
    group's messages, UNE02 = UNG05, UNZ01 counts messages (or groups), UNZ02 = UNB05. Release
    characters escape delimiters; line breaks between segments are allowed.
    """

    type = "edifact"
    standard = EDIFACT

    def _reset_syntax(self) -> None:
        self._set_delimiters(_UNA_DEFAULT)

    def _set_delimiters(self, una: bytes) -> None:
        self._comp = una[0:1]
        self._sep = una[1:2]
        rel = una[3:4]
        self._rel = b"" if rel == b" " else rel
        self._term = una[5:6]

    def _tag_end(self) -> bytes:
        return self._sep + self._comp

    def _header(self, buf: bytes, pos: int, final: bool) -> int:
        head = buf[pos : pos + 9]
        if len(head) < 4 and not final:
            return -1
        if head.startswith(b"UNA"):
            if len(head) < 9:
                if not final:
                    return -1
                self._segno += 1
                self.fail(f"segment {self._segno} (UNA): truncated service string advice")
            self._segno += 1
            una = head[3:9]
            comp, sep, dec, rel, _, term = (una[i : i + 1] for i in range(6))
            delimiters = [comp, sep, term] + ([rel] if rel != b" " else [])
            if len(set(delimiters)) != len(delimiters) or dec not in (b".", b","):
                self.fail(
                    f"segment {self._segno} (UNA): invalid service string advice {_show(una)!r} "
                    "(separators must differ; decimal mark '.' or ',')"
                )
            self._engine.reset()
            self._set_delimiters(una)
            return pos + 9
        if head[:3] == b"UNB" or (final and b"UNB".startswith(head)):
            self._engine.reset()
            self._set_delimiters(_UNOB_DEFAULT if head[3:4] == b"\x1d" else _UNA_DEFAULT)
            return pos  # the UNB itself is a segment like any other
        self._segno += 1
        what = "after UNZ" if self._seen_any else "at the start"
        self.fail(f"segment {self._segno}: expected UNA or UNB {what}, found {_show(head[:3])!r}")

    def _end_of_file(self) -> None:
        if self._seen_any and not self._in_header and self._engine.idle:
            self.fail("unexpected end of file after UNA: UNB missing")
        super()._end_of_file()

    def _find_end(self, buf: bytes, pos: int) -> int:
        term, rel = self._term, self._rel
        end = buf.find(term, pos)
        if not rel:
            return end
        while end >= 0:
            k = end
            while k > pos and buf[k - 1 : k] == rel:
                k -= 1
            if (end - k) % 2 == 0:
                return end
            end = buf.find(term, end + 1)
        return end

    def value(self, raw: bytes) -> str:
        rel = self._rel
        if rel and rel in raw:
            out = bytearray()
            i, n = 0, len(raw)
            while i < n:
                if raw[i : i + 1] == rel and i + 1 < n:
                    i += 1  # the released character stands for itself
                out += raw[i : i + 1]
                i += 1
            raw = bytes(out)
        return super().value(raw)

    def _split(self, data: bytes, sep: bytes) -> list[bytes]:
        """Split on `sep`, honouring the release character (values keep their escapes)."""
        rel = self._rel
        if not rel or rel not in data:
            return data.split(sep)
        parts: list[bytes] = []
        start = i = 0
        n = len(data)
        while i < n:
            c = data[i : i + 1]
            if c == rel:
                i += 2
                continue
            if c == sep:
                parts.append(data[start:i])
                start = i + 1
            i += 1
        parts.append(data[start:])
        return parts

    def _tag(self, seg: bytes) -> bytes:
        tag = seg[:3]
        if len(tag) != 3 or not _SEGMENT_ID.fullmatch(tag) or seg[3:4] not in (b"", self._sep, self._comp):
            self._fail_at(None, f"invalid segment tag {_show(seg[:20])!r}")
        return tag

    def _elements(self, seg: bytes) -> list[bytes]:
        # An element's value is its first component.
        return [self._split(element, self._comp)[0].strip(b" ") for element in self._split(seg, self._sep)]

"""``json``: RFC 8259 well-formedness, checked by a streaming tokenizer that keeps only the bracket
stack and an unfinished token between chunks.

Why not a library: the standard library's `json` wants the whole document in memory; ijson
streams, but reports errors in yajl's words ("lexical error: invalid char in json text" under a
snippet of the text) where this check says line and column as `json` does, and the messages
users see (and tests assert) would change.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from typing import Any, NoReturn, Self

from core.validators.base import NoParams, check_keys, register

# Grammar states of the JSON tokenizer: what may come next.
_J_VALUE = 0  # a value (top level, or after ':')
_J_ARR_FIRST = 1  # a value or ']' (just after '[')
_J_ARR_NEXT = 2  # a value (after ',' in an array)
_J_KEY_FIRST = 3  # a key or '}' (just after '{')
_J_KEY_NEXT = 4  # a key (after ',' in an object)
_J_COLON = 5  # ':'
_J_AFTER = 6  # ',' or the closing bracket
_J_DONE = 7  # only whitespace

_WS = r"[ \t\n\r]*+"
_STR = r'"[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+"'
_NUM = r"-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+"
_SCALAR = rf"(?:{_STR}|{_NUM}|true|false|null)"
# A scalar, or an array / object holding only scalars: the fast path swallows whole runs of these.
_FLAT = (
    rf"(?:{_SCALAR}"
    rf"|\[{_WS}(?:{_SCALAR}{_WS}(?:,{_WS}{_SCALAR}{_WS})*+)?+\]"
    rf"|\{{{_WS}(?:{_STR}{_WS}:{_WS}{_SCALAR}{_WS}(?:,{_WS}{_STR}{_WS}:{_WS}{_SCALAR}{_WS})*+)?+\}})"
)
_ARRAY_RUN = re.compile(rf"(?:{_FLAT}{_WS},{_WS})*+(?P<close>{_FLAT}{_WS}\])?+")
_PAIR = rf"{_STR}{_WS}:{_WS}{_FLAT}{_WS}"
_OBJECT_RUN = re.compile(rf"(?:{_PAIR},{_WS})*+(?P<close>{_PAIR}\}})?+")
# Where a fast path applies: the state it starts in -> (its pattern, the state after a run).
_RUNS = {
    _J_ARR_FIRST: (_ARRAY_RUN, _J_ARR_NEXT),
    _J_ARR_NEXT: (_ARRAY_RUN, _J_ARR_NEXT),
    _J_KEY_FIRST: (_OBJECT_RUN, _J_KEY_NEXT),
    _J_KEY_NEXT: (_OBJECT_RUN, _J_KEY_NEXT),
}
_WS_RE = re.compile(_WS)
_STRING_BODY = re.compile(r'[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+')
_PARTIAL_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?")
_NUMBER_RE = re.compile(_NUM)
_NUMBER_RUN = re.compile(r"[0-9eE.+\-]+")
_LONG_DIGITS = re.compile(r"[0-9]{3,}")
_LITERALS = {"t": "true", "f": "false", "n": "null"}
_WS_CHARS = " \t\n\r"


@register
class JsonValidator(NoParams):
    """``{"type": "json"}`` (optionally ``"max_depth": N``, default 512): well-formed RFC 8259 JSON.

    The document must be UTF-8 (a leading BOM is ignored) and hold exactly one value. Errors say
    where: ``"json: line 3 column 5: Expecting ',' delimiter"``.

    A small tokenizer walks the text chunk by chunk keeping only the bracket stack (at most
    `max_depth` entries) and an unfinished token (a partial literal, a partial escape, or a number
    with its digit runs shortened). Runs of scalars and flat arrays/objects are matched by one
    regular expression each, so typical documents cost a few regex calls per chunk.
    """

    type = "json"
    reads_content = True

    def __init__(self, max_depth: int = 512) -> None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise ValueError(f"'max_depth' must be a positive integer, got {max_depth!r}")
        self.max_depth = max_depth
        self.start("")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        check_keys(params, {"max_depth"})
        return cls(params.get("max_depth", 512))

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": self.type}
        if self.max_depth != 512:
            spec["max_depth"] = self.max_depth
        return spec

    def start(self, name: str) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._fed = 0  # bytes given to the decoder
        self._at_start = True  # no text seen yet (a BOM may come)
        self._state = _J_VALUE
        self._stack: list[str] = []
        self._in_string = False
        self._string_is_key = False
        self._string_at = (1, 1)
        self._carry = ""  # unfinished token, possibly shortened
        # Position (line, column; 1-based) of the first character of the carry (or of the next
        # character if there is no carry), and the carry's real length before shortening.
        self._line = 1
        self._col = 1
        self._carry_real = 0

    def feed(self, chunk: bytes) -> None:
        self._scan(self._decode(chunk, final=False), final=False)

    def finish(self, size: int, sha256: str) -> None:
        self._scan(self._decode(b"", final=True), final=True)
        if self._in_string:
            line, col = self._string_at
            self.fail(f"line {line} column {col}: Unterminated string")
        if self._state != _J_DONE:
            where = f"line {self._line} column {self._col}"
            if self._stack:
                kind = "array" if self._stack[-1] == "[" else "object"
                self.fail(f"{where}: Unexpected end of document: unclosed {kind}")
            if self._state == _J_VALUE and self._fed == 0:
                self.fail(f"{where}: Expecting value (the document is empty)")
            self.fail(f"{where}: Expecting value")

    # -- internals ---------------------------------------------------------------------------

    def _decode(self, data: bytes, final: bool) -> str:
        pending = len(self._decoder.getstate()[0])
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            # Check the text before the bad bytes first, so the first error in the document wins
            # whatever the chunking.
            valid = (exc.object[: exc.start]).decode("utf-8")
            self._scan(self._strip_bom(valid), final=False)
            offset = self._fed - pending + exc.start
            self.fail(f"invalid UTF-8 at byte {offset}: {exc.reason}")
        self._fed += len(data)
        return self._strip_bom(text)

    def _strip_bom(self, text: str) -> str:
        if self._at_start and text:
            self._at_start = False
            if text[0] == "\ufeff":
                return text[1:]
        return text

    def _where(self, buf: str, clen: int, p: int) -> tuple[int, int]:
        """Line and column of buf[p]; positions inside the carry map to the carry's start."""
        if p <= 0 or p < clen:
            return self._line, self._col
        nl = buf.count("\n", clen, p)
        if nl == 0:
            return self._line, self._col + self._carry_real + (p - clen)
        return self._line + nl, p - buf.rfind("\n", clen, p)

    def _error(self, buf: str, clen: int, p: int, message: str) -> NoReturn:
        line, col = self._where(buf, clen, p)
        self.fail(f"line {line} column {col}: {message}")

    def _string(self, buf: str, clen: int, j: int, final: bool) -> tuple[bool, int]:
        """Continue a string at buf[j]. Returns (True, index after the closing quote) or
        (False, index where the unfinished part to carry starts)."""
        j = _STRING_BODY.match(buf, j).end()  # type: ignore[union-attr]
        n = len(buf)
        if j == n:
            return False, n
        c = buf[j]
        if c == '"':
            return True, j + 1
        if c == "\\":
            if not final and _PARTIAL_ESCAPE.fullmatch(buf, j):
                return False, j
            if buf.startswith("\\u", j):
                self._error(buf, clen, j, "Invalid \\uXXXX escape")
            self._error(buf, clen, j, "Invalid \\escape")
        self._error(buf, clen, j, "Invalid control character in string")

    def _scan(self, text: str, final: bool) -> None:
        carry = self._carry
        buf = carry + text if carry else text
        clen = len(carry)
        n = len(buf)
        if n == 0:
            return
        stack = self._stack
        state = self._state
        max_depth = self.max_depth
        i = 0
        keep_from = n  # where the carry for the next call starts
        shorten = False

        if self._in_string:
            closed, j = self._string(buf, clen, 0, final)
            if not closed:
                keep_from = j
                i = n  # skip the loop
            else:
                self._in_string = False
                i = j
                state = _J_COLON if self._string_is_key else (_J_AFTER if stack else _J_DONE)

        while i < n:
            c = buf[i]
            if c in _WS_CHARS:
                i = _WS_RE.match(buf, i).end()  # type: ignore[union-attr]
                continue
            # Fast path: a run of flat values inside an array or object.
            run = _RUNS.get(state)
            if run is not None and len(stack) < max_depth:
                m = run[0].match(buf, i)
                assert m is not None
                if m.end() > i:
                    i = m.end()
                    if m.start("close") >= 0:
                        stack.pop()
                        state = _J_AFTER if stack else _J_DONE
                    else:
                        state = run[1]
                    continue

            if state <= _J_ARR_NEXT:  # a value
                if c == "{" or c == "[":
                    if len(stack) >= max_depth:
                        self._error(buf, clen, i, f"nesting deeper than {max_depth} levels")
                    stack.append(c)
                    state = _J_KEY_FIRST if c == "{" else _J_ARR_FIRST
                    i += 1
                elif c == "]" and state == _J_ARR_FIRST:
                    stack.pop()
                    state = _J_AFTER if stack else _J_DONE
                    i += 1
                elif c == '"':
                    closed, j = self._string(buf, clen, i + 1, final)
                    if not closed:
                        self._in_string, self._string_is_key = True, False
                        self._string_at = self._where(buf, clen, i)
                        keep_from = j
                        break
                    state = _J_AFTER if stack else _J_DONE
                    i = j
                elif c == "-" or "0" <= c <= "9":
                    j = _NUMBER_RUN.match(buf, i).end()  # type: ignore[union-attr]
                    token = buf[i:j]
                    if j == n and not final:
                        if not (_NUMBER_RE.fullmatch(token) or _NUMBER_RE.fullmatch(token + "0")):
                            self._error(buf, clen, i, "Invalid number")
                        keep_from, shorten = i, True
                        break
                    if not _NUMBER_RE.fullmatch(token):
                        self._error(buf, clen, i, "Invalid number")
                    state = _J_AFTER if stack else _J_DONE
                    i = j
                elif c in _LITERALS:
                    word = _LITERALS[c]
                    if buf.startswith(word, i):
                        state = _J_AFTER if stack else _J_DONE
                        i += len(word)
                    elif not final and n - i < len(word) and word.startswith(buf[i:]):
                        keep_from = i
                        break
                    else:
                        self._error(buf, clen, i, "Expecting value")
                else:
                    self._error(buf, clen, i, "Expecting value")
            elif state <= _J_KEY_NEXT:  # a key
                if c == '"':
                    closed, j = self._string(buf, clen, i + 1, final)
                    if not closed:
                        self._in_string, self._string_is_key = True, True
                        self._string_at = self._where(buf, clen, i)
                        keep_from = j
                        break
                    state = _J_COLON
                    i = j
                elif c == "}" and state == _J_KEY_FIRST:
                    stack.pop()
                    state = _J_AFTER if stack else _J_DONE
                    i += 1
                else:
                    self._error(buf, clen, i, "Expecting property name enclosed in double quotes")
            elif state == _J_COLON:
                if c != ":":
                    self._error(buf, clen, i, "Expecting ':' delimiter")
                state = _J_VALUE
                i += 1
            elif state == _J_AFTER:
                top = stack[-1]
                if c == ",":
                    state = _J_ARR_NEXT if top == "[" else _J_KEY_NEXT
                elif (c == "]" and top == "[") or (c == "}" and top == "{"):
                    stack.pop()
                    state = _J_AFTER if stack else _J_DONE
                else:
                    self._error(buf, clen, i, "Expecting ',' delimiter")
                i += 1
            else:
                self._error(buf, clen, i, "Extra data")

        self._state = state
        # Remember where the next call starts: the carry's position and real length.
        if keep_from == 0 and clen:  # nothing consumed: the carry grew
            self._carry_real += n - clen
        else:
            self._line, self._col = self._where(buf, clen, keep_from)
            self._carry_real = len(buf) - keep_from
        rest = buf[keep_from:]
        if shorten and len(rest) > 8:
            # Digit runs do not change whether a number prefix can still become valid.
            rest = _LONG_DIGITS.sub(lambda m: m.group()[:2], rest)
        self._carry = rest

"""File checks a data flow runs before delivery: size, name, checksum and document well-formedness.

A data flow stores its checks as JSON specs, for example::

    [{"type": "max_size", "bytes": 1048576}, {"type": "name", "pattern": "*.json"}, {"type": "json"}]

`parse_specs` turns specs into `Validator` objects and raises `ValueError` for an unknown type or
bad parameters, so a data flow with a broken check is refused when it is created, not when a file
arrives. `parse_cli_spec` turns the command line's short forms ("max_size=1MiB", "json",
"name=*.csv") into specs.

Every check streams. A validator is driven as::

    v.start(name)        # once, with the file's name (may already raise, e.g. `name`)
    v.feed(chunk)        # for each chunk, in order (may raise as soon as the file is known bad)
    v.finish(size, sha)  # once, with the total size and lowercase hex SHA-256

and raises `ValidationError` on the first problem it finds. Memory stays bounded whatever the file
size: no validator keeps the whole file, only a small carry-over between chunks (an unfinished
token, segment or escape). `start` resets a validator, so one object may check many files one
after the other (not concurrently). `ValidationRun` drives a list of validators over one pass and
computes size and SHA-256 on the way; `validate_stream` does that for a binary stream.

Well-formedness checks:

* ``json``: RFC 8259 with a streaming tokenizer (UTF-8, optional BOM, one top-level value,
  nesting limited by ``max_depth``, default 512).
* ``xml``: namespace-aware expat, fed incrementally. Entity declarations are refused (no XXE,
  no billion laughs) and external entities and DTDs are never loaded; a plain DOCTYPE is fine.
* ``x12``: the ISA header (fixed 106 characters) sets the separators; ISA/IEA, GS/GE and ST/SE
  must nest and balance, with matching control numbers and counts.
* ``edifact``: optional UNA service string advice, then UNB/UNZ, optional UNG/UNE and UNH/UNT
  with matching references and counts; release characters are honoured.
"""

from __future__ import annotations

import codecs
import hashlib
import posixpath
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from typing import Any, BinaryIO, ClassVar, NoReturn, Self
from xml.parsers import expat

__all__ = [
    "CHUNK_SIZE",
    "EdifactValidator",
    "JsonValidator",
    "MaxSizeValidator",
    "MinSizeValidator",
    "NameValidator",
    "Sha256Validator",
    "ValidationError",
    "ValidationRun",
    "Validator",
    "X12Validator",
    "XmlValidator",
    "parse_cli_spec",
    "parse_size",
    "parse_specs",
    "validate_stream",
    "validator_types",
]

CHUNK_SIZE = 1024 * 1024

# Longest X12 / EDIFACT segment accepted. Real segments are a few hundred bytes at most; the limit
# only keeps memory bounded when a file has no segment terminators at all.
MAX_SEGMENT_BYTES = 1024 * 1024


class ValidationError(Exception):
    """A file failed a check. `check` is the validator type, `reason` says why.

    ``str(error)`` is ``"<check>: <reason>"``, e.g. ``"max_size: 2048 bytes > limit 1024"``.
    """

    def __init__(self, check: str, reason: str) -> None:
        super().__init__(f"{check}: {reason}")
        self.check = check
        self.reason = reason


class Validator(ABC):
    """One check over one file, streamed: `start`, then `feed` for every chunk, then `finish`.

    Subclasses set `type` (the spec's ``"type"``), implement `from_params` (validate the spec's
    other keys, raising ValueError) and `to_spec`, and override whichever of the three steps they
    need. Each step raises `ValidationError` as soon as the file is known to be bad. `reads_content`
    is False for checks that only need the name, size or checksum.
    """

    type: ClassVar[str]
    reads_content: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """Build from a spec without its "type" key. Raises ValueError for bad or unknown keys."""

    @abstractmethod
    def to_spec(self) -> dict[str, Any]:
        """The canonical JSON spec (``parse_specs([v.to_spec()])`` rebuilds an equal validator)."""

    def start(self, name: str) -> None:  # noqa: B027 - optional hook
        """Begin a new file called `name` (a path or bare name); resets any previous state."""

    def feed(self, chunk: bytes) -> None:  # noqa: B027 - optional hook
        """Take the next chunk of the file."""

    def finish(self, size: int, sha256: str) -> None:  # noqa: B027 - optional hook
        """The file ended: `size` bytes in all, lowercase hex `sha256`."""

    def fail(self, reason: str) -> NoReturn:
        raise ValidationError(self.type, reason)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.to_spec()!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Validator):
            return NotImplemented
        return type(self) is type(other) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.to_spec().items())))


# --------------------------------------------------------------------------------------------
# spec parsing


_REGISTRY: dict[str, type[Validator]] = {}


def _register(cls: type[Validator]) -> type[Validator]:
    _REGISTRY[cls.type] = cls
    return cls


def validator_types() -> list[str]:
    """The known validator type names, sorted."""
    return sorted(_REGISTRY)


def _check_keys(params: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed)) if allowed else "none"
        raise ValueError(f"unknown parameter {unknown[0]!r} (expected: {expected})")


_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tib": 1024**4,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}


def parse_size(value: int | str) -> int:
    """A byte count from an int or a string such as ``"1024"``, ``"1MiB"``, ``"1.5 GiB"``, ``"10MB"``.

    KiB/MiB/GiB/TiB and bare K/M/G/T are powers of 1024; KB/MB/GB/TB are powers of 1000.
    Raises ValueError for negative, fractional-byte or malformed values.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"size must be a whole number of bytes or a string like '1MiB', not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    m = _SIZE_RE.fullmatch(value)
    if m is None or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"invalid size {value!r} (examples: 1024, 512KiB, 1MiB, 2GB)")
    try:
        amount = Decimal(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"invalid size {value!r}") from exc
    if amount != amount.to_integral_value():
        raise ValueError(f"size {value!r} is not a whole number of bytes")
    return int(amount)


def parse_specs(specs: Sequence[Mapping[str, Any]]) -> list[Validator]:
    """Validators for a data flow's spec list. Raises ValueError naming the bad entry."""
    if isinstance(specs, str | bytes | Mapping) or not isinstance(specs, Sequence):
        raise ValueError("validators must be a list of objects like {'type': 'json'}")
    result: list[Validator] = []
    for index, spec in enumerate(specs, 1):
        if not isinstance(spec, Mapping):
            raise ValueError(f"validator {index}: expected an object like {{'type': 'json'}}, got {spec!r}")
        kind = spec.get("type")
        if not isinstance(kind, str):
            raise ValueError(f"validator {index}: missing 'type' (one of: {', '.join(validator_types())})")
        cls = _REGISTRY.get(kind)
        if cls is None:
            raise ValueError(
                f"validator {index}: unknown type {kind!r} (one of: {', '.join(validator_types())})"
            )
        params = {k: v for k, v in spec.items() if k != "type"}
        try:
            result.append(cls.from_params(params))
        except ValueError as exc:
            raise ValueError(f"validator {index} ({kind}): {exc}") from exc
    return result


def parse_cli_spec(text: str) -> dict[str, Any]:
    """A spec from the command line's short form; raises ValueError if it is not valid.

    ``json``, ``xml``, ``x12``, ``edifact``; ``json=64`` (maximum nesting depth);
    ``max_size=1MiB``, ``min_size=1`` (sizes as in `parse_size`); ``name=*.csv`` (glob);
    ``regex=^PO_\\d+\\.x12$`` (name regex); ``sha256=<64 hex digits>``. ``-`` may replace ``_``
    (``max-size=10MB``).
    """
    kind, sep, value = text.strip().partition("=")
    kind = kind.strip().lower().replace("-", "_")
    spec: dict[str, Any]
    if kind in ("json", "xml", "x12", "edifact"):
        spec = {"type": kind}
        if sep:
            if kind != "json":
                raise ValueError(f"validator {kind!r} takes no value (got {text!r})")
            try:
                spec["max_depth"] = int(value)
            except ValueError:
                raise ValueError(f"json=N wants a maximum nesting depth, got {value!r}") from None
    elif kind in ("max_size", "min_size", "name", "regex", "sha256"):
        if not sep or not value:
            raise ValueError(f"validator {kind!r} needs a value: {kind}=...")
        if kind in ("max_size", "min_size"):
            spec = {"type": kind, "bytes": parse_size(value)}
        elif kind == "name":
            spec = {"type": "name", "pattern": value}
        elif kind == "regex":
            spec = {"type": "name", "regex": value}
        else:
            spec = {"type": "sha256", "value": value.strip()}
    else:
        known = "json, xml, x12, edifact, max_size=SIZE, min_size=SIZE, name=GLOB, regex=RE, sha256=HEX"
        raise ValueError(f"unknown validator {text!r} (one of: {known})")
    parse_specs([spec])
    return spec


# --------------------------------------------------------------------------------------------
# running


class ValidationRun:
    """Validators driven over one pass of one file, computing its size and SHA-256 on the way.

    Use it to validate while the bytes go somewhere else (e.g. into storage)::

        run = ValidationRun(specs, "po_850.x12")
        for chunk in chunks:
            run.feed(chunk)
            out.write(chunk)
        size, sha256 = run.finish()

    `specs` may mix JSON specs and `Validator` objects. Raises ValidationError at the first failure.
    """

    def __init__(self, specs: Sequence[Mapping[str, Any] | Validator], name: str) -> None:
        validators: list[Validator] = []
        for spec in specs:
            validators.extend([spec] if isinstance(spec, Validator) else parse_specs([spec]))
        self.validators = validators
        self.name = name
        self.size = 0
        self._sha = hashlib.sha256()
        for v in validators:
            v.start(name)

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        self._sha.update(chunk)
        for v in self.validators:
            v.feed(chunk)

    def finish(self) -> tuple[int, str]:
        """Run the end-of-file checks; returns ``(size, sha256)``."""
        digest = self._sha.hexdigest()
        for v in self.validators:
            v.finish(self.size, digest)
        return self.size, digest


def validate_stream(
    specs: Sequence[Mapping[str, Any] | Validator],
    name: str,
    stream: BinaryIO,
    chunk_size: int = CHUNK_SIZE,
) -> tuple[int, str]:
    """Read `stream` to its end once, running every check; returns ``(size, sha256)``.

    Raises ValidationError at the first failure (reading stops there), ValueError for bad specs.
    """
    run = ValidationRun(specs, name)
    while chunk := stream.read(chunk_size):
        run.feed(chunk)
    return run.finish()


# --------------------------------------------------------------------------------------------
# name, size, checksum


@_register
class MaxSizeValidator(Validator):
    """``{"type": "max_size", "bytes": N}``: the file has at most N bytes (fails while streaming)."""

    type = "max_size"

    def __init__(self, limit: int | str) -> None:
        self.limit = parse_size(limit)
        self._seen = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        _check_keys(params, {"bytes"})
        if "bytes" not in params:
            raise ValueError("'bytes' is required")
        return cls(parse_size(params["bytes"]))

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, "bytes": self.limit}

    def start(self, name: str) -> None:
        self._seen = 0

    def feed(self, chunk: bytes) -> None:
        self._seen += len(chunk)
        if self._seen > self.limit:
            self.fail(f"at least {self._seen} bytes > limit {self.limit}")

    def finish(self, size: int, sha256: str) -> None:
        if size > self.limit:
            self.fail(f"{size} bytes > limit {self.limit}")


@_register
class MinSizeValidator(Validator):
    """``{"type": "min_size", "bytes": N}``: the file has at least N bytes."""

    type = "min_size"

    def __init__(self, minimum: int | str) -> None:
        self.minimum = parse_size(minimum)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        _check_keys(params, {"bytes"})
        if "bytes" not in params:
            raise ValueError("'bytes' is required")
        return cls(parse_size(params["bytes"]))

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, "bytes": self.minimum}

    def finish(self, size: int, sha256: str) -> None:
        if size < self.minimum:
            self.fail(f"{size} bytes < minimum {self.minimum}")


@_register
class NameValidator(Validator):
    """``{"type": "name", "pattern": "*.json"}`` or ``{"type": "name", "regex": "^PO_\\d+\\.x12$"}``.

    A glob (fnmatch, case-sensitive) is matched against the file's base name, or against the
    whole name if the pattern contains "/". A regex must match the whole base name (or the whole
    name if it contains "/"). ``"ignore_case": true`` makes either case-insensitive.
    """

    type = "name"

    def __init__(
        self, *, pattern: str | None = None, regex: str | None = None, ignore_case: bool = False
    ) -> None:
        if (pattern is None) == (regex is None):
            raise ValueError("give exactly one of 'pattern' (a glob like '*.json') or 'regex'")
        text = pattern if pattern is not None else regex
        if not isinstance(text, str) or not text:
            raise ValueError("'pattern' / 'regex' must be a non-empty string")
        if not isinstance(ignore_case, bool):
            raise ValueError("'ignore_case' must be true or false")
        self.pattern = pattern
        self.regex = regex
        self.ignore_case = ignore_case
        self._full_path = "/" in text
        if regex is not None:
            try:
                self._compiled = re.compile(regex, re.IGNORECASE if ignore_case else 0)
            except re.error as exc:
                raise ValueError(f"invalid regex {regex!r}: {exc}") from None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        _check_keys(params, {"pattern", "regex", "ignore_case"})
        return cls(
            pattern=params.get("pattern"),
            regex=params.get("regex"),
            ignore_case=params.get("ignore_case", False),
        )

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": self.type}
        if self.pattern is not None:
            spec["pattern"] = self.pattern
        else:
            spec["regex"] = self.regex
        if self.ignore_case:
            spec["ignore_case"] = True
        return spec

    def matches(self, name: str) -> bool:
        subject = name if self._full_path else posixpath.basename(name)
        if self.regex is not None:
            return self._compiled.fullmatch(subject) is not None
        assert self.pattern is not None
        if self.ignore_case:
            return fnmatchcase(subject.lower(), self.pattern.lower())
        return fnmatchcase(subject, self.pattern)

    def start(self, name: str) -> None:
        if not self.matches(name):
            how = f"pattern {self.pattern!r}" if self.pattern is not None else f"regex {self.regex!r}"
            self.fail(f"{name!r} does not match {how}")


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@_register
class Sha256Validator(Validator):
    """``{"type": "sha256", "value": "<64 hex digits>"}``: the file's SHA-256 (any case)."""

    type = "sha256"

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise ValueError(f"'value' must be 64 hexadecimal digits, got {value!r}")
        self.value = value.lower()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        _check_keys(params, {"value"})
        if "value" not in params:
            raise ValueError("'value' is required")
        return cls(params["value"])

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, "value": self.value}

    def finish(self, size: int, sha256: str) -> None:
        if sha256.lower() != self.value:
            self.fail(f"got {sha256.lower()}, expected {self.value}")


class _NoParams(Validator):
    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        _check_keys(params, set())
        return cls()

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type}


# --------------------------------------------------------------------------------------------
# JSON

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
_WS_RE = re.compile(_WS)
_STRING_BODY = re.compile(r'[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+')
_PARTIAL_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?")
_NUMBER_RE = re.compile(_NUM)
_NUMBER_RUN = re.compile(r"[0-9eE.+\-]+")
_LONG_DIGITS = re.compile(r"[0-9]{3,}")
_LITERALS = {"t": "true", "f": "false", "n": "null"}
_WS_CHARS = " \t\n\r"


@_register
class JsonValidator(_NoParams):
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
        _check_keys(params, {"max_depth"})
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
            if state in (_J_ARR_FIRST, _J_ARR_NEXT) and len(stack) < max_depth:
                m = _ARRAY_RUN.match(buf, i)
                assert m is not None
                if m.end() > i:
                    i = m.end()
                    if m.start("close") >= 0:
                        stack.pop()
                        state = _J_AFTER if stack else _J_DONE
                    else:
                        state = _J_ARR_NEXT
                    continue
            elif state in (_J_KEY_FIRST, _J_KEY_NEXT) and len(stack) < max_depth:
                m = _OBJECT_RUN.match(buf, i)
                assert m is not None
                if m.end() > i:
                    i = m.end()
                    if m.start("close") >= 0:
                        stack.pop()
                        state = _J_AFTER if stack else _J_DONE
                    else:
                        state = _J_KEY_NEXT
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


# --------------------------------------------------------------------------------------------
# XML


@_register
class XmlValidator(_NoParams):
    """``{"type": "xml"}``: a well-formed, namespace-well-formed XML document (expat, streamed).

    Entity declarations (internal or external, general or parameter) are refused, which rules out
    XXE and entity-expansion bombs; external DTDs and entities are never fetched. A DOCTYPE that
    only names a DTD (as cXML does) is accepted.
    """

    type = "xml"
    reads_content = True

    def __init__(self) -> None:
        self.start("")

    def start(self, name: str) -> None:
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.EntityDeclHandler = self._entity_decl
        parser.UnparsedEntityDeclHandler = self._unparsed_entity_decl
        parser.ExternalEntityRefHandler = self._external_entity
        self._parser = parser
        self._done = False

    def _refuse(self, what: str) -> NoReturn:
        p = self._parser
        self.fail(f"line {p.CurrentLineNumber} column {p.CurrentColumnNumber + 1}: {what} not allowed")

    def _entity_decl(self, name: str, is_parameter: int, *args: object) -> None:
        self._refuse(f"entity declaration {'%' if is_parameter else '&'}{name};")

    def _unparsed_entity_decl(self, name: str, *args: object) -> None:
        self._refuse(f"unparsed entity declaration {name}")

    def _external_entity(self, *args: object) -> int:
        self._refuse("external entity")

    def _parse(self, data: bytes, final: bool) -> None:
        try:
            self._parser.Parse(data, final)
        except expat.ExpatError as exc:
            self.fail(f"line {exc.lineno} column {exc.offset + 1}: {expat.ErrorString(exc.code)}")

    def feed(self, chunk: bytes) -> None:
        self._parse(chunk, False)

    def finish(self, size: int, sha256: str) -> None:
        self._parse(b"", True)


# --------------------------------------------------------------------------------------------
# segment streams (X12 and EDIFACT)

_SEGMENT_ID = re.compile(rb"[A-Z0-9]{2,3}")
_BOM = b"\xef\xbb\xbf"
_HEADER_SPACE = b" \t\r\n"


def _show(data: bytes) -> str:
    return data.decode("latin-1")


def _number(text: bytes) -> int | None:
    text = text.strip(b" ")
    return int(text) if text.isdigit() else None


class _SegmentValidator(_NoParams):
    """Shared driver: a header parser sets the delimiters, then segments are split and checked."""

    reads_content = True

    def __init__(self) -> None:
        self.start("")

    def start(self, name: str) -> None:
        self._buf = b""
        self._in_header = True  # between interchanges: expecting a header
        self._seen_any = False  # an interchange has started
        self._at_start = True  # at the very start of the file (a BOM may come)
        self._segno = 0  # segments so far in the file
        self._term = b"~"
        self._reset()

    @abstractmethod
    def _reset(self) -> None:
        """Forget the current interchange."""

    @abstractmethod
    def _header(self, buf: bytes, pos: int, final: bool) -> int:
        """Parse an interchange header at buf[pos:] (not whitespace). Returns the index after
        what was consumed, or -1 if more bytes are needed."""

    @abstractmethod
    def _find_end(self, buf: bytes, pos: int) -> int:
        """Index of the terminator ending the segment that starts at buf[pos:], or -1."""

    @abstractmethod
    def _segment(self, seg: bytes) -> None:
        """Check one segment (without terminator and surrounding line breaks)."""

    @abstractmethod
    def _end_of_file(self) -> None:
        """Checks once all bytes are in."""

    def _fail_at(self, seg: bytes | None, reason: str) -> NoReturn:
        where = f"segment {self._segno}"
        if seg is not None:
            sid = seg[:3].rstrip(self._tag_end())
            where += f" ({_show(sid)})"
        self.fail(f"{where}: {reason}")

    def _tag_end(self) -> bytes:
        return b""

    def feed(self, chunk: bytes) -> None:
        self._run(chunk, final=False)

    def finish(self, size: int, sha256: str) -> None:
        self._run(b"", final=True)
        self._end_of_file()

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


@_register
class X12Validator(_SegmentValidator):
    """``{"type": "x12"}``: an ASC X12 interchange with balanced, consistent envelopes.

    The fixed-length ISA header gives the element separator (position 3), component separator
    (ISA16, position 104) and segment terminator (position 105). Then: GS/GE and ST/SE nest and
    balance, SE01 counts the transaction set's segments (ST and SE included), GE01 counts its STs,
    IEA01 counts GSs, and ISA13/IEA02, GS06/GE02, ST02/SE02 match. Line breaks after segment
    terminators are allowed; several interchanges may follow each other. Segment contents are not
    checked against an implementation guide. BIN segments (binary data) are not supported.
    """

    type = "x12"

    def _reset(self) -> None:
        self._sep = b"*"
        self._level = 0  # 0 none, 1 in ISA, 2 in GS, 3 in ST
        self._isa13 = b""
        self._gs_count = 0
        self._gs06 = b""
        self._st_count = 0
        self._st02 = b""
        self._st_segments = 0

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
        self._reset()
        self._sep = sep
        self._term = term
        self._level = 1
        self._isa13 = head[90:99]
        return pos + _ISA_LENGTH

    def _find_end(self, buf: bytes, pos: int) -> int:
        return buf.find(self._term, pos)

    def _tag_end(self) -> bytes:
        return self._sep

    def _segment(self, seg: bytes) -> None:
        sep = self._sep
        cut = seg.find(sep)
        sid = seg if cut < 0 else seg[:cut]
        if not _SEGMENT_ID.fullmatch(sid):
            self._fail_at(None, f"invalid segment id {_show(seg[:20])!r}")
        level = self._level
        if level == 3 and sid not in (b"SE", b"ST", b"GS", b"GE", b"ISA", b"IEA"):
            self._st_segments += 1
            return
        el = seg.split(sep)

        def elem(i: int) -> bytes:
            return el[i].strip(b" ") if i < len(el) else b""

        if sid == b"ST":
            if level != 2:
                self._fail_at(seg, "ST outside a GS functional group" if level < 3 else "ST before SE")
            if not elem(2):
                self._fail_at(seg, "ST02 control number is missing")
            self._level = 3
            self._st_count += 1
            self._st02 = elem(2)
            self._st_segments = 1
        elif sid == b"SE":
            if level != 3:
                self._fail_at(seg, "SE without ST")
            self._st_segments += 1
            count = _number(elem(1))
            if count != self._st_segments:
                self._fail_at(
                    seg,
                    f"SE01 segment count {_show(elem(1))!r} does not match {self._st_segments} "
                    f"segments in transaction set {_show(self._st02)}",
                )
            if elem(2) != self._st02:
                self._fail_at(
                    seg, f"SE02 {_show(elem(2))!r} does not match ST02 control number {_show(self._st02)!r}"
                )
            self._level = 2
        elif sid == b"GS":
            if level != 1:
                self._fail_at(seg, "GS outside an ISA interchange" if level == 0 else "GS before GE")
            if not elem(6):
                self._fail_at(seg, "GS06 control number is missing")
            self._level = 2
            self._gs_count += 1
            self._gs06 = elem(6)
            self._st_count = 0
        elif sid == b"GE":
            if level != 2:
                self._fail_at(seg, "GE before SE" if level == 3 else "GE without GS")
            count = _number(elem(1))
            if count != self._st_count:
                self._fail_at(
                    seg,
                    f"GE01 transaction set count {_show(elem(1))!r} does not match {self._st_count} "
                    f"ST segments in group {_show(self._gs06)}",
                )
            if elem(2) != self._gs06:
                self._fail_at(
                    seg, f"GE02 {_show(elem(2))!r} does not match GS06 control number {_show(self._gs06)!r}"
                )
            self._level = 1
        elif sid == b"IEA":
            if level != 1:
                self._fail_at(seg, "IEA before GE" if level > 1 else "IEA without ISA")
            count = _number(elem(1))
            if count != self._gs_count:
                self._fail_at(
                    seg,
                    f"IEA01 group count {_show(elem(1))!r} does not match {self._gs_count} GS segments",
                )
            if elem(2) != self._isa13:
                self._fail_at(
                    seg,
                    f"IEA02 {_show(elem(2))!r} does not match ISA13 control number {_show(self._isa13)!r}",
                )
            self._level = 0
            self._in_header = True
        elif sid == b"ISA":
            self._fail_at(seg, "ISA inside an interchange (IEA missing)")
        elif level == 1 and sid == b"TA1":
            pass  # interchange acknowledgment, allowed between ISA and GS
        else:
            self._fail_at(seg, "segment outside an ST/SE transaction set")

    def _end_of_file(self) -> None:
        if not self._seen_any:
            self.fail("no ISA interchange found (the file is empty)")
        if self._level:
            missing = {1: "IEA", 2: "GE", 3: "SE"}[self._level]
            self.fail(f"unexpected end of file: {missing} missing (file truncated?)")


# --------------------------------------------------------------------------------------------
# EDIFACT

_UNA_DEFAULT = b":+.? '"
_UNOB_DEFAULT = b"\x1f\x1d.  \x1c"  # syntax level B: IS1..IS4 separators, no release character


@_register
class EdifactValidator(_SegmentValidator):
    """``{"type": "edifact"}``: a UN/EDIFACT interchange with balanced, consistent envelopes.

    An optional ``UNA`` service string advice (6 characters: component separator, data element
    separator, decimal mark, release character, reserved/repetition, segment terminator; default
    ``:+.? '``) sets the delimiters. Then UNB…UNZ, with either UNH…UNT messages or UNG…UNE groups of
    them: UNT01 counts the message's segments (UNH and UNT included), UNT02 = UNH01, UNE01 counts a
    group's messages, UNE02 = UNG05, UNZ01 counts messages (or groups), UNZ02 = UNB05. Release
    characters escape delimiters; line breaks between segments are allowed.
    """

    type = "edifact"

    def _reset(self) -> None:
        self._set_delimiters(_UNA_DEFAULT)
        self._level = 0  # 0 none, 1 in UNB, 2 in UNG, 3 in UNH
        self._unb05 = b""
        self._count = 0  # messages or groups directly in the interchange
        self._uses_groups: bool | None = None
        self._ung05 = b""
        self._group_messages = 0
        self._unh01 = b""
        self._msg_segments = 0
        self._expect_unb = False

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
            self._reset()
            self._set_delimiters(una)
            self._expect_unb = True
            return pos + 9
        if head[:3] == b"UNB" or (final and b"UNB".startswith(head)):
            self._reset()
            if head[3:4] == b"\x1d":
                self._set_delimiters(_UNOB_DEFAULT)
            self._expect_unb = True
            return pos
        self._segno += 1
        what = "after UNZ" if self._seen_any else "at the start"
        self.fail(f"segment {self._segno}: expected UNA or UNB {what}, found {_show(head[:3])!r}")

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

    def _segment(self, seg: bytes) -> None:
        tag = seg[:3]
        if len(tag) != 3 or not _SEGMENT_ID.fullmatch(tag) or seg[3:4] not in (b"", self._sep, self._comp):
            self._fail_at(None, f"invalid segment tag {_show(seg[:20])!r}")
        level = self._level
        if self._expect_unb:
            if tag != b"UNB":
                self._fail_at(seg, "expected UNB (interchange header)")
            self._expect_unb = False
        if level == 3 and not tag.startswith(b"UN"):
            self._msg_segments += 1
            return
        el = self._split(seg, self._sep)

        def elem(i: int, comp: int = 0) -> bytes:
            if i >= len(el):
                return b""
            parts = self._split(el[i], self._comp)
            return parts[comp].strip(b" ") if comp < len(parts) else b""

        if tag == b"UNB":
            if level != 0:
                self._fail_at(seg, "UNB inside an interchange (UNZ missing)")
            if not elem(5):
                self._fail_at(seg, "UNB05 interchange control reference is missing")
            self._level = 1
            self._unb05 = elem(5)
        elif tag == b"UNG":
            if level != 1:
                self._fail_at(
                    seg, "UNG outside an interchange" if level == 0 else "UNG inside a group or message"
                )
            if self._uses_groups is False:
                self._fail_at(seg, "an interchange holds either groups or messages, not both")
            self._uses_groups = True
            if not elem(5):
                self._fail_at(seg, "UNG05 group reference number is missing")
            self._level = 2
            self._count += 1
            self._ung05 = elem(5)
            self._group_messages = 0
        elif tag == b"UNE":
            if level != 2:
                self._fail_at(seg, "UNE before UNT" if level == 3 else "UNE without UNG")
            count = _number(elem(1))
            if count != self._group_messages:
                self._fail_at(
                    seg,
                    f"UNE01 message count {_show(elem(1))!r} does not match {self._group_messages} "
                    f"messages in group {_show(self._ung05)}",
                )
            if elem(2) != self._ung05:
                self._fail_at(seg, f"UNE02 {_show(elem(2))!r} does not match UNG05 {_show(self._ung05)!r}")
            self._level = 1
        elif tag == b"UNH":
            if level == 0:
                self._fail_at(seg, "UNH outside an interchange")
            if level == 3:
                self._fail_at(seg, "UNH before UNT")
            if level == 1:
                if self._uses_groups:
                    self._fail_at(seg, "an interchange holds either groups or messages, not both")
                self._uses_groups = False
                self._count += 1
            else:
                self._group_messages += 1
            if not elem(1):
                self._fail_at(seg, "UNH01 message reference number is missing")
            if not elem(2, 0):
                self._fail_at(seg, "UNH02 message identifier is missing")
            self._unh01 = elem(1)
            self._msg_segments = 1
            self._level = 3
        elif tag == b"UNT":
            if level != 3:
                self._fail_at(seg, "UNT without UNH")
            self._msg_segments += 1
            count = _number(elem(1))
            if count != self._msg_segments:
                self._fail_at(
                    seg,
                    f"UNT01 segment count {_show(elem(1))!r} does not match {self._msg_segments} "
                    f"segments in message {_show(self._unh01)}",
                )
            if elem(2) != self._unh01:
                self._fail_at(seg, f"UNT02 {_show(elem(2))!r} does not match UNH01 {_show(self._unh01)!r}")
            self._level = 2 if self._uses_groups else 1
        elif tag == b"UNZ":
            if level != 1:
                self._fail_at(seg, "UNZ without UNB" if level == 0 else "UNZ before UNT/UNE")
            count = _number(elem(1))
            what = "groups" if self._uses_groups else "messages"
            if count != self._count:
                self._fail_at(
                    seg,
                    f"UNZ01 control count {_show(elem(1))!r} does not match {self._count} {what}",
                )
            if elem(2) != self._unb05:
                self._fail_at(seg, f"UNZ02 {_show(elem(2))!r} does not match UNB05 {_show(self._unb05)!r}")
            self._level = 0
            self._in_header = True
        elif level == 3:
            self._msg_segments += 1  # another UNx service segment inside a message (e.g. UNS)
        else:
            self._fail_at(seg, "segment outside a UNH/UNT message")

    def _end_of_file(self) -> None:
        if not self._seen_any:
            self.fail("no UNB interchange found (the file is empty)")
        if self._expect_unb:
            self.fail("unexpected end of file after UNA: UNB missing")
        if self._level:
            missing = {1: "UNZ", 2: "UNE", 3: "UNT"}[self._level]
            self.fail(f"unexpected end of file: {missing} missing (file truncated?)")

"""What every check shares: the streamed `Validator` protocol, its registry, the JSON specs a data
flow stores and the command line's short forms, and the one pass that drives checks over a file.

A data flow stores its checks as JSON specs, for example::

    [{"type": "max_size", "bytes": 1048576}, {"type": "name", "pattern": "*.json"}, {"type": "json"}]

`parse_specs` turns specs into `Validator` objects and raises `ValueError` for an unknown type or
bad parameters, so a data flow with a broken check is refused when it is created, not when a file
arrives. `parse_cli_spec` turns the command line's short forms ("max_size=1MiB", "json",
"name=*.csv") into specs. A check type joins the registry with `@register`.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO, ClassVar, NoReturn, Self

CHUNK_SIZE = 1024 * 1024


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


def register(cls: type[Validator]) -> type[Validator]:
    """Class decorator: the check type becomes known to `parse_specs` by its `type`."""
    _REGISTRY[cls.type] = cls
    return cls


def validator_types() -> list[str]:
    """The known validator type names, sorted."""
    return sorted(_REGISTRY)


def check_keys(params: Mapping[str, Any], allowed: set[str]) -> None:
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


class NoParams(Validator):
    """A check whose spec is just its type."""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        check_keys(params, set())
        return cls()

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type}

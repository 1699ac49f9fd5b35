"""Checks that need no content: size limits, the file's name, and its SHA-256."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any, Self

from core.validators.base import Validator, check_keys, parse_size, register


class _ByteCount(Validator):
    """A size check: its spec is ``{"type": ..., "bytes": N}`` (N as in `parse_size`)."""

    def __init__(self, count: int | str) -> None:
        self.bytes = parse_size(count)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        check_keys(params, {"bytes"})
        if "bytes" not in params:
            raise ValueError("'bytes' is required")
        return cls(parse_size(params["bytes"]))

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, "bytes": self.bytes}


@register
class MaxSizeValidator(_ByteCount):
    """``{"type": "max_size", "bytes": N}``: the file has at most N bytes (fails while streaming)."""

    type = "max_size"

    def __init__(self, limit: int | str) -> None:
        super().__init__(limit)
        self._seen = 0

    def start(self, name: str) -> None:
        self._seen = 0

    def feed(self, chunk: bytes) -> None:
        self._seen += len(chunk)
        if self._seen > self.bytes:
            self.fail(f"at least {self._seen} bytes > limit {self.bytes}")

    def finish(self, size: int, sha256: str) -> None:
        if size > self.bytes:
            self.fail(f"{size} bytes > limit {self.bytes}")


@register
class MinSizeValidator(_ByteCount):
    """``{"type": "min_size", "bytes": N}``: the file has at least N bytes."""

    type = "min_size"

    def finish(self, size: int, sha256: str) -> None:
        if size < self.bytes:
            self.fail(f"{size} bytes < minimum {self.bytes}")


@register
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
        check_keys(params, {"pattern", "regex", "ignore_case"})
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


@register
class Sha256Validator(Validator):
    """``{"type": "sha256", "value": "<64 hex digits>"}``: the file's SHA-256 (any case)."""

    type = "sha256"

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise ValueError(f"'value' must be 64 hexadecimal digits, got {value!r}")
        self.value = value.lower()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        check_keys(params, {"value"})
        if "value" not in params:
            raise ValueError("'value' is required")
        return cls(params["value"])

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, "value": self.value}

    def finish(self, size: int, sha256: str) -> None:
        if sha256.lower() != self.value:
            self.fail(f"got {sha256.lower()}, expected {self.value}")

"""IMAP on the wire (RFC 3501): FETCH responses parsed, dates read, mailbox names and strings written.

imaplib hands back untagged data as raw lines, with each literal as a (line ending in "{n}",
bytes) tuple; `parse_fetch` turns that into one dict per message. Lists become Python lists,
quoted strings and literals bytes, atoms `Atom` (a str), NIL None.
"""

from __future__ import annotations

import base64
import builtins
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from core.endpoints.base import EndpointError

_LITERAL = re.compile(rb"~?\{(\d+)\+?\}$")
_TOKEN = re.compile(
    rb"""[ \t\r\n]*(?:
        (?P<open>\() | (?P<close>\)) |
        "(?P<quoted>(?:[^"\\]|\\.)*)" |
        (?P<atom>[^ \t\r\n()"\[\]{]+(?:\[[^\]]*\][^ \t\r\n()"\[{]*)?)
    )""",
    re.X | re.S,
)
_MONTHS = {
    month: number
    for number, month in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}


class Atom(str):
    """An IMAP atom (as opposed to a string): numbers, flags, NIL-free keywords."""


_OPEN, _CLOSE = object(), object()


def _scan(line: bytes) -> Iterator[Any]:
    pos = 0
    while True:
        match = _TOKEN.match(line, pos)
        if match is None:
            if line[pos:].strip():
                raise EndpointError(f"cannot parse IMAP response near {line[pos : pos + 40]!r}")
            return
        pos = match.end()
        if match["open"]:
            yield _OPEN
        elif match["close"]:
            yield _CLOSE
        elif match["quoted"] is not None:
            yield re.sub(rb"\\(.)", rb"\1", match["quoted"])
        else:
            atom = match["atom"].decode("utf-8", "replace")
            yield None if atom.upper() == "NIL" else Atom(atom)


def _tokens(data: Iterable[Any]) -> Iterator[Any]:
    """Tokens of imaplib's untagged data: literals arrive as (line ending in {n}, bytes) tuples."""
    for item in data:
        if isinstance(item, tuple):
            head, literal = item
            yield from _scan(_LITERAL.sub(b"", head))
            yield literal
        elif isinstance(item, bytes):
            yield from _scan(item)


def parse_fetch(data: Iterable[Any]) -> builtins.list[dict[str, Any]]:
    """imaplib FETCH data as one dict per message: upper-case item names to parsed values."""
    stream = _tokens(data)
    messages: builtins.list[dict[str, Any]] = []

    def value(token: Any) -> Any:
        if token is _OPEN:
            items: builtins.list[Any] = []
            for inner in stream:
                if inner is _CLOSE:
                    return items
                items.append(value(inner))
            raise EndpointError("unterminated list in IMAP response")
        return token

    for token in stream:
        if isinstance(token, Atom) and token.isdigit():
            continue  # the message sequence number
        items = value(token)
        if not isinstance(items, builtins.list):
            raise EndpointError(f"unexpected IMAP FETCH response token {token!r}")
        fields = {str(items[i]).upper(): items[i + 1] for i in range(0, len(items) - 1, 2)}
        messages.append(fields)
    return messages


def text(value: Any) -> str:
    """A parsed value (bytes, atom, NIL) as text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def pairs(value: Any) -> builtins.list[tuple[str, str]]:
    """A parameter list ("NAME" "value" ...) as (lower-case name, value) pairs."""
    if not isinstance(value, builtins.list):
        return []
    return [(text(value[i]).lower(), text(value[i + 1])) for i in range(0, len(value) - 1, 2)]


def response_text(data: builtins.list[Any]) -> str:
    """A command's response data on one line, for error messages."""
    parts = [
        item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item) for item in data if item
    ]
    return " ".join(" ".join(parts).split())


def parse_internaldate(value: Any) -> datetime:
    """'17-Jul-1996 02:44:25 -0700' as an aware UTC datetime (month names are always English)."""
    stamp = text(value).strip()
    match = re.fullmatch(r"\s*(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", stamp)
    if not match or match[2].title() not in _MONTHS:
        return datetime.now(UTC)
    day, month, year = int(match[1]), _MONTHS[match[2].title()], int(match[3])
    offset = timedelta(hours=int(match[8]), minutes=int(match[9])) * (-1 if match[7] == "-" else 1)
    local = datetime(year, month, day, int(match[4]), int(match[5]), int(match[6]), tzinfo=timezone(offset))
    return local.astimezone(UTC)


def mutf7(name: str) -> str:
    """IMAP's modified UTF-7 for mailbox names (RFC 3501 section 5.1.3)."""
    out: builtins.list[str] = []
    pending: builtins.list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=")
            out.append("&" + encoded.replace(b"/", b",").decode("ascii") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def quote(value: str) -> str:
    """An IMAP quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

"""Keeping configured secrets out of every text that leaves the process.

One function does the work, `Scrubber.text`: every secret value (and the forms it takes on the
wire: URL-encoded, one line of a multi-line key) is replaced by `***`, longest first, so a secret
that contains another is hidden whole. Endpoints build one from their own secrets for their
errors and the answers they keep; what a process opened is also remembered process-wide
(`remember`), so its log records, artifacts and events are scrubbed of every secret it has held
(`install_log_scrubber`, `scrub_known`).

Values shorter than MIN_LENGTH are not searched for: replacing "42" everywhere would garble every
message while hiding nothing worth hiding.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_LENGTH = 4
# A line of a PEM key or certificate body this long is worth hiding on its own.
MIN_LINE_LENGTH = 16

E = TypeVar("E", bound=BaseException)


def wire_forms(value: str) -> set[str]:
    """`value` and the forms it takes in URLs, headers and logs: percent-encoded (path and form
    style) and, for a multi-line value such as a private key, each long line."""
    forms = {value, quote(value, safe=""), quote(value, safe="/"), quote_plus(value)}
    if "\n" in value:
        forms |= {line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_LINE_LENGTH}
    return forms


def secret_strings(tree: Any, *, skip: Callable[[str], bool] = lambda key: False) -> set[str]:
    """Every string leaf of a secrets mapping (nested mappings and lists included); keys for
    which `skip(key)` holds are left out (a login name is not a secret)."""
    found: set[str] = set()
    todo: list[Any] = [tree]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            todo += [value for key, value in item.items() if not skip(str(key))]
        elif isinstance(item, list | tuple):
            todo += list(item)
    return found


class Scrubber:
    """Replaces a fixed set of secret values (and their wire forms) in text, errors and JSON-able data."""

    def __init__(self, values: Iterable[str] = (), *, expanded: bool = False) -> None:
        forms = set(values) if expanded else {form for value in values if value for form in wire_forms(value)}
        self.values = frozenset(form for form in forms if len(form) >= MIN_LENGTH)
        # Longest first: an alternation takes the first alternative that matches at a position.
        ordered = sorted(self.values, key=lambda v: (-len(v), v))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def error(self, error: E) -> E:
        """The same error with a scrubbed message (the error itself when nothing was hidden)."""
        message = str(error)
        clean = self.text(message)
        if clean == message:
            return error
        try:
            return type(error)(clean)
        except TypeError:  # an error class whose constructor takes more than a message
            error.args = (clean,)
            return error

    def data(self, value: Any) -> Any:
        """A copy of JSON-able data (dicts, lists, strings) with every string scrubbed."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value

    def __or__(self, other: Scrubber) -> Scrubber:
        return Scrubber(self.values | other.values, expanded=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by `***`, longest first."""
    return Scrubber(secrets).text(text)


# --- what this process has held ----------------------------------------------------------------

_known = Scrubber()
_known_lock = threading.Lock()


def remember(values: Iterable[str] | Scrubber) -> None:
    """Add secret values this process now holds to the ones scrubbed from everything it emits."""
    global _known
    new = values if isinstance(values, Scrubber) else Scrubber(values)
    if new.values <= _known.values:
        return
    with _known_lock:
        _known = _known | new


def known() -> Scrubber:
    return _known


def scrub_known(value: Any) -> Any:
    """Text or JSON-able data with every secret this process has held replaced by `***`."""
    return _known.data(value)


def _scrub_record(record: logging.LogRecord) -> None:
    scrubber = _known
    if not scrubber:
        return
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports it later, as it would have
        return
    clean = scrubber.text(message)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info and not record.exc_text:
        # Formatted now and scrubbed; the raw exception goes, so no handler can render it again
        # (logging.Formatter appends exc_text whether or not exc_info is set).
        record.exc_text = scrubber.text(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = scrubber.text(record.exc_text)
    if record.stack_info:
        record.stack_info = scrubber.text(record.stack_info)


_installed = False


def install_log_scrubber() -> None:
    """Scrub every log record this process creates, whatever its logger or handler (console,
    files, Prefect's API handler): the record factory sees each record before any handler."""
    global _installed
    with _known_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _scrub_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True

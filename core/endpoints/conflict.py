"""What a write does when its name is taken at the destination: the data flow's `on_conflict`.

* ``rename``: the file lands under the first free name of ``name``, ``name (2).ext``,
  ``name (3).ext``, … (`candidates`), in the same folder; the existing file stays as it was.
* ``overwrite``: the existing file is replaced (atomically, as every write is).
* ``fail``: the write fails with `NameTaken`, naming the path; the existing file stays.

Each endpoint type applies the policy at its commit, atomically where its protocol allows (see
its `open_write`), and says by `Endpoint.default_on_conflict` what it does when the data flow
names no policy; types where every delivery is a new message (http, email, as2) have no name to
take and no policy.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator

from core.endpoints.base import ConfigError, NameTaken, OnConflict

__all__ = [
    "MAX_CANDIDATES",
    "NameTaken",
    "OnConflict",
    "candidates",
    "default_for",
    "effective",
    "first_free",
    "parse",
    "setting_for",
]

# Longest file name most filesystems and servers accept, in bytes.
MAX_NAME_BYTES = 255
# How far `rename` counts before it gives up: `name (1000).ext` taken means something is wrong.
MAX_CANDIDATES = 1000


def parse(value: str) -> OnConflict:
    """An on_conflict setting, or a ConfigError that lists the choices."""
    try:
        return OnConflict(value.strip().lower())
    except ValueError:
        choices = "|".join(OnConflict)
        raise ConfigError(f"on_conflict must be one of {choices}, not {value!r}") from None


def candidates(path: str, limit: int = MAX_CANDIDATES) -> Iterator[str]:
    """`path`, then `stem (2).ext` … `stem (limit).ext` in the same folder.

    The number goes before the last extension (`invoice_812 (2).edi`, `data.tar (2).gz`); the stem
    is shortened (never inside a character) when the name would pass 255 bytes.
    """
    yield path
    folder, name = posixpath.split(path)
    stem, ext = posixpath.splitext(name)
    if len(ext.encode()) > MAX_NAME_BYTES // 2:  # not an extension: a long name with a dot in it
        stem, ext = name, ""
    for number in range(2, limit + 1):
        tail = f" ({number}){ext}"
        room = MAX_NAME_BYTES - len(tail.encode())
        short = stem.encode()[:room].decode(errors="ignore")
        yield posixpath.join(folder, short + tail) if folder else short + tail


def first_free(
    rel: str, on_conflict: OnConflict, taken: Callable[[str], bool], uri: Callable[[str], str]
) -> str:
    """The first of `rel`, `name (2).ext`, … that `taken` says is free (rename), or `rel` if it is
    free (fail); NameTaken naming the path otherwise. For protocols with no rename that refuses a
    taken name, so a free one is chosen before writing (best effort)."""
    for name in candidates(rel) if on_conflict is OnConflict.rename else iter([rel]):
        if not taken(name):
            return name
        if on_conflict is OnConflict.fail:
            raise NameTaken(f"{uri(name)} exists and on_conflict is fail; not replaced")
    raise NameTaken(f"{uri(rel)} and every numbered name after it are taken")


def default_for(endpoint_type: str) -> OnConflict | None:
    """What an endpoint type does with a name that exists unless told; None where it does not apply."""
    from core.endpoints.registry import endpoint_class

    return endpoint_class(endpoint_type).default_on_conflict


def setting_for(value: str | None, endpoint_type: str) -> OnConflict | None:
    """A data flow's on_conflict as given (None: the type's default), refused where it cannot apply."""
    if value is None:
        return None
    policy = parse(value)
    if default_for(endpoint_type) is None:
        raise ConfigError(
            f"on_conflict does not apply to {endpoint_type} destinations: every delivery is a new message"
        )
    return policy


def effective(value: str | None, endpoint_type: str) -> OnConflict:
    """The policy a delivery uses: the data flow's, else the type's default (overwrite: none applies)."""
    if value is not None:
        return parse(value)
    return default_for(endpoint_type) or OnConflict.overwrite

"""The names of partners, endpoints and data flows: one rule for all three.

Below both `core.partners` and `core.endpoints.rows`, which each check names and refer to each other's
rows (a `mailbox:PARTNER` endpoint, a partner's mailbox endpoints), so that neither imports the other's
module for the rule.
"""

from __future__ import annotations

import re

# `<name>.removed.<id>`: what a removed object that history still refers to is renamed to.
REMOVED_NAME = re.compile(r".*\.removed\.\d+$")


class InvalidName(ValueError):
    """A name a partner, endpoint or data flow cannot have."""


def validate_name(name: str) -> str:
    """A name for a partner, endpoint or data flow; '<name>.removed.<n>' is kept for removed ones."""
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name) or name[0] == ".":
        raise InvalidName(f"invalid name {name!r}: use letters, digits, '-', '_' or '.'")
    if REMOVED_NAME.fullmatch(name):
        raise InvalidName(f"names ending in '.removed.<number>' are kept for removed objects: {name!r}")
    return name

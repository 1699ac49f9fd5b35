"""The name a remote upload has until it is complete: the `temp_name` setting of sftp and ftp endpoints
(core/endpoints/remote.py).

* ``"suffix"`` (the default): ``<name>.<hex>.tradelane.part`` in the target's folder, renamed onto
  the target when complete. Servers that take a ``*.part`` upload as still in progress (tradelane's
  own mailbox, and what WinSCP and rclone do) accept it, and pollers matching ``*.xml`` skip it.
* ``"prefix"``: ``.tradelane-tmp-<hex>-<name>``, renamed when complete: hidden from a plain ``ls``,
  but refused by servers that refuse names starting with a dot.
* ``"none"``: the final name from the first byte, no rename, for servers that refuse renames. Not
  atomic: the file shows while it is written, and a failed upload deletes it, so a file it was
  overwriting is gone too.

Names of either temporary form are reserved whatever the mode: listings never show them (a crashed
upload may leave one behind) and they cannot be read, written or deleted as files.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

PREFIX: Final = ".tradelane-tmp-"
SUFFIX: Final = ".tradelane.part"
MAX_NAME_BYTES: Final = 255
# What a refused rename of a finished upload says, with the way out.
RENAME_REFUSED: Final = (
    "the server refused to rename the finished upload onto its name; "
    "for a server that refuses renames, set the endpoint's temp_name to none"
)
_SUFFIXED = re.compile(r"\.[0-9a-f]{12}" + re.escape(SUFFIX) + r"\Z")


def is_temp_name(name: str) -> bool:
    """Whether `name` is one of tradelane's temporary upload names, of either form."""
    return name.startswith(PREFIX) or bool(_SUFFIXED.search(name))


def temp_name(name: str, mode: str) -> str:
    """The name to upload `name` under in `mode` (the name itself for "none"), at most 255 bytes."""
    if mode == "none":
        return name
    if mode == "prefix":
        head = f"{PREFIX}{uuid.uuid4().hex}-"
        return head + _shortened(name, MAX_NAME_BYTES - len(head))
    tail = f".{uuid.uuid4().hex[:12]}{SUFFIX}"
    return _shortened(name, MAX_NAME_BYTES - len(tail)) + tail


def _shortened(name: str, room: int) -> str:
    return name.encode()[:room].decode(errors="ignore")

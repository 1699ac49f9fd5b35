"""Resource ids: deterministic folder UUIDs and opaque file ids.

A partner's home holds exactly three folders, so their ids are derived, not stored:
`uuid5(FOLDER_NAMESPACE, "<partner uid>/<folder>")`, with `""` naming the home folder itself.
A file id is the url-safe base64 (no padding) of `"<folder id>:<file name>"`; it carries no
secret, so every use re-checks that the folder belongs to the caller and the name is a plain
file name.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Annotated

from pydantic import Field

from core.intake import InvalidFileName, check_file_name

# Fixed forever: changing it changes every folder id clients may have stored.
FOLDER_NAMESPACE = uuid.UUID("6d0c3f4e-2a51-5b8e-9a57-3c1e7f0b9d42")

# Row ids are 32-bit on PostgreSQL (64 on SQLite): a larger one names nothing, and must not reach
# the database (an overflow there is an error, not "not found"). Every route's id parameter is one.
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID - 1)]  # an id; `before=id+1` still fits

_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def folder_id(partner_uid: str, folder: str) -> str:
    """The id of `folder` ("" for home, "upload", "download") in the partner's home."""
    return str(uuid.uuid5(FOLDER_NAMESPACE, f"{partner_uid}/{folder}"))


def normalize_folder_id(value: str) -> str | None:
    """The canonical form of a folder id, or None if `value` is not a UUID at all."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def file_id(folder: str, name: str) -> str:
    """The opaque id of file `name` in the folder with id `folder`."""
    return base64.urlsafe_b64encode(f"{folder}:{name}".encode()).decode("ascii").rstrip("=")


def parse_file_id(value: str) -> tuple[str, str] | None:
    """(folder id, file name) for a well-formed file id; None for anything else."""
    if not _B64URL.fullmatch(value):
        return None
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    folder, sep, name = text.partition(":")
    canonical = normalize_folder_id(folder)
    if not sep or canonical is None or file_id(folder, name) != value:
        return None
    try:
        name = check_file_name(name)  # NFC: the form names are stored in
    except InvalidFileName:
        return None
    return canonical, name

"""Settings sftp and ftp endpoints share: the server and login, how long to wait, and how an
upload is named until it is complete (core/endpoints/tempname.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from core.endpoints.settings import EndpointSettings

Port = Annotated[int, Field(ge=1, le=65535)]
DEFAULT_TIMEOUT = 30.0


class ServerSettings(EndpointSettings):
    host: str
    """The server's host name or address."""
    user: str
    """The login."""
    timeout: Annotated[float, Field(gt=0)] = DEFAULT_TIMEOUT
    """Seconds to wait for the server before giving up on a step."""
    temp_name: Literal["suffix", "prefix", "none"] = "suffix"
    """How an upload is named until complete: suffix (NAME.<hex>.tradelane.part, then renamed),
    prefix (.tradelane-tmp-<hex>-NAME, then renamed) or none (the final name, no rename: for
    servers that refuse renames; not atomic)."""

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a host name")
        return value.strip()


def read_key_file(path: str) -> str:
    """`--key FILE`: the text of a private key file."""
    return Path(path).expanduser().read_text()

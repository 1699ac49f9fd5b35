"""An Azure Blob endpoint's settings and secrets, and how its account and credentials are found.

Exactly one way to authenticate: a connection string, an account name + key, or a SAS token (with
an account URL, or an account name for the public cloud's https://<account>.blob.core.windows.net).
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from core.endpoints.objectstore import ObjectStoreSettings
from core.endpoints.settings import EndpointSecrets, EndpointSettings, Flag, NotScrubbed

MIB = 1024 * 1024
DEFAULT_BLOCK_SIZE = 8 * MIB
MIN_BLOCK_SIZE = 64 * 1024
MAX_BLOCK_SIZE = 4000 * MIB  # Azure's limit per staged block

# Container names: 3-63 of [a-z0-9-], starting and ending alphanumeric, no "--"; or a system name.
_CONTAINER_RE = re.compile(r"^(?:[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]|\$root|\$web|\$logs)$")


class AzureSettings(ObjectStoreSettings):
    """Azure Blob Storage (or Azurite): blobs under a container and prefix. Credentials (one of a
    connection string, an account key or a SAS token) are secrets."""

    container: str
    """The container (3-63 lowercase letters, digits and hyphens)."""
    account_url: str | None = None
    """The account's blob URL, e.g. https://acct.blob.core.windows.net (with a SAS token)."""
    account_name: str | None = None
    """The storage account (with an account key; or a SAS token on the public cloud)."""
    block_size: Annotated[int, Field(ge=MIN_BLOCK_SIZE, le=MAX_BLOCK_SIZE)] = DEFAULT_BLOCK_SIZE
    """Bytes per staged block; a smaller file is one upload."""

    @field_validator("container")
    @classmethod
    def _container_name(cls, value: str) -> str:
        if not _CONTAINER_RE.match(value):
            raise ValueError("must be a container name (3-63 lowercase letters, digits and hyphens)")
        return value

    @field_validator("account_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value


class AzureSecrets(EndpointSecrets):
    """One of: connection_string; account_key (with account_name); sas_token."""

    connection_string: Annotated[
        str | None, Flag("--connection-string", envvar="TRADELANE_AZURE_CONNECTION_STRING")
    ] = None
    """A connection string (from the portal's Access keys, or Azurite's)."""
    account_name: Annotated[str | None, Flag(None), NotScrubbed()] = None
    """The account name, when kept with the key (the settings' account_name is the usual place)."""
    account_key: str | None = None
    """The account key (with account_name)."""
    sas_token: str | None = None
    """A SAS token (with account_url, or account_name)."""

    def check_with(self, settings: EndpointSettings) -> None:
        assert isinstance(settings, AzureSettings)
        resolve_account(settings, self)

    def pieces(self, settings: EndpointSettings) -> set[str]:
        """The key and the SAS inside a connection string, and every SAS signature (raw and
        decoded): any of them can show up alone in a message."""
        parts = parse_connection_string(self.connection_string or "")
        values = [parts.get("accountkey", ""), parts.get("sharedaccesssignature", "")]
        for token in (self.sas_token or "", parts.get("sharedaccesssignature", "")):
            pairs = (item.partition("=") for item in token.lstrip("?").split("&"))
            signatures = [value for key, _, value in pairs if key == "sig"]
            values += signatures + [unquote(value) for value in signatures]
        return {value for value in values if value}


def parse_connection_string(value: str) -> dict[str, str]:
    parts = {}
    for item in value.split(";"):
        key, sep, val = item.strip().partition("=")
        if sep:
            parts[key.strip().lower()] = val.strip()
    return parts


def account_from_url(url: str) -> str:
    """`acct` from https://acct.blob.core.windows.net or http://127.0.0.1:10000/acct (emulator style)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    first_segment = parts.path.strip("/").split("/")[0]
    looks_like_ip = host == "localhost" or host.replace(".", "").isdigit() or ":" in host
    if looks_like_ip and first_segment:
        return first_segment
    return host.split(".")[0] if host else "unknown"


def resolve_account(settings: AzureSettings, secrets: AzureSecrets) -> tuple[str, str]:
    """(account URL, account name), once exactly one way to authenticate is given; ValueError
    saying what is missing or too much otherwise. Never quotes a secret."""
    account_url = settings.account_url
    account_name = secrets.account_name or settings.account_name
    modes = [
        name
        for name, present in (
            ("connection_string", bool(secrets.connection_string)),
            ("account_key", bool(secrets.account_key)),
            ("sas_token", bool(secrets.sas_token)),
        )
        if present
    ]
    if len(modes) != 1:
        raise ValueError(
            "azure endpoint needs exactly one of: connection_string, account_name + account_key, "
            f"or sas_token (got {', '.join(modes) or 'none'})"
        )
    if modes == ["connection_string"]:
        if account_url:
            raise ValueError("azure: give either a connection_string or an account_url, not both")
        parts = parse_connection_string(str(secrets.connection_string))
        endpoint = parts.get("blobendpoint")
        if not parts.get("accountname") and not endpoint:
            raise ValueError("azure connection_string names no AccountName or BlobEndpoint")
        name = parts.get("accountname") or account_from_url(endpoint or "")
        if not endpoint:
            suffix = parts.get("endpointsuffix", "core.windows.net")
            protocol = parts.get("defaultendpointsprotocol", "https")
            endpoint = f"{protocol}://{name}.blob.{suffix}"
        return endpoint, name
    if modes == ["account_key"] and not account_name:
        raise ValueError("azure account_key needs an account_name")
    if not account_url:
        if not account_name:
            raise ValueError("azure sas_token needs an account_url (or an account_name)")
        account_url = f"https://{account_name}.blob.core.windows.net"
    return account_url, account_name or account_from_url(account_url)

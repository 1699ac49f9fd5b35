"""An SFTP endpoint's settings and secrets."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import field_validator, model_validator

from core.endpoints.base import (
    ConfigError,
)
from core.endpoints.hostkeys import parse_host_keys
from core.endpoints.remote import Port, ServerSettings, read_key_file
from core.endpoints.settings import EndpointSecrets, Flag, multiline


class SftpSettings(ServerSettings):
    """A partner's SFTP server (OpenSSH's sftp-server and the like). Its host key is pinned."""

    port: Port = 22
    """The server's port (default 22)."""
    path: str = "."
    """The remote folder that is the endpoint's root (default: the login folder)."""
    host_key: Annotated[str, multiline()]
    """The server's host key, 'TYPE BASE64' (one per line; ssh-keyscan lines work too). The CLI
    shows the key the server offers and pins it once you agree."""

    @field_validator("path")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("contains a NUL character")
        return value

    @field_validator("host_key")
    @classmethod
    def _host_keys(cls, value: str) -> str:
        try:
            parse_host_keys(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value


class SftpSecrets(EndpointSecrets):
    """A password, a private key, or both (some servers want a key and then a password)."""

    password: str | None = None
    """The login's password."""
    private_key: Annotated[
        str | None, Flag("--key", help="A private key FILE.", parse=read_key_file), multiline()
    ] = None
    """A private key (OpenSSH, PKCS#1/#8 or SEC1 text)."""
    passphrase: str | None = None
    """The private key's passphrase, if it is encrypted."""

    @model_validator(mode="after")
    def _some_login(self) -> Self:
        if not self.password and not self.private_key:
            raise ValueError("sftp endpoint needs a 'password' or a 'private_key' secret")
        return self

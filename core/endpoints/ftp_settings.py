"""An FTP endpoint's settings and secrets."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import field_validator

from core.endpoints.remote import Port, ServerSettings
from core.endpoints.settings import EndpointSecrets, LocalPath, lowercase, switch


class FtpSettings(ServerSettings):
    """A partner's FTP or FTPS server. TLS (explicit, AUTH TLS) is the default."""

    tls: Annotated[Literal["explicit", "implicit", "none"], lowercase] = "explicit"
    """explicit (AUTH TLS on the FTP port), implicit (TLS from the first byte) or none (plain FTP:
    passwords and files in clear text)."""
    port: Port | None = None
    """The server's port (default 21, or 990 with tls implicit)."""
    path: str = ""
    """The remote folder that is the endpoint's root (default: the login folder)."""
    cafile: Annotated[str | None, LocalPath()] = None
    """A CA bundle, or the server's own certificate to pin (PEM)."""
    verify: Annotated[bool, switch("--insecure", False, "Do not verify the server's TLS certificate.")] = True
    """Verify the server's TLS certificate."""
    passive: bool = True
    """Passive mode data connections (the client connects); false: active mode."""

    @field_validator("path")
    @classmethod
    def _no_controls(cls, value: str) -> str:
        if any(ch in value for ch in "\x00\r\n"):
            raise ValueError("contains a control character")
        return value


class FtpSecrets(EndpointSecrets):
    password: str | None = None
    """The login's password."""

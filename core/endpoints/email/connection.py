"""What the SMTP and IMAP halves share: the timeout, one TLS context and the endpoint's redaction."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Iterator

from core.endpoints.base import ConfigError, EndpointError
from core.endpoints.email.settings import EmailSettings


class ConnectionOptions:
    """How either half connects; the TLS context is made on first use and then kept."""

    def __init__(self, settings: EmailSettings, redact: Callable[[EndpointError], EndpointError]) -> None:
        self.timeout = settings.timeout
        self.redact = redact
        self._cafile = settings.cafile
        self._verify = settings.verify
        self._ssl: ssl.SSLContext | None = None

    def tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            try:
                context = ssl.create_default_context(cafile=self._cafile)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"email cafile {self._cafile!r} cannot be loaded: {exc}") from None
            if not self._verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl = context
        return self._ssl

    @contextlib.contextmanager
    def errors(self, translate: Callable[[Exception], EndpointError | None]) -> Iterator[None]:
        """Library failures as endpoint errors (`translate` returns None for what it does not know),
        every error redacted."""
        try:
            yield
        except EndpointError as exc:
            raise self.redact(exc) from None
        except Exception as exc:
            mapped = translate(exc)
            if mapped is None:
                raise
            raise self.redact(mapped) from exc

"""One `tradelane up` for the notify tests, its SMTP settings pointing at the test SMTP server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.endpoint_servers.mail import SmtpServer
from tests.system import IDLE_AFTER_LAST_USE, System, run_system, stop


@pytest.fixture(scope="session")
def notify_system(smtp_server: SmtpServer) -> Iterator[System]:
    with run_system(
        TRADELANE_SMTP_HOST=smtp_server.host,
        TRADELANE_SMTP_PORT=str(smtp_server.ssl_port),
        TRADELANE_SMTP_TLS="ssl",
        TRADELANE_SMTP_USER=smtp_server.user,
        TRADELANE_SMTP_PASSWORD=smtp_server.password,
        TRADELANE_SMTP_CAFILE=str(smtp_server.cafile),
        TRADELANE_SMTP_FROM="tradelane@tradelane.test",
        # The digest test's burst of 200 goes in one run, so its failures come within one window
        # however busy the machine is (the default, 50, would make four runs).
        TRADELANE_DISPATCH_BATCH_SIZE="200",
        # Partner notices of files waiting in download/: one e-mail per partner per 10 s window.
        TRADELANE_PARTNER_DOWNLOAD_DIGEST_SECONDS="10",
    ) as running:
        IDLE_AFTER_LAST_USE["notify_system"] = lambda: stop(running)
        yield running

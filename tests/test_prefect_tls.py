"""Prefect's API clients in tradelane's processes share one TLS context per CA file
(deployments/prefect_tls.py): Prefect read the CA bundle again for each client (~17 ms of CPU, about
seven times per flow run), even for an http:// API. The shared context still verifies."""

from __future__ import annotations

import ssl
from typing import Any

from prefect.client.orchestration import PrefectClient, SyncPrefectClient

import deployments.worker  # noqa: F401  (as the roles that run flows do: it installs deployments/prefect_tls.py)


def context_of(client: Any) -> ssl.SSLContext:
    context = client._client._transport._pool._ssl_context
    assert isinstance(context, ssl.SSLContext)
    return context


def test_clients_share_one_verifying_context() -> None:
    contexts = [
        context_of(PrefectClient("http://127.0.0.1:9/api")),
        context_of(PrefectClient("https://127.0.0.1:9/api")),
        context_of(SyncPrefectClient("http://127.0.0.1:9/api")),
    ]
    assert all(context is contexts[0] for context in contexts)
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname


def test_the_version_check_uses_the_clients_context() -> None:
    """Each events or logs subscriber (a flow run's suspension observer) checks the server's version
    first, with a client of its own: it asks for the same context as the API clients."""
    import certifi
    from prefect._internal import version_checking
    from prefect.settings import PREFECT_API_SSL_CERT_FILE

    client = context_of(PrefectClient("http://127.0.0.1:9/api"))
    cafile = PREFECT_API_SSL_CERT_FILE.value() or certifi.where()
    assert version_checking.ssl.create_default_context(cafile=cafile) is client

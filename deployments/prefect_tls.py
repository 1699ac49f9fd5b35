"""Prefect's API clients share one TLS context per CA file instead of reading the CA bundle each time.

prefect.client.orchestration makes a new `ssl` context for every client it builds (reading
certifi's bundle or PREFECT_API_SSL_CERT_FILE: ~17 ms of CPU), even for an http:// API that never
uses it; a flow run builds about seven (its engine, the log and events workers, the result store,
the suspension observer...), the dispatcher one per pass. Built from the same arguments, the
contexts are the same, and one SSLContext may serve any number of connections: one is made per
set of arguments, in each process, and reused. Importing this module installs it and makes the
context Prefect's settings ask for (the fork server preloads it, so every flow run it forks starts
with it made).
"""

from __future__ import annotations

import contextlib
import functools
import ssl
import types
from typing import Any


class SharedContexts(types.ModuleType):
    """`ssl` as prefect.client.orchestration sees it: everything as in `ssl`, except that
    `create_default_context` gives one context per set of arguments."""

    def __init__(self) -> None:
        super().__init__("ssl", "the ssl module, its default contexts shared (deployments/prefect_tls.py)")

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    @staticmethod
    @functools.cache
    def create_default_context(
        purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
        *,
        cafile: str | None = None,
        capath: str | None = None,
        cadata: str | bytes | None = None,
    ) -> ssl.SSLContext:
        # Prefect's insecure setting (PREFECT_API_TLS_INSECURE_SKIP_VERIFY) turns verification off on
        # the context without arguments, each time in the same way; nothing there uses it otherwise.
        return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)


def install() -> None:
    """Make Prefect's clients in this process (and in the processes it forks) share their contexts:
    the API clients, and the version check each events and logs subscriber makes first (a flow run's
    suspension observer opens one: ~3 % of a run's CPU went into reading the CA bundle there)."""
    import prefect._internal.version_checking as version_checking
    import prefect.client.orchestration as orchestration

    for module in (orchestration, version_checking):
        if not isinstance(getattr(module, "ssl", None), SharedContexts):
            setattr(module, "ssl", SharedContexts())  # noqa: B010  (a module attribute of Prefect's)


def warm() -> None:
    """Make the context Prefect's clients will ask for now, here: in the fork server, so that no
    forked run reads the CA bundle at all (each would otherwise once)."""
    import certifi
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY

    if not PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value():
        SharedContexts.create_default_context(cafile=PREFECT_API_SSL_CERT_FILE.value() or certifi.where())


install()
with contextlib.suppress(Exception):  # else the first client makes it, as Prefect would have
    warm()

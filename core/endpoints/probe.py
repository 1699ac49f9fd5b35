"""The endpoint Test: connect and list, and say what failed in the operator's words.

One probe for every front end (`tradelane endpoint test`, the admin API, the console's Test
button): it opens the stored endpoint, runs its `check()` (connect, log in, list the folder) and
classifies a failure by the endpoint error tree: DNS, refused or unreachable, authentication, TLS,
host key, permission, not found, configuration. The message is scrubbed of the endpoint's secrets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlmodel import Session

from core import audit
from core.endpoints import base
from core.endpoints import rows as endpoint_rows
from core.endpoints.hostkeys import HostKeyMismatch
from core.models import Endpoint as EndpointRow
from core.tenancy import Scope

__all__ = ["KINDS", "Probe", "kind_of", "probe", "probe_named", "record"]

# The first class a failure is an instance of names its kind (the order matters: a host-key
# mismatch is a kind of authentication failure, a DNS failure a kind of unreachable).
KINDS: tuple[tuple[type[Exception], str], ...] = (
    (HostKeyMismatch, "host key"),
    (base.TlsError, "TLS"),
    (base.DnsError, "DNS"),
    (base.AuthError, "authentication"),
    (base.PermissionDenied, "permission"),
    (base.Unreachable, "unreachable (refused or timed out)"),
    (base.TransientError, "temporary failure"),
    (base.ConfigError, "configuration"),
    (base.NotFound, "not found"),
    (base.InvalidPath, "configuration"),
)


def kind_of(exc: Exception) -> str:
    """What kind of failure `exc` is, in the operator's words ("error" when none fits)."""
    return next((kind for cls, kind in KINDS if isinstance(exc, cls)), "error")


@dataclass(frozen=True)
class Probe:
    """What a test of one endpoint found: reachable at `uri`, or failed with `kind` and `message`."""

    name: str
    ok: bool
    kind: str | None
    message: str
    uri: str | None
    seconds: float

    def line(self) -> str:
        """One line for people: `✓ NAME reachable (URI)` or `✗ NAME: KIND: MESSAGE`."""
        if self.ok:
            return f"✓ {self.name} reachable ({self.uri})"
        return f"✗ {self.name}: {self.kind}: {self.message}"


def probe(row: EndpointRow) -> Probe:
    """Test a stored endpoint now (blocks for as long as its own timeouts allow)."""
    scrubber = endpoint_rows.row_scrubber(row)
    started = time.monotonic()
    try:
        with endpoint_rows.open_row(row) as endpoint:
            endpoint.check()
            uri = scrubber.text(endpoint.uri(""))
    except Exception as exc:  # every failure is an answer here, never a crash of the caller
        seconds = time.monotonic() - started
        return Probe(row.name, False, kind_of(exc), scrubber.text(str(exc)), None, seconds)
    return Probe(row.name, True, None, f"reachable ({uri})", uri, time.monotonic() - started)


def probe_named(session: Session, scope: Scope, name: str) -> EndpointRow:
    """The stored endpoint `name` the scope may test (a role that changes endpoints; 404 otherwise).
    Test it with `probe(row)` outside the transaction, then `record` the result."""
    scope.require_to("endpoints.test")
    return endpoint_rows.require(session, scope, name)


def record(session: Session, scope: Scope, result: Probe, remote_addr: str | None = None) -> None:
    """The audit event of a test: who tested which endpoint, and what kind of failure it met."""
    audit.record(
        session,
        "endpoint.test",
        actor=scope.actor,
        account_id=scope.account_id,
        target=result.name,
        remote_addr=remote_addr,
        ok=result.ok,
        kind=result.kind,
    )

"""The `tradelane.file.*` events, defined once: their names, resource, related resources and payload.

Pure data (no Prefect here: core imports none). The Prefect side (flows/events.py) emits what these
functions build; rules (Prefect automations) match on the names and related resource ids below, so
they are part of the public contract:

* event `tradelane.file.<what>`, `what` one of `WHATS`;
* resource `tradelane.file.<receipt id>` named by the file name (`prefect.resource.name`), with the
  labels `tradelane.file.name`, and `tradelane.transfer.id` when a transfer is concerned;
* related resources, each with its `prefect.resource.role`: `partner` (`tradelane.partner.<id>`,
  the partner the file came from), `recipient` (`tradelane.partner.<id>` too: the partner whose
  download/ a `mailbox:NAME` destination is), `data-flow` (`tradelane.data-flow.<id>`), `account`
  (`tradelane.account.<id>`), `connection` (`tradelane.connection.<id>`) and `flow-run`
  (`prefect.flow-run.<id>`);
* payload: size, sha256, protocol, partner, recipient, flow, account, destination, error, replay_of ….

Events are readable by anyone who reaches Prefect: payloads pass `scrub_known` (every secret this
process has held is hidden) and never carry credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.redact import scrub_known

WHATS = ("received", "validated", "rejected", "delivered", "failed", "replayed", "waiting")
PREFIX = "tradelane.file."


def file_resource_id(receipt_id: int) -> str:
    return f"{PREFIX}{receipt_id}"


def partner_resource_id(partner_id: int) -> str:
    return f"tradelane.partner.{partner_id}"


def flow_resource_id(data_flow_id: int) -> str:
    return f"tradelane.data-flow.{data_flow_id}"


def account_resource_id(account_id: int) -> str:
    return f"tradelane.account.{account_id}"


def connection_resource_id(connection_id: int) -> str:
    return f"tradelane.connection.{connection_id}"


@dataclass(frozen=True)
class FileFacts:
    """What is known of one file (and, when concerned, one of its transfers) for its events."""

    receipt_id: int
    name: str
    size: int
    sha256: str
    account_id: int
    account: str
    partner_id: int | None = None
    partner: str | None = None
    protocol: str | None = None
    connection_id: int | None = None
    # Data flows concerned: (id, name). One for a transfer's events; every matching one at intake.
    flows: tuple[tuple[int, str], ...] = ()
    transfer_id: int | None = None
    flow_run_id: str | None = None
    # The partner whose mailbox (download/) a transfer's destination is: (id, name).
    recipient_id: int | None = None
    recipient: str | None = None


@dataclass(frozen=True)
class FileEvent:
    """One event, as `prefect.events.emit_event` takes it."""

    event: str
    resource: dict[str, str]
    related: list[dict[str, str]] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)


def build(what: str, facts: FileFacts, **details: Any) -> FileEvent:
    """The event `tradelane.file.<what>` for `facts`; `details` (destination, error, …) join the
    payload, secrets scrubbed."""
    if what not in WHATS:
        raise ValueError(f"unknown file event {what!r}")
    resource = {
        "prefect.resource.id": file_resource_id(facts.receipt_id),
        "prefect.resource.name": facts.name,
        "tradelane.file.name": facts.name,
    }
    if facts.transfer_id is not None:
        resource["tradelane.transfer.id"] = str(facts.transfer_id)
    payload: dict[str, Any] = {
        "file": facts.name,
        "receipt": facts.receipt_id,
        "transfer": facts.transfer_id,
        "size": facts.size,
        "sha256": facts.sha256,
        "account": facts.account,
        "partner": facts.partner,
        "recipient": facts.recipient,
        "flow": ", ".join(name for _, name in facts.flows) or None,
        "protocol": facts.protocol,
        **details,
    }
    return FileEvent(
        event=PREFIX + what,
        resource=scrub_known(resource),
        related=scrub_known(related(facts)),
        payload=scrub_known({key: value for key, value in payload.items() if value is not None}),
    )


def related(facts: FileFacts) -> list[dict[str, str]]:
    """The partner, recipient, data flows, account, connection and flow run of a file's event."""
    out = [_related(account_resource_id(facts.account_id), "account", facts.account)]
    if facts.partner_id is not None:
        out.append(_related(partner_resource_id(facts.partner_id), "partner", facts.partner or ""))
    if facts.recipient_id is not None:
        out.append(_related(partner_resource_id(facts.recipient_id), "recipient", facts.recipient or ""))
    for flow_id, flow_name in facts.flows:
        out.append(_related(flow_resource_id(flow_id), "data-flow", flow_name))
    if facts.connection_id is not None:
        out.append(
            _related(connection_resource_id(facts.connection_id), "connection", str(facts.connection_id))
        )
    if facts.flow_run_id:
        out.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{facts.flow_run_id}",
                "prefect.resource.role": "flow-run",
            }
        )
    return out


def _related(resource_id: str, role: str, name: str) -> dict[str, str]:
    return {"prefect.resource.id": resource_id, "prefect.resource.role": role, "prefect.resource.name": name}

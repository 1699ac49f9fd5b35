"""edi-route: send each X12 or EDIFACT file to the endpoint its envelope values choose.

    tradelane flow add edi-in --source mailbox:acme --template edi-route --param rules='[
        {"ST": "850", "dest": "erp-orders"}, {"UNH": "ORDERS", "dest": "eu-orders"},
        {"receiver": "GLOBEX", "dest": "globex-as2"}]'

Keys: sender, receiver, GS, ST, UNH; every key of a rule must match, the first matching rule wins
(core/transforms/edi_route.py). The file is not changed, only read once while streaming. A file no
rule matches, or that is not well-formed EDI, is rejected with its envelope values in the reason.
The values are recorded on the transfer (`envelope` in `tradelane transfers --json`).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Annotated, Any

from prefect import flow
from prefect.client.schemas.objects import State
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from core import derived
from core.db import session_scope
from core.delivery import ChecksumMismatch, Job
from core.endpoints import rows as endpoint_rows
from core.tenancy import system_scope
from core.transforms.edi_route import EdiRouteError, RouteRules, route_stream
from core.validators import ValidationError
from flows.content import Step, carry_through
from tasks.derive import derive
from tasks.push import push
from tasks.start import start
from tasks.validate import validate
from tradelane.templates import template

NAME = "edi-route"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    rules: Annotated[RouteRules, BeforeValidator(RouteRules.parse)] = Field(
        description='JSON list of rules: [{"ST": "850", "dest": "erp-orders"}, ...]'
    )

    def destinations(self) -> list[str]:
        """The endpoints the rules name, in order: a data flow of this template takes no --dest."""
        return [rule.dest for rule in self.rules.root]


def route(job: Job, params: Params) -> Job:
    """The job bound for the endpoint the first matching rule names, with its envelope values."""
    carried = job.carried
    try:
        with carried.open() as stream:
            result = route_stream(stream, params.rules, carried.name)
    except EdiRouteError as exc:
        if exc.envelope is not None:  # what was read before the refusal, for the operator
            derived.record(job.transfer_id, envelope=exc.envelope.as_dict())
        raise ValidationError(NAME, exc.reason) from exc
    if result.sha256 != carried.sha256 or result.size != carried.size:
        raise ChecksumMismatch(f"{carried.name} changed since it was received; not routed")
    envelope = result.envelope.as_dict()
    derived.record(job.transfer_id, envelope=envelope)
    with session_scope() as session:
        dest = endpoint_rows.require(session, system_scope(session, job.flow.account_id), result.dest)
    return replace(job, dest_row=dest, envelope=envelope)


@template(NAME, params=Params, tasks=[start, validate, derive, push])
@flow(name=NAME, log_prints=False, persist_result=False)
async def edi_route(data_flow_id: int, transfer_ids: list[int], params: Params) -> State[Any]:
    """Read each file's envelopes, then deliver it to the endpoint the rules choose."""
    return await carry_through(transfer_ids, [Step(NAME, partial(route, params=params))])

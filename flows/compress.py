"""compress: gzip (po.edi → po.edi.gz) or zip (po.edi → po.edi.zip) each file before it is delivered.

    tradelane flow add archive --source mailbox:acme --dest cold-store --template compress --param format=zip

The output is reproducible (no time stamp of now in it), so a step run again after a crash makes
the same bytes and the delivery stays exactly once.
"""

from __future__ import annotations

from functools import partial
from typing import Any, BinaryIO, Literal

from prefect import flow
from prefect.client.schemas.objects import State
from pydantic import BaseModel, ConfigDict, Field

from core.delivery import Job
from core.derived import derive
from core.transforms.compression import compress_file
from core.transforms.staging import DerivedFile, Staging
from flows.content import Step, carry_through
from tasks import derive as derive_task
from tasks.push import push
from tasks.start import start
from tasks.validate import validate
from tradelane.templates import template

NAME = "compress"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["gzip", "zip"] = Field(
        default="gzip", description="gzip: NAME.gz; zip: NAME.zip holding NAME"
    )


def compress(job: Job, params: Params) -> Job:
    """The job carrying the file compressed."""

    def write(source: BinaryIO, stage: Staging) -> DerivedFile:
        return compress_file(source, job.carried.name, stage, format=params.format, size=job.carried.size)

    return derive(job, NAME, write)


@template(NAME, params=Params, tasks=[start, validate, derive_task.derive, push])
@flow(name=NAME, log_prints=False, persist_result=False)
async def compress_flow(data_flow_id: int, transfer_ids: list[int], params: Params) -> State[Any]:
    """Compress each file of the batch, then deliver it."""
    return await carry_through(transfer_ids, [Step(NAME, partial(compress, params=params))])

"""decompress: gunzip or unzip each file before it is delivered (po.edi.gz → po.edi; a zip → its one file).

    tradelane flow add unpack --source mailbox:acme --dest erp --template decompress --param max_ratio=100

The format is told by the file's first bytes, not its name. Zip-bomb limits are params (defaults:
max_ratio 200, max_total_size 10GiB, max_members 1000). A corrupt archive, a bomb, an unsafe or
encrypted member, or a zip of several files (a transfer delivers one file) is rejected; what was
staged is removed and nothing reaches the destination.
"""

from __future__ import annotations

from functools import partial
from typing import Any, BinaryIO

from prefect import flow
from prefect.client.schemas.objects import State

from core.delivery import Job
from core.derived import derive
from core.transforms.compression import CompressionError, DecompressLimits, decompress_file
from core.transforms.staging import DerivedFile, Staging
from core.validators import ValidationError
from flows.content import Step, carry_through
from tasks import derive as derive_task
from tasks.push import push
from tasks.start import start
from tasks.validate import validate
from tradelane.templates import template

NAME = "decompress"


class Params(DecompressLimits):
    """The zip-bomb limits (core/transforms/compression.py), as params."""


def decompress(job: Job, params: Params) -> Job:
    """The job carrying the file decompressed."""

    def write(source: BinaryIO, stage: Staging) -> list[DerivedFile]:
        return decompress_file(source, job.carried.name, stage, params)

    try:
        return derive(job, NAME, write)
    except CompressionError as exc:
        raise ValidationError(NAME, str(exc)) from exc


@template(NAME, params=Params, tasks=[start, validate, derive_task.derive, push])
@flow(name=NAME, log_prints=False, persist_result=False)
async def decompress_flow(data_flow_id: int, transfer_ids: list[int], params: Params) -> State[Any]:
    """Decompress each file of the batch, then deliver what it held."""
    return await carry_through(transfer_ids, [Step(NAME, partial(decompress, params=params))])

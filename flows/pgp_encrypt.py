"""pgp-encrypt: encrypt each file to the recipients' PGP keys before it is delivered (po.edi → po.edi.pgp).

    tradelane flow add to-bank --source mailbox:acme --dest bank-sftp --template pgp-encrypt \\
        --param recipients=bank@example.com --param sign=ours --param armor=false

Recipients and the signing key are found in the account's keyring (`tradelane pgp key list`) by
name, email or fingerprint. The encrypted file is a derived file: the push delivers exactly it.
"""

from __future__ import annotations

from functools import partial
from typing import Any, BinaryIO

from prefect import flow
from prefect.client.schemas.objects import State
from pydantic import BaseModel, ConfigDict, Field

from core import pgp
from core.delivery import Job
from core.derived import derive
from core.transforms.staging import DerivedFile, Staging
from core.validators import ValidationError
from flows.content import CommaList, Step, account_keyring, carry_through
from tasks import derive as derive_task
from tasks.push import push
from tasks.start import start
from tasks.validate import validate
from tradelane.templates import template

NAME = "pgp-encrypt"


class Params(BaseModel):
    """Who can read the file, who signs it, and how it is written."""

    model_config = ConfigDict(extra="forbid")

    recipients: CommaList = Field(
        min_length=1, description="keys to encrypt to: names, emails or fingerprints"
    )
    sign: str | None = Field(
        default=None, description="our key to sign with (its private part is in the keyring)"
    )
    armor: bool = Field(default=False, description="ASCII-armored (.asc) instead of binary OpenPGP (.pgp)")


def encrypt(job: Job, params: Params) -> Job:
    """The job carrying the file encrypted (and signed) as `params` say."""
    ring = account_keyring(job.flow.account_id)
    name = job.carried.name + (".asc" if params.armor else ".pgp")

    def write(source: BinaryIO, stage: Staging) -> DerivedFile:
        with stage.create(name) as out:
            pgp.encrypt(
                source,
                out,
                params.recipients,
                params.sign,
                params.armor,
                filename=job.carried.name,
                keyring=ring,
            )
        return stage.files[-1]

    try:
        return derive(job, NAME, write)
    except (pgp.PgpKeyError, pgp.PgpUnavailableError):
        raise  # the keyring or the machine needs fixing: failed, replay once fixed
    except pgp.PgpError as exc:
        raise ValidationError(NAME, str(exc)) from exc


@template(NAME, params=Params, tasks=[start, validate, derive_task.derive, push])
@flow(name=NAME, log_prints=False, persist_result=False)
async def pgp_encrypt(data_flow_id: int, transfer_ids: list[int], params: Params) -> State[Any]:
    """Encrypt each file of the batch to the recipients' keys, then deliver it."""
    return await carry_through(transfer_ids, [Step(NAME, partial(encrypt, params=params))])

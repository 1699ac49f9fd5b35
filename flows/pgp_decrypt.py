"""pgp-decrypt: decrypt each file with our private keys and check its signature (po.edi.pgp → po.edi).

    tradelane flow add from-bank --source mailbox:bank --dest erp --template pgp-decrypt \\
        --param verify=required --param signers=bank@example.com

`verify=optional` (the default) lets an unsigned file through but refuses a bad signature;
`verify=required` wants a good signature by one of `signers` (default: any key in the keyring).
`max_size` (default 10GiB) caps the plaintext: OpenPGP messages may be compressed, and a small one
that inflates past it (a compression bomb) is stopped there and rejected.
A file that is not for us, not PGP, damaged or badly signed is rejected, and nothing is delivered:
the plaintext is staged and only pushed once gpg has checked it all.
"""

from __future__ import annotations

from functools import partial
from typing import Any, BinaryIO, Literal

from prefect import flow
from prefect.client.schemas.objects import State
from pydantic import BaseModel, ConfigDict, Field

from core import pgp
from core.delivery import Job
from core.derived import derive
from core.transforms.compression import GIB, Size
from core.transforms.staging import DerivedFile, Staging
from core.validators import ValidationError
from flows.content import CommaList, Step, account_keyring, carry_through
from tasks import derive as derive_task
from tasks.push import push
from tasks.start import start
from tasks.validate import validate
from tradelane.templates import template

NAME = "pgp-decrypt"
SUFFIXES = (".pgp", ".gpg", ".asc")


class Params(BaseModel):
    """How strictly signatures are checked, and whose count."""

    model_config = ConfigDict(extra="forbid")

    verify: Literal["optional", "required"] = Field(
        default="optional", description="required: only files with a good signature by a signer pass"
    )
    signers: CommaList | None = Field(
        default=None, description="accepted signers (default: every key in the keyring)"
    )
    max_size: Size = Field(
        default=10 * GIB,
        description="the most one file may decrypt to (10GiB, 500MB, ...); past it, rejected",
    )


def plain_name(name: str) -> str:
    """`po.edi.pgp` → `po.edi`; a name without a PGP suffix stays as it is."""
    lower = name.lower()
    return next((name[: -len(s)] for s in SUFFIXES if lower.endswith(s) and len(name) > len(s)), name)


def decrypt(job: Job, params: Params) -> Job:
    """The job carrying the decrypted file, its signature checked as `params` say."""
    ring = account_keyring(job.flow.account_id)

    def write(source: BinaryIO, stage: Staging) -> DerivedFile:
        # gpg writes the staged file itself, hashed as it grows (no pipe through this process).
        with stage.create_for_program(plain_name(job.carried.name)) as out:
            pgp.decrypt(source, out, params.verify, params.signers, max_bytes=params.max_size, keyring=ring)
        return stage.files[-1]

    try:
        return derive(job, NAME, write)
    except pgp.PgpTooLargeError as exc:
        raise ValidationError(NAME, f"{exc} (max_size {params.max_size}; a compression bomb?)") from exc
    except (pgp.PgpKeyError, pgp.PgpUnavailableError):
        raise  # a signer named in params is not in the keyring, or no gpg: failed, replay once fixed
    except pgp.PgpError as exc:  # the file: not for us, not PGP, damaged, badly signed
        raise ValidationError(NAME, str(exc)) from exc


@template(NAME, params=Params, tasks=[start, validate, derive_task.derive, push])
@flow(name=NAME, log_prints=False, persist_result=False)
async def pgp_decrypt(data_flow_id: int, transfer_ids: list[int], params: Params) -> State[Any]:
    """Decrypt each file of the batch and check its signature, then deliver the plaintext."""
    return await carry_through(transfer_ids, [Step(NAME, partial(decrypt, params=params))])

"""What the admin API tests share: a partner of acme uploading over REST, and carrying its files."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import select

from core import delivery
from core.db import session_scope
from core.delivery import Outcome
from core.models import Transfer, TransferState
from tests.admin.conftest import PASSWORD, log_in


def ssh_key(comment: str = "tester@example") -> str:
    public = Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}"


def upload(client: httpx.Client, partner: str, name: str, data: bytes) -> None:
    """The partner sends a file by REST, as a partner does (into its upload/)."""
    headers = log_in(client, partner, PASSWORD)
    home = client.get("/api/folders", headers=headers).json()["resources"][0]["id"]
    children = client.get(f"/api/folders/{home}/children", headers=headers).json()["resources"]
    folder = next(f["id"] for f in children if f["subspace"] == "upload")
    sent = client.post(
        f"/api/folders/{folder}/files",
        content=data,
        headers={**headers, "Content-Disposition": f"attachment; filename={name}"},
    )
    assert sent.status_code == 201, sent.text


def carry_pending(run_id: str | None = None) -> str:
    """Carry every pending transfer with the real delivery steps, in-process, as flow run `run_id`
    (a fresh id by default) would; the run's id."""
    run_id = run_id or str(uuid.uuid4())
    with session_scope() as session:
        ids = [
            t.id
            for t in session.exec(select(Transfer).where(Transfer.state == TransferState.pending))
            if t.id is not None
        ]
    outcomes: list[Outcome] = []
    for job in delivery.start_run(ids, run_id).jobs:
        try:
            outcomes.append(Outcome.delivered(job, delivery.push(job)))
        except Exception as exc:  # the outcome records it, as the flow's push task does
            outcomes.append(Outcome(job, error=exc))
    delivery.record_outcomes(outcomes)
    return run_id


def without(item: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in keys}

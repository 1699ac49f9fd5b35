"""Carry pending transfers with the real delivery steps, in-process (what a flow run does, minus Prefect)."""

from __future__ import annotations

from sqlmodel import select

from core import delivery
from core.db import session_scope
from core.delivery import Outcome
from core.models import Transfer, TransferState


def carry_pending() -> list[TransferState]:
    with session_scope() as session:
        ids = [
            t.id
            for t in session.exec(select(Transfer).where(Transfer.state == TransferState.pending))
            if t.id is not None
        ]
    outcomes: list[Outcome] = []
    for job in delivery.start(ids):
        try:
            outcomes.append(Outcome.delivered(job, delivery.push(job)))
        except Exception as exc:  # the outcome records it, as the flow's push task does
            outcomes.append(Outcome(job, error=exc))
    return delivery.record_outcomes(outcomes)

"""Liveness: answers once the API can reach the database."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from api.bodies import BoundedBodyRoute
from api.deps import SessionDep

router = APIRouter(tags=["health"], route_class=BoundedBodyRoute)


@router.get("/health")
def health(session: SessionDep) -> dict[str, str]:
    """200 with {"status": "ok"} when the API and its store answer."""
    session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    return {"status": "ok"}

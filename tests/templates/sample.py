"""A template with params of several kinds, registered by importing this module (as a package's
flow module registers its template when its entry point is loaded)."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow
from pydantic import BaseModel, ConfigDict

from tradelane.templates import template


class SampleParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    recipients: str
    """Who it is for (required)."""
    armor: bool = True
    count: int = 3
    label: str = "x"
    mode: Literal["fast", "safe"] = "safe"
    rules: list[dict[str, str]] = []


@template("sample", params=SampleParams, description="A sample template for tests.")
@flow(name="sample", persist_result=False)
async def sample(data_flow_id: int, transfer_ids: list[int], params: SampleParams) -> Any:
    return params

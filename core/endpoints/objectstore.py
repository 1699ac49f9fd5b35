"""Settings S3 and Azure Blob share: where under the bucket or container files go, how many parts
of a write are in flight, and how long the SDK waits and retries before the flow's own retries."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from core.endpoints.base import InvalidPath, clean_path
from core.endpoints.parts import DEFAULT_CONCURRENCY, MAX_CONCURRENCY
from core.endpoints.settings import EndpointSettings


class ObjectStoreSettings(EndpointSettings):
    prefix: str = ""
    """Key prefix: a folder under the bucket or container that the endpoint's root is."""
    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] = DEFAULT_CONCURRENCY
    """Parts of one write uploaded at once (memory: concurrency + 1 parts)."""
    connect_timeout: Annotated[float, Field(gt=0)] = 10
    """Seconds to wait for a connection."""
    read_timeout: Annotated[float, Field(gt=0)] = 60
    """Seconds to wait for an answer."""
    max_attempts: Annotated[int, Field(ge=1)] = 2
    """Tries of one request inside the SDK (the data flow retries the whole file on top)."""

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        try:
            clean_path(value, allow_root=True)
        except InvalidPath as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def root(self) -> str:
        """The prefix as a clean relative path ("" for the whole bucket or container)."""
        return clean_path(self.prefix, allow_root=True)

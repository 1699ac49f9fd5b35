"""Response models of the partner API, shaped like Cleo Integration Cloud's resources.

Python names are snake_case; the JSON is camelCase (`parentId`, `systemProtected`, `lastModified`)
plus HAL-style `_links`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel


def iso_utc(value: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and a Z: 2026-11-23T15:27:13.123Z (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


Timestamp = Annotated[datetime, PlainSerializer(iso_utc, return_type=str)]
T = TypeVar("T")
# A partner's folders; an account user's `b2b` and the outboxes in it.
Subspace = Literal["upload", "download", "b2b", "outbox"]


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True)


class Token(BaseModel):
    token_type: Literal["bearer"] = "bearer"
    access_token: str
    expires_in: int
    user_id: str


class Link(ApiModel):
    href: str


class Links(ApiModel):
    self_: Link = Field(alias="self")
    parent: Link | None = None


class SystemProtected(ApiModel):
    delete: bool
    rename: bool


class FolderMeta(ApiModel):
    last_modified: Timestamp


class FileMeta(ApiModel):
    last_modified: Timestamp
    # Known for files that arrived through intake (a receipt holds it); absent otherwise.
    sha256: str | None = None


class PathEntry(ApiModel):
    href: str
    id: str
    name: str


class FolderResource(ApiModel):
    type: Literal["folder"] = "folder"
    space: Literal["home"] = "home"
    subspace: Subspace | None = None
    id: str
    name: str
    parent_id: str | None = None
    permissions: list[str]
    system_protected: SystemProtected
    links: Links = Field(alias="_links")
    meta: FolderMeta


class FileResource(ApiModel):
    type: Literal["file"] = "file"
    space: Literal["home"] = "home"
    subspace: Subspace
    id: str
    parent_id: str
    name: str
    length: int
    path: list[PathEntry]
    permissions: list[str]
    system_protected: SystemProtected
    links: Links = Field(alias="_links")
    meta: FileMeta


class ResourceList(ApiModel, Generic[T]):
    total_results: int
    start_index: int
    count: int
    resources: list[T]

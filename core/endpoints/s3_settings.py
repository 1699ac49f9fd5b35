"""An S3 endpoint's settings and secrets."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from core.endpoints.objectstore import ObjectStoreSettings
from core.endpoints.settings import EndpointSecrets, Flag

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's floor for every part but the last
MAX_PART_SIZE = 5 * 1024 * MIB
DEFAULT_PART_SIZE = 8 * MIB


class S3Settings(ObjectStoreSettings):
    """Amazon S3 or an S3-compatible store (MinIO, Ceph, Wasabi): objects under a bucket and prefix.
    Without access keys, boto3's usual chain (environment, profile, instance role) is used."""

    bucket: str
    """The bucket."""
    endpoint_url: str | None = None
    """A non-AWS store's URL, e.g. http://127.0.0.1:9000 (default: AWS)."""
    region: str = "us-east-1"
    """The bucket's region."""
    part_size: Annotated[int, Field(ge=MIN_PART_SIZE, le=MAX_PART_SIZE)] = DEFAULT_PART_SIZE
    """Bytes per part of a multipart upload; smaller files are one PutObject."""
    checksums: Literal["when_supported", "when_required"] = "when_supported"
    """when_supported: a CRC32 with each request, checked by the store (fastest); when_required:
    for older S3-compatible stores that refuse aws-chunked uploads."""
    addressing_style: Literal["auto", "virtual", "path"] = "auto"
    """How the bucket is named in URLs (boto3's addressing_style)."""

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if "/" in value:
            raise ValueError("must be a bucket name, without '/'")
        return value


class S3Secrets(EndpointSecrets):
    access_key_id: Annotated[str | None, Flag("--access-key-id", envvar="TRADELANE_S3_ACCESS_KEY_ID")] = None
    """The access key ID (with the secret access key)."""
    secret_access_key: Annotated[
        str | None, Flag("--secret-access-key", envvar="TRADELANE_S3_SECRET_ACCESS_KEY")
    ] = None
    """The secret access key."""
    session_token: str | None = None
    """A session token, for temporary credentials."""

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError("s3 secrets need both access_key_id and secret_access_key, or neither")
        return self

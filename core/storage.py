"""The storage: where receipts' kept bytes live, as an endpoint every role opens the same way.

`TRADELANE_STORAGE_URL` names it: a local folder (the default, `<home>/mailboxes`) or
`s3://bucket/prefix` on any S3-compatible store. Either way it is an `Endpoint`
(core/endpoints/base.py) over the storage root, so one set of operations serves both:

* a folder is a `FileEndpoint`: writes staged under a temporary name and renamed into place;
* a bucket is an `S3Endpoint`: writes stream into a multipart upload that is invisible until
  CompleteMultipartUpload and aborted on failure, reads stream ranged `GetObject`s. Its endpoint
  URL is `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, its region `AWS_REGION`/`AWS_DEFAULT_REGION`,
  its credentials boto3's usual chain (environment, profile, instance role): boto3 reads them.

One S3 client serves a process (boto3 clients are thread-safe; a forked child makes its own), so
opening the storage per file costs no connection set-up.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from core.config import Settings, get_settings
from core.endpoints.base import Endpoint, clean_path
from core.endpoints.file import FileEndpoint

if TYPE_CHECKING:
    from core.endpoints.s3 import S3Endpoint


class StorageError(RuntimeError):
    """The storage cannot be used (a bucket that does not exist, refused credentials)."""


def is_object_store(settings: Settings | None = None) -> bool:
    """Whether the storage is a bucket (`s3://`) rather than a local folder."""
    return (settings or get_settings()).storage_bucket is not None


_lock = threading.Lock()
_shared: dict[tuple[object, ...], S3Endpoint] = {}


def _s3_settings(settings: Settings) -> dict[str, Any]:
    endpoint_url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return {
        "bucket": settings.storage_bucket,
        "prefix": settings.storage_prefix,
        "endpoint_url": endpoint_url,
        "region": region,
    }


@functools.cache
def _shared_class() -> type[S3Endpoint]:
    """An S3 endpoint whose client is shared (boto3 imported only when the storage is S3)."""
    from core.endpoints.s3 import S3Endpoint

    class SharedS3(S3Endpoint):
        # Set on a partner's home (`open_home`): its paths show as `mailbox://<partner>/<path>`.
        partner: str | None = None

        def close(self) -> None:
            pass  # shared by every caller in this process; dropped with it

        def uri(self, path: str) -> str:
            if self.partner is None:
                return super().uri(path)
            return f"mailbox://{self.partner}/{clean_path(path, allow_root=True)}"

    return SharedS3


def _bucket(settings: Settings, *, lean: bool = False) -> S3Endpoint:
    """The storage bucket: one client per process. `lean`: one part in flight per write (a write
    then holds at most two parts in memory), for uploads that many sessions stream at once."""
    wanted = {**_s3_settings(settings), **({"concurrency": 1} if lean else {})}
    key = (os.getpid(), *(str(value) for value in wanted.values()))
    with _lock:
        endpoint = _shared.get(key)
        if endpoint is None:
            endpoint = _shared[key] = _shared_class()(wanted)
        return endpoint


def open_home(account_folder: str, partner: str, settings: Settings | None = None) -> Endpoint:
    """A partner's home in a storage bucket (`<prefix>/<account>/<partner>/`, the layout of a local
    storage), sharing the storage's client. For a local storage use MailboxEndpoint."""
    settings = settings or get_settings()
    if settings.storage_bucket is None:
        raise ValueError("open_home is for a storage bucket; a local storage's home is a MailboxEndpoint")
    bucket = _bucket(settings)
    prefix = "/".join(part for part in (settings.storage_prefix, account_folder, partner) if part)
    home = _shared_class()({**_s3_settings(settings), "prefix": prefix})
    home._client = bucket.client
    home.partner = partner  # type: ignore[attr-defined]
    return home


def open_storage(settings: Settings | None = None, *, lean: bool = False) -> Endpoint:
    """The storage root as an endpoint (use it as a context manager, as any endpoint)."""
    settings = settings or get_settings()
    if settings.storage_bucket is not None:
        return _bucket(settings, lean=lean)
    return FileEndpoint({"path": str(settings.mailbox_root)})


def describe(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.storage_url or str(settings.mailbox_root)


def check(settings: Settings | None = None) -> None:
    """Refuse to start on a storage bucket that does not exist or cannot be reached, naming it.

    A local folder is made when first written, as it always was: nothing to check.
    """
    settings = settings or get_settings()
    if settings.storage_bucket is None:
        return
    from botocore.exceptions import BotoCoreError, ClientError

    endpoint = _bucket(settings)
    bucket = settings.storage_bucket
    where = f"TRADELANE_STORAGE_URL={settings.storage_url}"
    try:
        endpoint.client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise StorageError(
                f"the storage bucket {bucket!r} does not exist ({where}); create it first"
            ) from None
        if code in ("403", "AccessDenied", "Forbidden"):
            raise StorageError(
                f"the storage bucket {bucket!r} refused these credentials ({where}; credentials from "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the instance's role)"
            ) from None
        raise StorageError(f"the storage bucket {bucket!r} cannot be used ({where}): {code}") from None
    except BotoCoreError as exc:
        raise StorageError(f"the storage bucket {bucket!r} cannot be reached ({where}): {exc}") from None


def _keys_under(bucket: S3Endpoint, rel: str) -> Iterator[str]:
    prefix = bucket._key(clean_path(rel)) + "/"
    with bucket.errors(f"s3://{bucket.bucket}/{prefix}"):
        pages = bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket.bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", ()):
                yield str(item["Key"])


def move_folder(rel: str, to: str, settings: Settings | None = None) -> int:
    """Move every object under the bucket's folder `rel` to `to` (server-side copies, then deletes);
    how many moved. Keeps a removed partner's files out of a new one's reach."""
    settings = settings or get_settings()
    bucket = _bucket(settings)
    source_prefix, target_prefix = bucket._key(clean_path(rel)) + "/", bucket._key(clean_path(to)) + "/"
    moved = 0
    for key in list(_keys_under(bucket, rel)):
        target = target_prefix + key.removeprefix(source_prefix)
        with bucket.errors(f"s3://{bucket.bucket}/{key}"):
            # The managed copy: a multipart server-side copy for objects past 5 GiB.
            bucket.client.copy({"Bucket": bucket.bucket, "Key": key}, bucket.bucket, target)
            bucket.client.delete_object(Bucket=bucket.bucket, Key=key)
        moved += 1
    return moved


def delete_folder(rel: str, settings: Settings | None = None) -> int:
    """Delete every object under the bucket's folder `rel`; how many."""
    settings = settings or get_settings()
    bucket = _bucket(settings)
    deleted = 0
    for key in list(_keys_under(bucket, rel)):
        with bucket.errors(f"s3://{bucket.bucket}/{key}"):
            bucket.client.delete_object(Bucket=bucket.bucket, Key=key)
        deleted += 1
    return deleted

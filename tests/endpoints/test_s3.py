"""The S3 endpoint against a real moto server over HTTP: the contract, multipart, and failures."""

from __future__ import annotations

import base64
import threading
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from core.endpoints.base import (
    AuthError,
    ConfigError,
    DnsError,
    Endpoint,
    EndpointError,
    NameTaken,
    NameTakenMeanwhile,
    NotFound,
    OnConflict,
    PermissionDenied,
    TransientError,
    Unreachable,
)
from core.endpoints.parts import DEFAULT_CONCURRENCY
from core.endpoints.registry import open_endpoint
from core.endpoints.s3 import S3Endpoint, S3WriteStream
from core.endpoints.s3_settings import MIN_PART_SIZE
from tasks.retry import is_retryable
from tests.endpoints.contract import (
    MIB,
    EndpointContract,
    get,
    payload_chunks,
    peak_while_writing,
    put,
)
from tests.servers import MotoAuth, free_port

SECRET = "s3cr3t-never-shown"
KEY_ID = "AKIATRADELANETEST"
PREFIX = "in/box"


@pytest.fixture
def s3(moto_server: str) -> Any:
    """A plain boto3 client for arranging and inspecting what the endpoint did."""
    return boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="arrange",
        aws_secret_access_key="arrange",
    )


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"tradelane-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def make_endpoint(url: str, bucket: str, **config: Any) -> S3Endpoint:
    base = {"bucket": bucket, "prefix": PREFIX, "endpoint_url": url, "part_size": MIN_PART_SIZE}
    return S3Endpoint(base | config, {"access_key_id": KEY_ID, "secret_access_key": SECRET})


class TestS3Endpoint(EndpointContract):
    secret_values = (SECRET,)
    # The parts in flight and the one being filled (5 MiB each), plus the caller's chunk and
    # boto's bookkeeping. test_memory_stays_flat_for_a_large_file checks it does not grow.
    memory_budget = (DEFAULT_CONCURRENCY + 1) * MIN_PART_SIZE + 4 * MIB

    @pytest.fixture
    def endpoint(self, moto_server: str, bucket: str) -> Iterator[Endpoint]:
        with make_endpoint(moto_server, bucket) as endpoint:
            yield endpoint


@pytest.fixture
def endpoint(moto_server: str, bucket: str) -> Iterator[S3Endpoint]:
    with make_endpoint(moto_server, bucket) as endpoint:
        yield endpoint


# --- configuration ---------------------------------------------------------------------------


def test_registry_opens_s3() -> None:
    assert isinstance(open_endpoint("s3", {"bucket": "b-b-b"}), S3Endpoint)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"bucket": ""},
        {"bucket": "a/b"},
        {"bucket": "ok-bucket", "prefix": "../up"},
        {"bucket": "ok-bucket", "part_size": MIN_PART_SIZE - 1},
        {"bucket": "ok-bucket", "checksums": "sometimes"},
        {"bucket": "ok-bucket", "concurrency": 0},
        {"bucket": "ok-bucket", "concurrency": 17},
        {"bucket": "ok-bucket", "concurrency": "many"},
    ],
)
def test_bad_config(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        S3Endpoint(config)


@pytest.mark.parametrize("checksums", ["when_supported", "when_required"])
def test_both_checksum_modes_upload_in_parts(moto_server: str, bucket: str, checksums: str) -> None:
    """The default CRC32 checksums and the older stores' signed payloads both make a whole object."""
    endpoint = make_endpoint(moto_server, bucket, checksums=checksums)
    data = b"".join(payload_chunks(2 * MIN_PART_SIZE + 1))
    put(endpoint, "two-parts.bin", data)
    assert get(endpoint, "two-parts.bin") == data


def composite_crc32(data: bytes, part_size: int) -> str:
    """S3's checksum of a multipart object: CRC32 over the parts' CRC32s (S3 appends '-<parts>')."""
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    joined = b"".join(zlib.crc32(part).to_bytes(4, "big") for part in parts)
    return base64.b64encode(zlib.crc32(joined).to_bytes(4, "big")).decode()


def test_multipart_object_carries_a_composite_crc32(endpoint: S3Endpoint, s3: Any, bucket: str) -> None:
    """Parts are declared CRC32, as boto3's upload_file declares them, so the store keeps a
    checksum of the whole object that anyone can verify later (and moto skips a full copy)."""
    data = b"".join(payload_chunks(2 * MIN_PART_SIZE + 1))
    put(endpoint, "checked.bin", data)
    head = s3.head_object(Bucket=bucket, Key=f"{PREFIX}/checked.bin", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"].split("-")[0] == composite_crc32(data, MIN_PART_SIZE)


def test_clients_share_the_parsed_service_model_but_not_keys(moto_server: str, bucket: str) -> None:
    """Every push opens its own endpoint: S3's service model is parsed once per process (a session
    per client parsed it each time, most of a small file's push), and each keeps its own keys."""
    first = make_endpoint(moto_server, bucket)
    second = S3Endpoint(
        {"bucket": bucket, "endpoint_url": moto_server},
        {"access_key_id": "AKIAOTHERKEY", "secret_access_key": "other-secret"},
    )
    with first, second:
        model = first.client.meta.service_model
        assert second.client.meta.service_model._service_description is model._service_description
        assert first.client._request_signer._credentials.access_key == KEY_ID
        assert second.client._request_signer._credentials.access_key == "AKIAOTHERKEY"
        put(first, "a.bin", b"first")  # both still work against the store
        assert get(second, f"{PREFIX}/a.bin") == b"first"


def test_half_a_key_pair_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        S3Endpoint({"bucket": "ok-bucket"}, {"access_key_id": KEY_ID})


def test_uri() -> None:
    endpoint = S3Endpoint(
        {"bucket": "acme-archive", "prefix": "/in/box/"},
        {"access_key_id": KEY_ID, "secret_access_key": SECRET},
    )
    assert endpoint.uri("po/850.json") == "s3://acme-archive/in/box/po/850.json"
    assert S3Endpoint({"bucket": "acme-archive"}).uri("x.txt") == "s3://acme-archive/x.txt"


def test_files_land_under_the_prefix(endpoint: S3Endpoint, s3: Any, bucket: str) -> None:
    put(endpoint, "a/b.txt", b"hi")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"{PREFIX}/a/b.txt"]


def test_list_ignores_folder_markers_and_paginates(endpoint: S3Endpoint, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/", Body=b"")
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/sub/", Body=b"")
    names = [f"f{i}.txt" for i in range(7)]
    for name in names:
        s3.put_object(Bucket=bucket, Key=f"{PREFIX}/{name}", Body=b"x")
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/sub/deep.txt", Body=b"x")
    s3.put_object(Bucket=bucket, Key="in/boxer.txt", Body=b"x")  # shares the prefix's characters only
    endpoint.list_page_size = 2  # four pages, one of them holding the "sub/" common prefix
    assert [info.path for info in endpoint.list()] == names
    assert [info.path for info in endpoint.list("sub")] == ["sub/deep.txt"]


# --- multipart -------------------------------------------------------------------------------


def test_small_file_is_one_put(endpoint: S3Endpoint, s3: Any, bucket: str) -> None:
    put(endpoint, "small.bin", b"x" * (MIN_PART_SIZE - 1))
    etag = s3.head_object(Bucket=bucket, Key=f"{PREFIX}/small.bin")["ETag"]
    assert "-" not in etag


def test_large_file_uses_multipart(endpoint: S3Endpoint, s3: Any, bucket: str) -> None:
    size = 2 * MIN_PART_SIZE + 123
    with endpoint.open_write("large.bin") as stream:
        assert isinstance(stream, S3WriteStream)
        for chunk in payload_chunks(size):
            stream.write(chunk)
        assert stream.upload_id is not None
    head = s3.head_object(Bucket=bucket, Key=f"{PREFIX}/large.bin")
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-3")
    assert endpoint.stat("large.bin").etag == head["ETag"].strip('"')
    expected = b"".join(payload_chunks(size))
    assert get(endpoint, "large.bin") == expected


def test_exact_part_size_multiple(endpoint: S3Endpoint) -> None:
    data = b"z" * (2 * MIN_PART_SIZE)
    put(endpoint, "exact.bin", data)
    assert get(endpoint, "exact.bin") == data


@pytest.mark.parametrize("how", ["abort", "exception"])
def test_aborted_multipart_leaves_no_upload(endpoint: S3Endpoint, s3: Any, bucket: str, how: str) -> None:
    stream = endpoint.open_write("aborted.bin")
    for chunk in payload_chunks(MIN_PART_SIZE + MIB):
        stream.write(chunk)
    assert isinstance(stream, S3WriteStream)
    assert stream.upload_id is not None
    assert len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    if how == "abort":
        stream.abort()
    else:
        stream.__exit__(RuntimeError, RuntimeError("boom"), None)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_memory_stays_flat_for_a_large_file(endpoint: S3Endpoint) -> None:
    """A file far bigger than the parts in flight: memory is bounded by them, not by the file."""
    size = 64 * MIB
    put(endpoint, "warm.bin", b"x")  # boto's one-off costs (service model) are not per-file memory
    peak = peak_while_writing(endpoint, "flat.bin", size)
    # Slack: the generator's chunk (randbytes briefly holds two) and the SDK's per-request bookkeeping.
    assert peak < (DEFAULT_CONCURRENCY + 1) * MIN_PART_SIZE + 4 * MIB, f"write peak {peak / MIB:.1f} MiB"
    assert endpoint.stat("flat.bin").size == size


def test_failed_background_part_aborts_the_upload(endpoint: S3Endpoint, s3: Any, bucket: str) -> None:
    """A part that fails on its upload thread stops the write; nothing new becomes visible."""
    put(endpoint, "kept.bin", b"old")
    before = set(threading.enumerate())
    chunks = payload_chunks(8 * MIN_PART_SIZE)
    # S3 answers NoSuchUpload; moto answers 500. Either is an endpoint error for the flow to judge.
    with pytest.raises(EndpointError), endpoint.open_write("kept.bin") as stream:
        assert isinstance(stream, S3WriteStream)
        while stream.upload_id is None:
            stream.write(next(chunks))
        # The upload goes away under the stream (another client, a lifecycle rule): the parts
        # still to come fail on their threads, and the failure reaches a write or the commit.
        s3.abort_multipart_upload(Bucket=bucket, Key=f"{PREFIX}/kept.bin", UploadId=stream.upload_id)
        for chunk in chunks:
            stream.write(chunk)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert get(endpoint, "kept.bin") == b"old"
    assert [info.path for info in endpoint.list()] == ["kept.bin"]
    # No upload thread outlives the stream.
    assert [t.name for t in set(threading.enumerate()) - before if t.name.startswith("s3-part")] == []


# --- on_conflict: conditional writes --------------------------------------------------------


def test_a_name_taken_during_a_multipart_rename_is_retried_not_replaced(
    endpoint: S3Endpoint, s3: Any, bucket: str
) -> None:
    """The key of a multipart upload is fixed at its first part; If-None-Match at complete keeps
    an object another writer put there meanwhile, and the retried error picks a new name."""
    with (
        pytest.raises(NameTakenMeanwhile) as caught,
        endpoint.open_write("race.bin", OnConflict.rename) as stream,
    ):
        assert isinstance(stream, S3WriteStream)
        chunks = payload_chunks(2 * MIN_PART_SIZE)
        while stream.upload_id is None:
            stream.write(next(chunks))
        assert stream.path == "race.bin"
        s3.put_object(Bucket=bucket, Key=f"{PREFIX}/race.bin", Body=b"the other writer")
        for chunk in chunks:
            stream.write(chunk)
    assert is_retryable(caught.value)
    assert get(endpoint, "race.bin") == b"the other writer"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    # The next try takes the next name.
    with endpoint.open_write("race.bin", OnConflict.rename) as again:
        for chunk in payload_chunks(2 * MIN_PART_SIZE):
            again.write(chunk)
    assert again.path == "race (2).bin"


def test_fail_refuses_a_taken_name_before_sending_parts(endpoint: S3Endpoint, s3: Any, bucket: str) -> None:
    put(endpoint, "taken.bin", b"there")
    with (
        pytest.raises(NameTaken, match=r"taken\.bin"),
        endpoint.open_write("taken.bin", OnConflict.fail) as stream,
    ):
        assert isinstance(stream, S3WriteStream)
        for chunk in payload_chunks(2 * MIN_PART_SIZE):
            stream.write(chunk)
        raise AssertionError("the first part should have been refused")
    assert not is_retryable(NameTaken("x"))
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert get(endpoint, "taken.bin") == b"there"


# --- failures --------------------------------------------------------------------------------


def test_missing_bucket_is_a_config_error(moto_server: str) -> None:
    endpoint = make_endpoint(moto_server, "no-such-bucket-here")
    with pytest.raises(ConfigError, match="NoSuchBucket"):
        endpoint.check()
    with pytest.raises(ConfigError):
        endpoint.stat("x.txt")
    with pytest.raises(ConfigError):
        endpoint.open_read("x.txt")
    with pytest.raises(ConfigError):
        put(endpoint, "x.txt", b"x")


def test_connection_refused_is_transient() -> None:
    endpoint = make_endpoint(f"http://127.0.0.1:{free_port()}", "any-bucket", max_attempts=1)
    with pytest.raises(Unreachable, match="refused") as caught:
        endpoint.check()
    assert caught.value.retryable
    assert SECRET not in str(caught.value)
    for operation in ("stat", "open_read", "delete"):
        with pytest.raises(TransientError):
            getattr(endpoint, operation)("x.txt")
    with pytest.raises(TransientError):
        put(endpoint, "x.txt", b"x")


def test_unknown_host_is_a_dns_error_naming_it() -> None:
    endpoint = make_endpoint("http://no-such-host.invalid:9000", "any-bucket", max_attempts=1)
    with pytest.raises(DnsError, match=r"DNS lookup of no-such-host\.invalid failed") as caught:
        endpoint.check()
    assert not caught.value.retryable


def test_no_credentials_is_auth_error(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    endpoint = S3Endpoint({"bucket": "any-bucket", "endpoint_url": moto_server})
    with pytest.raises(AuthError):
        endpoint.check()


def auth_endpoint(auth: MotoAuth, key_id: str, secret: str) -> S3Endpoint:
    return S3Endpoint(
        {"bucket": auth.bucket, "endpoint_url": auth.url},
        {"access_key_id": key_id, "secret_access_key": secret},
    )


def test_unknown_access_key_is_auth_error(moto_auth_server: MotoAuth) -> None:
    endpoint = auth_endpoint(moto_auth_server, "AKIANOBODYKNOWSTHIS", SECRET)
    with pytest.raises(AuthError, match="InvalidAccessKeyId") as caught:
        endpoint.check()
    assert SECRET not in str(caught.value)
    # HEAD carries no error code; the endpoint still reports the real cause.
    with pytest.raises(AuthError, match="InvalidAccessKeyId"):
        endpoint.stat("x.txt")
    with pytest.raises(AuthError):
        put(endpoint, "x.txt", b"x")


def test_wrong_secret_is_auth_error(moto_auth_server: MotoAuth) -> None:
    endpoint = auth_endpoint(moto_auth_server, moto_auth_server.access_key_id, SECRET)
    with pytest.raises(AuthError, match="SignatureDoesNotMatch") as caught:
        endpoint.check()
    assert SECRET not in str(caught.value)
    with pytest.raises(AuthError):
        endpoint.open_read("x.txt")


def test_valid_key_without_permission_is_denied(moto_auth_server: MotoAuth) -> None:
    auth = moto_auth_server
    endpoint = auth_endpoint(auth, auth.access_key_id, auth.secret_access_key)
    with pytest.raises(PermissionDenied, match="AccessDenied"):
        endpoint.check()
    with pytest.raises(PermissionDenied, match="AccessDenied"):
        endpoint.stat("x.txt")
    with pytest.raises(PermissionDenied):
        put(endpoint, "x.txt", b"x")


def test_missing_key_with_bare_head_404(endpoint: S3Endpoint) -> None:
    with pytest.raises(NotFound, match="NoSuchKey"):
        endpoint.stat("nothing-here.txt")

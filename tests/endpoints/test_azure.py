"""The Azure Blob endpoint against a real Azurite: the contract (three ways to log in), block
uploads, and failures."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import (
    BlobServiceClient,
    ContentSettings,
)

from core.endpoints import azure as azure_module
from core.endpoints.azure import AzureBlobEndpoint, AzureWriteStream
from core.endpoints.base import (
    AuthError,
    ConfigError,
    DnsError,
    Endpoint,
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
from tasks.retry import is_retryable
from tests.endpoint_servers.azurite import Azurite
from tests.endpoints.contract import (
    MIB,
    EndpointContract,
    get,
    payload_chunks,
    peak_while_writing,
    put,
)
from tests.servers import free_port

PREFIX = "in/box"
BLOCK = MIB  # small blocks, so a few MiB already exercise staged block lists
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleQ=="


FULL = {"read": True, "write": True, "delete": True, "list": True, "add": True, "create": True}


def auth(azurite: Azurite, mode: str, container: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(extra config, secrets) for one way to log in."""
    if mode == "connection_string":
        return {}, {"connection_string": azurite.connection_string}
    if mode == "account_key":
        secrets = {"account_name": azurite.account_name, "account_key": azurite.account_key}
        return {"account_url": azurite.account_url}, secrets
    return {"account_url": azurite.account_url}, {"sas_token": azurite.container_sas(container, **FULL)}


def make_endpoint(
    azurite: Azurite, container: str, mode: str = "connection_string", **config: Any
) -> AzureBlobEndpoint:
    extra, secrets = auth(azurite, mode, container)
    base = {"container": container, "prefix": PREFIX, "block_size": BLOCK, "max_attempts": 1}
    return AzureBlobEndpoint(base | extra | config, secrets)


@pytest.fixture
def container(azurite: Azurite) -> str:
    return azurite.new_container()


@pytest.fixture
def service(azurite: Azurite) -> Iterator[BlobServiceClient]:
    with azurite.service() as client:
        yield client


class TestAzureBlobEndpoint(EndpointContract):
    partial_size = 3 * BLOCK + 1234  # more than one block: a staged, uncommitted block list
    # The blocks in flight and the one being filled, plus the caller's chunk and the SDK's
    # bookkeeping (measured 7.4 MiB; the contract's default of 8 MiB left too little room).
    memory_budget = (DEFAULT_CONCURRENCY + 1) * BLOCK + 4 * MIB

    @pytest.fixture(params=["connection_string", "account_key", "sas"])
    def endpoint(
        self, request: pytest.FixtureRequest, azurite: Azurite, container: str
    ) -> Iterator[Endpoint]:
        endpoint = make_endpoint(azurite, container, request.param)
        # The contract checks that none of these appears in a URI or an error message.
        self.secret_values = tuple(endpoint.secret_values())
        assert self.secret_values  # every mode hands the endpoint at least one secret
        with endpoint:
            yield endpoint


@pytest.fixture
def endpoint(azurite: Azurite, container: str) -> Iterator[AzureBlobEndpoint]:
    with make_endpoint(azurite, container) as endpoint:
        yield endpoint


# --- configuration ---------------------------------------------------------------------------


def test_registry_opens_azure(azurite: Azurite) -> None:
    opened = open_endpoint("azure", {"container": "acme"}, {"connection_string": azurite.connection_string})
    assert isinstance(opened, AzureBlobEndpoint)


@pytest.mark.parametrize(
    ("config", "secrets"),
    [
        ({}, {"connection_string": "AccountName=a;AccountKey=k"}),
        ({"container": "A_B"}, {"connection_string": "AccountName=a;AccountKey=k"}),
        ({"container": "ab"}, {"connection_string": "AccountName=a;AccountKey=k"}),
        ({"container": "ok-name", "prefix": "../up"}, {"connection_string": "AccountName=a;AccountKey=k"}),
        ({"container": "ok-name", "block_size": 1}, {"connection_string": "AccountName=a;AccountKey=k"}),
        ({"container": "ok-name"}, {}),  # no credentials
        ({"container": "ok-name"}, {"account_key": "k"}),  # key without account name
        ({"container": "ok-name"}, {"sas_token": "sv=x&sig=y"}),  # SAS without a URL or account
        ({"container": "ok-name"}, {"connection_string": "x", "sas_token": "sig=y"}),  # two ways
        ({"container": "ok-name", "account_url": "ftp://x"}, {"sas_token": "sig=y"}),
        (
            {"container": "ok-name", "account_url": "https://a.blob.core.windows.net"},
            {"connection_string": "x"},
        ),
        ({"container": "ok-name"}, {"connection_string": "just-garbage"}),
    ],
)
def test_bad_config(config: dict[str, Any], secrets: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        AzureBlobEndpoint(config, secrets)
    for value in secrets.values():
        if len(value) > 4:
            assert value not in str(caught.value)


def test_uri_names_account_container_and_prefix_only() -> None:
    key = "c2VjcmV0LWtleS1uZXZlci1zaG93bg=="
    by_string = AzureBlobEndpoint(
        {"container": "acme-archive", "prefix": "/in/box/"},
        {"connection_string": f"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={key}"},
    )
    assert by_string.uri("po/850.json") == "azure://acme/acme-archive/in/box/po/850.json"
    assert by_string.account_url == "https://acme.blob.core.windows.net"
    by_key = AzureBlobEndpoint({"container": "acme-archive"}, {"account_name": "acme", "account_key": key})
    assert by_key.uri("x.txt") == "azure://acme/acme-archive/x.txt"
    emulator = AzureBlobEndpoint(
        {"container": "c-1", "account_url": "http://127.0.0.1:10000/devstoreaccount1"},
        {"sas_token": "?sig=abc"},
    )
    assert emulator.uri("a b.txt") == "azure://devstoreaccount1/c-1/a b.txt"
    assert key not in by_string.uri("x") + by_key.uri("x")


def test_files_land_under_the_prefix(
    endpoint: AzureBlobEndpoint, service: BlobServiceClient, container: str
) -> None:
    put(endpoint, "a/b.txt", b"hi")
    names = [blob.name for blob in service.get_container_client(container).list_blobs()]
    assert names == [f"{PREFIX}/a/b.txt"]


def test_list_skips_folder_markers_and_paginates(
    endpoint: AzureBlobEndpoint, service: BlobServiceClient, container: str
) -> None:
    client = service.get_container_client(container)
    client.upload_blob(f"{PREFIX}/", b"")
    client.upload_blob(f"{PREFIX}/sub/", b"")
    client.upload_blob(f"{PREFIX}/dir", b"", metadata={"hdi_isfolder": "true"})  # an HNS directory
    names = [f"f{i}.txt" for i in range(7)]
    for name in names:
        client.upload_blob(f"{PREFIX}/{name}", b"x")
    client.upload_blob(f"{PREFIX}/sub/deep.txt", b"x")
    client.upload_blob("in/boxer.txt", b"x")  # shares the prefix's characters only
    endpoint.list_page_size = 2
    assert [info.path for info in endpoint.list()] == names
    assert [info.path for info in endpoint.list("sub")] == ["sub/deep.txt"]
    with pytest.raises(NotFound):
        endpoint.stat("dir")


# --- block uploads ---------------------------------------------------------------------------


def test_small_file_is_one_put_blob(
    endpoint: AzureBlobEndpoint, service: BlobServiceClient, container: str
) -> None:
    with endpoint.open_write("small.bin") as stream:
        stream.write(b"x" * (BLOCK - 1))
        assert isinstance(stream, AzureWriteStream)
        assert stream.block_ids == []
    blob = service.get_blob_client(container, f"{PREFIX}/small.bin")
    assert blob.get_block_list("all") == ([], [])
    assert blob.get_blob_properties().size == BLOCK - 1


def test_large_file_is_committed_as_a_block_list(
    endpoint: AzureBlobEndpoint, service: BlobServiceClient, container: str
) -> None:
    size = 2 * BLOCK + 123
    blob = service.get_blob_client(container, f"{PREFIX}/large.bin")
    with endpoint.open_write("large.bin") as stream:
        for chunk in payload_chunks(size):
            stream.write(chunk)
        assert isinstance(stream, AzureWriteStream)
        assert len(stream.block_ids) == 2  # staged, not committed: nothing to see yet
        with pytest.raises(NotFound):
            endpoint.stat("large.bin")
    committed, uncommitted = blob.get_block_list("all")
    assert [block.size for block in committed] == [BLOCK, BLOCK, 123]
    assert uncommitted == []
    assert len({block.id for block in committed}) == 3
    assert get(endpoint, "large.bin") == b"".join(payload_chunks(size))
    assert endpoint.stat("large.bin").etag == str(blob.get_blob_properties().etag).strip('"')


def test_exact_block_multiple(endpoint: AzureBlobEndpoint) -> None:
    data = b"z" * (2 * BLOCK)
    put(endpoint, "exact.bin", data)
    assert get(endpoint, "exact.bin") == data


def test_block_size_grows_for_huge_files(
    endpoint: AzureBlobEndpoint, service: BlobServiceClient, container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(azure_module, "BLOCKS_PER_SIZE_STEP", 2)
    put(endpoint, "grown.bin", b"g" * (7 * BLOCK))
    committed, _ = service.get_blob_client(container, f"{PREFIX}/grown.bin").get_block_list("committed")
    assert [block.size // BLOCK for block in committed] == [1, 1, 2, 2, 1]


@pytest.mark.parametrize("how", ["abort", "exception"])
def test_aborted_write_commits_nothing(
    endpoint: AzureBlobEndpoint, service: BlobServiceClient, container: str, how: str
) -> None:
    stream = endpoint.open_write("aborted.bin")
    for chunk in payload_chunks(2 * BLOCK + 5):
        stream.write(chunk)
    assert isinstance(stream, AzureWriteStream)
    assert len(stream.block_ids) == 2
    if how == "abort":
        stream.abort()
    else:
        stream.__exit__(RuntimeError, RuntimeError("boom"), None)
    client = service.get_container_client(container)
    assert list(client.list_blobs()) == []  # no committed blob
    # The staged blocks stay uncommitted (Azure garbage-collects them); nothing is readable.
    committed, uncommitted = client.get_blob_client(f"{PREFIX}/aborted.bin").get_block_list("all")
    assert committed == [] and len(uncommitted) == 2
    with pytest.raises(NotFound):
        endpoint.open_read("aborted.bin")
    # A later write of the same name is unaffected by the abandoned blocks.
    put(endpoint, "aborted.bin", b"second try" * BLOCK)
    assert endpoint.stat("aborted.bin").size == 10 * BLOCK


def test_aborted_overwrite_keeps_the_old_blob(endpoint: AzureBlobEndpoint) -> None:
    put(endpoint, "keep.bin", b"old" * 10)
    with pytest.raises(RuntimeError), endpoint.open_write("keep.bin") as stream:
        for chunk in payload_chunks(3 * BLOCK):
            stream.write(chunk)
        raise RuntimeError("boom")
    assert get(endpoint, "keep.bin") == b"old" * 10


def test_memory_stays_flat_for_a_large_file(endpoint: AzureBlobEndpoint) -> None:
    """A file far bigger than the blocks in flight: memory is bounded by them, not by the file."""
    size = 64 * MIB
    put(endpoint, "warm.bin", b"x")  # the SDK's one-off costs are not per-file memory
    peak = peak_while_writing(endpoint, "flat.bin", size)
    # Slack: the generator's chunk (randbytes briefly holds two) and the SDK's per-request bookkeeping.
    assert peak < (DEFAULT_CONCURRENCY + 1) * BLOCK + 4 * MIB, f"write peak {peak / MIB:.1f} MiB"
    assert endpoint.stat("flat.bin").size == size


def test_failed_background_block_commits_nothing(
    endpoint: AzureBlobEndpoint, service: BlobServiceClient, container: str
) -> None:
    """A block that fails on its upload thread stops the write; the old blob stays as it was."""
    put(endpoint, "leased.bin", b"old")
    blob = service.get_blob_client(container, f"{PREFIX}/leased.bin")
    before = set(threading.enumerate())
    chunks = payload_chunks(16 * BLOCK)
    with pytest.raises(PermissionDenied, match="LeaseIdMissing"), endpoint.open_write("leased.bin") as stream:
        assert isinstance(stream, AzureWriteStream)
        while not stream.block_ids:
            stream.write(next(chunks))
        # Another writer leases the blob: the blocks still to come are refused on their threads,
        # and the failure reaches a write or the commit.
        lease = blob.acquire_lease()
        for chunk in chunks:
            stream.write(chunk)
    lease.release()
    assert blob.get_block_list("committed")[0] == []  # still the old single Put Blob
    assert get(endpoint, "leased.bin") == b"old"
    assert [info.path for info in endpoint.list()] == ["leased.bin"]
    # No upload thread outlives the stream.
    assert [t.name for t in set(threading.enumerate()) - before if t.name.startswith("azure-block")] == []


def test_blob_replaced_during_read_is_read_whole(endpoint: AzureBlobEndpoint) -> None:
    """One streamed GET: a concurrent overwrite never yields a mix of two versions."""
    put(endpoint, "moving.bin", b"a" * (24 * MIB))
    with endpoint.open_read("moving.bin") as stream:
        first = stream.read(MIB)
        put(endpoint, "moving.bin", b"b" * (24 * MIB))
        data = first + stream.read()
    assert data == b"a" * (24 * MIB)
    assert get(endpoint, "moving.bin") == b"b" * (24 * MIB)


def test_closing_a_read_early_leaves_the_endpoint_usable(endpoint: AzureBlobEndpoint) -> None:
    put(endpoint, "long.bin", b"L" * (16 * MIB))
    put(endpoint, "short.txt", b"short")
    for _ in range(3):
        with endpoint.open_read("long.bin") as stream:
            assert stream.read(10) == b"L" * 10
        assert get(endpoint, "short.txt") == b"short"


def test_reads_are_exact_bytes_even_if_gzip_encoded(
    endpoint: AzureBlobEndpoint, service: BlobServiceClient, container: str
) -> None:
    gz = gzip.compress(b"hello " * 1000)
    blob = service.get_blob_client(container, f"{PREFIX}/report.csv.gz")
    blob.upload_blob(gz, content_settings=ContentSettings(content_encoding="gzip"))
    assert get(endpoint, "report.csv.gz") == gz


def test_reads_fall_back_to_public_chunks(
    endpoint: AzureBlobEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"".join(payload_chunks(3 * MIB + 7))
    put(endpoint, "fallback.bin", data)
    endpoint.streamed_reads = False
    assert get(endpoint, "fallback.bin") == data
    with pytest.raises(NotFound):
        endpoint.open_read("missing.bin")


# --- on_conflict: conditional writes --------------------------------------------------------


def test_a_name_taken_during_a_block_list_rename_is_retried_not_replaced(
    endpoint: AzureBlobEndpoint, service: BlobServiceClient, container: str
) -> None:
    """Blocks are staged under one blob name; If-None-Match on Put Block List keeps a blob another
    writer put there meanwhile, and the retried error picks a new name on the next try."""
    other = service.get_blob_client(container, f"{PREFIX}/race.bin")
    with (
        pytest.raises(NameTakenMeanwhile) as caught,
        endpoint.open_write("race.bin", OnConflict.rename) as stream,
    ):
        assert isinstance(stream, AzureWriteStream)
        chunks = payload_chunks(3 * BLOCK)
        while not stream.block_ids:
            stream.write(next(chunks))
        assert stream.path == "race.bin"
        other.upload_blob(b"the other writer")
        for chunk in chunks:
            stream.write(chunk)
    assert is_retryable(caught.value)
    assert get(endpoint, "race.bin") == b"the other writer"
    with endpoint.open_write("race.bin", OnConflict.rename) as again:
        for chunk in payload_chunks(3 * BLOCK):
            again.write(chunk)
    assert again.path == "race (2).bin"


def test_fail_refuses_a_taken_name_before_staging_blocks(endpoint: AzureBlobEndpoint) -> None:
    put(endpoint, "taken.bin", b"there")
    with (
        pytest.raises(NameTaken, match=r"taken\.bin"),
        endpoint.open_write("taken.bin", OnConflict.fail) as stream,
    ):
        for chunk in payload_chunks(3 * BLOCK):
            stream.write(chunk)
        raise AssertionError("the first block should have been refused")
    assert get(endpoint, "taken.bin") == b"there"


# --- failures --------------------------------------------------------------------------------


def test_wrong_account_key_is_auth_error(azurite: Azurite, container: str) -> None:
    endpoint = AzureBlobEndpoint(
        {"container": container, "account_url": azurite.account_url},
        {"account_name": azurite.account_name, "account_key": WRONG_KEY},
    )
    with pytest.raises(AuthError) as caught:
        endpoint.check()
    assert not caught.value.retryable
    assert WRONG_KEY not in str(caught.value)
    with pytest.raises(AuthError):
        endpoint.stat("x.txt")  # HEAD: the code comes from a header, not a body
    with pytest.raises(AuthError):
        put(endpoint, "x.txt", b"x")
    with pytest.raises(AuthError):
        put(endpoint, "big.bin", b"x" * (9 * MIB))  # staged blocks too


def test_wrong_key_in_connection_string_is_auth_error(azurite: Azurite, container: str) -> None:
    wrong = azurite.connection_string.replace(azurite.account_key, WRONG_KEY)
    endpoint = AzureBlobEndpoint({"container": container}, {"connection_string": wrong})
    with pytest.raises(AuthError) as caught:
        endpoint.check()
    assert WRONG_KEY not in str(caught.value)
    assert wrong not in str(caught.value)


def test_malformed_key_is_auth_error(azurite: Azurite, container: str) -> None:
    endpoint = AzureBlobEndpoint(
        {"container": container, "account_url": azurite.account_url},
        {"account_name": azurite.account_name, "account_key": "not base64 at all!"},
    )
    with pytest.raises(AuthError, match="malformed") as caught:
        endpoint.check()
    assert "not base64 at all!" not in str(caught.value)


def test_forged_sas_is_auth_error(azurite: Azurite, container: str) -> None:
    token = azurite.container_sas(container, **FULL).replace("sig=", "sig=AAAA")
    endpoint = AzureBlobEndpoint(
        {"container": container, "account_url": azurite.account_url}, {"sas_token": token}
    )
    with pytest.raises(AuthError) as caught:
        endpoint.check()
    assert token not in str(caught.value)


def test_read_only_sas_cannot_write(azurite: Azurite, container: str, service: BlobServiceClient) -> None:
    service.get_blob_client(container, "there.txt").upload_blob(b"readable")
    token = azurite.container_sas(container, read=True, list=True)
    endpoint = AzureBlobEndpoint(
        {"container": container, "account_url": azurite.account_url}, {"sas_token": token}
    )
    endpoint.check()
    assert get(endpoint, "there.txt") == b"readable"
    with pytest.raises(PermissionDenied, match="AuthorizationPermissionMismatch") as caught:
        put(endpoint, "x.txt", b"x")
    assert token not in str(caught.value)
    with pytest.raises(PermissionDenied):
        put(endpoint, "big.bin", b"x" * (9 * MIB))
    with pytest.raises(PermissionDenied):
        endpoint.delete("there.txt")


def test_missing_container_is_a_config_error(azurite: Azurite) -> None:
    endpoint = make_endpoint(azurite, "no-such-container")
    with pytest.raises(ConfigError, match="ContainerNotFound"):
        endpoint.check()
    for operation in ("stat", "open_read", "delete"):
        with pytest.raises(ConfigError):
            getattr(endpoint, operation)("x.txt")
    with pytest.raises(ConfigError):
        put(endpoint, "x.txt", b"x")
    with pytest.raises(ConfigError):
        put(endpoint, "big.bin", b"x" * (2 * BLOCK))


def test_connection_refused_is_transient(azurite: Azurite) -> None:
    port = free_port()
    endpoint = AzureBlobEndpoint(
        {
            "container": "any-container",
            "account_url": f"http://127.0.0.1:{port}/{azurite.account_name}",
            "max_attempts": 1,
        },
        {"account_name": azurite.account_name, "account_key": azurite.account_key},
    )
    with pytest.raises(Unreachable, match="refused") as caught:
        endpoint.check()
    assert caught.value.retryable
    assert azurite.account_key not in str(caught.value)
    for operation in ("stat", "open_read", "delete"):
        with pytest.raises(TransientError):
            getattr(endpoint, operation)("x.txt")
    with pytest.raises(TransientError):
        put(endpoint, "x.txt", b"x")


def test_unknown_host_names_dns(azurite: Azurite) -> None:
    endpoint = AzureBlobEndpoint(
        {"container": "any-container", "account_url": "http://no-such-host.invalid/acct", "max_attempts": 1},
        {"account_name": "acct", "account_key": azurite.account_key},
    )
    with pytest.raises(DnsError, match="DNS") as caught:
        endpoint.check()
    assert "no-such-host.invalid" in str(caught.value)


def test_delete_missing_blob(endpoint: AzureBlobEndpoint) -> None:
    with pytest.raises(NotFound, match="BlobNotFound"):
        endpoint.delete("nothing.txt")

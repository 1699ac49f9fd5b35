"""The endpoint contract: one abstract test suite every implementation runs unchanged.

Like fsspec's abstract test classes: a backend's test module subclasses `EndpointContract`
(with a `Test` name so pytest collects it) and provides an `endpoint` fixture that yields a
fresh, empty, working endpoint against a real server. Class attributes tune sizes per backend.
"""

from __future__ import annotations

import hashlib
import random
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from core.endpoints.base import ConfigError, Endpoint, InvalidPath, NameTaken, NotFound, OnConflict

MIB = 1024 * 1024
BAD_PATHS = ["../x", "/abs", "a/../../b", "a\x00b", ""]
BAD_FOLDERS = ["../x", "a/../../b", "a\x00b"]


def put(endpoint: Endpoint, path: str, data: bytes) -> None:
    with endpoint.open_write(path) as stream:
        stream.write(data)


def get(endpoint: Endpoint, path: str) -> bytes:
    with endpoint.open_read(path) as stream:
        return b"".join(iter(lambda: stream.read(MIB), b""))


def paths(endpoint: Endpoint, folder: str = "") -> list[str]:
    return [info.path for info in endpoint.list(folder)]


def payload_chunks(total: int, seed: int = 7) -> Iterator[bytes]:
    """Deterministic pseudo-random bytes in uneven chunks, so chunk and part edges don't line up."""
    rng = random.Random(seed)
    sent = 0
    while sent < total:
        size = min(MIB + rng.randrange(4096), total - sent)
        sent += size
        yield rng.randbytes(size)


def peak_memory(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run fn; return its result and the peak of Python allocations made meanwhile."""
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def peak_while_writing(endpoint: Endpoint, path: str, size: int) -> int:
    """Stream `size` bytes to `path`; the peak of Python allocations made while writing."""

    def write() -> None:
        with endpoint.open_write(path) as stream:
            for chunk in payload_chunks(size):
                stream.write(chunk)

    return peak_memory(write)[1]


class EndpointContract:
    """What every endpoint must do. Subclasses provide the `endpoint` fixture."""

    # Secrets handed to the endpoint: none may show up in a URI or an error message.
    secret_values: ClassVar[tuple[str, ...]] = ()
    # The streamed payload, and how much Python memory moving it may take at most.
    big_size: ClassVar[int] = 20 * MIB + 12345
    memory_budget: ClassVar[int] = 8 * MIB
    # A write big enough to leave the backend's "small file" path (S3: more than one part).
    partial_size: ClassVar[int] = 6 * MIB

    @pytest.fixture
    def endpoint(self) -> Iterator[Endpoint]:
        raise NotImplementedError("subclasses provide an `endpoint` fixture")

    # --- round trips -------------------------------------------------------------------------

    def test_roundtrip_is_byte_exact(self, endpoint: Endpoint) -> None:
        data = bytes(range(256)) * 41 + b"\r\n\x00end"
        put(endpoint, "hello.bin", data)
        assert get(endpoint, "hello.bin") == data
        assert endpoint.stat("hello.bin").size == len(data)

    def test_empty_file(self, endpoint: Endpoint) -> None:
        put(endpoint, "empty.txt", b"")
        assert get(endpoint, "empty.txt") == b""
        assert endpoint.stat("empty.txt").size == 0
        assert paths(endpoint) == ["empty.txt"]

    def test_large_file_streams_with_bounded_memory(self, endpoint: Endpoint) -> None:
        def write() -> str:
            digest = hashlib.sha256()
            with endpoint.open_write("big/payload.bin") as stream:
                for chunk in payload_chunks(self.big_size):
                    digest.update(chunk)
                    stream.write(chunk)
            return digest.hexdigest()

        def read() -> tuple[str, int]:
            digest, size = hashlib.sha256(), 0
            with endpoint.open_read("big/payload.bin") as stream:
                while chunk := stream.read(MIB):
                    digest.update(chunk)
                    size += len(chunk)
            return digest.hexdigest(), size

        # Warm up first: one-off costs (an SDK loading its service model) are not per-file memory.
        put(endpoint, "big/warm-up.txt", b"x")
        assert get(endpoint, "big/warm-up.txt") == b"x"
        endpoint.delete("big/warm-up.txt")
        sent, write_peak = peak_memory(write)
        (received, size), read_peak = peak_memory(read)
        assert (received, size) == (sent, self.big_size)
        assert endpoint.stat("big/payload.bin").size == self.big_size
        assert write_peak < self.memory_budget, f"write peak {write_peak / MIB:.1f} MiB"
        assert read_peak < self.memory_budget, f"read peak {read_peak / MIB:.1f} MiB"

    def test_read_returns_requested_chunks(self, endpoint: Endpoint) -> None:
        put(endpoint, "chunks.txt", b"0123456789" * 10)
        with endpoint.open_read("chunks.txt") as stream:
            assert stream.read(10) == b"0123456789"
            assert len(stream.read(35)) == 35
            assert len(stream.read()) == 55
            assert stream.read(10) == b""

    def test_write_accepts_any_bytes_like(self, endpoint: Endpoint) -> None:
        data = bytes(range(64))
        with endpoint.open_write("views.bin") as stream:
            stream.write(bytearray(data[:16]))
            stream.write(memoryview(data[16:]).cast("I"))  # 12 items, 48 bytes
        assert stream.bytes_written == 64
        assert get(endpoint, "views.bin") == data

    def test_nested_folders_are_created(self, endpoint: Endpoint) -> None:
        put(endpoint, "a/b/c/deep.txt", b"deep")
        assert get(endpoint, "a/b/c/deep.txt") == b"deep"
        assert paths(endpoint, "a/b/c") == ["a/b/c/deep.txt"]

    # --- atomic visibility -------------------------------------------------------------------

    def test_overwrite_replaces_atomically(self, endpoint: Endpoint) -> None:
        put(endpoint, "report.csv", b"old,content\n" * 100)
        with endpoint.open_write("report.csv") as stream:
            stream.write(b"new\n")
            # Until the write is committed, readers still see the whole old file.
            assert get(endpoint, "report.csv") == b"old,content\n" * 100
        assert get(endpoint, "report.csv") == b"new\n"
        assert [(i.path, i.size) for i in endpoint.list()] == [("report.csv", 4)]

    def test_exception_inside_write_leaves_nothing(self, endpoint: Endpoint) -> None:
        with pytest.raises(RuntimeError, match="upload broke"), endpoint.open_write("broken.bin") as stream:
            stream.write(b"partial" * 1000)
            raise RuntimeError("upload broke")
        assert paths(endpoint) == []
        with pytest.raises(NotFound):
            endpoint.stat("broken.bin")

    def test_exception_after_many_bytes_leaves_nothing(self, endpoint: Endpoint) -> None:
        with pytest.raises(RuntimeError), endpoint.open_write("sub/broken.bin") as stream:
            for chunk in payload_chunks(self.partial_size):
                stream.write(chunk)
            raise RuntimeError("connection lost")
        assert paths(endpoint, "sub") == []
        with pytest.raises(NotFound):
            endpoint.stat("sub/broken.bin")

    def test_failed_overwrite_keeps_old_file(self, endpoint: Endpoint) -> None:
        put(endpoint, "keep.txt", b"original")
        with pytest.raises(RuntimeError), endpoint.open_write("keep.txt") as stream:
            stream.write(b"replacement that never finishes")
            raise RuntimeError("boom")
        assert get(endpoint, "keep.txt") == b"original"
        assert paths(endpoint) == ["keep.txt"]

    def test_abort_leaves_nothing(self, endpoint: Endpoint) -> None:
        stream = endpoint.open_write("aborted.bin")
        for chunk in payload_chunks(self.partial_size):
            stream.write(chunk)
        stream.abort()
        stream.abort()  # idempotent
        with pytest.raises(ValueError):
            stream.write(b"more")
        assert paths(endpoint) == []
        with pytest.raises(NotFound):
            endpoint.stat("aborted.bin")

    def test_write_in_progress_is_invisible(self, endpoint: Endpoint) -> None:
        put(endpoint, "done.txt", b"done")
        small = endpoint.open_write("small-wip.bin")
        small.write(b"x" * 1000)
        big = endpoint.open_write("sub/big-wip.bin")
        for chunk in payload_chunks(self.partial_size):
            big.write(chunk)
        # Neither the target names nor any temporary name may show up in a listing.
        assert paths(endpoint) == ["done.txt"]
        assert paths(endpoint, "sub") == []
        for path in ("small-wip.bin", "sub/big-wip.bin"):
            with pytest.raises(NotFound):
                endpoint.stat(path)
        small.commit()
        big.commit()
        assert paths(endpoint) == ["done.txt", "small-wip.bin"]
        assert paths(endpoint, "sub") == ["sub/big-wip.bin"]
        assert endpoint.stat("sub/big-wip.bin").size == self.partial_size

    # --- a name that is taken: on_conflict (issue 10 item 1) -----------------------------------

    def put_new(self, endpoint: Endpoint, path: str, data: bytes, on_conflict: OnConflict) -> str | None:
        """Write with a policy; where the bytes went (None: the path asked for)."""
        with endpoint.open_write(path, on_conflict) as stream:
            stream.write(data)
        return stream.path

    def test_rename_keeps_the_existing_file_and_numbers_the_new_one(self, endpoint: Endpoint) -> None:
        if endpoint.default_on_conflict is None:  # every write is a new message: nothing to rename
            with pytest.raises(ConfigError, match="does not apply"):
                endpoint.open_write("x.edi", OnConflict.rename)
            return
        put(endpoint, "in/invoice_812.edi", b"first")
        assert self.put_new(endpoint, "in/invoice_812.edi", b"second", OnConflict.rename) == (
            "in/invoice_812 (2).edi"
        )
        assert self.put_new(endpoint, "in/invoice_812.edi", b"third", OnConflict.rename) == (
            "in/invoice_812 (3).edi"
        )
        assert get(endpoint, "in/invoice_812.edi") == b"first"
        assert get(endpoint, "in/invoice_812 (2).edi") == b"second"
        assert get(endpoint, "in/invoice_812 (3).edi") == b"third"
        assert paths(endpoint, "in") == [
            "in/invoice_812 (2).edi",
            "in/invoice_812 (3).edi",
            "in/invoice_812.edi",
        ]

    def test_rename_and_fail_write_a_free_name_as_asked(self, endpoint: Endpoint) -> None:
        if endpoint.default_on_conflict is None:
            with pytest.raises(ConfigError, match="does not apply"):
                endpoint.open_write("x.edi", OnConflict.fail)
            return
        assert self.put_new(endpoint, "a.edi", b"a", OnConflict.rename) == "a.edi"
        assert self.put_new(endpoint, "b.edi", b"b", OnConflict.fail) == "b.edi"
        assert get(endpoint, "a.edi") == b"a" and get(endpoint, "b.edi") == b"b"

    def test_fail_leaves_the_existing_file_and_names_it(self, endpoint: Endpoint) -> None:
        if endpoint.default_on_conflict is None:
            return  # refused at open (test_rename_and_fail_write_a_free_name_as_asked)
        put(endpoint, "po.json", b"original")
        with pytest.raises(NameTaken, match=r"po\.json.*exists"):
            self.put_new(endpoint, "po.json", b"never shown", OnConflict.fail)
        assert get(endpoint, "po.json") == b"original"
        assert paths(endpoint) == ["po.json"]  # no temporary file left behind

    def test_rename_of_a_file_big_enough_for_parts(self, endpoint: Endpoint) -> None:
        if endpoint.default_on_conflict is None:
            return
        put(endpoint, "big.bin", b"small original")
        with endpoint.open_write("big.bin", OnConflict.rename) as stream:
            for chunk in payload_chunks(self.partial_size):
                stream.write(chunk)
        assert stream.path == "big (2).bin"
        assert endpoint.stat("big (2).bin").size == self.partial_size
        assert get(endpoint, "big.bin") == b"small original"

    def test_two_writers_of_one_name_both_land(self, endpoint: Endpoint) -> None:
        """Two deliveries of one name open at once (one batch): neither replaces the other."""
        if endpoint.default_on_conflict is None:
            return
        first = endpoint.open_write("same.txt", OnConflict.rename)
        second = endpoint.open_write("same.txt", OnConflict.rename)
        first.write(b"one")
        second.write(b"two")
        first.commit()
        second.commit()
        assert (first.path, second.path) == ("same.txt", "same (2).txt")
        assert get(endpoint, "same.txt") == b"one" and get(endpoint, "same (2).txt") == b"two"

    def test_overwrite_is_still_the_default_of_open_write(self, endpoint: Endpoint) -> None:
        if endpoint.default_on_conflict is None:
            return
        put(endpoint, "o.txt", b"old")
        assert self.put_new(endpoint, "o.txt", b"new", OnConflict.overwrite) is None
        assert get(endpoint, "o.txt") == b"new"
        assert paths(endpoint) == ["o.txt"]

    # --- list, stat, delete ------------------------------------------------------------------

    def test_list_shows_files_in_name_order(self, endpoint: Endpoint) -> None:
        for name in ["b.txt", "A.txt", "a.txt", "2.txt", "10.txt", "sub/d.txt", "sub/deeper/e.txt"]:
            put(endpoint, name, name.encode())
        assert paths(endpoint) == ["10.txt", "2.txt", "A.txt", "a.txt", "b.txt"]
        assert paths(endpoint, "sub") == ["sub/d.txt"]
        assert paths(endpoint, "sub/") == ["sub/d.txt"]
        assert paths(endpoint, "sub/deeper") == ["sub/deeper/e.txt"]
        assert [i.name for i in endpoint.list("sub/deeper")] == ["e.txt"]

    def test_list_missing_folder_is_empty(self, endpoint: Endpoint) -> None:
        put(endpoint, "file.txt", b"x")
        assert paths(endpoint, "no/such/folder") == []

    def test_empty_endpoint_lists_nothing_and_checks_ok(self, endpoint: Endpoint) -> None:
        assert paths(endpoint) == []
        endpoint.check()

    def test_stat_reports_size_and_modified(self, endpoint: Endpoint) -> None:
        before = datetime.now(UTC)
        put(endpoint, "sub/x.bin", b"12345")
        info = endpoint.stat("sub/x.bin")
        assert (info.path, info.name, info.size) == ("sub/x.bin", "x.bin", 5)
        assert info.modified.utcoffset() == timedelta(0)  # aware, in UTC
        # Some stores keep whole seconds only.
        slack = timedelta(seconds=5)
        assert before - slack <= info.modified <= datetime.now(UTC) + slack
        [listed] = endpoint.list("sub")
        assert (listed.path, listed.size) == ("sub/x.bin", 5)

    @pytest.mark.parametrize("operation", ["stat", "open_read", "delete"])
    def test_missing_file_is_not_found(self, endpoint: Endpoint, operation: str) -> None:
        put(endpoint, "other.txt", b"x")
        with pytest.raises(NotFound):
            getattr(endpoint, operation)("missing.txt")
        with pytest.raises(NotFound):
            getattr(endpoint, operation)("no/such/missing.txt")

    def test_folder_is_not_a_file(self, endpoint: Endpoint) -> None:
        put(endpoint, "folder/inside.txt", b"x")
        with pytest.raises(NotFound):
            endpoint.stat("folder")

    def test_delete(self, endpoint: Endpoint) -> None:
        put(endpoint, "gone.txt", b"bye")
        put(endpoint, "stays.txt", b"hi")
        endpoint.delete("gone.txt")
        with pytest.raises(NotFound):
            endpoint.stat("gone.txt")
        assert paths(endpoint) == ["stays.txt"]
        with pytest.raises(NotFound):
            endpoint.delete("gone.txt")

    # --- paths and secrets -------------------------------------------------------------------

    @pytest.mark.parametrize("bad", BAD_PATHS)
    @pytest.mark.parametrize("operation", ["stat", "open_read", "open_write", "delete"])
    def test_invalid_paths_are_refused(self, endpoint: Endpoint, operation: str, bad: str) -> None:
        with pytest.raises(InvalidPath):
            getattr(endpoint, operation)(bad)

    @pytest.mark.parametrize("bad", BAD_FOLDERS)
    def test_invalid_folders_are_refused(self, endpoint: Endpoint, bad: str) -> None:
        with pytest.raises(InvalidPath):
            list(endpoint.list(bad))

    def test_uri_and_errors_carry_no_secret(self, endpoint: Endpoint) -> None:
        uri = endpoint.uri("folder/file.txt")
        assert uri.startswith(f"{endpoint.scheme}:")
        assert "folder/file.txt" in uri
        with pytest.raises(NotFound) as caught:
            endpoint.stat("missing.txt")
        for secret in self.secret_values:
            assert secret not in uri
            assert secret not in str(caught.value)

    def test_close_is_idempotent(self, endpoint: Endpoint) -> None:
        put(endpoint, "x.txt", b"x")
        endpoint.close()
        endpoint.close()


class WritesInPlaceContract(EndpointContract):
    """The contract for an endpoint told to write the final name directly (sftp/ftp `temp_name: none`).

    For servers that refuse renames, so nothing is atomic: the name shows while the file is
    written, and a failed write deletes it, an older file of that name included. Every other test
    of the contract holds unchanged; these three say what happens instead.
    """

    def test_overwrite_replaces_atomically(self, endpoint: Endpoint) -> None:
        put(endpoint, "report.csv", b"old,content\n" * 100)
        with endpoint.open_write("report.csv") as stream:
            stream.write(b"new\n")
            assert paths(endpoint) == ["report.csv"]  # the name never disappears
        assert get(endpoint, "report.csv") == b"new\n"
        assert [(i.path, i.size) for i in endpoint.list()] == [("report.csv", 4)]

    def test_failed_overwrite_keeps_old_file(self, endpoint: Endpoint) -> None:
        put(endpoint, "keep.txt", b"original")
        with pytest.raises(RuntimeError), endpoint.open_write("keep.txt") as stream:
            stream.write(b"replacement that never finishes")
            raise RuntimeError("boom")
        # Not kept: the partial replacement is removed, and the original went when it began.
        assert paths(endpoint) == []
        with pytest.raises(NotFound):
            endpoint.stat("keep.txt")

    def test_write_in_progress_is_invisible(self, endpoint: Endpoint) -> None:
        put(endpoint, "done.txt", b"done")
        stream = endpoint.open_write("sub/wip.bin")
        for chunk in payload_chunks(self.partial_size):
            stream.write(chunk)
        # Visible under its final name while it is written: the price of no rename.
        assert paths(endpoint, "sub") == ["sub/wip.bin"]
        stream.commit()
        assert paths(endpoint) == ["done.txt"]
        assert endpoint.stat("sub/wip.bin").size == self.partial_size

"""The file endpoint: the contract, plus what only a local folder can show (temp files, symlinks)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.endpoints.base import (
    ConfigError,
    Endpoint,
    EndpointError,
    InvalidPath,
    NotFound,
    OnConflict,
    PermissionDenied,
)
from core.endpoints.file import TEMP_PREFIX, FileEndpoint, FileWriteStream
from core.endpoints.registry import open_endpoint
from tests.endpoints.contract import EndpointContract, get, paths, put


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


class TestFileEndpoint(EndpointContract):
    @pytest.fixture
    def endpoint(self, tmp_path: Path) -> Iterator[Endpoint]:
        root = tmp_path / "root"
        root.mkdir()
        with FileEndpoint({"path": str(root)}) as endpoint:
            yield endpoint


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def endpoint(root: Path) -> FileEndpoint:
    return FileEndpoint({"path": str(root)})


def test_registry_opens_file_endpoint(root: Path) -> None:
    assert isinstance(open_endpoint("file", {"path": str(root)}), FileEndpoint)


@pytest.mark.parametrize("config", [{}, {"path": ""}, {"path": "relative/dir"}, {"path": 3}])
def test_bad_config(config: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        FileEndpoint(config)


def test_missing_root_fails_check(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        FileEndpoint({"path": str(tmp_path / "nope")}).check()


def test_uri(endpoint: FileEndpoint, root: Path) -> None:
    assert endpoint.uri("in/po 850.json") == f"file://{root}/in/po%20850.json"
    assert endpoint.uri("") == f"file://{root}"


def test_temp_file_sits_next_to_target_and_is_cleaned(endpoint: FileEndpoint, root: Path) -> None:
    stream = endpoint.open_write("in/file.txt")
    assert isinstance(stream, FileWriteStream)
    stream.write(b"data")
    assert stream.temp.parent == root / "in"
    assert stream.temp.name.startswith(TEMP_PREFIX)
    assert temp_files(root) == [stream.temp]
    stream.commit()
    assert temp_files(root) == []
    assert (root / "in" / "file.txt").read_bytes() == b"data"


def test_failed_write_leaves_no_temp_file(endpoint: FileEndpoint, root: Path) -> None:
    with pytest.raises(RuntimeError), endpoint.open_write("x.bin") as stream:
        stream.write(b"x" * 10_000)
        raise RuntimeError
    assert list(root.iterdir()) == []


def test_failed_commit_cleans_up(endpoint: FileEndpoint, root: Path) -> None:
    stream = endpoint.open_write("x.bin")
    stream.write(b"x")
    (root / "x.bin").mkdir()  # a folder now sits where the file should land
    (root / "x.bin" / "keep").write_bytes(b"")
    with pytest.raises(EndpointError, match=r"x\.bin"):
        stream.commit()
    assert temp_files(root) == []


def test_new_files_get_normal_permissions(endpoint: FileEndpoint, root: Path) -> None:
    umask = os.umask(0o022)
    try:
        put(endpoint, "perm.txt", b"x")
    finally:
        os.umask(umask)
    assert (root / "perm.txt").stat().st_mode & 0o777 == 0o644


def test_temp_names_are_reserved(endpoint: FileEndpoint, root: Path) -> None:
    (root / f"{TEMP_PREFIX}leftover").write_bytes(b"old crash")
    assert paths(endpoint) == []
    with pytest.raises(InvalidPath):
        endpoint.stat(f"{TEMP_PREFIX}leftover")


def test_folders_are_not_listed(endpoint: FileEndpoint, root: Path) -> None:
    (root / "empty-folder").mkdir()
    put(endpoint, "file.txt", b"x")
    assert paths(endpoint) == ["file.txt"]


def test_symlink_out_of_root_is_refused(endpoint: FileEndpoint, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (root / "escape").symlink_to(outside)
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    for operation in ("stat", "open_read", "open_write", "delete"):
        with pytest.raises(InvalidPath):
            getattr(endpoint, operation)("escape/secret.txt")
        with pytest.raises(InvalidPath):
            getattr(endpoint, operation)("leak.txt")
    with pytest.raises(InvalidPath):
        list(endpoint.list("escape"))
    assert paths(endpoint) == []
    assert (outside / "secret.txt").read_bytes() == b"secret"


def test_symlink_inside_root_is_followed(endpoint: FileEndpoint, root: Path) -> None:
    put(endpoint, "real/data.txt", b"data")
    (root / "alias").symlink_to(root / "real")
    assert get(endpoint, "alias/data.txt") == b"data"
    assert paths(endpoint, "alias") == ["alias/data.txt"]


def test_root_may_itself_be_a_symlink(tmp_path: Path, root: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(root)
    endpoint = FileEndpoint({"path": str(link)})
    put(endpoint, "x.txt", b"x")
    assert (root / "x.txt").read_bytes() == b"x"
    assert paths(endpoint) == ["x.txt"]


def test_permission_denied(endpoint: FileEndpoint, root: Path) -> None:
    put(endpoint, "locked.txt", b"x")
    (root / "locked.txt").chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(PermissionDenied):
            endpoint.open_read("locked.txt")
        return
    # Root ignores file permissions: check as an unprivileged user in a forked child.
    shared = Path(tempfile.mkdtemp(prefix="tradelane-perm-"))
    try:
        shared.chmod(0o755)
        (shared / "locked.txt").write_bytes(b"x")
        (shared / "locked.txt").chmod(0)
        pid = os.fork()
        if pid == 0:  # child: become "nobody", then expect PermissionDenied
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                try:
                    FileEndpoint({"path": str(shared)}).open_read("locked.txt")
                except PermissionDenied:
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, (
            "reading a mode-0 file as nobody did not raise PermissionDenied"
        )
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_rename_without_hard_links_checks_the_name_first(
    endpoint: FileEndpoint, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem without hard links (FAT, some network mounts) refuses link(): best effort."""
    put(endpoint, "po.json", b"first")

    def no_links(*_: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with endpoint.open_write("po.json", OnConflict.rename) as stream:
        stream.write(b"second")
    assert stream.path == "po (2).json"
    assert get(endpoint, "po.json") == b"first" and get(endpoint, "po (2).json") == b"second"
    assert temp_files(root) == []


# --- linked writes: a local file put in place by a hard link (core.delivery's derived files) ---


def test_linked_write_puts_the_local_file_in_place_without_a_copy(
    endpoint: FileEndpoint, root: Path, tmp_path: Path
) -> None:
    local = tmp_path / "staged"
    local.write_bytes(b"derived bytes")
    linked = endpoint.open_linked(local, "out/po.edi", OnConflict.rename)
    assert linked is not None
    with linked:
        assert not (root / "out" / "po.edi").exists()  # nothing visible before the commit
        assert linked.read() == b"derived bytes"
    delivered = root / "out" / "po.edi"
    assert delivered.read_bytes() == b"derived bytes"
    assert delivered.stat().st_ino == local.stat().st_ino  # the same file: not copied
    assert temp_files(root) == []


def test_linked_write_takes_on_conflict_like_any_write(
    endpoint: FileEndpoint, root: Path, tmp_path: Path
) -> None:
    local = tmp_path / "staged"
    local.write_bytes(b"new")
    put(endpoint, "po.edi", b"old")
    linked = endpoint.open_linked(local, "po.edi", OnConflict.rename)
    assert linked is not None
    with linked:
        pass
    assert linked.path == "po (2).edi" and get(endpoint, "po.edi") == b"old"
    failing = endpoint.open_linked(local, "po.edi", OnConflict.fail)
    assert failing is not None
    with pytest.raises(EndpointError), failing:
        pass
    assert get(endpoint, "po.edi") == b"old" and temp_files(root) == []


def test_aborted_linked_write_leaves_the_local_file_and_nothing_at_the_destination(
    endpoint: FileEndpoint, root: Path, tmp_path: Path
) -> None:
    local = tmp_path / "staged"
    local.write_bytes(b"bytes that fail their check")
    linked = endpoint.open_linked(local, "po.edi")
    assert linked is not None
    with pytest.raises(RuntimeError), linked:
        raise RuntimeError("checksum differs")
    assert list(root.iterdir()) == [] and local.read_bytes() == b"bytes that fail their check"
    again = endpoint.open_linked(local, "po.edi")
    assert again is not None
    with pytest.raises(EndpointError), again:
        again.write(b"no")  # its bytes are the local file's: nothing is written through it
    assert list(root.iterdir()) == [] and local.read_bytes() == b"bytes that fail their check"


def test_linked_write_to_another_filesystem_is_declined(tmp_path: Path) -> None:
    if not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == tmp_path.stat().st_dev:
        pytest.fail("this test needs /dev/shm on a filesystem of its own, apart from the test's tmp_path")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        local = Path(other) / "staged"
        local.write_bytes(b"x")
        root = tmp_path / "root"
        root.mkdir()
        assert FileEndpoint({"path": str(root)}).open_linked(local, "po.edi") is None
    assert list(root.iterdir()) == []


def test_linked_write_of_a_missing_file_is_not_found(endpoint: FileEndpoint, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        endpoint.open_linked(tmp_path / "gone", "po.edi")


def test_linked_write_is_declined_where_a_new_file_would_take_the_folders_group(
    endpoint: FileEndpoint, root: Path, tmp_path: Path
) -> None:
    local = tmp_path / "staged"
    local.write_bytes(b"x")
    folder = root / "shared"
    folder.mkdir()
    os.chown(folder, -1, local.stat().st_gid + 4242)  # a group of its own (the tests run as root)
    os.chmod(folder, 0o2775)  # setgid: new files take the folder's group, a link would not
    assert endpoint.open_linked(local, "shared/po.edi") is None
    put(endpoint, "shared/po.edi", b"x")  # the copy takes the folder's group, as any new file
    assert (folder / "po.edi").stat().st_gid == local.stat().st_gid + 4242
    os.chown(folder, -1, local.stat().st_gid)  # the same group: linked
    linked = endpoint.open_linked(local, "shared/po2.edi")
    assert linked is not None
    with linked:
        pass
    assert (folder / "po2.edi").stat().st_ino == local.stat().st_ino

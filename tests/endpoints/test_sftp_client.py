"""The SFTP client endpoint against a real OpenSSH sshd: the contract, host keys, logins, failures."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from core.endpoints.base import (
    AuthError,
    ConfigError,
    DnsError,
    Endpoint,
    EndpointError,
    InvalidPath,
    NotFound,
    PermissionDenied,
    TransientError,
    Unreachable,
)
from core.endpoints.hostkeys import HostKeyMismatch, fetch_host_key, fingerprint, parse_host_keys
from core.endpoints.registry import open_endpoint
from core.endpoints.sftp import TEMP_PREFIX, SftpEndpoint, load_private_key
from tests.endpoint_servers.sshd import OpenSSHServer
from tests.endpoints.contract import (
    MIB,
    EndpointContract,
    WritesInPlaceContract,
    get,
    payload_chunks,
    peak_memory,
    put,
)
from tests.servers import free_port


def make_endpoint(
    server: OpenSSHServer, path: Path | str, secrets: dict[str, Any], **config: Any
) -> SftpEndpoint:
    base = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "path": str(path),
        "host_key": server.host_key,
        "timeout": 10,
    }
    return SftpEndpoint(base | config, secrets)


@pytest.fixture
def folder(openssh_server: OpenSSHServer) -> Path:
    return openssh_server.new_folder()


@pytest.fixture
def endpoint(openssh_server: OpenSSHServer, folder: Path) -> Iterator[SftpEndpoint]:
    with make_endpoint(openssh_server, folder, {"password": openssh_server.password}) as endpoint:
        yield endpoint


class TestSftpWithPassword(EndpointContract):
    @pytest.fixture
    def endpoint(self, openssh_server: OpenSSHServer, folder: Path) -> Iterator[Endpoint]:
        type(self).secret_values = (openssh_server.password,)
        with make_endpoint(openssh_server, folder, {"password": openssh_server.password}) as endpoint:
            yield endpoint


class TestSftpTempNamePrefix(EndpointContract):
    """The dot-prefixed temporary name (what tradelane used before `temp_name`)."""

    @pytest.fixture
    def endpoint(self, openssh_server: OpenSSHServer, folder: Path) -> Iterator[Endpoint]:
        secrets = {"password": openssh_server.password}
        with make_endpoint(openssh_server, folder, secrets, temp_name="prefix") as endpoint:
            yield endpoint


class TestSftpWithoutRename(WritesInPlaceContract):
    """`temp_name: none` against an SFTP server that refuses every rename."""

    @pytest.fixture
    def endpoint(self, openssh_server_without_rename: OpenSSHServer) -> Iterator[Endpoint]:
        server = openssh_server_without_rename
        secrets = {"password": server.password}
        with make_endpoint(server, server.new_folder(), secrets, temp_name="none") as endpoint:
            yield endpoint


class TestSftpWithKey(EndpointContract):
    @pytest.fixture
    def endpoint(self, openssh_server: OpenSSHServer, folder: Path) -> Iterator[Endpoint]:
        # Not the encrypted key here: its bcrypt KDF would cost a quarter second per test.
        with make_endpoint(openssh_server, folder, {"private_key": openssh_server.private_key}) as endpoint:
            yield endpoint


# --- configuration ---------------------------------------------------------------------------

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzOCWsUF8YpdPvplvmF5YuPGG9Klq7FZ87mxvC3Ri0G"
GOOD = {"host": "sftp.example.com", "user": "acme", "host_key": HOST_KEY}


def test_registry_opens_sftp() -> None:
    assert isinstance(open_endpoint("sftp", GOOD, {"password": "pw"}), SftpEndpoint)


@pytest.mark.parametrize(
    ("config", "secrets", "message"),
    [
        ({**GOOD, "host": ""}, {"password": "pw"}, "host"),
        ({**GOOD, "user": ""}, {"password": "pw"}, "user"),
        ({**GOOD, "port": 70000}, {"password": "pw"}, "port"),
        ({**GOOD, "host_key": ""}, {"password": "pw"}, "host_key"),
        ({**GOOD, "host_key": "ssh-ed25519 not-base64!"}, {"password": "pw"}, "base64"),
        ({**GOOD, "host_key": "ssh-dss AAAAB3NzaC1kc3M="}, {"password": "pw"}, "unsupported"),
        ({**GOOD, "host_key": "ssh-rsa " + HOST_KEY.split()[1]}, {"password": "pw"}, "holds a 'ssh-ed25519'"),
        (GOOD, {}, "password"),
    ],
)
def test_bad_config(config: dict[str, Any], secrets: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SftpEndpoint(config, secrets)


def test_host_key_lines_accept_comments_keyscan_output_and_several_keys(
    openssh_server: OpenSSHServer,
) -> None:
    ed, ecdsa = openssh_server.host_keys["ssh-ed25519"], openssh_server.host_keys["ecdsa-sha2-nistp256"]
    keys = parse_host_keys(f"# pinned 2024\n{ed} partner-host\n[sftp.example.com]:2222 {ecdsa}\n")
    assert [key.line for key in keys] == [ed, ecdsa]


def test_uri_shows_no_secret() -> None:
    endpoint = SftpEndpoint({**GOOD, "port": 2222, "path": "/in/box/"}, {"password": "hunter22"})
    assert endpoint.uri("po/850.edi") == "sftp://acme@sftp.example.com:2222/in/box/po/850.edi"
    relative = SftpEndpoint({**GOOD, "path": "inbound"}, {"password": "hunter22"})
    assert relative.uri("x.txt") == "sftp://acme@sftp.example.com:22/~/inbound/x.txt"
    assert SftpEndpoint(GOOD, {"password": "hunter22"}).uri("") == "sftp://acme@sftp.example.com:22/~"


def test_temporary_names_are_reserved(endpoint: SftpEndpoint) -> None:
    for operation in ("stat", "open_read", "open_write", "delete"):
        with pytest.raises(InvalidPath):
            getattr(endpoint, operation)(f"{TEMP_PREFIX}abc-x.txt")


# --- host keys -------------------------------------------------------------------------------


def test_fetch_host_key_and_fingerprint_match_ssh_keygen(openssh_server: OpenSSHServer) -> None:
    line = fetch_host_key(openssh_server.host, openssh_server.port, timeout=10)
    assert line == openssh_server.host_key  # the server's favourite type: ed25519
    for key_type, pub in openssh_server.host_key_files.items():
        printed = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True)
        expected = printed.stdout.split()[1]  # "256 SHA256:... comment (ED25519)"
        fetched = fetch_host_key(openssh_server.host, openssh_server.port, timeout=10, key_type=key_type)
        assert fetched == openssh_server.host_keys[key_type]
        assert fingerprint(fetched) == expected


def test_pinned_key_of_another_type_is_the_one_checked(openssh_server: OpenSSHServer, folder: Path) -> None:
    # The server prefers ed25519, but we only know its ECDSA key: that is the one it must prove.
    config = {"host_key": openssh_server.host_keys["ecdsa-sha2-nistp256"]}
    with make_endpoint(openssh_server, folder, {"password": openssh_server.password}, **config) as endpoint:
        put(endpoint, "x.txt", b"x")
        assert get(endpoint, "x.txt") == b"x"


def test_changed_host_key_is_refused_before_login(
    openssh_server: OpenSSHServer, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = paramiko.Ed25519Key.from_private_key(_fresh_ed25519_pem())
    pinned = f"{other.get_name()} {other.get_base64()}"
    logins: list[str] = []
    monkeypatch.setattr(paramiko.Transport, "auth_password", lambda *a, **k: logins.append("password"))
    monkeypatch.setattr(paramiko.Transport, "auth_publickey", lambda *a, **k: logins.append("key"))
    endpoint = make_endpoint(openssh_server, folder, {"password": openssh_server.password}, host_key=pinned)
    with pytest.raises(HostKeyMismatch) as caught:
        endpoint.list()
    assert logins == []  # not a byte of any credential went to the impostor
    error = caught.value
    assert isinstance(error, AuthError) and error.retryable is False
    assert fingerprint(pinned) in str(error)  # expected
    assert fingerprint(openssh_server.host_key) in str(error)  # offered
    assert openssh_server.password not in str(error)


def test_server_without_the_pinned_key_type_is_refused(openssh_server: OpenSSHServer, folder: Path) -> None:
    rsa = paramiko.RSAKey.generate(1024)
    endpoint = make_endpoint(
        openssh_server, folder, {"password": "x"}, host_key=f"ssh-rsa {rsa.get_base64()}"
    )
    with pytest.raises(HostKeyMismatch, match="offers no ssh-rsa key"):
        endpoint.check()


def _fresh_ed25519_pem() -> Any:
    import io

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return io.StringIO(pem.decode())


# --- logins ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["encrypted_ecdsa", "pkcs8_rsa", "key_and_wrong_password"])
def test_key_logins(openssh_server: OpenSSHServer, folder: Path, kind: str) -> None:
    secrets = {
        "encrypted_ecdsa": {
            "private_key": openssh_server.encrypted_key,
            "passphrase": openssh_server.passphrase,
        },
        "pkcs8_rsa": {"private_key": openssh_server.pkcs8_rsa_key},
        # The key works, so the (wrong) password is never needed.
        "key_and_wrong_password": {"private_key": openssh_server.private_key, "password": "wrong"},
    }[kind]
    with make_endpoint(openssh_server, folder, secrets) as endpoint:
        put(endpoint, "k.txt", kind.encode())
        assert get(endpoint, "k.txt") == kind.encode()


def test_rejected_key_falls_back_to_the_password(openssh_server: OpenSSHServer, folder: Path) -> None:
    stranger = _fresh_ed25519_pem().getvalue()
    secrets = {"private_key": stranger, "password": openssh_server.password}
    with make_endpoint(openssh_server, folder, secrets) as endpoint:
        endpoint.check()


def test_wrong_password_is_an_auth_error_not_retried(openssh_server: OpenSSHServer, folder: Path) -> None:
    wrong = "not-the-password-1234"
    endpoint = make_endpoint(openssh_server, folder, {"password": wrong})
    with pytest.raises(AuthError) as caught:
        endpoint.check()
    assert caught.value.retryable is False
    assert not isinstance(caught.value, HostKeyMismatch)
    assert "authentication failed" in str(caught.value)
    assert wrong not in str(caught.value)


def test_unknown_key_is_an_auth_error(openssh_server: OpenSSHServer, folder: Path) -> None:
    endpoint = make_endpoint(openssh_server, folder, {"private_key": _fresh_ed25519_pem().getvalue()})
    with pytest.raises(AuthError):
        endpoint.check()


def test_private_key_problems(openssh_server: OpenSSHServer) -> None:
    with pytest.raises(AuthError, match="passphrase"):
        load_private_key(openssh_server.encrypted_key, "wrong passphrase")
    with pytest.raises(ConfigError, match="encrypted"):
        load_private_key(openssh_server.encrypted_key, None)
    assert load_private_key(openssh_server.private_key, "a passphrase it does not need") is not None
    with pytest.raises(ConfigError, match="not a private key") as caught:
        load_private_key(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nbm9wZQ==\n-----END OPENSSH PRIVATE KEY-----\n", None
        )
    assert "bm9wZQ" not in str(caught.value)


# --- connection failures ---------------------------------------------------------------------


def test_refused_connection_is_transient(openssh_server: OpenSSHServer) -> None:
    endpoint = SftpEndpoint(
        {"host": "127.0.0.1", "port": free_port(), "user": "x", "host_key": openssh_server.host_key},
        {"password": "pw"},
    )
    with pytest.raises(Unreachable, match="refused") as caught:
        endpoint.check()
    assert caught.value.retryable is True


def test_unknown_host_names_dns(openssh_server: OpenSSHServer) -> None:
    endpoint = SftpEndpoint(
        {"host": "no-such-host.invalid", "user": "x", "host_key": openssh_server.host_key}, {"password": "pw"}
    )
    with pytest.raises(DnsError, match="DNS lookup failed") as caught:
        endpoint.check()
    assert caught.value.retryable is False


def test_silent_server_times_out_as_transient(openssh_server: OpenSSHServer) -> None:
    import socket

    with socket.socket() as listener:  # accepts connections, never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        endpoint = SftpEndpoint(
            {
                "host": "127.0.0.1",
                "port": port,
                "user": "x",
                "host_key": openssh_server.host_key,
                "timeout": 1,
            },
            {"password": "pw"},
        )
        with pytest.raises(TransientError):
            endpoint.check()


def test_dropped_connection_reconnects(endpoint: SftpEndpoint) -> None:
    put(endpoint, "a.txt", b"a")
    assert endpoint._transport is not None
    endpoint._transport.close()  # the server, a firewall or a NAT table forgot us
    assert get(endpoint, "a.txt") == b"a"


def test_a_stream_on_a_dead_session_leaves_the_new_one_alone(endpoint: SftpEndpoint) -> None:
    old = endpoint.open_write("old.bin")
    assert endpoint._transport is not None
    endpoint._transport.close()
    assert list(endpoint.list()) == []  # reconnected
    with endpoint.open_write("new.bin") as new:
        new.write(b"n" * 300_000)
        with pytest.raises(TransientError):
            old.write(b"o" * 300_000)
        old.abort()
        new.write(b"n")
    assert get(endpoint, "new.bin") == b"n" * 300_001


# --- server-side behaviour -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "pattern"),
    [
        (None, r"order\.edi\.[0-9a-f]{12}\.tradelane\.part"),  # the default: suffix
        ("suffix", r"order\.edi\.[0-9a-f]{12}\.tradelane\.part"),
        ("prefix", r"\.tradelane-tmp-[0-9a-f]{32}-order\.edi"),
        ("none", r"order\.edi"),
    ],
)
def test_upload_uses_the_temporary_name_of_its_mode(
    openssh_server: OpenSSHServer, folder: Path, mode: str | None, pattern: str
) -> None:
    config = {"temp_name": mode} if mode else {}
    with make_endpoint(openssh_server, folder, {"password": openssh_server.password}, **config) as endpoint:
        with endpoint.open_write("in/order.edi") as stream:
            stream.write(b"ISA*00*" * 1000)
            names = os.listdir(folder / "in")
            assert len(names) == 1 and re.fullmatch(pattern, names[0]), names
        assert os.listdir(folder / "in") == ["order.edi"]
        assert (folder / "in" / "order.edi").read_bytes() == b"ISA*00*" * 1000


def test_temporary_names_of_every_mode_are_hidden_and_reserved(endpoint: SftpEndpoint, folder: Path) -> None:
    leftovers = [f"{TEMP_PREFIX}{'a' * 32}-x.txt", "x.txt.0123456789ab.tradelane.part"]
    for name in leftovers:
        (folder / name).write_text("crashed mid-upload")
        with pytest.raises(InvalidPath):
            endpoint.stat(name)
    (folder / "y.txt.part").write_text("someone else's .part file is an ordinary file")
    assert [info.path for info in endpoint.list()] == ["y.txt.part"]


def test_a_server_that_refuses_renames_says_to_use_temp_name_none(
    openssh_server_without_rename: OpenSSHServer,
) -> None:
    server = openssh_server_without_rename
    folder = server.new_folder()
    with make_endpoint(server, folder, {"password": server.password}) as endpoint:
        with pytest.raises(PermissionDenied, match="temp_name to none"):
            put(endpoint, "po.xml", b"<po/>")
        assert os.listdir(folder) == []  # the finished temporary file was removed
    with make_endpoint(server, folder, {"password": server.password}, temp_name="none") as endpoint:
        put(endpoint, "po.xml", b"<po/>")
        assert os.listdir(folder) == ["po.xml"]
        assert get(endpoint, "po.xml") == b"<po/>"


def test_temp_name_must_be_a_known_mode() -> None:
    with pytest.raises(ConfigError, match="temp_name"):
        SftpEndpoint({**GOOD, "temp_name": "dot"}, {"password": "pw"})


def test_long_names_keep_the_temporary_name_short_enough(endpoint: SftpEndpoint) -> None:
    name = "n" * 250 + ".txt"
    put(endpoint, name, b"long")
    assert [info.name for info in endpoint.list()] == [name]


def test_relative_base_is_under_the_login_folder(openssh_server: OpenSSHServer) -> None:
    sub = openssh_server.new_folder()  # sshd starts sessions in openssh_server.root
    with make_endpoint(openssh_server, sub.name, {"password": openssh_server.password}) as endpoint:
        put(endpoint, "rel.txt", b"relative")
        assert (sub / "rel.txt").read_bytes() == b"relative"
        assert endpoint.uri("rel.txt").endswith(f"/~/{sub.name}/rel.txt")


def test_folder_in_the_way_and_permission_denied(endpoint: SftpEndpoint, folder: Path) -> None:
    (folder / "locked").mkdir()  # root-owned, not writable by the SFTP user
    os.chmod(folder / "locked", 0o755)
    with pytest.raises(PermissionDenied):
        put(endpoint, "locked/x.txt", b"x")
    (folder / "locked" / "secret.txt").write_text("s")
    os.chmod(folder / "locked" / "secret.txt", 0o600)
    with pytest.raises(PermissionDenied):
        endpoint.open_read("locked/secret.txt")
    (folder / "dir").mkdir()
    os.chown(folder / "dir", *_owner(folder))
    with pytest.raises(NotFound):
        endpoint.delete("dir")
    with pytest.raises(NotFound):
        endpoint.open_read("dir")
    with pytest.raises(EndpointError, match="folder is in the way"):
        put(endpoint, "dir", b"x")
    assert sorted(os.listdir(folder)) == ["dir", "locked"]  # no temporary file left behind


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def test_listing_follows_links_to_files_and_skips_temporaries(endpoint: SftpEndpoint, folder: Path) -> None:
    (folder / "real.txt").write_text("real")
    (folder / "link.txt").symlink_to(folder / "real.txt")
    (folder / "dangling.txt").symlink_to(folder / "gone.txt")
    (folder / f"{TEMP_PREFIX}0123-half.txt").write_text("half")
    assert [(i.path, i.size) for i in endpoint.list()] == [("link.txt", 4), ("real.txt", 4)]


def test_reading_sees_a_file_that_grew_after_open(endpoint: SftpEndpoint, folder: Path) -> None:
    put(endpoint, "growing.log", b"a" * 1000)
    with endpoint.open_read("growing.log") as stream:
        with open(folder / "growing.log", "ab") as out:
            out.write(b"b" * 500)
        assert stream.read() == b"a" * 1000 + b"b" * 500


def test_reads_larger_than_the_server_gives_are_completed(endpoint: SftpEndpoint) -> None:
    data = b"".join(payload_chunks(3 * MIB + 5, seed=3))
    put(endpoint, "short-reads.bin", data)
    endpoint.read_size = MIB  # more than OpenSSH's 255 KiB cap: every answer comes back short
    assert get(endpoint, "short-reads.bin") == data


def test_threads_can_share_an_endpoint(endpoint: SftpEndpoint) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            data = bytes([n]) * (300_000 + n)
            put(endpoint, f"t{n}.bin", data)
            assert get(endpoint, f"t{n}.bin") == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(list(endpoint.list())) == 6


def test_50_mib_round_trip_with_bounded_memory(endpoint: SftpEndpoint) -> None:
    size = 50 * MIB + 7

    def write() -> str:
        digest = hashlib.sha256()
        with endpoint.open_write("large/50mib.bin") as stream:
            for chunk in payload_chunks(size, seed=50):
                digest.update(chunk)
                stream.write(chunk)
        return digest.hexdigest()

    def read() -> str:
        digest = hashlib.sha256()
        with endpoint.open_read("large/50mib.bin") as stream:
            while chunk := stream.read(MIB):
                digest.update(chunk)
        return digest.hexdigest()

    endpoint.check()  # connect first: the handshake is not per-file memory
    started = time.monotonic()
    sent, write_peak = peak_memory(write)
    received, read_peak = peak_memory(read)
    elapsed = time.monotonic() - started
    assert sent == received
    assert endpoint.stat("large/50mib.bin").size == size
    # 2 MiB in flight, the caller's 1 MiB chunks, the reader's 1 MiB buffer.
    assert write_peak < 8 * MIB, f"write peak {write_peak / MIB:.1f} MiB"
    assert read_peak < 8 * MIB, f"read peak {read_peak / MIB:.1f} MiB"
    print(f"50 MiB up and down in {elapsed:.1f}s; peaks {write_peak / MIB:.1f}/{read_peak / MIB:.1f} MiB")

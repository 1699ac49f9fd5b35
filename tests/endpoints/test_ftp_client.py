"""The FTP/FTPS client endpoint against real pyftpdlib servers: the contract in every TLS mode,
certificate checks, logins, failures, and what the server sees during an upload."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.endpoints.base import (
    AuthError,
    ConfigError,
    DnsError,
    Endpoint,
    InvalidPath,
    NotFound,
    PermissionDenied,
    TlsError,
    Unreachable,
)
from core.endpoints.ftp import TEMP_PREFIX, FtpEndpoint, FtpReader, FtpSecrets
from core.endpoints.registry import open_endpoint
from tests.endpoint_servers.ftpd import FtpTestServer
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
    server: FtpTestServer, remote: str, *, port: int | None = None, tls: str = "explicit", **config: Any
) -> FtpEndpoint:
    base: dict[str, Any] = {
        "host": server.host,
        "port": port or server.port,
        "user": server.user,
        "path": remote,
        "tls": tls,
        "timeout": 10,
    }
    if tls != "none":
        base["cafile"] = str(server.cafile)
    return FtpEndpoint(base | config, {"password": server.password})


@pytest.fixture
def folder(ftp_server: FtpTestServer) -> tuple[Path, str]:
    return ftp_server.new_folder()


@pytest.fixture
def endpoint(ftp_server: FtpTestServer, folder: tuple[Path, str]) -> Iterator[FtpEndpoint]:
    with make_endpoint(ftp_server, folder[1]) as endpoint:
        yield endpoint


class FtpContract(EndpointContract):
    secret_values = ("ftp-s3cret-never-shown",)
    # pyftpdlib runs in this process, so its buffers count too.
    memory_budget = 8 * MIB


class TestFtpsExplicit(FtpContract):
    @pytest.fixture
    def endpoint(self, ftp_server: FtpTestServer, folder: tuple[Path, str]) -> Iterator[Endpoint]:
        with make_endpoint(ftp_server, folder[1]) as endpoint:
            yield endpoint


class TestFtpsImplicit(FtpContract):
    @pytest.fixture
    def endpoint(self, ftp_server: FtpTestServer, folder: tuple[Path, str]) -> Iterator[Endpoint]:
        with make_endpoint(ftp_server, folder[1], port=ftp_server.implicit_port, tls="implicit") as endpoint:
            yield endpoint


class TestPlainFtp(FtpContract):
    @pytest.fixture
    def endpoint(self, ftp_server: FtpTestServer, folder: tuple[Path, str]) -> Iterator[Endpoint]:
        with make_endpoint(ftp_server, folder[1], port=ftp_server.plain_port, tls="none") as endpoint:
            yield endpoint


class TestFtpsTempNamePrefix(FtpContract):
    """The dot-prefixed temporary name (what tradelane used before `temp_name`)."""

    @pytest.fixture
    def endpoint(self, ftp_server: FtpTestServer, folder: tuple[Path, str]) -> Iterator[Endpoint]:
        with make_endpoint(ftp_server, folder[1], temp_name="prefix") as endpoint:
            yield endpoint


class TestFtpsWithoutRename(WritesInPlaceContract):
    """`temp_name: none` against a server that refuses renames."""

    secret_values = ("norename-s3cret",)
    memory_budget = 8 * MIB

    @pytest.fixture
    def endpoint(self, ftp_server: FtpTestServer, folder: tuple[Path, str]) -> Iterator[Endpoint]:
        with no_rename_endpoint(ftp_server, folder[1], temp_name="none") as endpoint:
            yield endpoint


class TestFtpsWithoutMlsd(FtpContract):
    """A server without MLSD/MLST: listings fall back to NLST + SIZE + MDTM."""

    @pytest.fixture
    def endpoint(self, ftp_server: FtpTestServer, folder: tuple[Path, str]) -> Iterator[Endpoint]:
        with make_endpoint(ftp_server, folder[1], port=ftp_server.no_mlsd_port) as endpoint:
            yield endpoint


# --- configuration ---------------------------------------------------------------------------

GOOD = {"host": "ftp.example.com", "user": "acme"}


def test_registry_opens_ftp() -> None:
    assert isinstance(open_endpoint("ftp", GOOD, {"password": "pw"}), FtpEndpoint)


def test_defaults_are_safe() -> None:
    endpoint = FtpEndpoint(GOOD, {"password": "pw"})
    assert (endpoint.tls, endpoint.port, endpoint.verify, endpoint.passive) == ("explicit", 21, True, True)
    assert FtpEndpoint({**GOOD, "tls": "implicit"}).port == 990
    assert FtpEndpoint({**GOOD, "tls": "none", "verify": "false", "passive": "no"}).verify is False


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({**GOOD, "host": ""}, "host"),
        ({**GOOD, "user": ""}, "user"),
        ({**GOOD, "tls": "ssl"}, "tls"),
        ({**GOOD, "port": 0}, "port"),
        ({**GOOD, "port": "ftp"}, "port"),
        ({**GOOD, "verify": "maybe"}, "verify"),
        ({**GOOD, "path": "in\r\nDELE x"}, "control character"),
    ],
)
def test_bad_config(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FtpEndpoint(config, {"password": "pw"})


def test_missing_cafile_is_a_config_error(ftp_server: FtpTestServer) -> None:
    endpoint = make_endpoint(ftp_server, "/", cafile="/no/such/ca.pem")
    with pytest.raises(ConfigError, match="cafile"):
        endpoint.check()


def test_uri_shows_no_secret() -> None:
    endpoint = FtpEndpoint({**GOOD, "port": 2121, "path": "/in/"}, {"password": "hunter22"})
    assert endpoint.uri("po/850.edi") == "ftp://acme@ftp.example.com:2121/in/po/850.edi"
    assert FtpEndpoint({**GOOD, "path": "in"}).uri("x.txt") == "ftp://acme@ftp.example.com:21/~/in/x.txt"


def test_line_breaks_and_temporary_names_are_refused(endpoint: FtpEndpoint) -> None:
    for bad in ("a\r\nDELE b", f"{TEMP_PREFIX}1-x"):
        for operation in ("stat", "open_read", "open_write", "delete"):
            with pytest.raises(InvalidPath):
                getattr(endpoint, operation)(bad)


# --- TLS -------------------------------------------------------------------------------------


def test_certificate_that_does_not_verify_is_refused(
    ftp_server: FtpTestServer, folder: tuple[Path, str]
) -> None:
    # No cafile: the system CAs, which never signed the test server's self-signed certificate.
    endpoint = make_endpoint(ftp_server, folder[1], cafile=None)
    with pytest.raises(TlsError, match="certificate verify failed") as caught:
        endpoint.check()
    assert caught.value.retryable is False
    assert ftp_server.password not in str(caught.value)


def test_certificate_for_another_name_is_refused(ftp_server: FtpTestServer, folder: tuple[Path, str]) -> None:
    # Trusted (pinned) but issued for wrong-name.example: neither "localhost" nor 127.0.0.1 match.
    for host, reason in (("localhost", "Hostname mismatch"), ("127.0.0.1", "IP address mismatch")):
        endpoint = make_endpoint(
            ftp_server,
            folder[1],
            host=host,
            port=ftp_server.wrong_name_port,
            cafile=str(ftp_server.wrong_name_cafile),
        )
        with pytest.raises(TlsError, match=f"certificate verify failed: {reason}"):
            endpoint.check()


def test_host_name_in_the_certificate_works(ftp_server: FtpTestServer, folder: tuple[Path, str]) -> None:
    with make_endpoint(ftp_server, folder[1], host="localhost") as endpoint:
        put(endpoint, "dns.txt", b"by name")
        assert get(endpoint, "dns.txt") == b"by name"


def test_verification_off_only_when_asked(ftp_server: FtpTestServer, folder: tuple[Path, str]) -> None:
    with make_endpoint(ftp_server, folder[1], cafile=None, verify=False) as endpoint:
        put(endpoint, "unverified.txt", b"x")


@pytest.mark.parametrize("tls", ["explicit", "implicit"])
def test_data_connections_are_tls_and_resume_the_session(
    ftp_server: FtpTestServer, folder: tuple[Path, str], tls: str
) -> None:
    port = ftp_server.implicit_port if tls == "implicit" else ftp_server.port
    with make_endpoint(ftp_server, folder[1], port=port, tls=tls) as endpoint:
        put(endpoint, "s.txt", b"session")
        with endpoint.open_read("s.txt") as stream:
            raw = stream.raw
            assert isinstance(raw, FtpReader)
            data = raw._conn
            assert data is not None and data.session_reused  # type: ignore[attr-defined]
            assert stream.read() == b"session"


def test_explicit_tls_against_a_server_without_tls(
    ftp_server: FtpTestServer, folder: tuple[Path, str]
) -> None:
    endpoint = make_endpoint(ftp_server, folder[1], port=ftp_server.plain_port)
    with pytest.raises(TlsError, match="does not offer explicit TLS") as caught:
        endpoint.check()
    assert caught.value.retryable is False


def test_implicit_tls_against_an_explicit_port(ftp_server: FtpTestServer, folder: tuple[Path, str]) -> None:
    endpoint = make_endpoint(ftp_server, folder[1], tls="implicit")
    with pytest.raises(TlsError):
        endpoint.check()


# --- logins and connection failures ----------------------------------------------------------


@pytest.mark.parametrize("tls", ["explicit", "none"])
def test_wrong_password_is_an_auth_error_not_retried(
    ftp_server: FtpTestServer, folder: tuple[Path, str], tls: str
) -> None:
    wrong = "not-the-password-1234"
    endpoint = make_endpoint(ftp_server, folder[1], tls=tls)
    endpoint.secrets = FtpSecrets(password=wrong)
    with pytest.raises(AuthError) as caught:
        endpoint.check()
    assert caught.value.retryable is False
    assert wrong not in str(caught.value)


def test_refused_connection_is_transient(ftp_server: FtpTestServer) -> None:
    endpoint = make_endpoint(ftp_server, "/", port=free_port())
    with pytest.raises(Unreachable, match="refused") as caught:
        endpoint.check()
    assert caught.value.retryable is True


def test_unknown_host_names_dns() -> None:
    endpoint = FtpEndpoint({"host": "no-such-host.invalid", "user": "x"}, {"password": "pw"})
    with pytest.raises(DnsError, match="DNS lookup failed") as caught:
        endpoint.check()
    assert caught.value.retryable is False


def test_silent_server_times_out_as_transient() -> None:
    with socket.socket() as listener:  # accepts connections, never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        endpoint = FtpEndpoint(
            {"host": "127.0.0.1", "port": listener.getsockname()[1], "user": "x", "timeout": 1},
            {"password": "pw"},
        )
        with pytest.raises(Unreachable, match="timed out"):
            endpoint.check()


def test_read_only_user_gets_permission_denied(ftp_server: FtpTestServer, folder: tuple[Path, str]) -> None:
    (folder[0] / "there.txt").write_text("hi")
    endpoint = make_endpoint(ftp_server, folder[1], user=ftp_server.reader)
    endpoint.secrets = FtpSecrets(password=ftp_server.reader_password)
    with endpoint:
        assert get(endpoint, "there.txt") == b"hi"
        with pytest.raises(PermissionDenied):
            put(endpoint, "new.txt", b"x")
        with pytest.raises(PermissionDenied):
            endpoint.delete("there.txt")
    assert os.listdir(folder[0]) == ["there.txt"]


def test_dead_pooled_connection_is_replaced(endpoint: FtpEndpoint) -> None:
    put(endpoint, "a.txt", b"a")
    [idle] = endpoint._idle
    assert idle.ftp.sock is not None
    idle.ftp.sock.shutdown(socket.SHUT_RDWR)  # the server or a firewall dropped it while idle
    assert get(endpoint, "a.txt") == b"a"


def test_reader_closed_early_leaves_the_endpoint_usable(endpoint: FtpEndpoint) -> None:
    put(endpoint, "big.bin", b"z" * (4 * MIB))
    with endpoint.open_read("big.bin") as stream:
        assert stream.read(10) == b"z" * 10
    assert endpoint.stat("big.bin").size == 4 * MIB
    put(endpoint, "after.txt", b"ok")
    assert get(endpoint, "after.txt") == b"ok"


# --- what the server sees --------------------------------------------------------------------


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
    ftp_server: FtpTestServer, folder: tuple[Path, str], mode: str | None, pattern: str
) -> None:
    disk = folder[0]
    config = {"temp_name": mode} if mode else {}
    with make_endpoint(ftp_server, folder[1], **config) as endpoint:
        with endpoint.open_write("in/order.edi") as stream:
            stream.write(b"ISA*00*" * 10_000)
            deadline = time.monotonic() + 5
            while not os.listdir(disk / "in") and time.monotonic() < deadline:
                time.sleep(0.01)
            [name] = os.listdir(disk / "in")
            assert re.fullmatch(pattern, name), name
            # A slow writer: more bytes later, still only that name on the server.
            time.sleep(0.2)
            stream.write(b"IEA*1~")
            assert os.listdir(disk / "in") == [name]
        assert os.listdir(disk / "in") == ["order.edi"]
        assert (disk / "in" / "order.edi").read_bytes() == b"ISA*00*" * 10_000 + b"IEA*1~"


def no_rename_endpoint(server: FtpTestServer, remote: str, **config: Any) -> FtpEndpoint:
    """The test server's user without the rename permission (pyftpdlib perm without "f")."""
    base = {"host": server.host, "port": server.port, "user": server.no_rename_user, "path": remote}
    settings: dict[str, Any] = {**base, "cafile": str(server.cafile), "timeout": 10, **config}
    return FtpEndpoint(settings, {"password": server.no_rename_password})


def test_a_server_that_refuses_renames_says_to_use_temp_name_none(
    ftp_server: FtpTestServer, folder: tuple[Path, str]
) -> None:
    disk, remote = folder
    with no_rename_endpoint(ftp_server, remote) as endpoint:
        with pytest.raises(PermissionDenied, match="temp_name to none"):
            put(endpoint, "po.xml", b"<po/>")
        assert os.listdir(disk) == []  # the finished temporary file was removed
    with no_rename_endpoint(ftp_server, remote, temp_name="none") as endpoint:
        put(endpoint, "po.xml", b"<po/>")
        assert os.listdir(disk) == ["po.xml"]
        assert get(endpoint, "po.xml") == b"<po/>"


def test_temporary_names_of_every_mode_are_hidden(endpoint: FtpEndpoint, folder: tuple[Path, str]) -> None:
    for name in (f"{TEMP_PREFIX}{'a' * 32}-x.txt", "x.txt.0123456789ab.tradelane.part"):
        (folder[0] / name).write_text("crashed mid-upload")
        with pytest.raises(InvalidPath):
            endpoint.stat(name)
    (folder[0] / "y.txt.part").write_text("someone else's .part file is an ordinary file")
    assert [info.path for info in endpoint.list()] == ["y.txt.part"]


def test_temp_name_must_be_a_known_mode() -> None:
    with pytest.raises(ConfigError, match="temp_name"):
        FtpEndpoint({**GOOD, "temp_name": "dot"}, {"password": "pw"})


def test_folder_is_not_deleted_and_not_listed(endpoint: FtpEndpoint, folder: tuple[Path, str]) -> None:
    (folder[0] / "sub").mkdir()
    (folder[0] / "file.txt").write_text("f")
    assert [info.path for info in endpoint.list()] == ["file.txt"]
    with pytest.raises(NotFound):
        endpoint.delete("sub")
    with pytest.raises(NotFound):
        endpoint.open_read("sub")


def test_threads_can_share_an_endpoint(endpoint: FtpEndpoint) -> None:
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


def test_50_mib_round_trip_with_bounded_memory(endpoint: FtpEndpoint) -> None:
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

    endpoint.check()
    sent, write_peak = peak_memory(write)
    received, read_peak = peak_memory(read)
    assert sent == received
    assert endpoint.stat("large/50mib.bin").size == size
    assert write_peak < 6 * MIB, f"write peak {write_peak / MIB:.1f} MiB"
    assert read_peak < 6 * MIB, f"read peak {read_peak / MIB:.1f} MiB"

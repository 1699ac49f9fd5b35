"""The SFTP server with real clients: OpenSSH's `sftp` in batch mode (key, and password via sshpass)
and paramiko's client. One server serves the module; tests that need their own settings (lockout,
idle timeout) start their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.common import MSG_CHANNEL_DATA

from core.config import get_settings
from mailboxes.auth import MailboxAuth
from mailboxes.sftp import SFTPServer
from tests.addresses import fresh_loopback
from tests.mailboxes.conftest import MakePartner, PartnerLogin, lenient_settings, set_partner
from tests.servers import require_tool
from tests.waiting import wait_for

require_tool("sftp")  # OpenSSH's client drives these tests


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- servers and clients ------------------------------------------------------------------------


StartServer = Callable[..., SFTPServer]


@pytest.fixture(scope="module")
def start_server(tradelane_home: Path) -> Iterator[StartServer]:
    started: list[SFTPServer] = []

    def start(**overrides: Any) -> SFTPServer:
        settings = lenient_settings(sftp_port=0, **overrides)
        server = SFTPServer(settings, MailboxAuth(settings))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> SFTPServer:
    """The module's server: a lenient lockout, so failed logins in one test never lock another out."""
    return start_server()


@pytest.fixture(scope="module")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An Ed25519 key pair for OpenSSH's client: (private key file, public key line)."""
    path = tmp_path_factory.mktemp("keys") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path, path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def keyed(make_partner: MakePartner, client_key: tuple[Path, str], tmp_path: Path) -> PartnerLogin:
    """A partner who logs in with the client key, with a data flow from upload/ to a file endpoint."""
    return make_partner("k", keys=[client_key[1]], flow_to=tmp_path / "delivered")


@dataclass
class Sftp:
    transport: paramiko.Transport
    client: paramiko.SFTPClient

    def close(self) -> None:
        self.client.close()
        self.transport.close()


def connect(
    server: SFTPServer,
    user: str,
    password: str | None = None,
    key: paramiko.PKey | None = None,
    *,
    source: str | None = None,
) -> Sftp:
    """A paramiko SFTP session; `source` is the local address to connect from (127.x.y.z)."""
    if source is None:
        transport = paramiko.Transport(("127.0.0.1", server.port))
    else:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(source, 0))
        transport = paramiko.Transport(sock)
    try:
        transport.connect(username=user, password=password, pkey=key)
        return Sftp(transport, paramiko.SFTPClient.from_transport(transport))
    except BaseException:
        transport.close()
        raise


@contextlib.contextmanager
def session(server: SFTPServer, partner: PartnerLogin) -> Iterator[paramiko.SFTPClient]:
    conn = connect(server, partner.name, partner.password)
    try:
        yield conn.client
    finally:
        conn.close()


def openssh(
    server: SFTPServer,
    user: str,
    commands: list[str],
    workdir: Path,
    *,
    key: Path | None = None,
    password: str | None = None,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run OpenSSH's `sftp -b` with the batch `commands`; with a key, or a password through sshpass."""
    batch = workdir / f"batch-{time.monotonic_ns()}.txt"
    batch.write_text("\n".join(commands) + "\n")
    cmd = ["sftp", "-q"]
    if password is not None:
        # sftp -b forces BatchMode (no password prompt) unless it was set first.
        cmd = ["sshpass", "-p", password, *cmd, "-o", "BatchMode=no"]
        cmd += ["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"]
    else:
        assert key is not None
        cmd += ["-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey"]
    cmd += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    cmd += [*extra, "-b", str(batch), "-P", str(server.port), f"{user}@127.0.0.1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, cwd=workdir)


# --- OpenSSH's sftp client ---------------------------------------------------------------------


def test_openssh_key_put_get_ls_rename(
    server: SFTPServer, keyed: PartnerLogin, client_key: tuple[Path, str], tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)
    (tmp_path / "po.bin").write_bytes(data)
    keyed.put_download("reply.bin", data[::-1])
    result = openssh(
        server,
        keyed.name,
        [
            "ls /",
            "cd upload",
            "put po.bin",
            "put po.bin invoice.xml.filepart",
            "rename invoice.xml.filepart invoice.xml",
            "ls -l",
            "cd ../download",
            "get reply.bin",
            "rm reply.bin",
        ],
        tmp_path,
        key=client_key[0],
    )
    assert result.returncode == 0, result.stderr
    assert "download" in result.stdout and "upload" in result.stdout
    assert (tmp_path / "reply.bin").read_bytes() == data[::-1]
    assert (keyed.home / "upload" / "po.bin").read_bytes() == data
    receipts = {r.name: r for r in keyed.receipts()}
    assert set(receipts) == {"po.bin", "invoice.xml"}
    for receipt in receipts.values():
        assert (receipt.sha256, receipt.size, receipt.protocol) == (sha(data), len(data), "sftp")
    # Each upload went through intake: one pending transfer per receipt for the partner's data flow.
    assert sorted(t.state for t in keyed.transfers()) == ["pending", "pending"]
    assert not (keyed.home / "download" / "reply.bin").exists()
    actions = [e.action for e in keyed.audit()]
    for action in ("login", "upload", "download", "rename", "delete"):
        assert action in actions
    assert keyed.audit("login")[0].detail["method"] == "publickey"


def test_openssh_password_login_via_sshpass(
    server: SFTPServer, partner: PartnerLogin, tmp_path: Path
) -> None:
    require_tool("sshpass")
    (tmp_path / "a.txt").write_bytes(b"hello over sftp\n")
    result = openssh(server, partner.name, ["put a.txt /upload/a.txt"], tmp_path, password=partner.password)
    assert result.returncode == 0, result.stderr
    assert [r.sha256 for r in partner.receipts()] == [sha(b"hello over sftp\n")]
    bad = openssh(server, partner.name, ["ls"], tmp_path, password="wrong-password")
    assert bad.returncode != 0
    assert partner.audit("login.failed")


def test_openssh_refusals(
    server: SFTPServer,
    make_partner: MakePartner,
    keyed: PartnerLogin,
    client_key: tuple[Path, str],
    tmp_path: Path,
) -> None:
    other = make_partner()
    other.put_download("secret.txt", b"not yours")
    (tmp_path / "x.txt").write_bytes(b"x")

    def fails(command: str) -> None:
        result = openssh(server, keyed.name, [command], tmp_path, key=client_key[0])
        assert result.returncode != 0, f"{command!r} should have failed: {result.stdout}"

    fails(f"get ../{other.name}/download/secret.txt")
    fails(f"get /..//{other.name}/download/secret.txt")
    fails(f"get {other.home}/download/secret.txt")
    fails(f"ls ../{other.name}")
    fails("put x.txt /download/x.txt")
    fails("put x.txt /x.txt")
    fails("mkdir /upload/sub")
    fails("ln -s /download /upload/link")
    fails("put x.txt /upload/../../x.txt")
    assert not (tmp_path / "secret.txt").exists()
    assert keyed.receipts() == []
    assert keyed.audit("denied")


def test_openssh_killed_mid_upload_leaves_nothing_then_reput_completes(
    server: SFTPServer, keyed: PartnerLogin, client_key: tuple[Path, str], tmp_path: Path
) -> None:
    data = os.urandom(6 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(data)
    staged = get_settings().mailbox_root / ".partial" / "home" / keyed.name / "upload" / "big.bin"
    batch = tmp_path / "slow.txt"
    batch.write_text("put big.bin /upload/big.bin\n")
    # -l 8000: 8 Mbit/s, so the upload is still running when the client dies.
    cmd = ["sftp", "-q", "-l", "8000", "-i", str(client_key[0]), "-o", "IdentitiesOnly=yes"]
    cmd += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    cmd += ["-b", str(batch), "-P", str(server.port), f"{keyed.name}@127.0.0.1"]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: staged.exists() and staged.stat().st_size > 512 * 1024)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    wait_for(lambda: server.connection_count == 0)
    partial = staged.stat().st_size
    assert 0 < partial < len(data)
    assert not (keyed.home / "upload" / "big.bin").exists()
    assert keyed.receipts() == [] and keyed.transfers() == []

    result = openssh(server, keyed.name, ["reput big.bin /upload/big.bin"], tmp_path, key=client_key[0])
    assert result.returncode == 0, result.stderr
    assert (keyed.home / "upload" / "big.bin").read_bytes() == data
    receipts = keyed.receipts()
    assert len(receipts) == 1 and receipts[0].sha256 == sha(data) and receipts[0].size == len(data)
    assert [t.state for t in keyed.transfers()] == ["pending"]
    assert keyed.audit("upload.incomplete")


# --- paramiko's client --------------------------------------------------------------------------


def test_paramiko_put_get_and_listing(server: SFTPServer, partner: PartnerLogin) -> None:
    data = os.urandom(2 * 1024 * 1024 + 7)
    partner.put_download("out.bin", data)
    with session(server, partner) as sftp:
        assert sorted(sftp.listdir("/")) == ["download", "upload"]
        assert sftp.normalize(".") == "/" and sftp.normalize("../..") == "/"
        sftp.chdir("upload")
        with sftp.open("in.bin", "wb") as f:
            f.write(data)
        assert sftp.listdir() == ["in.bin"]
        assert sftp.stat("in.bin").st_size == len(data)
        assert stat.S_ISDIR(sftp.stat("/download").st_mode)
        with sftp.open("/download/out.bin", "rb") as f:
            f.prefetch()
            assert f.read() == data
        with sftp.open("/download/out.bin", "rb") as f:
            f.seek(1000)
            assert f.read(10) == data[1000:1010]
    [receipt] = partner.receipts()
    assert receipt.sha256 == sha(data) and receipt.name == "in.bin"


@pytest.mark.parametrize(
    ("window", "max_packet"), [(64 * 1024, 32768), (2 * 1024 * 1024, 32768), (32 * 1024, 4096)]
)
def test_a_download_into_a_small_or_large_client_window(
    server: SFTPServer, partner: PartnerLogin, window: int, max_packet: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client with a small SSH window or maximum packet (4 KiB is the least SSH allows) and many
    READs in flight (prefetch) gets the whole file, as one with OpenSSH's 2 MiB window does: the
    answers wait for the window, never stall, and no packet is larger than the client said it
    takes (fastpath.send_all sends several packets at a time)."""
    data = os.urandom(8 * 1024 * 1024 + 3)
    partner.put_download(f"w{window}.bin", data)
    received: list[int] = []
    feed = paramiko.Channel._feed

    def counted(channel: paramiko.Channel, m: Any) -> None:
        s = m if isinstance(m, bytes) else m.get_binary()
        received.append(len(s))
        feed(channel, s)

    # The client's transport: ours (mailboxes/sftp/channels.py) copied the table before this.
    monkeypatch.setitem(paramiko.Transport._channel_handler_table, MSG_CHANNEL_DATA, counted)
    transport = paramiko.Transport(("127.0.0.1", server.port))
    try:
        transport.connect(username=partner.name, password=partner.password)
        client = paramiko.SFTPClient.from_transport(transport, window_size=window, max_packet_size=max_packet)
        assert client is not None
        client.get_channel().settimeout(30)
        with client.open(f"/download/w{window}.bin", "rb") as f:
            f.prefetch()
            assert f.read() == data
    finally:
        transport.close()
    assert sum(received) > len(data)
    assert max(received) <= max_packet


def test_paramiko_permissions_and_symlinks(server: SFTPServer, make_partner: MakePartner) -> None:
    me, other = make_partner(), make_partner()
    other.put_download("secret.txt", b"theirs")
    me.put_download("mine.txt", b"mine")
    with session(server, me) as sftp:
        with pytest.raises(PermissionError), sftp.open("/download/new.txt", "wb") as f:
            f.write(b"x")
        with sftp.open("/upload/u.txt", "wb") as f:
            f.write(b"u")
        with pytest.raises(PermissionError):
            sftp.open("/upload/u.txt", "rb")
        with pytest.raises(PermissionError):
            sftp.remove("/upload/u.txt")
        with pytest.raises(PermissionError):
            sftp.mkdir("/upload/sub")
        with pytest.raises(PermissionError):
            sftp.symlink(f"/../{other.name}/download/secret.txt", "/upload/link")
        with pytest.raises(PermissionError):
            sftp.rename("/download/mine.txt", "/upload/mine.txt")
        for path in (
            f"../{other.name}/download/secret.txt",
            f"/../../{other.name}/download/secret.txt",
            f"/download/../../{other.name}/download/secret.txt",
            str(other.home / "download" / "secret.txt"),
        ):
            with pytest.raises(FileNotFoundError):
                sftp.stat(path)
            with pytest.raises((FileNotFoundError, PermissionError)):
                sftp.open(path, "rb")
        sftp.remove("/download/mine.txt")
    assert not (me.home / "download" / "mine.txt").exists()
    assert (other.home / "download" / "secret.txt").read_bytes() == b"theirs"


def test_paramiko_dropped_connection_then_append_resume(server: SFTPServer, partner: PartnerLogin) -> None:
    data = os.urandom(1_000_000)
    conn = connect(server, partner.name, partner.password)
    f = conn.client.open("/upload/r.bin", "wb")
    f.write(data[:400_000])
    f.flush()
    conn.transport.close()  # gone without closing the file
    wait_for(lambda: server.connection_count == 0)
    assert partner.receipts() == []
    with session(server, partner) as sftp:
        assert "r.bin" not in sftp.listdir("/upload")
        offset = sftp.stat("/upload/r.bin").st_size  # what a resuming client asks
        assert offset == 400_000
        with sftp.open("/upload/r.bin", "ab") as f:
            f.write(data[offset:])
    [receipt] = partner.receipts()
    assert receipt.sha256 == sha(data) and receipt.size == len(data)


def test_key_login_with_paramiko_and_unknown_key(server: SFTPServer, make_partner: MakePartner) -> None:
    private = paramiko.RSAKey.generate(2048)
    stranger = paramiko.RSAKey.generate(2048)
    partner = make_partner("rk", keys=[f"{private.get_name()} {private.get_base64()} me"])
    conn = connect(server, partner.name, key=private)
    assert sorted(conn.client.listdir("/")) == ["download", "upload"]
    conn.close()
    with pytest.raises(paramiko.AuthenticationException):
        connect(server, partner.name, key=stranger)
    wait_for(lambda: bool(partner.audit("login.failed")))
    assert partner.audit("login.failed")[0].detail["reason"] == "public key not accepted"


def test_wrong_password(server: SFTPServer, partner: PartnerLogin) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        connect(server, partner.name, "nope")
    with pytest.raises(paramiko.AuthenticationException):
        connect(server, "no-such-partner", "nope")
    assert partner.audit("login.failed")[0].detail["protocol"] == "sftp"


def test_allow_list(server: SFTPServer, make_partner: MakePartner) -> None:
    partner = make_partner(allowed_networks=["10.0.0.0/8"])
    with pytest.raises(paramiko.AuthenticationException):
        connect(server, partner.name, partner.password)
    assert "allow-list" in partner.audit("login.failed")[0].detail["reason"]
    set_partner(partner.name, allowed_networks=["127.0.0.0/8"])
    connect(server, partner.name, partner.password).close()


def test_connection_limit(server: SFTPServer, make_partner: MakePartner) -> None:
    partner = make_partner(max_connections=1)
    first = connect(server, partner.name, partner.password)
    with pytest.raises(paramiko.SSHException):
        connect(server, partner.name, partner.password)
    assert partner.audit("login.refused")
    first.close()
    wait_for(lambda: server.connection_count == 0)
    connect(server, partner.name, partner.password).close()


def test_a_guessing_address_is_banned_not_the_partner(
    start_server: StartServer, partner: PartnerLogin
) -> None:
    strict = start_server(lockout_failures=3)
    guesser = fresh_loopback()
    for _ in range(3):
        with pytest.raises(paramiko.AuthenticationException):
            connect(strict, partner.name, "wrong", source=guesser)
    with pytest.raises(paramiko.AuthenticationException):  # the right password, from the banned address
        connect(strict, partner.name, partner.password, source=guesser)
    assert partner.audit("login.banned")
    assert any(e.detail.get("banned") for e in partner.audit("login.failed"))
    connect(strict, partner.name, partner.password, source=fresh_loopback()).close()  # elsewhere: in


def test_idle_timeout(start_server: StartServer, partner: PartnerLogin) -> None:
    quick = start_server(idle_timeout_seconds=1.0)
    conn = connect(quick, partner.name, partner.password)
    conn.client.listdir("/")
    wait_for(lambda: not conn.transport.is_active(), timeout=5)
    assert partner.audit("session.idle")


def test_host_key_is_generated_once_and_kept(start_server: StartServer, tradelane_home: Path) -> None:
    def fingerprint(server: SFTPServer) -> bytes:
        transport = paramiko.Transport(("127.0.0.1", server.port))
        try:
            transport.start_client(timeout=10)
            return transport.get_remote_server_key().get_fingerprint()
        finally:
            transport.close()

    first = start_server()
    before = fingerprint(first)
    first.stop()
    assert fingerprint(start_server()) == before
    for name in ("ssh_host_ed25519_key", "ssh_host_rsa_key"):
        path = get_settings().home_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.with_name(name + ".pub").exists()

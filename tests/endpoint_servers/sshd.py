"""OpenSSH's sshd on a loopback port, a real SFTP server for the SFTP client endpoint's tests.

One sshd per test session, with its own config, host keys (ed25519 and ECDSA), port and
folder; it serves only `internal-sftp` and lets only the test user in. It must run as root
(password logins read /etc/shadow, and sshd switches to the user), so it needs a system user:
`tradelane-sftp-test` is created once if missing (no home, no shell). Its password is random,
kept in a root-only file and set with chpasswd at every session start, so sessions running
side by side agree on it and nobody without root can learn it. Tests get a fresh folder each
with `new_folder`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.servers import free_port, require_tool

__all__ = ["OpenSSHServer", "openssh_server", "openssh_server_without_rename", "run_sshd"]

SSHD = "/usr/sbin/sshd"
SFTP_TEST_USER = "tradelane-sftp-test"
PASSWORD_FILE = Path("/var/lib/tradelane-sftp-test/password")
CLIENT_KEY_PASSPHRASE = "correct horse battery staple"


@dataclass(frozen=True)
class OpenSSHServer:
    """A running sshd and the credentials that open it."""

    host: str
    port: int
    user: str
    password: str
    private_key: str  # ed25519, OpenSSH format, not encrypted
    encrypted_key: str  # ECDSA, OpenSSH format, encrypted with `passphrase`
    passphrase: str
    pkcs8_rsa_key: str  # RSA in PKCS#8 PEM, a format paramiko cannot read by itself
    host_keys: dict[str, str]  # key type -> "TYPE BASE64"
    host_key_files: dict[str, Path]  # key type -> the .pub file, for ssh-keygen
    root: Path  # everything the user may write lives under here
    log: Path = field(repr=False)

    @property
    def host_key(self) -> str:
        """The ed25519 host key line, what `endpoint add --host-key` would pin."""
        return self.host_keys["ssh-ed25519"]

    def new_folder(self) -> Path:
        """A fresh, empty folder owned by the test user."""
        folder = self.root / f"t-{uuid.uuid4().hex[:12]}"
        folder.mkdir()
        user = pwd.getpwnam(self.user)
        os.chown(folder, user.pw_uid, user.pw_gid)
        return folder


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, check=False, timeout=60)


def ensure_test_user() -> str:
    """Create the SFTP test user if missing and (re)set its password; returns the password."""
    try:
        pwd.getpwnam(SFTP_TEST_USER)
        exists = True
    except KeyError:
        exists = False
    if not exists:
        done = _run(
            "useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
            "--shell", "/usr/sbin/nologin", SFTP_TEST_USER,
        )  # fmt: skip
        if done.returncode not in (0, 9):  # 9: made meanwhile by a session running alongside
            raise RuntimeError(f"useradd failed: {done.stderr}")
    PASSWORD_FILE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24))
    for _ in range(50):  # a session alongside may have created the file but not written it yet
        password = PASSWORD_FILE.read_text().strip()
        if password:
            break
        time.sleep(0.1)
    done = _run("chpasswd", stdin=f"{SFTP_TEST_USER}:{password}\n")
    if done.returncode != 0:
        raise RuntimeError(f"chpasswd failed: {done.stderr}")
    return password


def _keygen(path: Path, key_type: str, passphrase: str = "", comment: str = "tradelane-test") -> None:
    done = _run("ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-C", comment, "-f", str(path))
    if done.returncode != 0:
        raise RuntimeError(f"ssh-keygen failed: {done.stderr}")


def _pub_line(path: Path) -> str:
    key_type, data = path.read_text().split()[:2]
    return f"{key_type} {data}"


def _pkcs8_rsa_key() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def _config(tmp: Path, port: int, files: Path, extra: str, denied: str = "") -> str:
    return f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {tmp}/ssh_host_ed25519_key
HostKey {tmp}/ssh_host_ecdsa_key
PidFile none
UsePAM no
LogLevel VERBOSE
AllowUsers {SFTP_TEST_USER}
PermitRootLogin no
PasswordAuthentication yes
PermitEmptyPasswords no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile {tmp}/authorized_keys
StrictModes no
MaxStartups 100
MaxAuthTries 10
LoginGraceTime 30
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
Subsystem sftp internal-sftp
ForceCommand internal-sftp -d {files}{f" -P {denied}" if denied else ""}
{extra}"""


def _write_config(tmp: Path, port: int, files: Path, denied: str = "") -> Path:
    path = tmp / "sshd_config"
    # OpenSSH 9.8+ locks out addresses after failed logins, which the failure tests do on purpose.
    path.write_text(_config(tmp, port, files, "PerSourcePenalties no\n", denied))
    if _run(SSHD, "-t", "-f", str(path)).returncode != 0:
        path.write_text(_config(tmp, port, files, "", denied))
        checked = _run(SSHD, "-t", "-f", str(path))
        if checked.returncode != 0:
            raise RuntimeError(f"sshd rejects its test config: {checked.stderr}")
    return path


def _wait_for_banner(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            if sock.recv(64).startswith(b"SSH-"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on port {port} within {timeout}s")


@contextmanager
def run_sshd(denied_requests: str = "") -> Iterator[OpenSSHServer]:
    """Start a private sshd; yields how to reach it. `denied_requests`: SFTP requests it refuses."""
    require_tool(SSHD)
    if os.geteuid() != 0:
        pytest.fail("the sshd test server runs as root (password logins and switching users)")
    password = ensure_test_user()
    user = pwd.getpwnam(SFTP_TEST_USER)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    tmp = Path(tempfile.mkdtemp(prefix="tradelane-sshd-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        tmp.chmod(0o755)  # the user reads authorized_keys and reaches files/ through it
        for key_type in ("ed25519", "ecdsa"):
            _keygen(tmp / f"ssh_host_{key_type}_key", key_type, comment="tradelane-test-host")
        _keygen(tmp / "client_ed25519", "ed25519")
        _keygen(tmp / "client_ecdsa", "ecdsa", passphrase=CLIENT_KEY_PASSPHRASE)
        pkcs8_private, pkcs8_public = _pkcs8_rsa_key()
        authorized = [
            _pub_line(tmp / "client_ed25519.pub"),
            _pub_line(tmp / "client_ecdsa.pub"),
            pkcs8_public,
        ]
        (tmp / "authorized_keys").write_text("\n".join(authorized) + "\n")
        (tmp / "authorized_keys").chmod(0o644)
        files = tmp / "files"
        files.mkdir()
        os.chown(files, user.pw_uid, user.pw_gid)
        port = free_port()
        config = _write_config(tmp, port, files, denied_requests)
        log = tmp / "sshd.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
        _wait_for_banner(port, proc, log)
        host_key_files = {
            "ssh-ed25519": tmp / "ssh_host_ed25519_key.pub",
            "ecdsa-sha2-nistp256": tmp / "ssh_host_ecdsa_key.pub",
        }
        yield OpenSSHServer(
            host="127.0.0.1",
            port=port,
            user=SFTP_TEST_USER,
            password=password,
            private_key=(tmp / "client_ed25519").read_text(),
            encrypted_key=(tmp / "client_ecdsa").read_text(),
            passphrase=CLIENT_KEY_PASSPHRASE,
            pkcs8_rsa_key=pkcs8_private,
            host_keys={key_type: _pub_line(path) for key_type, path in host_key_files.items()},
            host_key_files=host_key_files,
            root=files,
            log=log,
        )
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def openssh_server() -> Iterator[OpenSSHServer]:
    """OpenSSH sshd serving SFTP on a loopback port, for the whole test session."""
    with run_sshd() as server:
        yield server


@pytest.fixture(scope="session")
def openssh_server_without_rename() -> Iterator[OpenSSHServer]:
    """A second sshd whose SFTP server refuses every rename (`internal-sftp -P rename,posix-rename`)."""
    with run_sshd(denied_requests="rename,posix-rename") as server:
        yield server

"""The FTP/FTPS mailbox server against real clients on 127.0.0.1: Python's ftplib and curl.

Each server is started once per module; partners are made fresh per test (`make_partner`), so
tests do not see each other's files, sessions or lockouts.
"""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import io
import os
import random
import select
import socket
import ssl
import stat
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.models import TransferState
from mailboxes.auth import MailboxAuth
from mailboxes.ftp import FTPServer, ensure_certificate, parse_port_range
from tests.addresses import fresh_loopback
from tests.mailboxes.conftest import LENIENT, MakePartner, PartnerLogin, set_partner
from tests.servers import require_tool
from tests.waiting import wait_for

CURL = require_tool("curl")


# --- servers and clients ----------------------------------------------------------------------


def start_server(**overrides: Any) -> FTPServer:
    # Most tests here drive plain FTP as well as FTPS, so they opt in to it explicitly (TLS is
    # required by default; `tls_server` and tests/hostile check that default).
    overrides.setdefault("ftp_require_tls", False)
    settings = Settings(ftp_port=0, **{**LENIENT, **overrides})
    auth = MailboxAuth(settings)
    server = FTPServer(settings, auth)
    server.handler.auth_failed_timeout = 0.01  # pyftpdlib waits 3 s before answering a bad login
    server.start()
    return server


@pytest.fixture(scope="module")
def passive_range() -> tuple[int, int]:
    base = random.Random(os.getpid()).randrange(41000, 59000, 100)
    return base, base + 49


@pytest.fixture(scope="module")
def server(tradelane_home: Path, passive_range: tuple[int, int]) -> Iterator[FTPServer]:
    srv = start_server(ftp_passive_ports=f"{passive_range[0]}-{passive_range[1]}")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tls_server(tradelane_home: Path) -> Iterator[FTPServer]:
    srv = start_server(ftp_require_tls=True, ftp_passive_ports="")
    yield srv
    srv.stop()


def connect(
    srv: FTPServer, partner: PartnerLogin | None = None, *, tls: bool = False, source: str | None = None
) -> ftplib.FTP:
    """`source`: the local address to connect from (127.x.y.z), for tests of per-address rules."""
    where = (source, 0) if source else None
    ftp = (
        ftplib.FTP_TLS(timeout=10, source_address=where)
        if tls
        else ftplib.FTP(timeout=10, source_address=where)
    )
    ftp.connect("127.0.0.1", srv.port)
    if partner is not None:
        ftp.login(partner.name, partner.password)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
    return ftp


def put(ftp: ftplib.FTP, path: str, data: bytes) -> str:
    return ftp.storbinary(f"STOR {path}", io.BytesIO(data))


def get(ftp: ftplib.FTP, path: str) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {path}", out.write)
    return out.getvalue()


def refused(fn: Callable[..., object], *args: object) -> str:
    """The reply of a command the server must refuse (4xx or 5xx)."""
    with pytest.raises((ftplib.error_perm, ftplib.error_temp)) as info:
        fn(*args)
    return str(info.value)


def refused_upload(ftp: ftplib.FTP, path: str, data: bytes) -> str:
    """The reply to an upload the server stops part-way: it may close the data connection while we
    still send (a reset here, as any client sees), and its reply then follows on the control channel."""
    try:
        put(ftp, path, data)
    except (ftplib.error_perm, ftplib.error_temp) as exc:
        return str(exc)
    except (ConnectionResetError, BrokenPipeError):
        return refused(ftp.voidresp)
    pytest.fail(f"the upload of {path} was not refused")


def staged_size(srv: FTPServer, partner: PartnerLogin, path: str) -> int:
    """How much of an unfinished upload the server has written, as another session's SIZE sees it."""
    with connect(srv, partner) as other, contextlib.suppress(ftplib.error_perm):
        other.voidcmd("TYPE I")  # SIZE is refused in ASCII mode
        return other.size(path) or 0
    return 0


def wait_until_staged(srv: FTPServer, partner: PartnerLogin, path: str) -> None:
    """Before breaking an upload off: the server has written part of it (so it really is mid-upload)."""
    wait_for(lambda: staged_size(srv, partner, path) > 0, f"the server to write part of {path}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CURL, "-sS", "--fail", *args], capture_output=True, text=True, timeout=30)


def visible(partner: PartnerLogin, folder: str = "upload") -> list[str]:
    return sorted(p.name for p in (partner.home / folder).iterdir())


# --- moving files -----------------------------------------------------------------------------


def test_ftplib_upload_is_taken_in_and_download_is_byte_exact(
    server: FTPServer, make_partner: MakePartner, tmp_path: Path
) -> None:
    partner = make_partner(flow_to=tmp_path / "out")
    data = os.urandom(3 * 1024 * 1024 + 17)
    offer = os.urandom(200_000)
    partner.put_download("invoice.pdf", offer)
    with connect(server, partner) as ftp:
        reply = put(ftp, "upload/po_850.json", data)
        assert reply.startswith("226") and sha256(data) in reply
        assert get(ftp, "download/invoice.pdf") == offer
        assert get(ftp, "/download/../download/invoice.pdf") == offer
    assert (partner.home / "upload" / "po_850.json").read_bytes() == data
    [receipt] = partner.receipts()
    assert (receipt.name, receipt.folder, receipt.protocol) == ("po_850.json", "upload", "ftp")
    assert (receipt.size, receipt.sha256) == (len(data), sha256(data))
    [transfer] = partner.transfers()
    assert transfer.state == TransferState.pending
    actions = [e.action for e in partner.audit()]
    assert {"login", "upload", "download"} <= set(actions)


def test_ftps_with_prot_p_and_a_verified_certificate(server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner()
    data = os.urandom(1_500_000)
    partner.put_download("report.csv", data[::-1])
    context = ssl.create_default_context(cafile=str(server.cert_file))  # checks 127.0.0.1 against the SAN
    with ftplib.FTP_TLS(context=context, timeout=10) as ftp:
        ftp.connect("127.0.0.1", server.port)
        ftp.login(partner.name, partner.password)
        ftp.prot_p()
        assert isinstance(ftp.sock, ssl.SSLSocket)
        reply = put(ftp, "upload/secret.bin", data)
        assert sha256(data) in reply
        assert get(ftp, "download/report.csv") == data[::-1]
    [receipt] = partner.receipts()
    assert receipt.sha256 == sha256(data)


def test_curl_plain_and_ftps(server: FTPServer, make_partner: MakePartner, tmp_path: Path) -> None:
    partner = make_partner()
    source = tmp_path / "edi_810.x12"
    source.write_bytes(os.urandom(2_000_000))
    partner.put_download("ack_997.x12", b"ISA*00*...~" * 5000)
    url = f"ftp://{partner.name}:{partner.password}@127.0.0.1:{server.port}"

    assert curl("-T", str(source), f"{url}/upload/").returncode == 0
    assert curl("--ssl-reqd", "-k", "-T", str(source), f"{url}/upload/via_tls_k.x12").returncode == 0
    result = curl(
        "--ssl-reqd", "--cacert", str(server.cert_file), "-T", str(source), f"{url}/upload/via_ca.x12"
    )
    assert result.returncode == 0, result.stderr

    for name, flags in [
        ("plain", []),
        ("tls", ["--ssl-reqd", "-k"]),
        ("ca", ["--ssl-reqd", "--cacert", str(server.cert_file)]),
    ]:
        out = tmp_path / f"ack_{name}"
        assert curl(*flags, "-o", str(out), f"{url}/download/ack_997.x12").returncode == 0
        assert out.read_bytes() == b"ISA*00*...~" * 5000

    receipts = {r.name: r for r in partner.receipts()}
    assert set(receipts) == {"edi_810.x12", "via_tls_k.x12", "via_ca.x12"}
    assert {r.sha256 for r in receipts.values()} == {sha256(source.read_bytes())}


def test_names_empty_files_and_temporary_names(server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner()
    data = os.urandom(70_000)
    with connect(server, partner) as ftp:
        put(ftp, "upload/PO 850 – Müller.json", b'{"po": 850}')
        put(ftp, "upload/empty.csv", b"")
        # Upload under a temporary name, then rename: taken in once, under the final name.
        put(ftp, "upload/batch.zip.part", data)
        assert partner.receipts()[-1].name == "empty.csv"
        ftp.rename("upload/batch.zip.part", "upload/batch.zip")
    receipts = {r.name: r for r in partner.receipts()}
    assert set(receipts) == {"PO 850 – Müller.json", "empty.csv", "batch.zip"}
    assert (receipts["empty.csv"].size, receipts["empty.csv"].sha256) == (0, sha256(b""))
    assert receipts["batch.zip"].sha256 == sha256(data)
    assert visible(partner) == sorted(receipts)


def test_download_resumes_with_rest(server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner()
    data = os.urandom(1_000_000)
    partner.put_download("big.dat", data)
    with connect(server, partner) as ftp:
        ftp.voidcmd("TYPE I")
        tail = io.BytesIO()
        ftp.retrbinary("RETR download/big.dat", tail.write, rest=600_000)
        assert tail.getvalue() == data[600_000:]
        assert refused(ftp.retrbinary, "RETR download/big.dat", tail.write, 8192, 2_000_000).startswith("554")
    sizes = [e.detail["size"] for e in partner.audit("download")]
    assert sizes == [400_000]


def test_concurrent_sessions(server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner(max_connections=8)
    files = {f"c{i:02}.bin": os.urandom(50_000 + i) for i in range(24)}
    names = sorted(files)
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            with connect(server, partner) as ftp:
                for name in names[k::8]:
                    put(ftp, f"upload/{name}", files[name])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {r.name: r.sha256 for r in partner.receipts()} == {n: sha256(d) for n, d in files.items()}


def test_listing_shows_the_home_and_permissions(server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner()
    partner.put_download("a.txt", b"a")
    with connect(server, partner) as ftp:
        assert ftp.pwd() == "/"
        assert sorted(ftp.nlst()) == ["download", "upload"]
        facts = dict(ftp.mlsd("/"))
        assert facts["upload"]["type"] == "dir" and "c" in facts["upload"]["perm"]
        assert facts["download"]["type"] == "dir" and "c" not in facts["download"]["perm"]
        [(name, fact)] = list(ftp.mlsd("download"))
        assert (name, fact["size"], fact["perm"]) == ("a.txt", "1", "rd")
        ftp.cwd("download")
        assert ftp.pwd() == "/download"
        ftp.voidcmd("TYPE I")
        assert ftp.size("a.txt") == 1
        lines: list[str] = []
        ftp.retrlines("LIST", lines.append)
        assert len(lines) == 1 and lines[0].endswith(" a.txt") and partner.name in lines[0]
        ftp.cwd("..")
        assert ftp.pwd() == "/"


# --- what a partner may not do ----------------------------------------------------------------


def test_another_partners_files_are_invisible_and_unreachable(
    server: FTPServer, make_partner: MakePartner
) -> None:
    me, other = make_partner(), make_partner()
    secret = other.put_download("secret.txt", b"not for you")
    with connect(server, me) as ftp:
        for path in [
            f"../{other.name}/download/secret.txt",
            f"/../{other.name}/download/secret.txt",
            f"/{other.name}/download/secret.txt",
            f"download/../../{other.name}/download/secret.txt",
            str(secret),  # the real absolute path on the server
            "download/../../../../../../etc/passwd",
        ]:
            assert refused(get, ftp, path).startswith("550")
        for path in [f"../{other.name}", f"/../{other.name}/download", str(secret.parent)]:
            assert refused(ftp.cwd, path).startswith("550")
            assert ftp.pwd() == "/"
        assert refused(ftp.nlst, f"../{other.name}/download").startswith("550")
        ftp.cwd("download")
        assert refused(get, ftp, f"../../{other.name}/download/secret.txt").startswith("550")
        assert ftp.nlst() == []
        assert refused(put, ftp, f"../../{other.name}/upload/x.bin", b"x").startswith("550")
    assert other.receipts() == [] and visible(other) == []


def test_a_planted_symlink_is_not_followed(server: FTPServer, make_partner: MakePartner) -> None:
    me, other = make_partner(), make_partner()
    target = other.put_download("secret.txt", b"not for you")
    (me.home / "download" / "link.txt").symlink_to(target)
    with connect(server, me) as ftp:
        assert "link.txt" not in ftp.nlst("download")
        assert refused(get, ftp, "download/link.txt").startswith("550")


def test_folder_permissions_are_enforced(server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner()
    partner.put_download("fetch_me.txt", b"x")
    with connect(server, partner) as ftp:
        reply = refused(put, ftp, "download/evil.txt", b"x")
        assert reply.startswith("550") and "read-only" in reply
        assert refused(put, ftp, "evil.txt", b"x").startswith("550")  # the home itself
        put(ftp, "upload/mine.txt", b"mine")
        reply = refused(get, ftp, "upload/mine.txt")
        assert reply.startswith("550") and "download/" in reply
        assert refused(ftp.mkd, "upload/sub").startswith("550")
        assert refused(ftp.mkd, "newdir").startswith("550")
        assert refused(ftp.rmd, "upload").startswith("550")
        assert refused(ftp.delete, "upload/mine.txt").startswith("550")
        assert refused(ftp.rename, "upload/mine.txt", "upload/other.txt").startswith("550")
        assert refused(ftp.sendcmd, "SITE CHMOD 777 upload/mine.txt").startswith("550")
        assert refused(ftp.sendcmd, "STOU").startswith("500")
        assert refused(put, ftp, "upload/.hidden", b"x").startswith("55")
        ftp.delete("download/fetch_me.txt")
    assert visible(partner, "download") == []
    assert [r.name for r in partner.receipts()] == ["mine.txt"]
    failed = {e.action for e in partner.audit() if e.action.endswith(".failed")}
    assert {"upload.failed", "download.failed", "mkdir.failed", "delete.failed", "rename.failed"} <= failed
    assert [e.target for e in partner.audit("delete")] == ["download/fetch_me.txt"]


def test_no_delete_in_download_when_the_account_forbids_it(
    server: FTPServer, make_partner: MakePartner
) -> None:
    partner = make_partner(can_delete_downloads=False)
    partner.put_download("keep.txt", b"x")
    with connect(server, partner) as ftp:
        assert dict(ftp.mlsd("download"))["keep.txt"]["perm"] == "r"
        assert refused(ftp.delete, "download/keep.txt").startswith("550")
    assert visible(partner, "download") == ["keep.txt"]


def test_size_limit(server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner(max_file_bytes=1_000_000)
    with connect(server, partner) as ftp:
        reply = refused_upload(ftp, "upload/big.bin", os.urandom(3_000_000))
        assert reply.startswith("552")
        put(ftp, "upload/small.bin", b"s" * 1000)
    assert visible(partner) == ["small.bin"]
    assert [r.name for r in partner.receipts()] == ["small.bin"]


# --- broken and resumed uploads ---------------------------------------------------------------


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST, as a crashed client or a dropped network path does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_reset_data_connection_leaves_nothing_then_rest_resumes(
    server: FTPServer, make_partner: MakePartner, tmp_path: Path
) -> None:
    partner = make_partner(flow_to=tmp_path / "out")
    data = os.urandom(4 * 1024 * 1024)
    with connect(server, partner) as ftp:
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("STOR upload/order.edi")
        conn.sendall(data[: 1024 * 1024])
        wait_until_staged(server, partner, "upload/order.edi")
        reset(conn)
        assert refused(ftp.getresp).startswith("426")
        assert visible(partner) == [] and partner.receipts() == []

        # The partial is kept for a resume: SIZE says how much arrived, REST + STOR sends the rest.
        have = ftp.size("upload/order.edi")
        assert have is not None and 0 < have <= 1024 * 1024
        reply = ftp.storbinary("STOR upload/order.edi", io.BytesIO(data[have:]), rest=have)
        assert sha256(data) in reply
    assert (partner.home / "upload" / "order.edi").read_bytes() == data
    [receipt] = partner.receipts()
    assert (receipt.size, receipt.sha256) == (len(data), sha256(data))
    assert len(partner.transfers()) == 1
    assert partner.audit("upload.failed")


def test_appe_appends_to_an_unfinished_upload(server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner()
    data = os.urandom(2 * 1024 * 1024)
    with connect(server, partner) as ftp:
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("STOR upload/feed.xml")
        conn.sendall(data[:500_000])
        wait_until_staged(server, partner, "upload/feed.xml")
        reset(conn)
        refused(ftp.getresp)
        have = wait_for(lambda: ftp.size("upload/feed.xml"), "SIZE of the broken upload")
        reply = ftp.storbinary("APPE upload/feed.xml", io.BytesIO(data[have:]))
        assert sha256(data) in reply
        # A received file belongs to the data flows: it cannot be appended to.
        assert refused(ftp.storbinary, "APPE upload/feed.xml", io.BytesIO(b"more")).startswith("550")
    [receipt] = partner.receipts()
    assert receipt.sha256 == sha256(data)


def test_abor_during_stor_triggers_nothing(server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner()
    with connect(server, partner) as ftp:
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("STOR upload/aborted.bin")
        conn.sendall(os.urandom(300_000))
        wait_until_staged(server, partner, "upload/aborted.bin")
        if ftp.abort().startswith("426"):  # 426 for the transfer, then 226 for the ABOR
            assert ftp.voidresp().startswith("226")
        conn.close()
        assert ftp.voidcmd("NOOP").startswith("200")
    assert visible(partner) == [] and partner.receipts() == []


@pytest.mark.parametrize("data_first", [True, False])
def test_client_vanishing_mid_upload_triggers_nothing(
    server: FTPServer, make_partner: MakePartner, data_first: bool
) -> None:
    # A process that dies closes both its connections cleanly (FIN): the end of the data stream
    # alone looks like a finished file; the control connection going away with it says it was not.
    partner = make_partner()
    ftp = connect(server, partner)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR upload/half.bin")
    conn.sendall(os.urandom(700_000))
    wait_until_staged(server, partner, "upload/half.bin")
    if data_first:
        conn.close()
        ftp.close()
    else:
        ftp.close()
        conn.close()
    # Written once the upload was abandoned (the session's release): nothing of it can land after.
    wait_for(lambda: partner.audit("upload.failed"), "the upload to be recorded as failed")
    assert visible(partner) == [] and partner.receipts() == []


@pytest.mark.parametrize("tls", [False, True], ids=["ftp", "ftps"])
def test_killed_curl_leaves_nothing(server: FTPServer, make_partner: MakePartner, tls: bool) -> None:
    partner = make_partner()
    url = f"ftp://{partner.name}:{partner.password}@127.0.0.1:{server.port}/upload/killed.bin"
    flags = ["--ssl-reqd", "-k"] if tls else []
    proc = subprocess.Popen(
        [CURL, "-sS", *flags, "-T", "-", url], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdin is not None
    for _ in range(40):
        proc.stdin.write(os.urandom(64 * 1024))
    proc.stdin.flush()
    wait_for(lambda: any(e.action == "login" for e in partner.audit()), "curl's login")
    wait_until_staged(server, partner, "upload/killed.bin")
    proc.kill()
    proc.wait()
    proc.stdin.close()
    # Written once the upload was abandoned (the session's release): nothing of it can land after.
    wait_for(lambda: partner.audit("upload.failed"), "the upload to be recorded as failed")
    assert visible(partner) == [] and partner.receipts() == []


# --- logins ------------------------------------------------------------------------------------


def test_wrong_password_and_unknown_user_read_the_same(server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner()
    with connect(server) as ftp:
        wrong = refused(ftp.login, partner.name, "not-the-password")
    with connect(server) as ftp:
        unknown = refused(ftp.login, "nobody-by-this-name", "whatever")
    assert wrong == unknown == "530 Login incorrect."
    [event] = partner.audit("login.failed")
    assert event.remote_addr == "127.0.0.1" and event.detail["protocol"] == "ftp"


def test_a_guessing_address_is_banned_whatever_user_it_tries(
    tradelane_home: Path, make_partner: MakePartner
) -> None:
    srv = start_server(lockout_failures=3)
    try:
        victim, bystander = make_partner(), make_partner()
        guesser = fresh_loopback()
        with connect(srv, source=guesser) as ftp:
            for _ in range(2):
                assert refused(ftp.login, victim.name, "guess") == "530 Login incorrect."
        with connect(srv, source=guesser) as ftp:  # the third failure bans the address
            assert refused(ftp.login, "ghost", "spray") == "530 Login incorrect."
        with connect(srv, source=guesser) as ftp:  # the right password does not help from there
            assert "Too many failed logins" in refused(ftp.login, victim.name, victim.password)
        with connect(srv, source=guesser) as ftp:  # nor does another user
            assert "Too many failed logins" in refused(ftp.login, bystander.name, bystander.password)
        assert victim.audit("login.banned")
        with connect(srv, victim, source=fresh_loopback()) as ftp:  # the partner itself is not locked
            assert ftp.pwd() == "/"
    finally:
        srv.stop()


def test_ip_allow_list(server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner(allowed_networks=["10.20.0.0/16"])
    with connect(server) as ftp:
        assert refused(ftp.login, partner.name, partner.password) == "530 Login incorrect."
    assert "allow-list" in partner.audit("login.failed")[-1].detail["reason"]
    set_partner(partner.name, allowed_networks=["10.20.0.0/16", "127.0.0.0/8"])
    with connect(server, partner) as ftp:
        assert ftp.pwd() == "/"


def test_connection_limit_per_partner(server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner(max_connections=2)
    first, second = connect(server, partner), connect(server, partner)
    with connect(server) as third:
        assert "Too many sessions" in refused(third.login, partner.name, partner.password)
    first.quit()
    second.quit()

    def fourth_gets_in() -> bool:
        try:
            with connect(server, partner) as ftp:
                return ftp.pwd() == "/"
        except ftplib.error_perm:
            return False

    wait_for(fourth_gets_in, "a session to be free again")


def test_relogin_on_the_same_connection_releases_the_session(
    server: FTPServer, make_partner: MakePartner
) -> None:
    partner = make_partner(max_connections=1)
    with connect(server, partner) as ftp:
        ftp.login(partner.name, partner.password)  # USER again: the first login is flushed
        assert ftp.pwd() == "/"


def test_idle_timeout(tradelane_home: Path, make_partner: MakePartner) -> None:
    srv = start_server(idle_timeout_seconds=0.5)
    try:
        partner = make_partner(max_connections=1)
        ftp = connect(srv, partner)
        # The server ends the idle session on its own: its 421 (or the close) arrives unasked.
        wait_for(lambda: select.select([ftp.sock], [], [], 0)[0], "the server to end the idle session")
        with pytest.raises((ftplib.error_temp, EOFError, OSError)):
            ftp.pwd()
        ftp.close()
        with connect(srv, partner) as again:  # the timed-out session no longer counts
            assert again.pwd() == "/"
    finally:
        srv.stop()


# --- FTPS required, passive ports, certificate ------------------------------------------------


def test_require_tls_refuses_plain_logins(tls_server: FTPServer, make_partner: MakePartner) -> None:
    partner = make_partner()
    with connect(tls_server) as ftp:
        reply = refused(ftp.login, partner.name, partner.password)
        assert reply.startswith("550") and "TLS" in reply
    with connect(tls_server, tls=True) as ftp:
        ftp.login(partner.name, partner.password)
        assert "TLS" in refused(ftp.nlst)  # data connections must be protected too
        ftp.prot_p()
        put(ftp, "upload/ok.bin", b"fine")
    assert [r.name for r in partner.receipts()] == ["ok.bin"]
    assert partner.audit("login.failed") == []


def test_require_tls_with_curl(tls_server: FTPServer, make_partner: MakePartner, tmp_path: Path) -> None:
    partner = make_partner()
    source = tmp_path / "f.txt"
    source.write_bytes(b"hello")
    url = f"ftp://{partner.name}:{partner.password}@127.0.0.1:{tls_server.port}/upload/"
    assert curl("-T", str(source), url).returncode != 0
    assert curl("--ssl-reqd", "-k", "-T", str(source), url).returncode == 0
    assert [r.name for r in partner.receipts()] == ["f.txt"]


def test_passive_ports_come_from_the_range(
    server: FTPServer, make_partner: MakePartner, passive_range: tuple[int, int]
) -> None:
    with connect(server, make_partner()) as ftp:
        ports = {ftp.makepasv()[1] for _ in range(5)}
    assert all(passive_range[0] <= p <= passive_range[1] for p in ports)
    assert parse_port_range("30000-30002, 31000") == [30000, 30001, 30002, 31000]
    assert parse_port_range("") is None


def _presented_certificate(srv: FTPServer) -> bytes:
    with ftplib.FTP_TLS(timeout=10) as ftp:
        ftp.connect("127.0.0.1", srv.port)
        ftp.auth()
        assert isinstance(ftp.sock, ssl.SSLSocket)
        der = ftp.sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_certificate_is_generated_once_and_kept(server: FTPServer, tradelane_home: Path) -> None:
    cert, key = tradelane_home / "tls_cert.pem", tradelane_home / "tls_key.pem"  # core/tls.py's, shared
    assert (server.cert_file, server.key_file) == (cert, key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = cert.read_bytes()
    presented = _presented_certificate(server)
    assert ssl.DER_cert_to_PEM_cert(presented).strip() == before.decode().strip()
    restarted = start_server()
    try:
        assert _presented_certificate(restarted) == presented
    finally:
        restarted.stop()
    assert ensure_certificate(Settings()) == (cert, key)
    assert cert.read_bytes() == before


def test_certificate_from_settings(tradelane_home: Path, tmp_path: Path) -> None:
    own = Settings(home=tmp_path / "elsewhere")
    cert, key = ensure_certificate(own)  # any valid pair will do
    srv = start_server(tls_cert_file=cert, tls_key_file=key)
    try:
        assert srv.cert_file == cert
        assert ssl.DER_cert_to_PEM_cert(_presented_certificate(srv)).strip() == cert.read_text().strip()
    finally:
        srv.stop()


def test_passive_replies_name_the_configured_address(tradelane_home: Path, make_partner: MakePartner) -> None:
    # Behind NAT or in a container, clients must be told the address they can reach, not the
    # server's own; unset, the reply names the address the client connected to.
    masked = start_server(ftp_passive_ports="", ftp_passive_address="203.0.113.7")
    plain = start_server(ftp_passive_ports="")
    try:
        partner = make_partner()
        for srv, expected in ((masked, "203,0,113,7"), (plain, "127,0,0,1")):
            ftp = connect(srv, partner)
            try:
                reply = ftp.sendcmd("PASV")
                assert reply.startswith("227") and f"({expected}," in reply, reply
            finally:
                ftp.close()
    finally:
        masked.stop()
        plain.stop()


@pytest.mark.parametrize("value", ["ftp.example.com", "::1", "300.1.1.1"])
def test_a_passive_address_that_is_not_ipv4_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="ftp_passive_address"):
        Settings(ftp_passive_address=value)

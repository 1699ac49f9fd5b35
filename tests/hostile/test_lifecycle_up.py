"""The lifecycle against a real `tradelane up`, changed from another process (the `tradelane`
command), as an operator does it: sessions of a removed partner end, a lock and its unlock reach the
running servers, and a removed polling flow's schedule is paused."""

from __future__ import annotations

import ftplib
import ssl
from pathlib import Path

import httpx
import paramiko

from mailboxes.ftp import CERT_FILE
from tests.addresses import fresh_loopback
from tests.e2e.helpers import unique
from tests.system import System
from tests.waiting import wait_for

PASSWORD = "Up-Lifecycle-Pass-1"


def _sftp(system: System, user: str, password: str) -> paramiko.Transport:
    transport = paramiko.Transport(("127.0.0.1", int(system.env["TRADELANE_SFTP_PORT"])))
    transport.connect(username=user, password=password)
    return transport


def _ftp(system: System, user: str, password: str, source: str | None = None) -> ftplib.FTP:
    """An FTPS session (`up` requires TLS); the certificate is the home's self-signed one."""
    context = ssl.create_default_context(cafile=str(system.home / CERT_FILE))
    context.check_hostname = False
    client = ftplib.FTP_TLS(timeout=10, source_address=(source, 0) if source else None, context=context)
    try:  # a refused login closes its socket here, not in the garbage collector
        client.connect("127.0.0.1", int(system.env["TRADELANE_FTP_PORT"]))
        client.login(user, password)
        client.prot_p()
    except BaseException:
        client.close()
        raise
    return client


def _gone(client: ftplib.FTP) -> bool:
    try:
        client.voidcmd("NOOP")
    except (OSError, EOFError, ftplib.Error):
        return True
    return False


def test_partner_remove_from_the_cli_ends_live_sessions_in_up(system: System) -> None:
    name = unique("leaver")
    system.cli("partner", "add", name, "--password", PASSWORD)
    transport = _sftp(system, name, PASSWORD)
    sftp = paramiko.SFTPClient.from_transport(transport)
    assert sftp is not None and sorted(sftp.listdir("/")) == ["download", "upload"]
    ftp = _ftp(system, name, PASSWORD)
    try:
        system.cli("partner", "remove", name)
        wait_for(lambda: not transport.is_active(), "the SFTP session to end", timeout=30)
        wait_for(lambda: _gone(ftp), "the FTP session to end", timeout=30)
    finally:
        ftp.close()  # the server ended the session; our end of it is closed here
        transport.close()
    assert '"action": "session.ended"' in system.cli("audit", "--partner", name, "--json").stdout


def test_a_lock_and_the_cli_unlock_reach_the_running_servers(system: System) -> None:
    name = unique("locked")
    system.cli("partner", "add", name, "--password", PASSWORD)
    for address in (fresh_loopback(), fresh_loopback(), fresh_loopback()):
        for _ in range(4):  # 12 failures from 3 addresses (the account lock needs 10 from 3)
            with httpx.Client(transport=httpx.HTTPTransport(local_address=address)) as client:
                data = {"grant_type": "password", "username": name, "password": "guess"}
                assert client.post(f"{system.api}/api/authentication", data=data).status_code == 401
    elsewhere = fresh_loopback()
    try:
        _ftp(system, name, PASSWORD, elsewhere).quit()
        raise AssertionError("a locked partner logged in")
    except ftplib.error_perm as refused:
        assert str(refused) == "530 Login incorrect."
    assert "unlocked" in system.cli("partner", "unlock", name).stdout
    _ftp(system, name, PASSWORD, elsewhere).quit()


def test_a_removed_polling_flow_stops_polling(system: System, tmp_path: Path) -> None:
    remote, dest = tmp_path / "remote", tmp_path / "dest"
    remote.mkdir()
    src, dst, flow = unique("src"), unique("dst"), unique("poller")
    system.cli("endpoint", "add", src, "--type", "file", "--path", str(remote))
    system.cli("endpoint", "add", dst, "--type", "file", "--path", str(dest))
    system.cli("flow", "add", flow, "--source", src, "--dest", dst, "--every", "1s", "--after-pull", "delete")

    def deployment() -> dict[str, object]:
        answer = httpx.get(f"{system.prefect_api}/deployments/name/poll/{flow}")
        return answer.json() if answer.status_code == 200 else {}

    wait_for(lambda: deployment().get("paused") is False, "the poll deployment to be served", timeout=30)
    system.cli("flow", "remove", flow)
    wait_for(
        lambda: deployment().get("paused") is True, "the removed flow's schedule to be paused", timeout=30
    )
    assert system.transfers(flow=flow) == []
    system.cli("endpoint", "remove", src)  # nothing uses it any more

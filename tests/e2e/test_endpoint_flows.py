"""Every endpoint type in a real data flow against its real server, set up with the CLI as a user would.

For s3, azure, sftp, ftp, email and http:
* push: a partner's REST upload → a data flow → a destination of that type; the bytes are read
  back straight from the server (boto3, the Azure SDK, the sshd/ftpd folder on disk, the Maildir,
  the HTTP app's storage) and must have the same SHA-256;
* pull: a file put at the server → a polling data flow (`--every 2s`) → a `file` endpoint, same
  SHA-256, and the after-pull action (delete / archive) done at the source.
A destination given wrong credentials fails after one try with the server's refusal in the
error; an FTPS destination that refuses connections is retried with backoff and delivers once it
is up; and no credential used here shows up in logs, the Prefect API (parameters, artifacts, task
runs, logs, events, deployments) or what operators see.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from tests.e2e.helpers import (
    PartnerClient,
    delivered,
    prefect_events,
    prefect_paged,
    settled,
    sha256,
    unique,
)
from tests.endpoint_servers.azurite import Azurite
from tests.endpoint_servers.ftpd import FtpTestServer, make_certificate
from tests.endpoint_servers.http_app import HttpApp
from tests.endpoint_servers.mail import ImapServer, SmtpServer
from tests.endpoint_servers.sshd import OpenSSHServer
from tests.servers import free_port, moto_client
from tests.system import System
from tests.waiting import wait_for

TYPES = ["s3", "azure", "sftp", "ftp", "email", "http"]
WAIT = 90.0  # the machine may be busy: generous, and never a timing assertion

# Every password, key, token and connection string handed to the CLI in this module; the last test
# checks that none of them shows up anywhere an operator or Prefect can see.
USED_SECRETS: set[str] = set()
# Names of the files those tests moved: they must show up where credentials must not (a sanity check
# that the search below really looks at Prefect's records).
MOVED_FILES: set[str] = set()


def remember(*values: str) -> None:
    for value in values:
        assert len(value) >= 8, f"too short to search for reliably: {value!r}"
        USED_SECRETS.add(value)


def payload() -> bytes:
    return os.urandom(200 * 1024 + 17)


@dataclass
class Place:
    """Where files of one type go or come from: `endpoint add` flags and direct server access."""

    flags: list[str]
    read: Callable[[str], bytes] | None = None  # push: the delivered file, straight from the server
    source_folder: str | None = None  # pull: the folder polled
    after_pull: str = "keep"
    gone: Callable[[str], bool] | None = None  # pull: has the after-pull action happened?


def server(request: pytest.FixtureRequest, name: str) -> Any:
    """Only the server the parametrized type needs is started."""
    return request.getfixturevalue(name)


# --- s3 (moto) ---------------------------------------------------------------------------------


def _s3(request: pytest.FixtureRequest) -> tuple[Any, list[str]]:
    url = server(request, "moto_server")
    key_id, secret = unique("AKIA").upper(), unique("s3-secret-key")
    remember(secret)
    bucket = unique("bucket")
    client = moto_client(url)
    client.create_bucket(Bucket=bucket)
    flags = ["--type", "s3", "--bucket", bucket, "--endpoint-url", url, "--region", "us-east-1"]
    flags += ["--access-key-id", key_id, "--secret-access-key", secret]
    return (client, bucket), flags


def s3_push(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    (client, bucket), flags = _s3(request)
    return Place(
        [*flags, "--prefix", "inbound"],
        read=lambda name: client.get_object(Bucket=bucket, Key=f"inbound/{name}")["Body"].read(),
    )


def s3_pull(request: pytest.FixtureRequest, tmp_path: Path, name: str, data: bytes) -> Place:
    (client, bucket), flags = _s3(request)
    client.put_object(Bucket=bucket, Key=f"out/{name}", Body=data)

    def archived(name: str) -> bool:
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        if keys != [f"done/{name}"]:
            return False
        return bool(client.get_object(Bucket=bucket, Key=f"done/{name}")["Body"].read() == data)

    return Place(flags, source_folder="out", after_pull="archive:done", gone=archived)


# --- azure (Azurite) ---------------------------------------------------------------------------


def azure_push(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    azurite: Azurite = server(request, "azurite")
    container = azurite.new_container()
    remember(azurite.connection_string, azurite.account_key)

    def read(name: str) -> bytes:
        with azurite.service() as service:
            return bytes(service.get_blob_client(container, f"inbound/{name}").download_blob().readall())

    flags = ["--type", "azure", "--container", container, "--prefix", "inbound"]
    return Place([*flags, "--connection-string", azurite.connection_string], read=read)


def azure_pull(request: pytest.FixtureRequest, tmp_path: Path, name: str, data: bytes) -> Place:
    azurite: Azurite = server(request, "azurite")
    container = azurite.new_container()
    with azurite.service() as service:
        service.get_blob_client(container, f"out/{name}").upload_blob(data)
    sas = generate_container_sas(
        azurite.account_name,
        container,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    signature = dict(part.split("=", 1) for part in sas.split("&"))["sig"]
    remember(sas, signature)

    def deleted(name: str) -> bool:
        with azurite.service() as service:
            return not list(service.get_container_client(container).list_blobs())

    flags = ["--type", "azure", "--container", container, "--account-url", azurite.account_url]
    return Place([*flags, "--sas-token", sas], source_folder="out", after_pull="delete", gone=deleted)


# --- sftp (OpenSSH sshd) -----------------------------------------------------------------------


def _sftp_flags(sshd: OpenSSHServer, folder: Path) -> list[str]:
    flags = ["--type", "sftp", "--host", sshd.host, "--port", str(sshd.port), "--user", sshd.user]
    return [*flags, "--host-key", sshd.host_key, "--path", str(folder)]


def sftp_push(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    sshd: OpenSSHServer = server(request, "openssh_server")
    folder = sshd.new_folder()
    key = tmp_path / "id_ed25519"
    key.write_text(sshd.private_key)
    key.chmod(0o600)
    # The private key's base64 body, line by line: any piece of it in a log is a leak.
    remember(*(line for line in sshd.private_key.splitlines() if len(line) >= 16 and "-----" not in line))
    return Place([*_sftp_flags(sshd, folder), "--key", str(key)], read=lambda n: (folder / n).read_bytes())


def sftp_pull(request: pytest.FixtureRequest, tmp_path: Path, name: str, data: bytes) -> Place:
    sshd: OpenSSHServer = server(request, "openssh_server")
    folder = sshd.new_folder()
    (folder / "out").mkdir()
    os.chown(folder / "out", folder.stat().st_uid, folder.stat().st_gid)
    (folder / "out" / name).write_bytes(data)
    remember(sshd.password)
    return Place(
        [*_sftp_flags(sshd, folder), "--password", sshd.password],
        source_folder="out",
        after_pull="delete",
        gone=lambda n: not (folder / "out" / n).exists(),
    )


# --- ftp (pyftpdlib, explicit FTPS) --------------------------------------------------------------


def _ftp_flags(
    ftpd: FtpTestServer, remote: str, port: int | None = None, cafile: Path | None = None
) -> list[str]:
    remember(ftpd.password)
    flags = ["--type", "ftp", "--host", ftpd.host, "--port", str(port or ftpd.port), "--user", ftpd.user]
    flags += ["--password", ftpd.password, "--tls", "explicit", "--cafile", str(cafile or ftpd.cafile)]
    return [*flags, "--path", remote]


def ftp_push(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    ftpd: FtpTestServer = server(request, "ftp_server")
    folder, remote = ftpd.new_folder()
    return Place(_ftp_flags(ftpd, remote), read=lambda n: (folder / n).read_bytes())


def ftp_pull(request: pytest.FixtureRequest, tmp_path: Path, name: str, data: bytes) -> Place:
    ftpd: FtpTestServer = server(request, "ftp_server")
    folder, remote = ftpd.new_folder()
    (folder / "out").mkdir()
    (folder / "out" / name).write_bytes(data)

    def archived(n: str) -> bool:
        done = folder / "done" / n
        return not (folder / "out" / n).exists() and done.exists() and done.read_bytes() == data

    return Place(_ftp_flags(ftpd, remote), source_folder="out", after_pull="archive:done", gone=archived)


# --- email (aiosmtpd to push, Dovecot IMAP to pull) ----------------------------------------------


def email_push(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    smtp: SmtpServer = server(request, "smtp_server")
    recipient = smtp.root.create()
    remember(smtp.password)

    def read(name: str) -> bytes:
        messages = smtp.root.messages(recipient)
        assert len(messages) == 1, f"{len(messages)} messages in the recipient's Maildir"
        [part] = list(messages[0].iter_attachments())
        assert part.get_filename() == name
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        return data

    flags = ["--type", "email", "--smtp-host", smtp.host, "--smtp-port", str(smtp.starttls_port)]
    flags += ["--tls", "starttls", "--cafile", str(smtp.cafile), "--user", smtp.user]
    return Place([*flags, "--password", smtp.password, "--to", smtp.address(recipient)], read=read)


def email_pull(request: pytest.FixtureRequest, tmp_path: Path, name: str, data: bytes) -> Place:
    imap: ImapServer = server(request, "imap_server")
    user = imap.add_user()
    remember(user.password)
    message = EmailMessage(policy=SMTP)
    message["From"] = "partner@example.test"
    message["To"] = user.address
    message["Subject"] = "today's orders"
    message.set_content("Files attached.")
    message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    uid = imap.append(user, message.as_bytes())

    def taken(n: str) -> bool:
        return {"\\Seen", "TradelaneTaken"} <= imap.flags(user).get(uid, set())

    flags = ["--type", "email", "--imap-host", imap.host, "--imap-port", str(imap.ssl_port)]
    flags += ["--imap-tls", "ssl", "--cafile", str(imap.cafile), "--user", user.name]
    return Place([*flags, "--password", user.password], after_pull="delete", gone=taken)


# --- http (the small file service) ---------------------------------------------------------------


def http_push(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    app: HttpApp = server(request, "http_app")
    app.reset()
    token = unique("bearer-token")
    app.tokens[token] = "rw"
    remember(token)
    return Place(
        ["--type", "http", "--url", f"{app.url}/files", "--bearer", token],
        read=lambda n: (app.root / n).read_bytes(),
    )


def http_pull(request: pytest.FixtureRequest, tmp_path: Path, name: str, data: bytes) -> Place:
    app: HttpApp = server(request, "http_app")
    app.reset()
    app.auth = "basic"
    user, password = unique("acme"), unique("basic-pw")
    app.users[user] = (password, "rw")
    remember(password)
    (app.root / "out").mkdir()
    (app.root / "out" / name).write_bytes(data)
    flags = ["--type", "http", "--url", f"{app.url}/files", "--list-url", f"{app.url}/files"]
    return Place(
        [*flags, "--basic", f"{user}:{password}"],
        source_folder="out",
        after_pull="delete",
        gone=lambda n: not (app.root / "out" / n).exists(),
    )


PUSH: dict[str, Callable[[pytest.FixtureRequest, Path], Place]] = {
    "s3": s3_push,
    "azure": azure_push,
    "sftp": sftp_push,
    "ftp": ftp_push,
    "email": email_push,
    "http": http_push,
}
PULL: dict[str, Callable[[pytest.FixtureRequest, Path, str, bytes], Place]] = {
    "s3": s3_pull,
    "azure": azure_pull,
    "sftp": sftp_pull,
    "ftp": ftp_pull,
    "email": email_pull,
    "http": http_pull,
}


# --- the tests -----------------------------------------------------------------------------------


@pytest.fixture
def partner(system: System) -> Iterator[tuple[str, PartnerClient]]:
    """A fresh partner per test, so a flow takes only this test's uploads."""
    name, password = unique("p"), unique("partner-pw")
    remember(password)
    system.cli("partner", "add", name, "--password", password)
    client = PartnerClient(system, name, password)
    remember(client.token)
    try:
        yield name, client
    finally:
        client.close()


@pytest.mark.parametrize("kind", TYPES)
def test_partner_upload_is_delivered_to_destination(
    kind: str,
    system: System,
    partner: tuple[str, PartnerClient],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    partner_name, client = partner
    place = PUSH[kind](request, tmp_path)
    endpoint, flow = unique(kind), unique(f"push-{kind}")
    system.cli("endpoint", "add", endpoint, *place.flags)
    system.cli("flow", "add", flow, "--source", f"mailbox:{partner_name}", "--dest", endpoint)

    data, name = payload(), f"{unique('po')}.bin"
    assert client.upload(name, data).status_code == 201
    [row] = system.wait_for(delivered(1), timeout=WAIT, flow=flow)
    MOVED_FILES.add(name)

    assert row["sha256"] == sha256(data)
    assert place.read is not None
    got = place.read(name)
    assert len(got) == len(data)
    assert sha256(got) == sha256(data)
    # What the destination answered is kept with the transfer (none from a plain file server).
    answer = row["destination_answer"]
    if ANSWER_STARTS[kind] is None:
        assert answer is None
    else:
        assert answer["summary"].startswith(ANSWER_STARTS[kind]), answer


ANSWER_STARTS = {
    "s3": "ETag ",
    "azure": "ETag ",
    "sftp": None,
    "ftp": None,
    "email": "sent as <",
    "http": "HTTP 201",
}


def poll_runs(system: System, flow: str) -> str:
    """The poll deployment's runs so far, for a failure message: state and message of each."""
    try:
        runs = httpx.post(
            f"{system.prefect_api}/flow_runs/filter",
            json={"flow_runs": {"tags": {"all_": [f"flow:{flow}", "poll"]}}, "limit": 50},
            timeout=30,
        ).json()
    except httpx.HTTPError as exc:
        return f"Prefect did not answer: {exc!r}"
    states: dict[str, int] = {}
    for run in runs:
        states[run["state_type"]] = states.get(run["state_type"], 0) + 1
    messages = {run["state"]["message"] for run in runs if run.get("state") and run["state"].get("message")}
    return f"{states}; messages: {sorted(str(m) for m in messages)[:10]}"


@pytest.mark.parametrize("kind", TYPES)
def test_polled_source_is_delivered_to_file_endpoint(
    kind: str, system: System, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # One polling flow at a time: six 2-second polls at once overload Prefect on 2 cores (overdue
    # scheduled runs pile up ahead of the deliveries), so each test pauses its flow when done.
    data, name = payload(), f"{unique('asn')}.bin"
    place = PULL[kind](request, tmp_path, name, data)
    source, dest, flow = unique(kind), unique("dir"), unique(f"pull-{kind}")
    dest_dir = tmp_path / "dest"
    system.cli("endpoint", "add", source, *place.flags)
    system.cli("endpoint", "add", dest, "--type", "file", "--path", str(dest_dir))
    args = ["--source", source, "--dest", dest, "--every", "2s", "--after-pull", place.after_pull]
    if place.source_folder:
        args += ["--source-folder", place.source_folder]
    system.cli("flow", "add", flow, *args)
    try:
        try:
            [row] = system.wait_for(delivered(1), timeout=WAIT, flow=flow)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\npoll runs: {poll_runs(system, flow)}") from None
        MOVED_FILES.add(name)
        assert row["file"] == name
        assert row["sha256"] == sha256(data)
        assert sha256((dest_dir / name).read_bytes()) == sha256(data)
        gone = place.gone
        assert gone is not None
        wait_for(lambda: gone(name), f"{kind}: after-pull {place.after_pull} at the source", timeout=30)
        # Taken once: the polls since then found nothing new.
        assert len(system.transfers(flow=flow)) == 1
    finally:
        # Stop polling: the schedule would keep hitting a server that later tests may reset.
        system.cli("flow", "disable", flow, check=False)


# --- wrong credentials: one try, and the error says so --------------------------------------------


def swap(flags: list[str], flag: str, value: str) -> list[str]:
    """`flags` with the value after `flag` replaced."""
    at = flags.index(flag) + 1
    return [*flags[:at], value, *flags[at + 1 :]]


def wrong_credentials(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The push flags of `kind` with a credential the server refuses (remembered: it must not leak)."""
    flags = PUSH[kind](request, tmp_path).flags
    if kind == "azure":
        wrong_key = base64.b64encode(os.urandom(64)).decode()
        remember(wrong_key)
        connection = flags[flags.index("--connection-string") + 1]
        good_key = connection.split("AccountKey=")[1].split(";")[0]
        return swap(flags, "--connection-string", connection.replace(good_key, wrong_key))
    if kind == "sftp":
        key = tmp_path / "not-authorized"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        remember(*(line for line in key.read_text().splitlines() if len(line) >= 16 and "-----" not in line))
        return swap(flags, "--key", str(key))
    secret_flag = {"ftp": "--password", "email": "--password", "http": "--bearer"}[kind]
    wrong = unique(f"wrong-{kind}-secret")
    remember(wrong)
    return swap(flags, secret_flag, wrong)


# How each server's refusal reads in the transfer's error. S3 is tested against moto with
# authentication on (tests/e2e/test_flows.py: the plain moto here accepts any key).
REFUSALS = {
    "azure": "failed to authenticate",
    "sftp": "authentication failed",
    "ftp": "login refused: 530",
    "email": "login refused: 535",
    "http": "HTTP 401",
}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_wrong_credentials_fail_once_and_say_so(
    kind: str,
    system: System,
    partner: tuple[str, PartnerClient],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    partner_name, client = partner
    endpoint, flow = unique(kind), unique(f"refused-{kind}")
    system.cli("endpoint", "add", endpoint, *wrong_credentials(kind, request, tmp_path))
    args = [
        "--source",
        f"mailbox:{partner_name}",
        "--dest",
        endpoint,
        "--retries",
        "5",
        "--retry-delay",
        "0.2",
    ]
    system.cli("flow", "add", flow, *args)
    name = f"{unique('po')}.bin"
    assert client.upload(name, payload()).status_code == 201
    [row] = system.wait_for(settled(1), timeout=WAIT, flow=flow)
    assert row["state"] == "failed"
    assert row["attempts"] == 1, row  # the same credentials would fail the same way: not retried
    assert REFUSALS[kind] in row["error"], row["error"]
    MOVED_FILES.add(name)


# --- a destination that refuses connections, then comes up ----------------------------------------


@contextlib.contextmanager
def ftps_on(port: int, home: Path, user: str, password: str, cert: Path, key: Path) -> Iterator[None]:
    """pyftpdlib with explicit TLS on a given port (the session's FTP server picks its own)."""
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, str(home), perm="elradfmwMT")
    first = free_port()
    handler = type(
        "LateFtpsHandler",
        (TLS_FTPHandler,),
        {
            "authorizer": authorizer,
            "certfile": str(cert),
            "keyfile": str(key),
            "ssl_context": None,
            "passive_ports": range(first, first + 20),
        },
    )
    ioloop = IOLoop()
    ftpd = FTPServer(("127.0.0.1", port), handler, ioloop=ioloop)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            ioloop.loop(timeout=0.05, blocking=False)

    thread = threading.Thread(target=serve, name="late-ftpd", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        ftpd.close_all()
        ioloop.close()


def test_refused_ftps_destination_is_retried_and_delivered_once_up(
    system: System, partner: tuple[str, PartnerClient], tmp_path: Path
) -> None:
    partner_name, client = partner
    port = free_port()
    home = tmp_path / "ftp-home"
    (home / "in").mkdir(parents=True)
    cert, key = make_certificate(tmp_path, "localhost", ["localhost", "127.0.0.1"])
    user, password = "late", unique("late-ftp-pw")
    remember(password)
    endpoint, flow = unique("ftp"), unique("retry-ftp")
    flags = ["--type", "ftp", "--host", "127.0.0.1", "--port", str(port), "--user", user]
    flags += ["--password", password, "--tls", "explicit", "--cafile", str(cert), "--path", "/in"]
    system.cli("endpoint", "add", endpoint, *flags)
    system.cli(
        "flow",
        "add",
        flow,
        "--source",
        f"mailbox:{partner_name}",
        "--dest",
        endpoint,
        "--retries",
        "8",
        "--retry-delay",
        "0.5",
    )
    data, name = payload(), "late_856.bin"
    assert client.upload(name, data).status_code == 201
    # Nothing listens on the port: refused, and retried rather than failed.
    rows = system.wait_for(lambda rows: bool(rows) and rows[0]["attempts"] >= 2, timeout=WAIT, flow=flow)
    assert rows[0]["state"] in ("pending", "running"), rows[0]

    with ftps_on(port, home, user, password, cert, key):
        [row] = system.wait_for(delivered(1), timeout=WAIT, flow=flow)
    assert row["attempts"] >= 3  # at least two refused tries, then the one that delivered
    assert sha256((home / "in" / name).read_bytes()) == sha256(data)


# --- no credential anywhere ------------------------------------------------------------------------


def test_no_credential_appears_in_logs_prefect_or_views(
    system: System, partner: tuple[str, PartnerClient], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if not MOVED_FILES:  # selected alone: carry one file with credentials first, to have some
        test_partner_upload_is_delivered_to_destination("http", system, partner, request, tmp_path)
    api = system.prefect_api
    places: dict[str, str] = {}
    for log in sorted((system.home / "logs").glob("*.log")):
        places[f"logs/{log.name}"] = log.read_text(errors="replace")
    places["up.log"] = (system.home / "up.log").read_text(errors="replace")
    flow_runs = prefect_paged(f"{api}/flow_runs/filter")
    assert flow_runs, "no flow runs in Prefect?"
    places["flow run parameters"] = json.dumps([r["parameters"] for r in flow_runs])
    places["flow runs"] = json.dumps(flow_runs)
    task_runs = prefect_paged(f"{api}/task_runs/filter")
    places["task run names"] = json.dumps([r["name"] for r in task_runs])
    places["task runs"] = json.dumps(task_runs)
    artifacts = prefect_paged(f"{api}/artifacts/filter")
    assert artifacts, "no artifacts in Prefect?"
    places["artifacts"] = json.dumps(artifacts)
    deployments = prefect_paged(f"{api}/deployments/filter")
    places["deployment parameters"] = json.dumps([d["parameters"] for d in deployments])
    places["deployments"] = json.dumps(deployments)
    places["prefect logs"] = json.dumps(prefect_paged(f"{api}/logs/filter"))
    places["prefect events"] = json.dumps(prefect_events(api))
    places["variables"] = json.dumps(prefect_paged(f"{api}/variables/filter"))
    places["block documents"] = json.dumps(prefect_paged(f"{api}/block_documents/filter"))
    # What operators read from the command line: transfer history (errors included) and endpoints.
    places["tradelane transfers"] = system.cli("transfers", "--json", "--limit", "100000").stdout
    places["tradelane endpoint list"] = system.cli("endpoint", "list", "--json").stdout
    places["tradelane flow list"] = system.cli("flow", "list", "--json").stdout

    unseen = sorted(name for name in MOVED_FILES if name not in places["artifacts"])
    assert not unseen, f"files moved by this module missing from Prefect's artifacts: {unseen}"
    assert all(name in places["task run names"] for name in MOVED_FILES)

    leaks = [
        f"{secret[:4]}… ({len(secret)} chars) in {where}"
        for secret in sorted(USED_SECRETS)
        for where, text in places.items()
        if secret in text
    ]
    assert not leaks, "credentials leaked:\n" + "\n".join(leaks)

"""`tradelane endpoint test NAME` against real servers says which kind of failure it met (DNS,
refused, authentication, TLS, host key, permission), and `endpoint add` pins an SFTP host key
only once the operator has seen its fingerprint and agreed."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from cli.main import app
from core.db import session_scope
from core.endpoints import probe
from core.endpoints.hostkeys import fingerprint
from core.endpoints.probe import Probe
from core.endpoints.rows import NoSuchEndpoint
from core.models import AuditEvent
from core.tenancy import RoleRefused, Scope
from tests.endpoint_servers.azurite import Azurite
from tests.endpoint_servers.ftpd import FtpTestServer
from tests.endpoint_servers.http_app import HttpApp
from tests.endpoint_servers.sshd import OpenSSHServer
from tests.isolation import isolated_home
from tests.servers import free_port
from tests.tenancy import home_scope

runner = CliRunner()


@pytest.fixture(autouse=True)
def home(tmp_path: Path) -> Iterator[Path]:
    with isolated_home(tmp_path / "home") as path:
        yield path


def cli(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.output


def add(name: str, *flags: str) -> None:
    code, output = cli("endpoint", "add", name, *flags)
    assert code == 0, output


def other_host_key(tmp_path: Path) -> str:
    """A valid ed25519 key line that is not the server's."""
    key = tmp_path / "not-the-server"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


def sftp_flags(
    server: OpenSSHServer, *, host_key: str | None = None, password: str | None = None
) -> list[str]:
    return [
        "--type",
        "sftp",
        "--host",
        server.host,
        "--port",
        str(server.port),
        "--user",
        server.user,
        "--password",
        password or server.password,
        "--host-key",
        host_key or server.host_key,
    ]


# Each case arranges one endpoint that fails one way; the kind is what `endpoint test` must name.
Arrange = Callable[[pytest.FixtureRequest, Path], list[str]]


def dns(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    flags = ["--type", "sftp", "--host", "no-such-host.invalid", "--user", "u", "--password", "pw"]
    return [*flags, "--host-key", other_host_key(tmp_path)]


def refused(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    flags = ["--type", "ftp", "--host", "127.0.0.1", "--port", str(free_port())]
    return [*flags, "--user", "u", "--password", "pw", "--tls", "none"]


def wrong_password(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    server: OpenSSHServer = request.getfixturevalue("openssh_server")
    return sftp_flags(server, password="not-the-password")


def certificate_for_another_name(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    ftp: FtpTestServer = request.getfixturevalue("ftp_server")
    flags = ["--type", "ftp", "--host", ftp.host, "--port", str(ftp.wrong_name_port)]
    flags += ["--user", ftp.user, "--password", ftp.password, "--tls", "explicit"]
    return [*flags, "--cafile", str(ftp.wrong_name_cafile)]


def untrusted_certificate(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    https: HttpApp = request.getfixturevalue("https_app")
    https.reset()
    url = f"{https.url}/files"
    return ["--type", "http", "--url", url, "--list-url", url, "--bearer", "test-token-rw"]


def changed_host_key(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    server: OpenSSHServer = request.getfixturevalue("openssh_server")
    return sftp_flags(server, host_key=other_host_key(tmp_path))


def sas_without_list(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    azurite: Azurite = request.getfixturevalue("azurite")
    container = azurite.new_container()
    token = azurite.container_sas(container, write=True, create=True)
    flags = ["--type", "azure", "--container", container, "--account-url", azurite.account_url]
    return [*flags, "--sas-token", token]


def missing_bucket(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    moto: str = request.getfixturevalue("moto_server")
    flags = ["--type", "s3", "--bucket", "no-such-bucket-tls", "--endpoint-url", moto]
    return [*flags, "--access-key-id", "k", "--secret-access-key", "s"]


@pytest.mark.parametrize(
    ("arrange", "kind"),
    [
        (dns, "DNS"),
        (refused, "unreachable (refused or timed out)"),
        (wrong_password, "authentication"),
        (certificate_for_another_name, "TLS"),
        (untrusted_certificate, "TLS"),
        (changed_host_key, "host key"),
        (sas_without_list, "permission"),
        (missing_bucket, "configuration"),  # "tls" in its name is not a TLS failure
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
def test_endpoint_test_names_the_kind_of_failure(
    request: pytest.FixtureRequest, tmp_path: Path, arrange: Arrange, kind: str
) -> None:
    add("target", *arrange(request, tmp_path))
    code, output = cli("endpoint", "test", "target")
    assert code == 1
    assert f"✗ target: {kind}:" in " ".join(output.split()), output


def probe_of(name: str, role: str = "instance") -> Probe:
    """What core's probe (the console's and admin API's Test) finds for a stored endpoint."""
    with session_scope() as session:
        cli_scope = home_scope(session)
        scope = Scope(cli_scope.account_id, "home", role, f"user:{role}@example.com")  # type: ignore[arg-type]
        row = probe.probe_named(session, scope, name)
    result = probe.probe(row)
    with session_scope() as session:
        probe.record(session, scope, result, remote_addr="198.51.100.7")
    return result


@pytest.mark.parametrize(
    ("arrange", "kind"),
    [
        (dns, "DNS"),
        (refused, "unreachable (refused or timed out)"),
        (wrong_password, "authentication"),
        (certificate_for_another_name, "TLS"),
        (changed_host_key, "host key"),
        (sas_without_list, "permission"),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
def test_core_probe_classifies_and_audits_the_failure(
    request: pytest.FixtureRequest, tmp_path: Path, arrange: Arrange, kind: str
) -> None:
    flags = arrange(request, tmp_path)
    add("target", *flags)
    result = probe_of("target", role="operator")
    assert not result.ok and result.kind == kind and result.uri is None
    assert result.line().startswith(f"✗ target: {kind}: ")
    secrets = [flags[i + 1] for i, flag in enumerate(flags) if flag in ("--password", "--sas-token")]
    assert secrets and not any(secret in result.message for secret in secrets)  # scrubbed
    with session_scope() as session:
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "endpoint.test")).one()
    assert (event.actor, event.target, event.remote_addr) == (
        "user:operator@example.com",
        "target",
        "198.51.100.7",
    )
    assert event.detail == {"ok": False, "kind": kind}


def test_core_probe_of_a_working_endpoint_and_who_may_test(openssh_server: OpenSSHServer) -> None:
    add("partner-sftp", *sftp_flags(openssh_server))
    result = probe_of("partner-sftp")
    assert result.ok and result.kind is None and result.uri and result.uri.startswith("sftp://")
    assert result.line() == f"✓ partner-sftp reachable ({result.uri})"
    with pytest.raises(RoleRefused, match="this login is read-only"):
        probe_of("partner-sftp", role="read-only")
    with pytest.raises(NoSuchEndpoint):
        probe_of("no-such-endpoint")


def test_endpoint_test_reports_a_working_endpoint(openssh_server: OpenSSHServer) -> None:
    add("partner-sftp", *sftp_flags(openssh_server))
    code, output = cli("endpoint", "test", "partner-sftp")
    assert code == 0 and "✓ partner-sftp reachable" in output


def stored(name: str) -> dict[str, object] | None:
    code, output = cli("endpoint", "list", "--json")
    assert code == 0, output
    return next((row for row in json.loads(output) if row["name"] == name), None)


def first_contact(server: OpenSSHServer, name: str, *extra: str, input: str | None = None) -> tuple[int, str]:
    flags = ["--type", "sftp", "--host", server.host, "--port", str(server.port)]
    return cli(
        "endpoint",
        "add",
        name,
        *flags,
        "--user",
        server.user,
        "--password",
        server.password,
        *extra,
        input=input,
    )


def test_first_contact_shows_the_fingerprint_and_pins_only_when_confirmed(
    openssh_server: OpenSSHServer,
) -> None:
    code, output = first_contact(openssh_server, "declined", input="n\n")
    assert code == 1 and "not pinned; nothing stored" in output
    assert stored("declined") is None

    code, output = first_contact(openssh_server, "confirmed", input="y\n")
    assert code == 0, output
    row = stored("confirmed")
    assert row is not None
    pinned = str(row["config"]["host_key"])  # type: ignore[index]
    assert pinned in openssh_server.host_keys.values()
    assert fingerprint(pinned) in output  # what the operator was shown is what got pinned
    assert cli("endpoint", "test", "confirmed")[0] == 0


def test_accept_host_key_pins_without_asking(openssh_server: OpenSSHServer) -> None:
    code, output = first_contact(openssh_server, "scripted", "--accept-host-key")
    assert code == 0, output
    row = stored("scripted")
    assert row is not None and row["config"]["host_key"] in openssh_server.host_keys.values()  # type: ignore[index]


def test_first_contact_with_an_unreachable_server_stores_nothing() -> None:
    flags = ["--type", "sftp", "--host", "127.0.0.1", "--port", str(free_port()), "--user", "u"]
    code, output = cli("endpoint", "add", "nowhere", *flags, "--password", "pw", "--accept-host-key")
    assert code == 1 and "could not read the host key" in " ".join(output.split())
    assert stored("nowhere") is None

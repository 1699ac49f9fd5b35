"""`tradelane up` exposed on every interface, started with a loose umask: what others can reach and read.

One real `up` with TRADELANE_HOST=0.0.0.0 (the servers partners use, on every interface), umask 022,
and no Prefect auth configured. The Prefect API — which creates flow runs and shows their logs —
must still listen on loopback only and refuse requests without the auth string `up` generated;
every file and folder in the home must be private, while a file delivered to an operator's folder
keeps the operator's umask.
"""

from __future__ import annotations

import base64
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.config import Settings, get_settings
from tests.e2e.helpers import PartnerClient, delivered, unique
from tests.system import System, run_system
from tests.waiting import wait_for

LOOPBACK_V4 = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it (little-endian hex)


@pytest.fixture(scope="module")
def exposed() -> Iterator[System]:
    umask = os.umask(0o022)  # `up` inherits it: what a typical login shell has
    try:
        with run_system(TRADELANE_HOST="0.0.0.0", TRADELANE_PREFECT_AUTH="") as system:
            yield system
    finally:
        os.umask(umask)


def listening(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on `port`, from /proc/net/tcp{,6}."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                address, hex_port = fields[1].split(":")
                if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def is_loopback(address: str) -> bool:
    if len(address) == 8:
        return address.endswith("7F")  # 127.x.x.x
    return address == "00000000000000000000000001000000"  # ::1


def prefect_port(system: System) -> int:
    return int(system.env["TRADELANE_PREFECT_PORT"])


def generated_auth(system: System) -> str:
    return (system.home / "prefect-auth").read_text().strip()


def test_prefect_listens_on_loopback_only(exposed: System) -> None:
    api = listening(int(exposed.env["TRADELANE_API_PORT"]))
    assert api == {"00000000"}, "the API should be on every interface: TRADELANE_HOST=0.0.0.0"
    prefect = listening(prefect_port(exposed))
    assert prefect, "nothing listens on the Prefect port"
    assert all(is_loopback(address) for address in prefect), prefect
    assert LOOPBACK_V4 in prefect


def test_prefect_api_refuses_requests_without_the_auth_string(exposed: System) -> None:
    url = f"http://127.0.0.1:{prefect_port(exposed)}/api"
    auth = generated_auth(exposed)
    user, _, password = auth.partition(":")
    assert user == "tradelane" and len(password) >= 40
    assert stat.S_IMODE((exposed.home / "prefect-auth").stat().st_mode) == 0o600
    for method, path, body in (
        ("POST", "/flow_runs/filter", {}),
        ("POST", "/deployments/filter", {}),
        ("POST", "/logs/filter", {}),
        ("GET", "/admin/settings", None),
    ):
        refused = httpx.request(method, f"{url}{path}", json=body)
        assert refused.status_code == 401, (path, refused.text)
        wrong = httpx.request(method, f"{url}{path}", json=body, auth=(user, "not-the-password"))
        assert wrong.status_code == 401, (path, wrong.text)
        allowed = httpx.request(method, f"{url}{path}", json=body, auth=(user, password))
        assert allowed.status_code == 200, (path, allowed.text)
    # Creating a flow run for a deployment is refused too (the deployment id need not even exist).
    run = httpx.post(f"{url}/deployments/00000000-0000-0000-0000-000000000000/create_flow_run", json={})
    assert run.status_code == 401
    # The UI is told to ask for the auth string: its login page takes `user:password`.
    ui = httpx.get(f"http://127.0.0.1:{prefect_port(exposed)}/ui-settings").json()
    assert ui["auth"] == "BASIC"
    assert ui["api_url"] == url
    header = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    assert httpx.get(f"{url}/admin/version", headers=header).status_code == 200
    # What the README shows: curl -u "$(cat .tradelane/prefect-auth)".
    for given, expected in ((["-u", auth], "200"), ([], "401")):
        done = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *given, f"{url}/admin/version"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.stdout == expected, done.stderr


@pytest.fixture(scope="module")
def delivery(exposed: System, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Path]:
    """One file uploaded by REST and delivered by a data flow to a folder outside the home."""
    partner, flow = unique("exposed"), unique("exposed-flow")
    out = tmp_path_factory.mktemp("operator") / "out"
    exposed.cli("partner", "add", partner, "--password", "exposed-partner-pw-1")
    exposed.cli("endpoint", "add", f"{flow}-dest", "--type", "file", "--path", str(out))
    exposed.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", f"{flow}-dest")
    client = PartnerClient(exposed, partner, "exposed-partner-pw-1")
    assert client.upload("po.json", b'{"po": 1}').status_code == 201
    client.close()
    rows = exposed.wait_for(delivered(1), timeout=90, flow=flow)
    return rows[0], out


def test_a_file_is_delivered_end_to_end_with_auth_on(
    exposed: System, delivery: tuple[dict[str, object], Path]
) -> None:
    row, out = delivery
    assert row["flow_run_id"]
    assert (out / "po.json").read_bytes() == b'{"po": 1}'
    # The operator's folder is not the home: its files and folders follow the umask `up` had.
    assert stat.S_IMODE((out / "po.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    # The flow run talked to the same authenticated API: its logs are there, behind the auth string.
    # (The run's log lines reach the API in batches, after the file is recorded delivered: wait.)
    user, _, password = generated_auth(exposed).partition(":")

    def logs() -> list[object]:
        answer = httpx.post(
            f"http://127.0.0.1:{prefect_port(exposed)}/api/logs/filter",
            json={"logs": {"flow_run_id": {"any_": [row["flow_run_id"]]}}},
            auth=(user, password),
        )
        assert answer.status_code == 200, answer.text
        found: list[object] = answer.json()
        return found

    wait_for(logs, "the flow run's logs in the authenticated API", timeout=60, interval=0.3)


def test_every_file_and_folder_in_the_home_is_private(
    exposed: System, delivery: tuple[dict[str, object], Path]
) -> None:
    # Every kind of file exists by now: a delivered upload (mailbox, archive), the SFTP host key and
    # FTPS certificate (generated at start), logs, both databases, the keys.
    home = exposed.home
    loose = []
    seen = 0
    for path in [home, *home.rglob("*")]:
        if path.name == "up.log" and path.parent == home:
            continue  # written by this test harness, not by tradelane
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        seen += 1
        if st.st_mode & 0o077:
            loose.append(f"{oct(stat.S_IMODE(st.st_mode))} {path.relative_to(home)}")
    assert not loose, "readable by others:\n" + "\n".join(loose)
    names = {p.name for p in home.rglob("*")}
    for expected in ("tradelane.db", "secret.key", "prefect-auth", "prefect.db", "runner.log", ".store"):
        assert expected in names, expected
    assert seen > 20


def test_an_existing_loose_home_is_made_private(tmp_path: Path) -> None:
    """A home from before this release (0755 folders, 0644 files) is tightened on the next command."""
    home = tmp_path / "old-home"
    outside = tmp_path / "outside.txt"
    outside.write_text("not tradelane's")
    outside.chmod(0o644)
    upload = home / "mailboxes" / "home" / "acme" / "upload"
    upload.mkdir(parents=True)
    (upload / "po.json").write_text("{}")
    (home / "secret.key").write_text("x")
    (home / "link").symlink_to(outside)
    for path in [home, *home.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADELANE_", "PREFECT_"))}
    env["TRADELANE_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert done.returncode == 0, done.stderr
    modes = {
        str(p.relative_to(home)): stat.S_IMODE(p.lstat().st_mode)
        for p in [home, *home.rglob("*")]
        if not p.is_symlink()
    }
    assert modes == {
        ".": 0o700,
        "mailboxes": 0o700,
        "mailboxes/home": 0o700,
        "mailboxes/home/acme": 0o700,
        "mailboxes/home/acme/upload": 0o700,
        "mailboxes/home/acme/upload/po.json": 0o600,
        "secret.key": 0o600,
    }
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644, "a link's target outside the home was changed"


@pytest.mark.parametrize(
    ("bind", "reached"),
    [
        ("127.0.0.1", "http://127.0.0.1:4200"),
        ("0.0.0.0", "http://127.0.0.1:4200"),
        ("::", "http://[::1]:4200"),
        ("::1", "http://[::1]:4200"),
        ("10.0.0.5", "http://10.0.0.5:4200"),
    ],
)
def test_children_reach_a_wildcard_bound_prefect_on_loopback(bind: str, reached: str) -> None:
    settings = Settings(prefect_host=bind, host="0.0.0.0")
    assert settings.prefect_ui_url == reached
    assert settings.prefect_api_url == f"{reached}/api"


def test_prefect_defaults_to_loopback_whatever_the_host() -> None:
    assert Settings(host="0.0.0.0").prefect_host == "127.0.0.1"
    assert socket.inet_aton(Settings().prefect_host)  # an address, not a name


def test_the_auth_string_comes_from_the_setting_then_prefects_own_then_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.supervisor import PrefectSettingError, prefect_auth, prefect_environment

    for variable in (
        "TRADELANE_PREFECT_AUTH",
        "PREFECT_SERVER_API_AUTH_STRING",
        "PREFECT_API_AUTH_STRING",
        "PREFECT_UI_API_URL",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TRADELANE_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        settings = get_settings()
        generated, where = prefect_auth(settings)
        assert where == str(tmp_path / "prefect-auth")
        assert prefect_auth(settings)[0] == generated  # generated once, then kept
        env = prefect_environment(settings)
        assert env["PREFECT_SERVER_API_AUTH_STRING"] == env["PREFECT_API_AUTH_STRING"] == generated
        assert env["PREFECT_UI_API_URL"] == settings.prefect_api_url
        monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:client-side")
        assert prefect_auth(settings) == ("admin:client-side", "PREFECT_API_AUTH_STRING")
        monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "admin:client-side")  # the same: fine
        assert prefect_auth(settings) == ("admin:client-side", "PREFECT_SERVER_API_AUTH_STRING")
        monkeypatch.delenv("PREFECT_API_AUTH_STRING")
        monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "admin:from-prefect")
        assert prefect_auth(settings) == ("admin:from-prefect", "PREFECT_SERVER_API_AUTH_STRING")
        # Two that disagree are refused by name, never one silently dropped.
        monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:client-side")
        with pytest.raises(PrefectSettingError, match="PREFECT_SERVER_API_AUTH_STRING and PREFECT_API_AUTH"):
            prefect_auth(settings)
        monkeypatch.delenv("PREFECT_API_AUTH_STRING")
        monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING")
        configured = settings.model_copy(update={"prefect_auth": "ops:chosen"})
        assert prefect_auth(configured) == ("ops:chosen", "TRADELANE_PREFECT_AUTH")
        monkeypatch.setenv("PREFECT_UI_API_URL", "http://hub.example:4200/api")
        assert prefect_environment(configured)["PREFECT_UI_API_URL"] == "http://hub.example:4200/api"
    finally:
        get_settings.cache_clear()


def test_an_ipv6_wildcard_bind_is_checked_as_ipv6() -> None:
    from cli.supervisor import port_free

    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert not port_free("::", port)
    assert port_free("::", port)

"""An account user may put a `file` endpoint only inside its account's allowed roots, through both
doors (the admin REST API and the console), symlinks resolved, at add time and again when the
endpoint is opened; the host's operator (CLI scope) may use any folder.

A real uvicorn server on 127.0.0.1 (tests/console_server.py) serving the whole app."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from core.config import get_settings
from core.db import session_scope
from core.endpoints import probe
from core.endpoints import rows as endpoint_rows
from core.endpoints.file_roots import OutsideRoots, roots_for
from tests.console_server import PASSWORD, ConsoleServer, console_server, user_of
from tests.tenancy import home_scope
from tests.web_form_reader import read_page

__all__ = ["console_server"]


@pytest.fixture
def root() -> Path:
    """The home account's (default) root, made: <home>/files/home."""
    folder = roots_for("home")[0]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _bearer(server: ConsoleServer) -> dict[str, str]:
    with server.browser("operator"):  # makes the operator user
        pass
    answer = httpx.post(
        f"{server.url}/api/authentication",
        data={"grant_type": "password", "username": user_of("operator"), "password": PASSWORD},
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _stored_path(name: str) -> str | None:
    with session_scope() as session:
        row = endpoint_rows.get(session, home_scope(session), name)
        return None if row is None else str(row.config["path"])


def test_the_admin_api_refuses_folders_outside_the_roots(console_server: ConsoleServer, root: Path) -> None:
    headers = _bearer(console_server)
    home = get_settings().home_dir
    escape = root / "escape"
    escape.symlink_to(home / "mailboxes")
    outside = {
        "/etc": "a system folder",
        str(home / "mailboxes"): "every partner's mailboxes",
        str(home): "the home, keys and store",
        f"{root}/../other": "a sibling account's root, lexically",
        str(escape / "x"): "a link inside the root that leads out",
    }
    with httpx.Client(base_url=console_server.url, headers=headers) as api:
        for number, (path, what) in enumerate(outside.items()):
            answer = api.post(
                "/api/admin/endpoints",
                json={"name": f"bad{number}", "type": "file", "settings": {"path": path}},
            )
            assert answer.status_code == 400, (what, answer.text)
            message = answer.json()["message"]
            assert "outside this account's allowed folders" in message and str(root) in message, message
            assert _stored_path(f"bad{number}") is None, what

        inside = root / "out"
        made = api.post(
            "/api/admin/endpoints", json={"name": "ok", "type": "file", "settings": {"path": str(inside)}}
        )
        assert made.status_code == 201, made.text
        changed = api.patch("/api/admin/endpoints/ok", json={"settings": {"path": "/etc"}})
        assert changed.status_code == 400 and "allowed folders" in changed.json()["message"]
        assert _stored_path("ok") == str(inside)


def test_other_local_paths_an_account_user_gives_are_held_to_the_roots(
    console_server: ConsoleServer, root: Path
) -> None:
    """A CA file to trust (read), an http endpoint's spool folder (written): the same rule."""
    headers = _bearer(console_server)
    (root / "ca.pem").write_text("not a certificate")
    attempts = {
        "ftp-ca": ("ftp", {"host": "127.0.0.1", "user": "u", "tls": "explicit", "cafile": "/etc/shadow"}),
        "http-spool": ("http", {"url": "https://127.0.0.1:1/in", "spool_dir": "/tmp"}),
        "http-ca": ("http", {"url": "https://127.0.0.1:1/in", "verify": "/etc/ssl/private/key.pem"}),
    }
    with httpx.Client(base_url=console_server.url, headers=headers) as api:
        for name, (type_, settings) in attempts.items():
            answer = api.post(
                "/api/admin/endpoints", json={"name": name, "type": type_, "settings": settings}
            )
            assert answer.status_code == 400, (name, answer.text)
            field = next(key for key in settings if key in ("cafile", "spool_dir", "verify"))
            assert f"setting {field}" in answer.json()["message"] and str(root) in answer.json()["message"]
        inside = {"url": "https://127.0.0.1:1/in", "spool_dir": str(root), "verify": str(root / "ca.pem")}
        made = api.post("/api/admin/endpoints", json={"name": "http-ok", "type": "http", "settings": inside})
        assert made.status_code == 201, made.text


def test_a_folder_swapped_for_a_link_is_refused_when_opened(
    console_server: ConsoleServer, root: Path
) -> None:
    headers = _bearer(console_server)
    folder = root / "swapped"
    folder.mkdir()
    with httpx.Client(base_url=console_server.url, headers=headers) as api:
        made = api.post(
            "/api/admin/endpoints",
            json={"name": "swapped", "type": "file", "settings": {"path": str(folder)}},
        )
        assert made.status_code == 201, made.text
        assert api.post("/api/admin/endpoints/swapped/test").json()["ok"] is True
        folder.rmdir()
        folder.symlink_to("/etc")
        tested = api.post("/api/admin/endpoints/swapped/test").json()
        assert tested["ok"] is False and "allowed folders" in tested["message"], tested
    with session_scope() as session:
        row = endpoint_rows.require(session, home_scope(session), "swapped")
    with pytest.raises(OutsideRoots):
        endpoint_rows.open_row(row)
    assert probe.probe(row).ok is False


def test_the_console_refuses_them_on_save_and_on_try(console_server: ConsoleServer, root: Path) -> None:
    with console_server.browser("operator") as browser:
        for action in ("/console/endpoints", "/console/endpoints/try"):
            new = browser.get("/console/endpoints/new", params={"type": "file"})
            # "Test these settings" posts the same form to /try (its button's formaction).
            form = read_page(new.text, "/console/endpoints")
            fields = form.submit({"name": "con-bad", "setting.path": "/etc"})
            answer = browser.post(action, data=fields)
            assert answer.status_code == 400, (action, answer.status_code)
            assert "allowed folders" in answer.text and str(root) in answer.text, action
            assert "passwd" not in answer.text  # nothing of /etc was listed
        assert _stored_path("con-bad") is None


def test_the_hosts_operator_may_use_any_folder(console_server: ConsoleServer, tmp_path: Path) -> None:
    with session_scope() as session:
        endpoint_rows.add(session, home_scope(session), "operators", "file", {"path": str(tmp_path)})
    assert _stored_path("operators") == str(tmp_path)
    with session_scope() as session:
        row = endpoint_rows.require(session, home_scope(session), "operators")
    assert probe.probe(row).ok is True


def test_roots_come_from_the_setting_with_the_account_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELANE_FILE_ENDPOINT_ROOTS", os.pathsep.join(["/srv/x/{account}", "/srv/shared"]))
    settings = type(get_settings())()
    assert roots_for("acme", settings) == [Path("/srv/x/acme"), Path("/srv/shared")]
    monkeypatch.setenv("TRADELANE_FILE_ENDPOINT_ROOTS", os.pathsep.join(["/srv/x", "relative/{account}"]))
    with pytest.raises(ValueError, match="must be absolute"):
        type(get_settings())()

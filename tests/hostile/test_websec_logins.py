"""Unauthenticated input costs little: at most `TRADELANE_LOGIN_MAX_CONCURRENT_CHECKS` argon2 checks
(64 MiB and ~50 ms each) run at once in a process, every door together (core/login.py); the excess
waits briefly in a short queue, then is refused as busy (REST 503), uncounted.

The memory test serves the API in a process of its own (as `tradelane up` serves it) and reads its
peak resident memory (VmHWM) around a burst of concurrent wrong logins."""

from __future__ import annotations

import contextlib
import ftplib
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paramiko
import pytest
from sqlmodel import select

from core import db, partners
from core.config import get_settings
from core.db import session_scope
from core.login import LoginBusy, _PasswordChecks, password_check_slot
from core.models import LoginFailure
from tests.b2b.web_server import forms_of
from tests.hostile.exhaust_support import (
    api_server,
    exhaust_home,
    ftp_server,
    ftps,
    make_partner,
    settings_with,
    sftp_login,
    sftp_server,
)
from tests.isolation import isolated_home
from tests.servers import free_port
from tests.tenancy import home_scope
from tests.waiting import wait_for
from tests.web.server import web_server

__all__ = ["exhaust_home", "make_partner"]

MIB = 1024 * 1024
ARGON2_MIB = 64  # core.crypto's hasher: m=65536 KiB
SLOTS = 2
BURST = 24
PASSWORD = "Right-Pass-2026-long"

SERVE = """
import uvicorn
from api.app import create_app
from api.server import uvicorn_config
from core.config import get_settings
uvicorn.Server(uvicorn_config(create_app(), get_settings(), lifespan="off")).run()
"""


def test_a_check_waits_for_a_slot_then_is_refused_busy() -> None:
    checks = _PasswordChecks(1, wait=0.05)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with checks.slot():
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        with pytest.raises(LoginBusy, match="no password check free"), checks.slot():
            pass
        checks._waiting = checks.queue  # a full queue: refused without waiting
        with pytest.raises(LoginBusy, match="waiting"), checks.slot():
            pass
        checks._waiting = 0
    finally:
        release.set()
        holder.join(30)
    with checks.slot():  # free again once released
        pass


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The API alone in a process of its own, one partner `flooded`; its URL and pid."""
    home = tmp_path / "home"
    with isolated_home(home):
        db.init_db()
        with session_scope() as session:
            partners.add(session, home_scope(session), "flooded", password=PASSWORD)
    port = free_port()
    env = {
        **os.environ,
        "TRADELANE_HOME": str(home),
        "TRADELANE_API_PORT": str(port),
        "TRADELANE_LOGIN_MAX_CONCURRENT_CHECKS": str(SLOTS),
        "TRADELANE_LOGIN_CHECK_WAIT_SECONDS": "30",
        # Every wrong login is checked, none refused by a ban: the cost of the checks is measured.
        "TRADELANE_LOCKOUT_FAILURES": "100000",
        "TRADELANE_LOCKOUT_ACCOUNT_FAILURES": "100000",
    }
    server = subprocess.Popen([sys.executable, "-c", SERVE], env=env, cwd=Path(__file__).parents[2])
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert server.poll() is None, "the API exited"
            try:
                return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, "the API to answer", timeout=60)
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(30)


def _login(url: str, password: str) -> int:
    form = {"grant_type": "password", "username": "flooded", "password": password}
    return httpx.post(f"{url}/api/authentication", data=form, timeout=120).status_code


def test_many_concurrent_wrong_logins_keep_the_apis_memory_bounded(api: tuple[str, int]) -> None:
    url, pid = api
    assert _login(url, PASSWORD) == 200  # warm: argon2 loaded, one check's memory already counted
    before = _peak_rss(pid)
    start = threading.Barrier(BURST)
    answers: list[int] = []

    def guess(number: int) -> None:
        start.wait(30)
        answers.append(_login(url, f"wrong-{number}"))

    guessers = [threading.Thread(target=guess, args=(n,)) for n in range(BURST)]
    for thread in guessers:
        thread.start()
    for thread in guessers:
        thread.join(300)
    grown = _peak_rss(pid) - before
    counted = Counter(answers)
    assert set(counted) <= {401, 503} and sum(counted.values()) == BURST, counted
    assert counted[401] >= SLOTS, counted  # checked and refused; the excess refused as busy (503)
    # Uncapped, the burst's checks run at once: BURST x 64 MiB. Capped: SLOTS of them, and slack.
    assert grown < (SLOTS + 1) * ARGON2_MIB * MIB, f"peak RSS grew {grown // MIB} MiB; {counted}"
    assert _login(url, PASSWORD) == 200  # the flood locked nobody out


def test_the_slots_are_shared_by_rest_sftp_and_ftp(exhaust_home: Path, make_partner: Any) -> None:
    """While every slot of the process is taken, a right password is refused as busy on each door
    (REST 503 with Retry-After, SFTP and FTP a failed login), and nothing is counted against it."""
    partner = make_partner()
    settings = settings_with(login_check_wait_seconds=0.05)
    held = [password_check_slot(settings) for _ in range(settings.login_max_concurrent_checks)]
    with (
        api_server(login_check_wait_seconds=0.05) as port,
        sftp_server(login_check_wait_seconds=0.05) as sftp,
    ):
        with ftp_server(login_check_wait_seconds=0.05) as ftp, contextlib.ExitStack() as stack:
            get_settings.cache_clear()  # the REST door's policy reads the process's settings
            os.environ["TRADELANE_LOGIN_CHECK_WAIT_SECONDS"] = "0.05"
            stack.callback(os.environ.pop, "TRADELANE_LOGIN_CHECK_WAIT_SECONDS")
            stack.callback(get_settings.cache_clear)
            for slot in held:
                stack.enter_context(slot)
            form = {"grant_type": "password", "username": partner.name, "password": partner.password}
            busy = httpx.post(f"http://127.0.0.1:{port}/api/authentication", data=form, timeout=30)
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "1", busy.text
            assert "too many logins at once" in busy.json()["message"]
            with pytest.raises(paramiko.AuthenticationException):
                sftp_login(sftp.port, partner)
            with pytest.raises(ftplib.error_perm), ftps(ftp.port) as client:
                client.login(partner.name, partner.password)
        # Slots free again: every door lets the partner in, no failure was counted.
        assert httpx.post(f"http://127.0.0.1:{port}/api/authentication", data=form, timeout=30).is_success
        transport, client = sftp_login(sftp.port, partner)
        client.close()
        transport.close()
    with session_scope() as session:
        assert session.exec(select(LoginFailure)).all() == []


def test_the_web_login_says_busy_and_counts_nothing(tmp_path: Path) -> None:
    with web_server(tmp_path / "web", env={"TRADELANE_LOGIN_CHECK_WAIT_SECONDS": "0.05"}) as web:
        with session_scope() as session:
            partners.add(session, home_scope(session), "webby", password=PASSWORD)
        settings = get_settings()
        with contextlib.ExitStack() as stack, web.browser() as browser:
            for _ in range(settings.login_max_concurrent_checks):
                stack.enter_context(password_check_slot(settings))
            form = forms_of(browser.get("/login"))["/login"]
            busy = browser.post("/login", data={**form, "name": "webby", "password": PASSWORD})
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
            assert "too many logins at once" in busy.text
        with web.browser() as browser:
            form = forms_of(browser.get("/login"))["/login"]
            answer = browser.post("/login", data={**form, "name": "webby", "password": PASSWORD})
            assert answer.status_code == 303, answer.text
        with session_scope() as session:
            assert session.exec(select(LoginFailure)).all() == []

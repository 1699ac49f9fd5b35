"""Starting a mailbox server changes nothing outside it: interpreter-wide tuning is `tradelane up`'s."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.supervisor import GIL_SWITCH_INTERVAL, tune_interpreter
from mailboxes.auth import MailboxAuth
from mailboxes.ftp import FTPServer
from mailboxes.sftp import SFTPServer
from tests.mailboxes.conftest import lenient_settings


@pytest.fixture
def switch_interval() -> Iterator[float]:
    """The interpreter's default GIL switch interval for the test, put back after it."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        yield 0.005
    finally:
        sys.setswitchinterval(saved)


def test_servers_leave_the_interpreter_alone(tradelane_home: Path, switch_interval: float) -> None:
    settings = lenient_settings(sftp_port=0, ftp_port=0, ftp_require_tls=False)
    auth = MailboxAuth(settings)
    with SFTPServer(settings, auth), FTPServer(settings, auth):
        assert sys.getswitchinterval() == switch_interval


def test_up_tunes_the_interpreter_for_its_servers(switch_interval: float) -> None:
    tune_interpreter()
    assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL)
    sys.setswitchinterval(0.0001)
    tune_interpreter()  # never raises an interval someone lowered further
    assert sys.getswitchinterval() == pytest.approx(0.0001)

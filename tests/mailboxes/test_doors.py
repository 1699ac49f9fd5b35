"""The doors of a process share one open-files ledger and one session registry (core/mailbox/doors.py),
so a login's open files count together over SFTP, FTP and the portal of the same process."""

from __future__ import annotations

from pathlib import Path

from core.config import get_settings
from core.mailbox.doors import Doors, shared_doors
from core.sessions import shared_registry
from mailboxes.auth import MailboxAuth
from tests.mailboxes.conftest import lenient_settings


def test_the_mailbox_servers_and_the_portal_share_the_process_ledgers(tradelane_home: Path) -> None:
    servers = MailboxAuth(get_settings())  # what `tradelane up` builds for SFTP and FTP
    portal = shared_doors()
    assert portal is shared_doors()
    assert servers.open_files is portal.open_files
    assert servers.sessions is portal.sessions is shared_registry()
    key = ("partner", 10_000_001)
    servers.open_files.acquire(key)  # an SFTP handle ...
    try:
        assert portal.open_files.held(key) == 1  # ... counts against the same login in the portal
    finally:
        portal.open_files.release(key)
    assert servers.open_files.held(key) == 0


def test_other_settings_get_ledgers_of_their_own(tradelane_home: Path) -> None:
    own = MailboxAuth(lenient_settings(max_open_files_per_partner=1))
    assert own.open_files is not shared_doors().open_files
    assert own.sessions is not shared_registry()
    assert own.open_files.per_partner == 1
    assert isinstance(own, Doors)

"""An upload committed in one process wakes a dispatcher in another through PostgreSQL
(LISTEN/NOTIFY); on SQLite nothing starts (the dispatcher shares the intake's process there)."""

from __future__ import annotations

import threading

from core.config import Settings
from core.wakeups import Listener, Notifier, conninfo, listen_for_intake, notify_on_intake
from tests.waiting import wait_for


def test_a_notifier_wakes_a_listener_through_postgresql(postgres_url: str) -> None:
    address = conninfo(postgres_url)
    assert address is not None and address.startswith("postgresql://")
    woken = threading.Event()
    connected = threading.Event()

    def wake() -> None:
        if connected.is_set():
            woken.set()
        connected.set()  # the first call: listening (it wakes once on connecting, for what came before)

    listener = Listener(address, wake)
    listener.start()
    notifier = Notifier(address)
    notifier.start()
    try:
        wait_for(connected.is_set, "the listener to connect", timeout=30)
        assert not woken.is_set()
        notifier.poke()
        wait_for(woken.is_set, "the notification", timeout=30)
    finally:
        notifier.stop()
        listener.stop()


def test_on_sqlite_nothing_listens_or_notifies() -> None:
    settings = Settings(database_url="sqlite:////tmp/somewhere/tradelane.db")
    assert conninfo(settings.db_url) is None
    assert notify_on_intake(settings) is None
    assert listen_for_intake(settings, lambda: None) is None

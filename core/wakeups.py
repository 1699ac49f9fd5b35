"""Uploads taken in by one process wake the dispatcher in another: PostgreSQL LISTEN/NOTIFY.

The intake wakes a dispatcher in its own process directly (`intake.on_received`). When the API or
the mailbox servers run on their own (`tradelane serve ...`) on a PostgreSQL store, a `Notifier`
sends one NOTIFY after receipts are committed (a burst coalesces into a few), and the dispatcher's
`Listener` wakes it at once instead of at its next sweep. A lost notification loses nothing: the
transfer is in the store and the sweep (TRADELANE_SWEEP_INTERVAL_SECONDS) finds it. On SQLite
(one machine) there is nothing to do: nothing here starts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.engine import make_url

from core import intake
from core.config import Settings

log = logging.getLogger("tradelane.wakeups")

CHANNEL = "tradelane_intake"
# After a failed connection, wait this long before trying again (the sweep carries on meanwhile).
RETRY_SECONDS = 2.0


def conninfo(database_url: str) -> str | None:
    """The store's address as psycopg takes it, or None when the store is not PostgreSQL."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class _Thread:
    def __init__(self, name: str) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        raise NotImplementedError


class Notifier(_Thread):
    """Sends NOTIFY after committed receipts; `poke()` is cheap and never blocks the intake."""

    def __init__(self, address: str) -> None:
        super().__init__("intake-notifier")
        self.address = address
        self._due = threading.Event()

    def poke(self) -> None:
        self._due.set()

    def stop(self) -> None:
        self._stopping.set()
        self._due.set()
        super().stop()

    def _run(self) -> None:
        import psycopg

        connection: psycopg.Connection | None = None
        while not self._stopping.is_set():
            self._due.wait()
            self._due.clear()
            if self._stopping.is_set():
                break
            try:
                if connection is None or connection.closed:
                    connection = psycopg.connect(self.address, autocommit=True, connect_timeout=5)
                connection.execute(f"NOTIFY {CHANNEL}")
            except psycopg.Error as exc:
                log.warning("could not notify the dispatcher (its sweep will find the upload): %s", exc)
                if connection is not None:
                    connection.close()
                connection = None
                self._stopping.wait(RETRY_SECONDS)
        if connection is not None:
            connection.close()


class Listener(_Thread):
    """Calls `wake` (thread-safe) on every NOTIFY on the channel, reconnecting when the store is away."""

    def __init__(self, address: str, wake: Callable[[], None]) -> None:
        super().__init__("intake-listener")
        self.address = address
        self.wake = wake

    def _run(self) -> None:
        import psycopg

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.address, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    # Anything committed before LISTEN took effect is the sweep's to find.
                    self.wake()
                    while not self._stopping.is_set():
                        for _notification in connection.notifies(timeout=1.0):
                            self.wake()
            except psycopg.Error as exc:
                log.warning("not listening for uploads (the sweep still finds them): %s", exc)
                self._stopping.wait(RETRY_SECONDS)


_notifier: Notifier | None = None
_notifier_lock = threading.Lock()


def notify_on_intake(settings: Settings) -> Notifier | None:
    """In a process that takes uploads: tell dispatchers elsewhere of each (PostgreSQL only).

    One notifier per process, however many roles in it take uploads (API and mailboxes in `up`);
    it lives as long as the process (a daemon thread)."""
    global _notifier
    address = conninfo(settings.db_url)
    if address is None:
        return None
    with _notifier_lock:
        if _notifier is None:
            _notifier = Notifier(address)
            _notifier.start()
            intake.on_received(_notifier.poke)
        return _notifier


def listen_for_intake(settings: Settings, wake: Callable[[], None]) -> Listener | None:
    """In a dispatcher's process: `wake` when another process took an upload (PostgreSQL only)."""
    address = conninfo(settings.db_url)
    if address is None:
        return None
    listener = Listener(address, wake)
    listener.start()
    return listener

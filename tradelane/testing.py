"""A kit to test a flow template in-process: a throwaway tradelane home, a real Prefect test server,
an in-memory destination, and receipts made from bytes.

Used as a pytest plugin (`pytest_plugins = ["tradelane.testing"]` in a conftest.py)::

    def test_it(tradelane_harness):
        flow = tradelane_harness.data_flow("stamp", params={"suffix": ".done"})
        run = flow.run({"po.txt": b"hello"})
        assert run.states == {"po.txt": "delivered"}
        assert run.delivered == {"po.txt.done": b"hello"}

`data_flow()` adds a data flow that runs the template (its params checked as `flow add` checks
them) from the partner `acme`'s upload/ folder to a `memory` endpoint; `run()` takes the files in
through tradelane's one intake path (receipts and pending transfers, as an upload makes them) and
runs the template's Prefect flow in this process, as the runner would, on those transfers.

The Prefect server is `prefect.testing.utilities.prefect_test_harness` (a real server on a
temporary SQLite database), started once per test session by the `prefect_test_server` fixture.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import pytest

from core.endpoints.base import Endpoint, FileInfo, NotFound, OnConflict, WriteStream, clean_path
from core.endpoints.settings import EndpointSecrets, EndpointSettings
from core.models import Receipt
from tradelane import templates

# -- an in-memory endpoint --------------------------------------------------------------------------

SPACES: dict[str, dict[str, bytes]] = {}
"""The memory endpoints' files: space name → path → bytes (this process only)."""


class MemorySettings(EndpointSettings):
    """Files in a named space in this process's memory (tests only)."""

    space: str
    """The space holding the files."""


class _MemoryWrite(WriteStream):
    def __init__(self, space: dict[str, bytes], path: str) -> None:
        super().__init__()
        self._space, self._path, self._buffer = space, path, io.BytesIO()

    def _write(self, data: bytes) -> None:
        self._buffer.write(data)

    def _commit(self) -> None:
        self._space[self._path] = self._buffer.getvalue()

    def _abort(self) -> None:
        self._buffer = io.BytesIO()


class MemoryEndpoint(Endpoint):
    """An endpoint type `memory` whose files live in `SPACES[space]`: a destination (or polled
    source) a test can read back. Writes appear only when committed, as with every endpoint."""

    scheme: ClassVar[str] = "memory"
    default_on_conflict: ClassVar[OnConflict | None] = OnConflict.rename
    settings: MemorySettings
    secrets: EndpointSecrets

    def __init__(self, settings: Any, secrets: Any = None) -> None:
        super().__init__(settings, secrets)
        self.space = SPACES.setdefault(self.settings.space, {})

    def list(self, folder: str = "") -> Iterator[FileInfo]:
        rel = clean_path(folder, allow_root=True)
        prefix = f"{rel}/" if rel else ""
        for path in sorted(self.space):
            if path.startswith(prefix) and "/" not in path[len(prefix) :]:
                yield self.stat(path)

    def stat(self, path: str) -> FileInfo:
        rel = clean_path(path)
        if rel not in self.space:
            raise NotFound(f"memory:{rel}")
        return FileInfo(rel, len(self.space[rel]), datetime.now(UTC))

    def open_read(self, path: str) -> BinaryIO:
        self.stat(path)
        return io.BytesIO(self.space[clean_path(path)])

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        return _MemoryWrite(self.space, clean_path(path))

    def delete(self, path: str) -> None:
        self.stat(path)
        del self.space[clean_path(path)]


# -- a throwaway home -------------------------------------------------------------------------------


def clear_caches() -> None:
    """Forget core's cached settings, engine and key (after TRADELANE_HOME changed)."""
    from core.as2.worker import worker
    from core.b2b.worker import worker as peer_worker
    from core.config import get_settings
    from core.crypto import secret_key
    from core.db import get_engine

    # An API app served without its lifespan (TestClient) leaves the AS2 worker sweeping the store;
    # a sweep that read the old settings could cache the old engine again right after the clear.
    worker.stop()
    peer_worker.stop()  # the same for the peer worker (api/routes/peer.py's lifespan)
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_settings.cache_clear()
    secret_key.cache_clear()


@contextmanager
def isolated_home(home: Path, database_url: str | None = None) -> Iterator[Path]:
    """Point core's settings, engine and key at `home` (and `database_url`, else SQLite in it)."""
    saved = {k: os.environ.get(k) for k in ("TRADELANE_HOME", "TRADELANE_DATABASE_URL")}
    os.environ["TRADELANE_HOME"] = str(home)
    if database_url:
        os.environ["TRADELANE_DATABASE_URL"] = database_url
    else:
        os.environ.pop("TRADELANE_DATABASE_URL", None)
    clear_caches()
    try:
        yield home
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        clear_caches()


# -- receipts from bytes ----------------------------------------------------------------------------


def receipt_from_bytes(
    partner: str, name: str, data: bytes, *, folder: str = "upload", account: str = "home"
) -> Receipt:
    """Take `data` in as the file `name` uploaded by `partner` into `folder`, through tradelane's one
    intake path: the receipt, and a pending transfer for each data flow whose source matches."""
    from core import intake, partners
    from core.db import session_scope
    from core.tenancy import scope_for_cli

    with session_scope() as session:
        found = partners.get(session, scope_for_cli(session, account), partner)
        if found is None:
            raise LookupError(f"no partner named {partner!r} in account {account!r}")
        session.expunge(found)
    return intake.receive_stream(found, folder, name, io.BytesIO(data), protocol="test")


# -- running a template -----------------------------------------------------------------------------


@dataclass
class RunResult:
    """What one run of a template did: the Prefect state, and each file's transfer."""

    state: Any  # the flow run's final prefect State
    states: dict[str, str]  # file name → transfer state (delivered, rejected, failed, ...)
    errors: dict[str, str]  # file name → the transfer's error, for those that have one
    delivered: dict[str, bytes]  # what the data flow's memory destination holds now
    destinations: dict[str, str | None] = field(default_factory=dict)  # file name → destination URI


@dataclass
class HarnessFlow:
    """A data flow of the harness: runs its template on files given as bytes."""

    name: str
    template: templates.Template
    params: dict[str, Any]
    space: str
    partner: str
    data_flow_id: int

    def receive(self, name: str, data: bytes) -> Receipt:
        """A receipt of `data` (and its pending transfers), as an upload by the partner makes them."""
        return receipt_from_bytes(self.partner, name, data)

    def run(self, files: dict[str, bytes]) -> RunResult:
        """Take the files in, then run the template once on this data flow's pending transfers."""
        from prefect.utilities.asyncutils import run_coro_as_sync

        # On Prefect's own loop, as Prefect runs an async flow called from sync code: a loop of
        # ours closed after the run would leave the Prefect client's connections open.
        result = run_coro_as_sync(self.arun(files))
        assert result is not None
        return result

    async def arun(self, files: dict[str, bytes]) -> RunResult:
        """`run` for async tests."""
        from anyio import to_thread

        for file_name, data in files.items():
            await to_thread.run_sync(self.receive, file_name, data)
        transfer_ids = await to_thread.run_sync(self._pending)
        parameters = self.template.run_parameters(self.data_flow_id, transfer_ids, self.params)
        state = await self.template.flow(**parameters, return_state=True)
        return await to_thread.run_sync(self._result, state, transfer_ids)

    def _pending(self) -> list[int]:
        from sqlmodel import select

        from core.db import session_scope
        from core.models import Transfer, TransferState

        with session_scope() as session:
            rows = session.exec(
                select(Transfer.id).where(
                    Transfer.data_flow_id == self.data_flow_id, Transfer.state == TransferState.pending
                )
            ).all()
        return sorted(transfer_id for transfer_id in rows if transfer_id is not None)

    def _result(self, state: Any, transfer_ids: list[int]) -> RunResult:
        from sqlmodel import col, select

        from core.db import session_scope
        from core.models import Transfer

        states: dict[str, str] = {}
        errors: dict[str, str] = {}
        uris: dict[str, str | None] = {}
        with session_scope() as session:
            for transfer, receipt in session.exec(
                select(Transfer, Receipt)
                .join(Receipt, col(Receipt.id) == Transfer.receipt_id)
                .where(col(Transfer.id).in_(transfer_ids))
            ):
                states[receipt.name] = str(transfer.state)
                uris[receipt.name] = transfer.destination_uri
                if transfer.error:
                    errors[receipt.name] = transfer.error
        delivered = dict(SPACES.get(self.space, {}))
        return RunResult(state=state, states=states, errors=errors, delivered=delivered, destinations=uris)


class TemplateHarness:
    """A tradelane home with one partner (`acme`), where data flows run templates in this process."""

    PARTNER = "acme"

    def __init__(self) -> None:
        from core.db import init_db, session_scope
        from core.endpoints.registry import register

        register("memory", MemoryEndpoint, replace=True)
        init_db()
        with session_scope() as session:
            from core import partners
            from core.tenancy import scope_for_cli

            scope = scope_for_cli(session, "home")
            if partners.get(session, scope, self.PARTNER) is None:
                partners.add(session, scope, self.PARTNER, password="harness-Password-1")
        self._count = 0

    def data_flow(
        self,
        template: str,
        params: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        pattern: str = "*",
        dest_path: str = "{name}",
        validators: list[str] | None = None,
        retries: int = 0,
    ) -> HarnessFlow:
        """A data flow from acme's upload/ to a fresh memory space, running `template` with `params`
        (checked as `flow add` checks them: TemplateError naming a bad key)."""
        from core import dataflows
        from core.db import session_scope
        from core.endpoints import rows as endpoint_rows
        from core.tenancy import scope_for_cli
        from core.validators import parse_cli_spec

        tmpl = templates.get(template)
        checked = tmpl.check(params or {})
        self._count += 1
        flow_name = name or f"{template}-{self._count}"
        space = f"{flow_name}-dest"
        SPACES[space] = {}
        with session_scope() as session:
            scope = scope_for_cli(session, "home")
            endpoint_rows.add(session, scope, space, "memory", {"space": space}, replace=True)
            flow = dataflows.add(
                session,
                scope,
                flow_name,
                source=f"mailbox:{self.PARTNER}",
                dest=space,
                pattern=pattern,
                dest_path=dest_path,
                validators=[parse_cli_spec(v) for v in validators or []],
                retries=retries,
                retry_delay_seconds=0,
                template=template,
                params=checked,
            )
            assert flow.id is not None
            flow_id = flow.id
        return HarnessFlow(flow_name, tmpl, checked, space, self.PARTNER, flow_id)


# -- pytest fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prefect_test_server() -> Iterator[None]:
    """A real Prefect server on a temporary database, for the whole test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def tradelane_harness(
    prefect_test_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TemplateHarness]:
    """A throwaway tradelane home (tmp_path) where templates run in-process against Prefect."""
    import prefect.results

    from core.endpoints.registry import unregister

    monkeypatch.setattr(
        prefect.results, "_read_server_default_result_storage_block_id", _read_default_storage_closing
    )
    with isolated_home(tmp_path / "tradelane-home"):
        yield TemplateHarness()
    unregister("memory")


def _read_default_storage_closing() -> Any:
    """prefect 3.8.8's `results._read_server_default_result_storage_block_id`, closing its client.

    An in-process flow run asks the server for its default result storage with a sync client it
    never closes: one socket left to the garbage collector per run (a ResourceWarning, an error in a
    strict test suite). A flow run of the runner is a process of its own, so only in-process runs,
    these, meet it."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        with get_client(sync_client=True) as client:
            configuration = client.read_server_default_result_storage()
    except (PrefectHTTPStatusError, httpx.HTTPError, RuntimeError, ValueError):
        return None
    return configuration.default_result_storage_block_id

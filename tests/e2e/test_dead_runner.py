"""SIGKILL of `up`'s runner and its flow-run processes mid-push, as a machine dying would: `up` starts
the runner again, Prefect marks the dead runs Crashed once their heartbeats stop, the dispatcher
requeues their files, and the FTP server on the other side gets each file written exactly once.

The destination is a real pyftpdlib server on 127.0.0.1 whose uploads are slowed (so a push is
caught mid-STOR) and which can hold its answer to one rename (so a file is caught delivered but not
yet known to be: the run dies waiting for "250").
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from core.endpoints.tempname import is_temp_name
from deployments import dead_runs, heartbeat
from deployments.dead_runs import AUTOMATION_NAME, CRASH_MESSAGE
from tests.e2e.helpers import PartnerClient, prefect_events, prefect_paged, unique
from tests.endpoint_servers.ftpd import serve_handler
from tests.system import System, run_system
from tests.waiting import wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # asyncore, as tests/endpoint_servers/ftpd.py
    from pyftpdlib.handlers import FTPHandler, ThrottledDTPHandler

PASSWORD = "deadrun-Pass-1234"
FTP_USER, FTP_PASSWORD = "receiver", "receiver-s3cret-pw"
# The shortest bound a 30-s heartbeat allows (deployments/dead_runs.py): the test waits least.
DEAD_RUN_SECONDS = 52
UPLOAD_BYTES_PER_SECOND = 256 * 1024


@dataclass
class Receiver:
    """What the FTP server saw: every rename onto a final name (one per completed write)."""

    home: Path
    port: int = 0
    hold: set[str] = field(default_factory=set)  # final names whose rename is answered never
    held: set[str] = field(default_factory=set)
    renames: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def visible(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.home.iterdir() if not is_temp_name(p.name)}

    def receiving(self) -> list[int]:
        """Sizes of the temporary files being written (a push mid-STOR)."""
        return [p.stat().st_size for p in self.home.iterdir() if is_temp_name(p.name)]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    home = tmp_path / "ftp-home"
    home.mkdir()
    state = Receiver(home)

    class Slow(ThrottledDTPHandler):  # type: ignore[misc]
        read_limit = UPLOAD_BYTES_PER_SECOND

    class Recording(FTPHandler):  # type: ignore[misc]
        dtp_handler = Slow

        def ftp_RNTO(self, path: str) -> Any:
            if not self._rnfr:
                return super().ftp_RNTO(path)
            source, self._rnfr = self._rnfr, None
            try:
                self.run_as_current_user(self.fs.rename, source, path)
            except OSError as exc:
                self.respond(f"550 {exc}.")
                return None
            name = os.path.basename(path)
            with state.lock:
                state.renames[name] += 1
                if name in state.hold:
                    state.held.add(name)
                    return None  # the file has its name; the client never hears so
            self.respond("250 Renaming ok.")
            return None

    with serve_handler(Recording, home, FTP_USER, FTP_PASSWORD) as state.port:
        yield state


def _processes(home: Path) -> dict[int, tuple[int, str]]:
    """This system's processes: pid -> (parent pid, command line)."""
    found: dict[int, tuple[int, str]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if f"TRADELANE_HOME={home}".encode() in environ:
            found[int(proc.name)] = (ppid, cmdline)
    return found


def _runner_tree(home: Path) -> list[int]:
    """The runner's pid and every process under it (its fork server and the flow runs)."""
    procs = _processes(home)
    tree = [pid for pid, (_, cmd) in procs.items() if "deployments.serve" in cmd]
    for pid in tree:
        tree += [child for child, (ppid, _) in procs.items() if ppid == pid and child not in tree]
    return tree


def _rows(system: System, flow: str) -> dict[str, dict[str, Any]]:
    return {row["file"]: row for row in system.transfers(flow=flow)}


def test_killed_runner_and_flow_runs_are_noticed_and_each_file_lands_once(receiver: Receiver) -> None:
    with run_system(TRADELANE_DEAD_RUN_SECONDS=str(DEAD_RUN_SECONDS)) as system:
        partner, flow = unique("dead"), unique("deadflow")
        system.cli("partner", "add", partner, "--password", PASSWORD)
        system.cli(
            "endpoint", "add", f"{flow}-ftp", "--type", "ftp", "--host", "127.0.0.1",
            "--port", str(receiver.port), "--user", FTP_USER, "--password", FTP_PASSWORD, "--tls", "none",
        )  # fmt: skip
        system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", f"{flow}-ftp")
        client = PartnerClient(system, partner, PASSWORD)
        upload_id = client.folder_ids()["upload"]
        bodies = {
            "finished.bin": os.urandom(4096),  # delivered and recorded before the kill
            "held.bin": os.urandom(8192),  # written, its rename's answer held: delivered, not recorded
            "slow.bin": os.urandom(6 * UPLOAD_BYTES_PER_SECOND),  # mid-STOR at the kill
        }
        assert client.upload("finished.bin", bodies["finished.bin"], upload_id).status_code == 201
        done = system.wait_for(lambda rs: [r["state"] for r in rs] == ["delivered"], flow=flow)[0]

        receiver.hold.add("held.bin")
        for name in ("held.bin", "slow.bin"):
            assert client.upload(name, bodies[name], upload_id).status_code == 201
        client.close()
        wait_for(lambda: "held.bin" in receiver.held and any(receiver.receiving()), "a push mid-way", 60)
        before = _rows(system, flow)
        dead_run_ids = {before[name]["flow_run_id"] for name in ("held.bin", "slow.bin")}
        assert None not in dead_run_ids and done["flow_run_id"] not in dead_run_ids

        old_tree = _runner_tree(system.home)
        assert old_tree, "no runner found"
        for pid in old_tree:  # the machine dies: the runner, its fork server, the flow runs
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # A run taken (Pending) by a worker that died before starting it never sends a heartbeat.
        never_started = _pending_run_without_a_worker(system)
        wait_for(
            lambda: any(pid not in old_tree for pid in _runner_tree(system.home)), "the runner to restart", 30
        )
        assert system.proc is not None and system.proc.poll() is None, "up exited with its runner"
        # A live run longer than the automation's window, which its heartbeats keep from being crashed.
        # Marked Crashed anyway (as the automation would on events processed late), it still sends
        # heartbeats, so the dispatcher leaves its file to it rather than start a second push.
        window = dead_runs.window_seconds(DEAD_RUN_SECONDS, heartbeat.HEARTBEAT_SECONDS)
        bodies["long.bin"] = os.urandom(int(window + 16) * UPLOAD_BYTES_PER_SECOND)
        with PartnerClient(system, partner, PASSWORD) as again:
            assert again.upload("long.bin", bodies["long.bin"], upload_id).status_code == 201
        long_run = wait_for(lambda: _rows(system, flow)["long.bin"]["flow_run_id"], "the long run", 30, 0.3)
        wait_for(lambda: _heartbeats(system, long_run), "the long run's first heartbeat", 30, 0.5)
        crash = {"state": {"type": "CRASHED", "message": "late events"}, "force": True}
        answer = httpx.post(f"{system.prefect_api}/flow_runs/{long_run}/set_state", json=crash).json()
        assert answer["status"] == "ACCEPT", answer

        # Requeued within the bound (a wait with that deadline; the push of slow.bin comes after).
        wait_for(
            lambda: all(r["flow_run_id"] not in dead_run_ids for r in _rows(system, flow).values()),
            "the dead runs' files to be requeued",
            DEAD_RUN_SECONDS + 15,
            interval=0.5,
        )
        requeued_after = time.monotonic() - killed_at
        rows = system.wait_for(
            lambda rs: len(rs) == 4 and all(r["state"] == "delivered" for r in rs), 150, flow=flow
        )
        by_file = {row["file"]: row for row in rows}

        # The other side got each file once: one write (rename onto the name) each, the right bytes.
        assert receiver.visible() == bodies
        assert receiver.renames == Counter({name: 1 for name in bodies})
        assert by_file["held.bin"]["destination_answer"]["summary"].startswith("already there")
        # A run that finished was never requeued; nor was the long one, which sent heartbeats.
        assert by_file["finished.bin"]["flow_run_id"] == done["flow_run_id"]
        assert by_file["finished.bin"]["attempts"] == 1
        assert by_file["long.bin"]["attempts"] == 1 and by_file["long.bin"]["flow_run_id"] == long_run
        assert len(_heartbeats(system, long_run)) >= 2
        assert "still sends heartbeats" in (system.home / "up.log").read_text()
        # Prefect says why: the dead runs were marked Crashed by the automation, which exists once.
        for run_id in dead_run_ids:
            run = httpx.get(f"{system.prefect_api}/flow_runs/{run_id}").json()
            assert run["state_type"] == "CRASHED", run["state"]
            assert run["state"]["message"] == CRASH_MESSAGE
        wait_for(
            lambda: _state(system, never_started) == "CRASHED", "the never-started run to crash", 30, 0.5
        )
        automations = prefect_paged(f"{system.prefect_api}/automations/filter")
        assert [a["name"] for a in automations].count(AUTOMATION_NAME) == 1
        assert "starting it again" in (system.home / "up.log").read_text()
        print(f"requeued {requeued_after:.1f} s after the kill (bound {DEAD_RUN_SECONDS} s)")
        asyncio.run(_automation_is_made_once_and_kept_up_to_date(system))


def _pending_run_without_a_worker(system: System) -> str:
    flow = httpx.post(f"{system.prefect_api}/flows/", json={"name": unique("orphan")}).json()
    scheduled = {"flow_id": flow["id"], "state": {"type": "SCHEDULED"}}
    run = httpx.post(f"{system.prefect_api}/flow_runs/", json=scheduled).json()
    answer = httpx.post(
        f"{system.prefect_api}/flow_runs/{run['id']}/set_state", json={"state": {"type": "PENDING"}}
    ).json()
    assert answer["status"] == "ACCEPT", answer
    return str(run["id"])


def _heartbeats(system: System, run_id: str) -> list[Any]:
    return [
        e
        for e in prefect_events(system.prefect_api)
        if e["event"] == dead_runs.HEARTBEAT_EVENT
        and e["resource"]["prefect.resource.id"] == f"prefect.flow-run.{run_id}"
    ]


def _state(system: System, run_id: str) -> str:
    return str(httpx.get(f"{system.prefect_api}/flow_runs/{run_id}").json()["state_type"])


async def _automation_is_made_once_and_kept_up_to_date(system: System) -> None:
    """What each dispatcher does at start: kept as it is; a duplicate (two dispatchers starting at
    once) removed; a changed TRADELANE_DEAD_RUN_SECONDS carried into the window."""
    api = {
        PREFECT_API_URL: f"http://127.0.0.1:{system.env['TRADELANE_PREFECT_PORT']}/api",
        PREFECT_API_AUTH_STRING: system.env["TRADELANE_PREFECT_AUTH"],
    }
    with temporary_settings(api):
        async with get_client() as client:
            assert await dead_runs.ensure_automation(client, DEAD_RUN_SECONDS) == "kept"
            await client.create_automation(dead_runs.automation(DEAD_RUN_SECONDS))
            assert await dead_runs.ensure_automation(client, DEAD_RUN_SECONDS) == "kept"
            assert len(await client.read_automations_by_name(dead_runs.AUTOMATION_NAME)) == 1
            assert await dead_runs.ensure_automation(client, 90) == "updated"
            [updated] = await client.read_automations_by_name(dead_runs.AUTOMATION_NAME)
            assert updated.trigger.within == timedelta(seconds=dead_runs.window_seconds(90, 30))  # type: ignore[union-attr]

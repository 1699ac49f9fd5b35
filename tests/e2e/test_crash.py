"""Kill `up` with SIGKILL in the middle of a burst, start it again: every received file arrives once."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import httpx

from core.endpoints.file import TEMP_PREFIX
from tests.e2e.helpers import PartnerClient
from tests.servers import free_port
from tests.system import System, start, stop, system_env
from tests.waiting import wait_for

PASSWORD = "crash-Pass-1234"


def _port_closed(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_sigkill_mid_burst_then_restart_delivers_every_received_file_once(tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="tradelane-crash-"))
    api_port, prefect_port = free_port(), free_port()
    env = system_env(home, api_port, prefect_port)
    system = System(home, env, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{prefect_port}/api")
    dest = tmp_path / "dest"
    try:
        start(system)
        system.cli("partner", "add", "crashy", "--password", PASSWORD)
        system.cli("endpoint", "add", "crash-dir", "--type", "file", "--path", str(dest))
        system.cli("flow", "add", "crash-flow", "--source", "mailbox:crashy", "--dest", "crash-dir")
        client = PartnerClient(system, "crashy", PASSWORD)
        upload_id = client.folder_ids()["upload"]
        received: dict[str, bytes] = {}
        stop_uploading = threading.Event()

        def burst() -> None:
            for i in range(400):
                if stop_uploading.is_set():
                    return
                body = os.urandom(2048) + str(i).encode()
                try:
                    response = client.upload(f"c{i:04}.bin", body, upload_id)
                except httpx.HTTPError:
                    return
                if response.status_code == 201:
                    received[f"c{i:04}.bin"] = body

        uploader = threading.Thread(target=burst)
        uploader.start()
        # Kill once some files are out and more are still arriving or in flight.
        while uploader.is_alive() and (len(received) < 60 or not any(dest.glob("c*.bin"))):
            time.sleep(0.01)
        assert system.proc is not None
        system.proc.send_signal(signal.SIGKILL)
        system.proc.wait()
        stop_uploading.set()
        uploader.join(timeout=60)
        client.close()
        # The children die with `up` (PR_SET_PDEATHSIG): the ports come free without any cleanup.
        wait_for(lambda: _port_closed(prefect_port) and _port_closed(api_port), "the ports to come free", 30)
        wait_for(
            lambda: not _children_of_pid_exist("deployments.serve", home), "the runner to die with up", 30
        )
        in_flight = [f for f in received if not (dest / f).exists()]
        assert received, "no upload completed before the kill"

        start(system)
        rows = system.wait_for(
            lambda rs: len(rs) >= len(received) and all(r["state"] == "delivered" for r in rs),
            timeout=300,
            flow="crash-flow",
        )
        # Exactly the received files, once each, byte for byte; nothing half-written is visible. A push
        # killed mid-write can leave its hidden temporary file; it never takes the final name.
        visible = sorted(p.name for p in dest.iterdir() if not p.name.startswith(TEMP_PREFIX))
        by_file: dict[str, int] = {}
        for row in rows:
            by_file[row["file"]] = by_file.get(row["file"], 0) + 1
        assert all(n == 1 for n in by_file.values()), "a file got a second transfer"
        assert visible == sorted(by_file)
        assert set(received) <= set(by_file)
        # The one upload in flight at the kill may have been committed without its 201 reaching us.
        assert len(set(by_file) - set(received)) <= 1
        for name, body in received.items():
            assert (dest / name).read_bytes() == body
        print(f"{len(received)} received, {len(in_flight)} still undelivered at the kill")
        # Ctrl-C (SIGINT) stops `up` and every child process it started.
        stop(system, signal.SIGINT)
        assert system.proc is not None and system.proc.returncode is not None
        for fragment in ("deployments.serve", "deployments.prefect_server", "forkserver"):
            assert not _children_of_pid_exist(fragment, home), f"{fragment} survived Ctrl-C"
        assert _port_closed(prefect_port) and _port_closed(api_port)
    finally:
        stop(system)
        shutil.rmtree(home, ignore_errors=True)


def _children_of_pid_exist(cmd_fragment: str, home: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if cmd_fragment in cmdline and f"TRADELANE_HOME={home}".encode() in environ:
            found.append(int(proc.name))
    return found

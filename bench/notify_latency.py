"""Time from a file's last failed attempt to its alert e-mail, through a real `tradelane up`.

`python -m bench.notify_latency [--files 20]`: one e-mail rule on `failed`, then files that fail at
once (a `fail` conflict policy on a taken name), one after another; for each, the time from the
transfer's `finished_at` (its outcome recorded) to the message reaching a local aiosmtpd server.
Prints p50/p95 and the machine's load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from tests.e2e.helpers import PartnerClient
from tests.servers import free_port
from tests.system import run_system

PASSWORD = "Alert_latency_P@ss1!"


class Inbox:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}  # subject's file name -> arrival time

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        text = envelope.content.decode("utf-8", "replace")
        for line in text.splitlines():
            if line.startswith("Subject: [tradelane] "):
                self.arrived[line.split()[2]] = time.time()
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20)
    args = parser.parse_args()
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    folder = Path(tempfile.mkdtemp())
    (folder / "taken.txt").write_bytes(b"here first")
    try:
        with run_system(
            TRADELANE_SMTP_HOST="127.0.0.1", TRADELANE_SMTP_PORT=str(port), TRADELANE_SMTP_TLS="none"
        ) as s:
            s.cli("notify", "channel", "add", "ops", "--email", "ops@bench.test")
            s.cli("partner", "add", "bench", "--password", PASSWORD)
            s.cli("endpoint", "add", "taken", "--type", "file", "--path", str(folder))
            s.cli("flow", "add", "fails", "--source", "mailbox:bench", "--dest", "taken",
                  "--dest-path", "taken.txt", "--on-conflict", "fail")  # fmt: skip
            s.cli("notify", "on", "failed", "--to", "ops")
            time.sleep(6)  # the reconciler makes the automation (every 2 s)
            delays: list[float] = []
            with PartnerClient(s, "bench", PASSWORD) as client:
                for n in range(args.files):
                    name = f"b{n:03}.txt"
                    client.upload(name, b"x")
                    deadline = time.monotonic() + 120
                    while name not in inbox.arrived and time.monotonic() < deadline:
                        time.sleep(0.05)
                    row = next(r for r in s.transfers(flow="fails") if r["file"] == name)
                    finished = datetime.fromisoformat(row["finished_at"]).timestamp()
                    delays.append(inbox.arrived[name] - finished)
        delays.sort()
        p95 = delays[max(0, round(0.95 * len(delays)) - 1)]
        print(f"failed → alert e-mail over {len(delays)} files: p50 {statistics.median(delays):.2f} s, "
              f"p95 {p95:.2f} s, max {delays[-1]:.2f} s; load average {os.getloadavg()}")  # fmt: skip
    finally:
        controller.stop()


if __name__ == "__main__":
    main()

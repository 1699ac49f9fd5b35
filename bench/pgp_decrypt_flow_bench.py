"""pgp-decrypt through a flow run against `gpg --decrypt` of the same file, in the same run (issue 14).

    python -m bench.pgp_decrypt_flow_bench                   # 1 GiB, 2 rounds each, best round counts
    python -m bench.pgp_decrypt_flow_bench --size-mib 256 --rounds 1

Like bench/pgp_bench.py (whose helpers it uses), but ours is the whole template: the file is taken
in as a partner's upload (not timed), then the `pgp-decrypt` flow runs in this process against a
Prefect test server (`prefect_test_harness`): start, the decrypt step into staging (gpg reads the
message and writes the staged plaintext by name; every byte of the message is hashed while gpg
reads it, and the plaintext's bytes as the file grows, signature required), the push into a folder
endpoint (on the store's filesystem: a hard link of the staged file, not read back while it is the
file that was hashed), the record. The anchor is `gpg --decrypt --output FILE` with
the same private key.

ratio = anchor time / flow time; goal (issue 14) ≥ 0.7. Peak RSS of this process during the flow run
(sampled every 50 ms) shows memory stays flat: the file is never held.
Do not run it on a machine busy with other work: both sides want a core each. On a busy machine
the wall-clock ratio says little (gpg alone waits for a core as long as the flow does); the CPU
ratio printed beside it (anchor CPU seconds / flow CPU seconds, this process and its gpg) does not
depend on the load, and is what the wall ratio tends to on a machine with no core to spare.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.pgp_bench import MIB, RssSampler, cpu_seconds, default_dir, gpg, make_file, rss

GOAL = 0.7


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", help="where the files go (default: /dev/shm if it has room, else TMPDIR)")
    args = parser.parse_args()
    size = args.size_mib * MIB

    with tempfile.TemporaryDirectory(prefix="pgp-flow-bench-", dir=args.dir or default_dir(4 * size)) as tmp:
        work = Path(tmp)
        os.environ["TRADELANE_HOME"] = str(work / "home")
        os.environ.pop("TRADELANE_DATABASE_URL", None)
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        from prefect.testing.utilities import prefect_test_harness
        from prefect.utilities.asyncutils import run_coro_as_sync
        from sqlmodel import select

        from core import dataflows, partners
        from core.db import init_db, session_scope
        from core.endpoints import rows as endpoint_rows
        from core.intake import receive_stream
        from core.models import Transfer
        from core.pgp import keyring
        from core.tenancy import scope_for_cli
        from flows.pgp_decrypt import pgp_decrypt

        init_db()
        with session_scope() as session:
            scope = scope_for_cli(session, "home")
            fingerprint = keyring.generate_key(session, scope, "bench", "bench@example.com").fingerprint
            private = keyring.load(session, scope).find("bench").private()
            partners.add(session, scope, "sender", password="bench-Pass-123456")
            endpoint_rows.add(session, scope, "plain", "file", {"path": str(work / "plain")})
            flow = dataflows.add(session, scope, "decrypt", source="mailbox:sender", dest="plain")
            flow_id, sender = flow.id, partners.require(session, scope, "sender")
        assert flow_id is not None
        anchor_home = work / "gnupg"
        anchor_home.mkdir(mode=0o700)
        gpg(anchor_home, "--import", data=private.data)

        plain, message, out = work / "plain.bin", work / "message.gpg", work / "out.bin"
        print(f"making {args.size_mib} MiB and encrypting it with gpg …", flush=True)
        make_file(plain, size)
        gpg(anchor_home, "--compress-level", "0", "--sign", "--encrypt", "-r", fingerprint,
            "--output", str(message), str(plain))  # fmt: skip
        plain.unlink()

        anchor_times: list[float] = []
        flow_times: list[float] = []
        anchor_cpus: list[float] = []
        flow_cpus: list[float] = []
        load_before = os.getloadavg()[0]
        peak_growth = 0
        with prefect_test_harness(server_startup_timeout=120):
            for round_no in range(1, args.rounds + 1):
                out.unlink(missing_ok=True)
                started, cpu = time.perf_counter(), cpu_seconds()
                gpg(anchor_home, "--decrypt", "--output", str(out), str(message))
                anchor_times.append(time.perf_counter() - started)
                anchor_cpu = cpu_seconds() - cpu
                anchor_cpus.append(anchor_cpu)
                out.unlink()

                with message.open("rb") as source:  # taken in as an upload: not timed
                    receipt = receive_stream(
                        sender, "upload", f"r{round_no}.bin.gpg", source, protocol="rest"
                    )
                with session_scope() as session:
                    transfer_id = session.exec(
                        select(Transfer.id).where(Transfer.receipt_id == receipt.id)
                    ).one()
                assert transfer_id is not None
                baseline = rss()
                started, cpu = time.perf_counter(), cpu_seconds()
                with RssSampler() as sampler:
                    state = run_coro_as_sync(
                        pgp_decrypt(flow_id, [transfer_id], params={"verify": "required"}, return_state=True)
                    )
                flow_times.append(time.perf_counter() - started)
                flow_cpus.append(cpu_seconds() - cpu)
                assert state is not None and state.is_completed(), state
                peak_growth = max(peak_growth, sampler.peak - baseline)
                delivered = work / "plain" / f"r{round_no}.bin"
                assert delivered.stat().st_size == size
                delivered.unlink()
                print(
                    f"round {round_no}: gpg --decrypt {anchor_times[-1]:.2f} s ({anchor_cpu:.2f} s CPU), "
                    f"pgp-decrypt flow {flow_times[-1]:.2f} s ({flow_cpus[-1]:.2f} s CPU)",
                    flush=True,
                )
        anchor, ours = min(anchor_times), min(flow_times)
        ratio = anchor / ours
        print()
        print(f"gpg --decrypt      best {anchor:6.2f} s  {size / MIB / anchor:7.1f} MiB/s")
        print(f"pgp-decrypt flow   best {ours:6.2f} s  {size / MIB / ours:7.1f} MiB/s")
        verdict = "OK" if ratio >= GOAL else "BELOW GOAL"
        print(f"ratio (gpg time / flow time): {ratio:.2f}  (goal ≥ {GOAL})  {verdict}")
        cpu_ratio = min(anchor_cpus) / min(flow_cpus)
        print(f"CPU ratio (gpg CPU / flow CPU, least of each): {cpu_ratio:.2f}")
        print(f"load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
        print(f"peak RSS during the flow run: this process grew {peak_growth / MIB:.1f} MiB")
        sys.exit(0 if ratio >= GOAL else 1)


if __name__ == "__main__":
    main()

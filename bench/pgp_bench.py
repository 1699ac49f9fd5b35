"""PGP decrypt throughput: `core.pgp.decrypt` against `gpg --decrypt` of the same file (issue 14).

    python -m bench.pgp_bench                    # 1 GiB, 3 rounds each, best round counts
    python -m bench.pgp_bench --size-mib 256 --rounds 1

One run makes a key pair in a throwaway tradelane home (RSA 3072, `pgp key generate`'s default),
a file of SIZE bytes (distinct 4 MiB blocks: incompressible, like most large files people encrypt),
and encrypts it to that key with the gpg command line (`--compress-level 0`, signed by the same key).
Then, alternating, round after round:

The files live in /dev/shm when it has room (else TMPDIR, or `--dir`), so a disk shared with other
work does not decide the ratio.

* anchor: `gpg --decrypt --output FILE` in a GnuPG home holding the same private key;
* ours: `core.pgp.decrypt(source, sink, verify="required")` from the file into a file: the keyring
  read from the database, a throwaway GnuPG home filled, gpg run through python-gnupg, every output
  byte through Python (SHA-256, counted, written), the signature checked.

ratio = anchor time / our time (≥ 1 would be faster than gpg alone). Goal (issue 14): ≥ 0.7.
CPU seconds (this process and its gpg) are printed too: on a busy machine, where the two sides do
not get a core each, they are what the wall-clock ratio drifts toward.
Peak RSS, sampled every 50 ms during our decrypt: how much this process grew (the file is never in
it), and the gpg it runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MIB = 1024 * 1024
GOAL = 0.7


def make_file(path: Path, size: int) -> None:
    block = bytearray(os.urandom(4 * MIB))
    with path.open("wb") as f:
        written = 0
        while written < size:
            n = min(len(block), size - written)
            f.write(block[:n])
            written += n
            block[:8] = written.to_bytes(8, "big")  # distinct blocks without paying for urandom each time


def rss(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass  # gone
    return 0


def gpg_children() -> list[int]:
    """Our child processes that are gpg (python-gnupg's)."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            if fields[1].split()[1] == me and name == "gpg":
                found.append(int(entry))
        except (OSError, IndexError):
            continue
    return found


class RssSampler:
    """Peak resident memory of this process and of its gpg children while the block runs."""

    def __init__(self) -> None:
        self.peak = rss()
        self.gpg_peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # Scanning /proc costs CPU that would be counted as ours: look for gpg only until it is found.
        children: list[int] = []
        while not self._done.wait(0.05):
            self.peak = max(self.peak, rss())
            sizes = [rss(child) for child in children]
            if not any(sizes):
                children = gpg_children()
            self.gpg_peak = max([self.gpg_peak, *sizes])

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def default_dir(size: int) -> str | None:
    """Memory-backed /dev/shm when it holds the message and the output with room to spare: both
    sides then measure decryption, not a disk that other work on the machine is also using."""
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        return None
    return "/dev/shm" if free > 3 * size else None


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (gpg)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def gpg(home: Path, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    command = ["gpg", "--homedir", str(home), "--batch", "--yes", "--quiet", "--trust-model", "always"]
    return subprocess.run([*command, *args], input=data, capture_output=True, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", help="where the files go (default: /dev/shm if it has room, else TMPDIR)")
    args = parser.parse_args()
    size = args.size_mib * MIB

    with tempfile.TemporaryDirectory(prefix="pgp-bench-", dir=args.dir or default_dir(size)) as tmp:
        work = Path(tmp)
        os.environ["TRADELANE_HOME"] = str(work / "home")
        os.environ.pop("TRADELANE_DATABASE_URL", None)
        from core.db import init_db, session_scope
        from core.pgp import decrypt, keyring

        init_db()
        from core.tenancy import scope_for_cli

        with session_scope() as session:
            scope = scope_for_cli(session, "home")
            fingerprint = keyring.generate_key(session, scope, "bench", "bench@example.com").fingerprint
            ring = keyring.load(session, scope)
        private = ring.find("bench").private()
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
        our_times: list[float] = []
        anchor_cpu: list[float] = []
        our_cpu: list[float] = []
        peak_growth = gpg_peak = 0
        for round_no in range(1, args.rounds + 1):
            out.unlink(missing_ok=True)
            started, cpu = time.perf_counter(), cpu_seconds()
            gpg(anchor_home, "--decrypt", "--output", str(out), str(message))
            anchor_times.append(time.perf_counter() - started)
            anchor_cpu.append(cpu_seconds() - cpu)
            out.unlink()

            baseline = rss()
            started, cpu = time.perf_counter(), cpu_seconds()
            with RssSampler() as sampler, message.open("rb") as source, out.open("wb") as sink:
                result = decrypt(source, sink, verify="required", keyring=ring)
            our_times.append(time.perf_counter() - started)
            our_cpu.append(cpu_seconds() - cpu)
            peak_growth = max(peak_growth, sampler.peak - baseline)
            gpg_peak = max(gpg_peak, sampler.gpg_peak)
            assert result.bytes_out == size and result.signature_verified, result
            print(
                f"round {round_no}: gpg --decrypt {anchor_times[-1]:.2f} s ({anchor_cpu[-1]:.2f} s CPU), "
                f"core.pgp.decrypt {our_times[-1]:.2f} s ({our_cpu[-1]:.2f} s CPU)",
                flush=True,
            )

        anchor, ours = min(anchor_times), min(our_times)
        ratio = anchor / ours
        verdict = "OK" if ratio >= GOAL else "BELOW GOAL"
        print()
        print(f"file: {args.size_mib} MiB, RSA 3072, AES (gpg's choice), signed, not compressed")
        print(f"gpg --decrypt     best {anchor:6.2f} s  {size / MIB / anchor:7.1f} MiB/s")
        print(f"core.pgp.decrypt  best {ours:6.2f} s  {size / MIB / ours:7.1f} MiB/s")
        print(f"ratio (gpg time / our time): {ratio:.2f}  (goal ≥ {GOAL})  {verdict}")
        print(
            f"CPU seconds, best round: gpg {min(anchor_cpu):.2f}, ours {min(our_cpu):.2f} (with its gpg)",
            end="",
        )
        print(f"; ratio {min(anchor_cpu) / min(our_cpu):.2f} (what a busy machine sees)")
        print(f"peak RSS during our decrypt: this process grew {peak_growth / MIB:.1f} MiB", end="")
        print(f" (now {rss() / MIB:.0f} MiB); its gpg {gpg_peak / MIB:.1f} MiB")
        subprocess.run(["gpgconf", "--homedir", str(anchor_home), "--kill", "gpg-agent"], check=False)
        sys.exit(0 if ratio >= GOAL else 1)


if __name__ == "__main__":
    main()

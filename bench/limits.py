"""The machine's physical limits that bound each transfer path (issue 17), measured in the same run
as the benchmarks they bound.

    python -m bench.limits [--quick]

* disk: `dd` of 256 MiB (64, the quick transfers' size, with --quick) from /dev/zero with
  `conv=fdatasync` into the folder the benchmarks write to (their temp dir, as `tempfile` picks
  it; the home of every `up` they start is there too): the bytes onto the disk, not the cache;
* cipher and MAC: `openssl speed -evp <cipher>` and `-hmac <digest>` on 16 KiB blocks, one core,
  for what the SFTP client and server negotiated (`sftp_bench.negotiated`; OpenSSH's umac has no
  `openssl speed`, so it is reported as not measured);
* SHA-256: hashlib (which is OpenSSL's) over 1 MiB buffers in this process, one core: the
  receipt's hash on every intake path;
* loopback: 1 GiB (512 MiB with --quick) through a TCP connection on 127.0.0.1 between two
  threads of this process (the kernel copies; the GIL is released in send/recv).

Every figure is MB/s (10^6 bytes per second).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

MIB = 1024 * 1024

# SSH MAC names (as `ssh -v` prints them) to the digest `openssl speed -hmac` takes.
HMAC_DIGESTS = {
    "hmac-sha2-256": "sha256",
    "hmac-sha2-256-etm@openssh.com": "sha256",
    "hmac-sha2-512": "sha512",
    "hmac-sha2-512-etm@openssh.com": "sha512",
    "hmac-sha1": "sha1",
    "hmac-sha1-etm@openssh.com": "sha1",
}
# SSH cipher names to `openssl speed -evp` names.
EVP_CIPHERS = {
    "aes128-ctr": "aes-128-ctr",
    "aes192-ctr": "aes-192-ctr",
    "aes256-ctr": "aes-256-ctr",
    "aes128-gcm@openssh.com": "aes-128-gcm",
    "aes256-gcm@openssh.com": "aes-256-gcm",
    "chacha20-poly1305@openssh.com": "chacha20-poly1305",
}


def disk_write(folder: Path, mib: int = 256) -> float:
    """MB/s of `dd ... conv=fdatasync` into `folder` (the file is removed afterwards)."""
    target = folder / f"dd-limit-{os.getpid()}.bin"
    try:
        done = subprocess.run(
            ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={mib}", "conv=fdatasync"],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        target.unlink(missing_ok=True)
    return parse_dd(done.stderr)


def parse_dd(stderr: str) -> float:
    """MB/s from dd's last line: `268435456 bytes (268 MB, 256 MiB) copied, 0.5 s, 537 MB/s`."""
    match = re.search(r"^(\d+) bytes .* copied, ([\d.]+) s", stderr, re.MULTILINE)
    if match is None:
        raise ValueError(f"no dd summary in: {stderr!r}")
    return int(match[1]) / float(match[2]) / 1e6


def openssl_speed(*args: str) -> float:
    """MB/s of `openssl speed <args>` on 16 KiB blocks for one second (one core)."""
    done = subprocess.run(
        ["openssl", "speed", "-bytes", "16384", "-seconds", "1", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_openssl_speed(done.stdout)


def parse_openssl_speed(stdout: str) -> float:
    """The last line is `<name> <n>k`, n in 1000s of bytes per second."""
    last = stdout.strip().splitlines()[-1]
    return float(last.split()[-1].rstrip("k")) * 1000 / 1e6


def ssh_crypto(cipher: str, mac: str) -> dict[str, float | None]:
    """MB/s of the negotiated cipher and MAC, and of both on one core (what one SSH connection's
    packets cost its side); None where openssl has no measure for the name."""
    evp = EVP_CIPHERS.get(cipher)
    cipher_rate = openssl_speed("-evp", evp) if evp else None
    digest = HMAC_DIGESTS.get(mac)
    if mac in ("", "<implicit>"):  # an AEAD cipher authenticates itself
        mac_rate: float | None = float("inf")
    else:
        mac_rate = openssl_speed("-hmac", digest) if digest else None
    both = None
    if cipher_rate and mac_rate:
        both = 1 / (1 / cipher_rate + 1 / mac_rate)
    return {"cipher": cipher_rate, "mac": None if mac_rate == float("inf") else mac_rate, "both": both}


def sha256_rate(mib: int = 256) -> float:
    """MB/s of hashlib's SHA-256 over 1 MiB buffers, one core."""
    block = os.urandom(MIB)
    sha = hashlib.sha256()
    start = time.perf_counter()
    for _ in range(mib):
        sha.update(block)
    return mib * MIB / (time.perf_counter() - start) / 1e6


def loopback(mib: int = 1024) -> float:
    """MB/s through one TCP connection on 127.0.0.1, a sender and a receiver thread."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        block = os.urandom(MIB)

        def send() -> None:
            with socket.create_connection(("127.0.0.1", port)) as out:
                for _ in range(mib):
                    out.sendall(block)

        sender = threading.Thread(target=send)
        start = time.perf_counter()
        sender.start()
        conn, _ = server.accept()
        received = 0
        buffer = bytearray(MIB)
        with conn:
            while n := conn.recv_into(buffer):
                received += n
        took = time.perf_counter() - start
        sender.join()
    if received != mib * MIB:
        raise RuntimeError(f"loopback received {received} of {mib * MIB} bytes")
    return received / took / 1e6


def measure(folder: Path | None = None, quick: bool = False) -> dict[str, float]:
    """Disk write, SHA-256, loopback (MB/s); the SSH cipher and MAC come from `ssh_crypto` once the
    SFTP benchmark knows what was negotiated."""
    folder = folder or Path(tempfile.gettempdir())
    return {
        # --quick: the size of the quick transfers (a virtual disk's cache makes the rate depend on it)
        "disk_write": disk_write(folder, 64 if quick else 256),
        "sha256": sha256_rate(256 if quick else 512),
        "loopback": loopback(512 if quick else 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cipher", default="aes128-ctr")
    parser.add_argument("--mac", default="hmac-sha2-256-etm@openssh.com")
    args = parser.parse_args()
    figures = measure(quick=args.quick)
    for name, rate in figures.items():
        print(f"{name:12} {rate:8.0f} MB/s")
    for part, speed in ssh_crypto(args.cipher, args.mac).items():
        print(f"ssh {part:8} {speed:8.0f} MB/s" if speed else f"ssh {part:8} not measured")


if __name__ == "__main__":
    main()

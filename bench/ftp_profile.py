"""One FTP server in this process and `curl -T` of the same file into it, N times: the target for a
profiler, with the CPU time this process spent per GB beside each round's MB/s.

    py-spy record --native -r 100 -f raw -o ours.txt -- .venv/bin/python -m bench.ftp_profile ours big.bin 3
    .venv/bin/python -m bench.ftp_profile same-work big.bin 3   # pyftpdlib + SHA-256 + fsync
    .venv/bin/python -m bench.ftp_profile bare big.bin 3        # pyftpdlib as it ships
    .venv/bin/python -m bench.ftp_profile ours-tls big.bin 3    # tradelane, FTPS (PROT P)
    .venv/bin/python -m bench.ftp_profile bare-tls big.bin 3    # pyftpdlib's own FTPS

CPU seconds per GB (user/system, from getrusage, less a 1-byte upload's: the session's fixed cost,
which for tradelane is mostly the argon2 password check) say what moving the bytes costs, even on a
machine too busy for its MB/s to mean much; curl's (user + system) is the client's share of the
same two cores.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import resource
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from bench.ftp_bench import PASSWORD, USER, bare_pyftpdlib, curl, tradelane_server
from core.config import Settings
from mailboxes.ftp.certificate import ensure_certificate

T = TypeVar("T")


def cpu_of(action: Callable[[], T]) -> tuple[T, float, float, float]:
    """What `action` returned, the user and system CPU seconds this process spent meanwhile, and
    those (user + system) of the children it waited for (curl)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = action()
    after = resource.getrusage(resource.RUSAGE_SELF)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (children_after.ru_utime - children.ru_utime) + (children_after.ru_stime - children.ru_stime)
    return result, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, client


@contextmanager
def serve(kind: str, work: Path) -> Iterator[tuple[int, Path]]:
    """The server to profile, started in this process: its port and the folder uploads land in."""
    if kind.startswith("ours"):
        with tradelane_server(work / "home") as (port, mailbox, _certificate):
            yield port, mailbox / "upload"
        return
    (work / "upload").mkdir()
    # The certificate ours generates (core/tls.py), without starting our server beside this one.
    tls = ensure_certificate(Settings(home=work / "tls")) if kind == "bare-tls" else None
    with bare_pyftpdlib(work, same_work=kind == "same-work", tls=tls) as port:
        yield port, work / "upload"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("server", choices=["ours", "ours-tls", "same-work", "bare", "bare-tls"])
    parser.add_argument("source", type=Path)
    parser.add_argument("rounds", type=int)
    args = parser.parse_args()
    size = args.source.stat().st_size
    with tempfile.TemporaryDirectory(prefix="ftp-profile-") as tmp:
        work = Path(tmp)
        with serve(args.server, work) as (port, folder):
            logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
            url = f"ftp://{USER}:{PASSWORD}@127.0.0.1:{port}/upload"
            one_byte = work / "one.bin"
            one_byte.write_bytes(b"x")
            # A session's fixed CPU (login: argon2 for tradelane; the receipt): a 1-byte upload.
            tls = ("--ssl-reqd", "-k") if args.server.endswith("-tls") else ()
            fixed = [
                cpu_of(lambda: curl(*tls, "-T", str(one_byte), f"{url}/fixed.bin"))[1:3] for _ in range(2)
            ][-1]
            print(f"{args.server}: a 1-byte upload costs {fixed[0]:.3f} s user / {fixed[1]:.3f} s system")
            for n in range(args.rounds):
                subprocess.run(["sync"], check=True)
                upload = functools.partial(curl, *tls, "-T", str(args.source), f"{url}/r{n}.bin")
                (seconds, _), user, system, client = cpu_of(upload)
                per_gb = [(x - f) * 1e9 / size for x, f in zip((user, system), fixed, strict=True)]
                print(
                    f"{args.server} round {n}: {size / seconds / 1e6:.0f} MB/s, CPU per GB beyond a "
                    f"1-byte upload's {per_gb[0]:.2f} s user / {per_gb[1]:.2f} s system; curl "
                    f"{client * 1e9 / size:.2f} s (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                for path in folder.iterdir():
                    if path.is_file():
                        path.unlink()


if __name__ == "__main__":
    main()

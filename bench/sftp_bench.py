"""SFTP throughput of tradelane's mailbox server against OpenSSH's own sshd (issue 3).

    python -m bench.sftp_bench                     # 512 MiB, 3 rounds each, best round counts
    python -m bench.sftp_bench --size-mib 128 --rounds 1
    python -m bench.sftp_bench --only concurrent   # just the 20 clients x 50 files

Both servers listen on 127.0.0.1 in the same run: tradelane's `SFTPServer` in this process (in its
own threads), OpenSSH's `sshd` (`Subsystem sftp internal-sftp`, its own config, host key and
authorized_keys in a temp dir) on another port. OpenSSH's `sftp` client moves the same file with
the same key and default options against each:

* upload: `put big.bin` — for tradelane the whole path: SHA-256 while receiving, fsync, rename
  into place and a receipt row, before sftp gets the answer to its CLOSE;
* download: `get big.bin` into the temp dir.

Times are the client's wall-clock time less that server's connect-and-login time (measured with
an empty batch), so the ratio compares transfers, not handshakes. Goal (issue 3): ratio ≥ 0.6.

Then 20 concurrent `sftp` clients (20 partners, one each) upload 50 small files each: every file
must arrive with a receipt and no client may fail.

Needs root (sshd), openssh-server and the sftp client: `make test-servers` installs them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.tenancy import scope_for_cli

MIB = 1024 * 1024
GOAL = 0.6
SSHD = "/usr/sbin/sshd"


def make_file(path: Path, size: int) -> None:
    block = bytearray(os.urandom(4 * MIB))
    with path.open("wb") as f:
        written = 0
        while written < size:
            n = min(len(block), size - written)
            f.write(block[:n])
            written += n
            block[:8] = written.to_bytes(8, "big")  # distinct blocks without paying for urandom each time
        f.flush()
        os.fsync(f.fileno())


@dataclass
class Target:
    """One SFTP server as the client sees it."""

    name: str
    port: int
    user: str
    upload_dir: str
    download_dir: str


class Client:
    def __init__(self, key: Path, workdir: Path, options: tuple[str, ...] = ()) -> None:
        self.key = key
        self.workdir = workdir
        self.options = options
        self._batches = 0

    def run(self, target: Target, commands: list[str], timeout: float = 600) -> float:
        """Run one `sftp -b` batch; the wall-clock seconds it took."""
        self._batches += 1
        batch = self.workdir / f"batch-{self._batches}.txt"
        batch.write_text("\n".join(commands) + "\n")
        cmd = [
            "sftp",
            "-q",
            "-b",
            str(batch),
            "-i",
            str(self.key),
            "-P",
            str(target.port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            *self.options,
            f"{target.user}@127.0.0.1",
        ]
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        took = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"sftp against {target.name} failed: {result.stderr.strip() or result.stdout}")
        return took

    def connect_time(self, target: Target, rounds: int = 3) -> float:
        return statistics.median(self.run(target, ["pwd"]) for _ in range(rounds))


# --- the anchor: OpenSSH sshd -------------------------------------------------------------------


@contextmanager
def openssh_sshd(workdir: Path, public_key: str) -> Iterator[int]:
    from tests.servers import free_port

    if os.geteuid() != 0:
        raise SystemExit("the sshd anchor needs root (sshd must be started as root)")
    if not Path(SSHD).exists():
        raise SystemExit("sshd is not installed: run `make test-servers`")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    conf = workdir / "sshd"
    conf.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(conf / "host_key")], check=True)
    (conf / "authorized_keys").write_text(public_key)
    port = free_port()
    (conf / "sshd_config").write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {conf / "host_key"}
PidFile {conf / "sshd.pid"}
AuthorizedKeysFile {conf / "authorized_keys"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
"""
    )
    log = (conf / "sshd.log").open("wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(conf / "sshd_config")], stdout=log, stderr=log)
    try:
        import socket

        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(conf / 'sshd.log').read_text()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("sshd did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


# --- tradelane -----------------------------------------------------------------------------------


@contextmanager
def tradelane_sftp(home: Path) -> Iterator[object]:
    from cli.supervisor import tune_interpreter
    from core.config import get_settings
    from mailboxes.auth import MailboxAuth
    from mailboxes.sftp import SFTPServer

    # 20 clients log in at once from one address: past MaxStartups 10:30:100 some would be turned
    # away at random (as OpenSSH's sshd would with its defaults), and past 5 from one address at
    # once, which is not what this measures.
    update = {
        "sftp_port": 0,
        "max_connections_per_partner": 50,
        "sftp_max_startups": "100",
        "sftp_max_startups_per_address": 0,
    }
    settings = get_settings().model_copy(update=update)
    tune_interpreter()  # as `tradelane up` runs its servers
    server = SFTPServer(settings, MailboxAuth(settings))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def add_partners(names: list[str], public_key: str) -> None:
    from core import partners
    from core.db import session_scope

    with session_scope() as session:
        for name in names:
            partners.add(
                session,
                scope_for_cli(session, "home", actor="bench"),
                name,
                ssh_public_keys=[public_key.strip()],
            )


def receipts_of(names: list[str]) -> int:
    from sqlmodel import func, select

    from core.db import session_scope
    from core.models import Partner, Receipt

    with session_scope() as session:
        ids = session.exec(select(Partner.id).where(Partner.name.in_(names))).all()  # type: ignore[attr-defined]
        return int(
            session.exec(select(func.count()).select_from(Receipt).where(Receipt.partner_id.in_(ids))).one()  # type: ignore[union-attr]
        )


# --- the runs ------------------------------------------------------------------------------------


def throughput(
    client: Client, ours: Target, theirs: Target, src: Path, size: int, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Alternating rounds (sshd, then tradelane); MB/s per round for each direction and server:
    {"upload": {"tradelane": [...], "sshd": [...]}, "download": {...}}."""
    connect = {t.name: client.connect_time(t) for t in (ours, theirs)}
    results: dict[tuple[str, str], list[float]] = {}
    dl_dir = client.workdir / "got"
    dl_dir.mkdir(exist_ok=True)
    cpu: dict[str, list[float]] = {"upload": [], "download": []}  # our server's, per GB
    for _ in range(rounds):
        for target in (theirs, ours):
            before = own_cpu()
            up = client.run(target, [f"put {src} {target.upload_dir}/big.bin"])
            if target is ours:
                cpu["upload"].append((own_cpu() - before) * 1e9 / size)
            results.setdefault((target.name, "upload"), []).append(up - connect[target.name])
            before = own_cpu()
            down = client.run(target, [f"get {target.download_dir}/big.bin {dl_dir}/big.bin"])
            if target is ours:
                cpu["download"].append((own_cpu() - before) * 1e9 / size)
            results.setdefault((target.name, "download"), []).append(down - connect[target.name])
            if (dl_dir / "big.bin").stat().st_size != size:
                raise RuntimeError(f"download from {target.name} is incomplete")
            (dl_dir / "big.bin").unlink()
    cipher = " ".join(client.options) or "default ciphers"
    print(f"\nSFTP throughput, {size // MIB} MiB, OpenSSH sftp client ({cipher}), best of {rounds}")
    print(f"  connect+login: tradelane {connect[ours.name]:.3f} s, sshd {connect[theirs.name]:.3f} s")
    print(f"  {'':10} {'sshd MB/s':>11} {'tradelane MB/s':>15} {'ratio':>7} {'goal':>6}")
    rates: dict[str, dict[str, list[float]]] = {}
    for direction in ("upload", "download"):
        rates[direction] = {
            name: [size / 1e6 / max(took, 1e-6) for took in results[(name, direction)]]
            for name in (ours.name, theirs.name)
        }
        best = {name: max(rates[direction][name]) for name in (ours.name, theirs.name)}
        ratio = best[ours.name] / best[theirs.name]
        verdict = "ok" if ratio >= GOAL else "MISS"
        print(
            f"  {direction:10} {best[theirs.name]:11.0f} {best[ours.name]:15.0f} {ratio:7.2f} "
            f"{GOAL:>5} {verdict}   (tradelane's CPU {statistics.median(cpu[direction]):.2f} s per GB)"
        )
    return rates


def own_cpu() -> float:
    """User + system CPU seconds of this process (tradelane's server runs in it)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def negotiated(client: Client, target: Target) -> tuple[str, str]:
    """The cipher and MAC the sftp client and `target` agree on, as `ssh -v` reports them
    (client->server; an AEAD cipher's MAC is `<implicit>`)."""
    batch = client.workdir / "negotiate.txt"
    batch.write_text("pwd\n")
    done = subprocess.run(
        ["sftp", "-v", "-b", str(batch), "-i", str(client.key), "-P", str(target.port),
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", *client.options, f"{target.user}@127.0.0.1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return parse_kex(done.stderr)


def parse_kex(verbose: str) -> tuple[str, str]:
    """(cipher, MAC) from `kex: client->server cipher: aes128-ctr MAC: umac-64-etm@openssh.com ...`."""
    for line in verbose.splitlines():
        if "kex: client->server cipher:" in line:
            words = line.split()
            return words[words.index("cipher:") + 1], words[words.index("MAC:") + 1]
    raise RuntimeError(f"ssh -v did not say what it negotiated: {verbose[-500:]}")


def concurrent(client: Client, port: int, public_key: str, clients: int, files: int) -> None:
    import concurrent.futures

    names = [f"conc{i:02d}" for i in range(clients)]
    add_partners(names, public_key)
    small = client.workdir / "small"
    small.mkdir()
    for j in range(files):
        (small / f"f{j:03d}.txt").write_bytes(os.urandom(2048))

    def one(name: str) -> float:
        target = Target(name, port, name, "/upload", "/download")
        return client.run(target, [f"put {small}/f{j:03d}.txt /upload/f{j:03d}.txt" for j in range(files)])

    start = time.perf_counter()
    errors = []
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(one, name) for name in names]:
            try:
                future.result()
            except Exception as exc:
                errors.append(str(exc))
    took = time.perf_counter() - start
    received = receipts_of(names)
    total = clients * files
    print(f"\n{clients} concurrent sftp clients x {files} files of 2 KiB (one partner each)")
    rate = total / took
    print(f"  receipts {received}/{total}, client errors {len(errors)}, {took:.1f} s, {rate:.0f} files/s")
    print(f"  {'ok' if received == total and not errors else 'MISS'}")
    for error in errors[:5]:
        print("   ", error)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--only", choices=["throughput", "concurrent"])
    parser.add_argument("--cipher", help="both sides use this cipher (sftp -c): aes128-gcm@openssh.com")
    parser.add_argument(
        "--macs", help="both sides use this MAC (sftp -o MACs=): hmac-sha2-256-etm@openssh.com"
    )
    args = parser.parse_args(argv)
    measure(args.size_mib, args.rounds, args.cipher, args.only, args.clients, args.files, args.macs)


def measure(
    size_mib: int,
    rounds: int,
    cipher: str | None = None,
    only: str | None = "throughput",
    clients: int = 20,
    files: int = 50,
    macs: str | None = None,
) -> dict[str, object]:
    """Run the benchmark (printing as it goes); the throughput figures for `bench.all`:
    {"rates": throughput()'s MB/s per round, "algorithms": {server: (cipher, MAC)}}."""
    if shutil.which("sftp") is None:
        raise SystemExit("the OpenSSH sftp client is not installed: run `make test-servers`")

    from tests.isolation import isolated_home

    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="sftp-bench-", dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "id")], check=True)
        public_key = (work / "id.pub").read_text()
        options = (("-c", cipher) if cipher else ()) + (("-o", f"MACs={macs}") if macs else ())
        client = Client(work / "id", work, options)
        with isolated_home(work / "home") as home:
            from core import db
            from core.db import HOME_ACCOUNT
            from core.endpoints.mailbox import mailbox_root_for

            db.init_db()
            with tradelane_sftp(home) as server:
                port = server.port  # type: ignore[attr-defined]
                if only != "concurrent":
                    size = size_mib * MIB
                    src = work / "big.bin"
                    make_file(src, size)
                    add_partners(["bench"], public_key)
                    os.link(src, mailbox_root_for(HOME_ACCOUNT, "bench") / "download" / "big.bin")
                    sshd_dir = work / "sshd-files"
                    sshd_dir.mkdir()
                    os.link(src, sshd_dir / "big.bin")
                    (sshd_dir / "in").mkdir()
                    with openssh_sshd(work, public_key) as sshd_port:
                        ours = Target("tradelane", port, "bench", "/upload", "/download")
                        theirs = Target("sshd", sshd_port, "root", str(sshd_dir / "in"), str(sshd_dir))
                        figures["algorithms"] = {t.name: negotiated(client, t) for t in (ours, theirs)}
                        print(f"negotiated (cipher, MAC): {figures['algorithms']}")
                        figures["rates"] = throughput(client, ours, theirs, src, size, rounds)
                if only != "throughput":
                    concurrent(client, port, public_key, clients, files)
    return figures


if __name__ == "__main__":
    main()

"""REST upload against `cp` of the same file on the same disk (issue 17's row), one `tradelane up`.

    python -m bench.rest_upload                      # 1 GiB, 5 alternating rounds
    python -m bench.rest_upload --size-mib 64 --rounds 3

* anchor: `cp big.bin copy.bin && sync`, in the bench's temp dir (the `up`'s home is in the same
  temp folder, on the same disk);
* measured: `curl -T big.bin -X POST` to `/api/folders/<upload>/files` (streamed, the README's
  REST upload), timed to its answer, then `sync`: tradelane has already hashed the bytes, fsynced
  them and written the receipt before it answers, the sync only makes both sides end alike.
  Logging in (argon2) is done once, before, and not counted.
* rounds alternate cp, curl, cp, curl ... so both see the same machine; the ratio of each round is
  cp's time / curl's; the figure is the median round. The source is in the page cache for both.
* beside them, each round also sends the file to `bench.rest_sink`: the same HTTP stack (uvicorn,
  httptools, uvloop, tuned as `up` tunes it) discarding the body. Its MB/s is the ceiling for
  any REST upload here, before a byte is written or hashed; the last line prints ours against it.

No data flow takes the files (a delivery would compete for the 2 cores with the next round).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.servers import free_port, wait_until_listening
from tests.system import System, run_system

MIB = 1024 * 1024
PARTNER, PASSWORD = "benchrest", "Pw-bench-rest-1"


def write_file(path: Path, size: int) -> None:
    block = bytearray(os.urandom(4 * MIB))
    with path.open("wb") as out:
        for n in range(0, size, len(block)):
            block[:8] = n.to_bytes(8, "big")  # distinct blocks without paying for urandom each time
            out.write(block[: min(len(block), size - n)])
    subprocess.run(["sync"], check=True)


def upload_folder_id(system: System) -> tuple[str, str]:
    """The partner's bearer token and its `upload/` folder id, as the README's REST example gets them."""
    with httpx.Client(base_url=system.api, timeout=30) as http:
        answer = http.post(
            "/api/authentication", data={"grant_type": "password", "username": PARTNER, "password": PASSWORD}
        )
        answer.raise_for_status()
        token = answer.json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        home = http.get("/api/folders", headers=auth).json()["resources"][0]["id"]
        children = http.get(f"/api/folders/{home}/children", headers=auth).json()["resources"]
    return token, next(c["id"] for c in children if c.get("subspace") == "upload")


def timed(*cmd: str) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - began, done.stdout


def children_cpu() -> float:
    """User + system CPU seconds of the children this process waited for (cp, curl, sync)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (the `up` that serves the API)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_on(system: System, work: Path, size: int, rounds: int) -> dict[str, list[float]]:
    """Alternating rounds on a running `up`; seconds per round: {"cp": [...], "curl": [...]}."""
    system.cli("partner", "add", PARTNER, "--password", PASSWORD)
    source = work / "rest-big.bin"
    write_file(source, size)
    token, folder = upload_folder_id(system)
    seconds: dict[str, list[float]] = {"cp": [], "curl": [], "stack": []}
    cpu: dict[str, list[float]] = {"cp": [], "curl": [], "up": []}
    assert system.proc is not None
    with stack_sink(work) as sink:  # one for every round: it keeps nothing between requests
        for n in range(rounds):
            took, answer = timed("curl", "-sS", "-T", str(source), "-X", "POST", sink)
            if answer != str(size):
                raise RuntimeError(f"the stack's sink read {answer} bytes, not {size}")
            seconds["stack"].append(took)
            copy = work / "rest-copy.bin"
            before = children_cpu()
            took, _ = timed("cp", str(source), str(copy))
            cpu["cp"].append(children_cpu() - before)
            seconds["cp"].append(took)
            copy.unlink()
            before, up_before = children_cpu(), process_cpu(system.proc.pid)
            took, code = timed(
                "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(source), "-X", "POST",
                "-H", f"Authorization: Bearer {token}",
                "-H", f"Content-Disposition: attachment;filename=round-{n}.bin",
                "-H", "Content-Type: application/octet-stream", f"{system.api}/api/folders/{folder}/files",
            )  # fmt: skip
            cpu["curl"].append(children_cpu() - before)
            cpu["up"].append(process_cpu(system.proc.pid) - up_before)
            if not code.startswith("2"):
                raise RuntimeError(f"the REST upload answered {code}")
            seconds["curl"].append(took)
    source.unlink()
    ratios = [c / u for c, u in zip(seconds["cp"], seconds["curl"], strict=True)]
    print(
        f"REST upload {size // MIB} MiB, {rounds} alternating rounds: curl "
        f"{size / statistics.median(seconds['curl']) / 1e6:.0f} MB/s, cp "
        f"{size / statistics.median(seconds['cp']) / 1e6:.0f} MB/s; ratio per round "
        + " ".join(f"{r:.2f}" for r in ratios)
    )
    stack = size / statistics.median(seconds["stack"]) / 1e6
    ours = size / statistics.median(seconds["curl"]) / 1e6
    print(
        f"    the HTTP stack alone (uvicorn+httptools+uvloop discarding the body, bench.rest_sink): "
        f"{stack:.0f} MB/s, cp's {stack * statistics.median(seconds['cp']) * 1e6 / size:.2f}; ours is "
        f"{ours / stack:.2f} of it"
    )
    per_gb = {name: statistics.median(values) * 1e9 / size for name, values in cpu.items()}
    print(
        f"    CPU s per GB (median round): the up process {per_gb['up']:.2f}, curl (+sync) "
        f"{per_gb['curl']:.2f}, cp (+sync) {per_gb['cp']:.2f}; kernel writeback threads not counted"
    )
    return seconds


@contextlib.contextmanager
def stack_sink(work: Path) -> Iterator[str]:
    """bench.rest_sink running on a free port (its output in `work`): its URL."""
    port = free_port()
    log = work / "rest-sink.log"
    with log.open("wb") as out:
        sink = subprocess.Popen(
            [sys.executable, "-m", "bench.rest_sink", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_listening("bench.rest_sink", port, sink, log)
        yield f"http://127.0.0.1:{port}/"
    finally:
        sink.terminate()
        sink.wait(10)


def measure(size_mib: int, rounds: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="bench-rest-") as tmp, run_system() as system:
        return measure_on(system, Path(tmp), size_mib * MIB, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    measure(args.size_mib, args.rounds)


if __name__ == "__main__":
    main()

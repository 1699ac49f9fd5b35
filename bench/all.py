"""Every issue-17 benchmark in one run, then one table: each path's figure beside its anchor measured
in the same run, the ratio, the goal, met or not, and how close the figure is to the machine's
physical limit for that path (bench.limits, also measured in this run).

    python -m bench.all             # full sizes (`make bench`): the `FULL` sizes below
    python -m bench.all --quick     # small sizes, a check in a few minutes (`make bench QUICK=1`)
    python -m bench.all --only sftp,ftp
    python -m bench.all --only sftp --sftp-cipher aes128-ctr --sftp-macs hmac-sha2-256-etm@openssh.com

Each benchmark runs in a fresh process (they set TRADELANE_HOME and the settings cache, and start
servers), one after another; one that fails gets a row saying so and the others still run.
Ratios over several alternating rounds are the median round; for SFTP the goal also needs every
round at 0.9 or more. "limit" is the slowest of the physical limits that bound the path (disk
write with fdatasync, SHA-256 on one core, loopback TCP, the SSH cipher+MAC on one core) and the
share of it the figure reaches; a path with no byte-rate limit says "-".

With its defaults the OpenSSH client agrees on chacha20-poly1305 with sshd but on aes128-ctr with
hmac-sha2-256-etm with tradelane (paramiko has neither chacha20 nor umac): the run prints what was
negotiated and both pairs' `openssl speed`; --sftp-cipher/--sftp-macs make both servers use the same.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import multiprocessing
import os
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Goal:
    """What a row must reach: its ratio (`on="ratio"`) or its figure (`on="figure"`) `op` `value`;
    `floor`: every round's ratio at least this too."""

    on: str
    op: str
    value: float
    floor: float | None = None

    def met(self, figure: float, ratio: float | None, rounds: Sequence[float] = ()) -> bool:
        subject = ratio if self.on == "ratio" else figure
        if subject is None:
            return False
        ok = subject >= self.value if self.op == ">=" else subject <= self.value
        if self.floor is not None and rounds:
            ok = ok and min(rounds) >= self.floor
        return ok

    def __str__(self) -> str:
        sign = {">=": "≥", "<=": "≤"}[self.op]
        text = f"{'ratio ' if self.on == 'ratio' else ''}{sign} {self.value:g}"
        if self.floor is not None:
            text += f", no round < {self.floor:g}"
        return text


@dataclass(frozen=True)
class Limit:
    """The physical limit bounding a path: MB/s and what it is."""

    rate: float
    what: str


@dataclass
class Row:
    path: str
    figure: float | None
    unit: str
    goal: Goal
    anchor: float | None = None
    anchor_name: str = ""
    rounds: list[float] = field(default_factory=list)  # per-round ratios, when there are rounds
    limit: Limit | None = None
    error: str = ""
    bounds: tuple[str, ...] = ()  # the limits' names `limit` is the slowest of

    def bound_by(self, limits: dict[str, float], *names: str) -> Row:
        self.bounds = names
        self.limit = slowest(limits, *names)
        return self

    @property
    def ratio(self) -> float | None:
        if self.rounds:
            return statistics.median(self.rounds)
        if self.figure is not None and self.anchor:
            return self.figure / self.anchor
        return None

    @property
    def met(self) -> bool:
        return self.figure is not None and self.goal.met(self.figure, self.ratio, self.rounds)

    @property
    def share_of_limit(self) -> float | None:
        if self.limit is None or self.figure is None or self.unit != "MB/s":
            return None
        return self.figure / self.limit.rate


def best_of(*measured: dict[str, float]) -> dict[str, float]:
    """Each limit at its best over several measurements: a busy moment lowers a limit, nothing
    raises it, so the highest is the nearest to the machine's."""
    best: dict[str, float] = {}
    for figures in measured:
        for name, rate in figures.items():
            best[name] = max(best.get(name, 0.0), rate)
    return best


def per_round_ratios(ours: Sequence[float], anchor: Sequence[float], *, seconds: bool = False) -> list[float]:
    """Ratio of each round, ours to the anchor's round beside it: rates (bigger is better) divide
    ours by the anchor; times (`seconds`) divide the anchor's by ours."""
    pairs = zip(ours, anchor, strict=True)
    return [a / o if seconds else o / a for o, a in pairs]


def slowest(limits: dict[str, float], *names: str) -> Limit | None:
    known = [(limits[n], n) for n in names if limits.get(n)]
    if not known:
        return None
    rate, name = min(known)
    return Limit(rate, name)


# --- figures → rows: pure, so the table logic is tested without timing anything ------------------


def sftp_rows(figures: dict[str, Any], limits: dict[str, float]) -> list[Row]:
    rates = figures["rates"]
    rows = []
    for direction, bounds in (
        ("upload", ("disk_write", "loopback", "ssh_cipher_mac")),
        ("download", ("loopback", "ssh_cipher_mac")),
    ):
        ours, sshd = rates[direction]["tradelane"], rates[direction]["sshd"]
        rows.append(
            Row(
                path=f"SFTP mailbox {direction} vs OpenSSH sshd",
                figure=statistics.median(ours),
                unit="MB/s",
                anchor=statistics.median(sshd),
                anchor_name="sshd",
                rounds=per_round_ratios(ours, sshd),
                goal=Goal("ratio", ">=", 1.0, floor=0.9 if direction == "upload" else None),
            ).bound_by(limits, *bounds)
        )
    return rows


def ftp_rows(samples: dict[tuple[str, str], list[float]], limits: dict[str, float]) -> list[Row]:
    """FTP against the bare server and FTPS against the bare server's own FTPS (the issue's rows:
    each protocol against the best plain tool for it), and FTP against pyftpdlib doing the same
    work (SHA-256 and fsync before the 226): what is left when the disk's share is equal."""
    from bench.ftp_bench import BARE, BARE_TLS, OURS, OURS_TLS, SAME_WORK

    def row(path: str, ours: str, anchor: str, anchor_name: str) -> Row:
        return Row(
            path=path,
            figure=statistics.median(samples[(ours, "upload")]),
            unit="MB/s",
            anchor=statistics.median(samples[(anchor, "upload")]),
            anchor_name=anchor_name,
            rounds=per_round_ratios(samples[(ours, "upload")], samples[(anchor, "upload")]),
            goal=Goal("ratio", ">=", 0.95),
        ).bound_by(limits, "disk_write", "sha256", "loopback")

    return [
        row("FTP mailbox upload vs bare pyftpdlib", OURS, BARE, "pyftpdlib"),
        row("FTPS mailbox upload vs bare pyftpdlib FTPS", OURS_TLS, BARE_TLS, "pyftpdlib FTPS"),
        row("FTP mailbox upload vs pyftpdlib + SHA-256 + fsync", OURS, SAME_WORK, "same work"),
    ]


def skeleton_rows(figures: dict[str, Any], limits: dict[str, float], rest_bytes: int) -> list[Row]:
    rest, latency, burst = figures["rest"], figures["latency"], figures["burst"]
    return [
        Row(
            path="REST upload vs cp on the same disk",
            figure=rest_bytes / statistics.median(rest["curl"]) / 1e6,
            unit="MB/s",
            anchor=rest_bytes / statistics.median(rest["cp"]) / 1e6,
            anchor_name="cp",
            rounds=per_round_ratios(rest["curl"], rest["cp"], seconds=True),
            goal=Goal("ratio", ">=", 0.8),
        ).bound_by(limits, "disk_write", "sha256", "loopback"),
        Row("upload → delivered latency p50", latency["p50"], "s", Goal("figure", "<=", 0.5)),
        Row("upload → delivered latency p95", latency["p95"], "s", Goal("figure", "<=", 1.0)),
        Row(
            "burst 2 KiB files, 10 clients, end to end",
            burst["files_per_s"],
            "files/s",
            Goal("figure", ">=", 200),
        ),
    ]


def flow_push_rows(figures: dict[str, dict[str, float]], limits: dict[str, float], size: int) -> list[Row]:
    s3 = figures["to-s3"]
    return [
        Row(
            path="S3 push through a data flow vs boto3 upload_file",
            figure=size / s3["push"] / 1e6,
            unit="MB/s",
            anchor=size / s3["quiet"] / 1e6,
            anchor_name="boto3",
            goal=Goal("ratio", ">=", 0.95),
        ).bound_by(limits, "loopback")
    ]


def as2_rows(figures: dict[str, float]) -> list[Row]:
    return [
        Row(
            "AS2 receive, 10 KiB signed+encrypted, sync MDN",
            figures["receive_per_s"],
            "msg/s",
            Goal("figure", ">=", 100),
        ),
        Row(
            "AS2 receive memory per MB of payload",
            figures["receive_memory_ratio"],
            "×",
            Goal("figure", "<=", 3),
        ),
        Row("AS2 send memory per MB of payload", figures["send_memory_ratio"], "×", Goal("figure", "<=", 3)),
    ]


# --- the table --------------------------------------------------------------------------------------


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:.{digits}f}{' ' + unit if unit else ''}"


def goal_text(row: Row) -> str:
    return f"{row.goal} {row.unit}" if row.goal.on == "figure" else str(row.goal)


def table(rows: Sequence[Row]) -> str:
    """One Markdown table of every row (pasteable into the issue)."""
    header = ["path", "figure", "anchor", "ratio (rounds)", "goal", "met", "limit (share)"]
    lines = [header]
    for row in rows:
        if row.error:
            lines.append([row.path, "failed", "-", "-", goal_text(row), "not met", row.error[:70]])
            continue
        rounds = f" ({' '.join(f'{r:.2f}' for r in row.rounds)})" if len(row.rounds) > 1 else ""
        anchor = f"{row.anchor_name} {_num(row.anchor, row.unit)}" if row.anchor is not None else "-"
        share = row.share_of_limit
        limit = (
            f"{row.limit.what} {_num(row.limit.rate, 'MB/s')} ({share:.0%})" if row.limit and share else "-"
        )
        lines.append(
            [row.path, _num(row.figure, row.unit), anchor, _num(row.ratio) + rounds, goal_text(row),
             "met" if row.met else "not met", limit]
        )  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"
        for line in lines
    ]
    out.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(out)


def limits_lines(limits: dict[str, float], algorithms: dict[str, tuple[str, str]] | None) -> list[str]:
    lines = [f"  {name:12} {rate:8.0f} MB/s" for name, rate in limits.items() if rate]
    if algorithms:
        lines += [
            f"  SSH negotiated with {server}: cipher {c}, MAC {m}" for server, (c, m) in algorithms.items()
        ]
    return lines


# --- the run ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    sftp_mib: int
    sftp_rounds: int
    ftp_mib: int
    ftp_rounds: int
    rest_mib: int
    rest_rounds: int
    latency_n: int
    burst_files: int
    burst_clients: int
    push_mib: int
    as2_messages: int
    as2_big_mib: int
    sftp_cipher: str | None = None  # both SFTP servers forced to this cipher (sftp -c); None: defaults
    sftp_macs: str | None = None  # and to this MAC (sftp -o MACs=)


FULL = Sizes(256, 5, 512, 3, 1024, 5, 50, 1000, 10, 1024, 200, 50)
QUICK = Sizes(64, 3, 64, 2, 64, 3, 5, 100, 10, 64, 30, 8)
BENCHMARKS = ("limits", "sftp", "ftp", "skeleton", "push", "as2")


def _limits(quick: bool) -> dict[str, float]:
    from bench import limits

    return limits.measure(quick=quick)


def _ssh(cipher: str, mac: str) -> dict[str, float | None]:
    from bench import limits

    return limits.ssh_crypto(cipher, mac)


def _sftp(s: Sizes) -> dict[str, Any]:
    from bench import sftp_bench

    return sftp_bench.measure(s.sftp_mib, s.sftp_rounds, s.sftp_cipher, macs=s.sftp_macs)


def _ftp(s: Sizes) -> dict[tuple[str, str], list[float]]:
    from bench import ftp_bench

    return ftp_bench.measure(s.ftp_mib, s.ftp_rounds)


def _skeleton(s: Sizes) -> dict[str, Any]:
    from bench import skeleton

    return skeleton.measure(s.latency_n, s.burst_files, s.burst_clients, s.rest_mib, s.rest_rounds)


def _push(s: Sizes) -> dict[str, dict[str, float]]:
    from bench import flow_push_bench

    return flow_push_bench.measure(s.push_mib, azure=False)


def _as2(s: Sizes) -> dict[str, float]:
    from bench import as2_bench

    return as2_bench.measure(s.as2_messages, s.as2_big_mib)


class BenchmarkFailed(RuntimeError):
    """A benchmark's exception, as text: not every exception survives pickling back (httpx's don't)."""


def _call(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except Exception as exc:
        traceback.print_exc()
        raise BenchmarkFailed(f"{type(exc).__name__}: {exc}") from None


def in_child(function: Callable[..., Any], *args: Any) -> Any:
    """Run a benchmark in a fresh process (its own environment, settings cache and servers)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_call, function, *args).result()


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def run(sizes: Sizes, only: Sequence[str], quick: bool) -> list[Row]:
    rows: list[Row] = []
    limits: dict[str, float] = {}
    algorithms: dict[str, tuple[str, str]] | None = None

    def attempt(name: str, placeholder: list[Row], body: Callable[[], list[Row]]) -> None:
        print(f"\n=== {name} ({load()}) ===", flush=True)
        began = time.perf_counter()
        try:
            rows.extend(body())
        except Exception as exc:  # one failing benchmark must not hide the others' figures
            traceback.print_exc()
            for row in placeholder:
                row.error = f"{type(exc).__name__}: {exc}"[:120]
            rows.extend(placeholder)
        print(f"=== {name} took {time.perf_counter() - began:.0f} s ===", flush=True)

    def measure_limits() -> dict[str, float]:
        print(f"\n=== physical limits ({load()}) ===", flush=True)
        try:
            measured: dict[str, float] = in_child(_limits, quick)
        except Exception:  # the rows still come, without their limit
            traceback.print_exc()
            return {}
        print("  " + ", ".join(f"{name} {rate:.0f} MB/s" for name, rate in measured.items()))
        return measured

    if "limits" in only:
        limits.update(measure_limits())
    if "sftp" in only:

        def sftp() -> list[Row]:
            nonlocal algorithms
            figures = in_child(_sftp, sizes)
            algorithms = figures["algorithms"]
            cipher, mac = figures["algorithms"]["tradelane"]
            limits["ssh_cipher_mac"] = in_child(_ssh, cipher, mac)["both"] or 0.0
            # sshd may have agreed on another cipher with the same client (chacha20-poly1305):
            # its figure, for comparison only (not a limit of tradelane's path).
            cipher, mac = figures["algorithms"]["sshd"]
            limits["sshd_cipher_mac"] = in_child(_ssh, cipher, mac)["both"] or 0.0
            return sftp_rows(figures, limits)

        placeholder = [
            Row(f"SFTP mailbox {d} vs OpenSSH sshd", None, "MB/s", Goal("ratio", ">=", 1.0))
            for d in ("upload", "download")
        ]
        attempt("SFTP", placeholder, sftp)
    if "ftp" in only:
        placeholder = [
            Row(f"{p} mailbox upload vs bare pyftpdlib", None, "MB/s", Goal("ratio", ">=", 0.95))
            for p in ("FTP", "FTPS")
        ]
        attempt("FTP", placeholder, lambda: ftp_rows(in_child(_ftp, sizes), limits))
    if "skeleton" in only:
        placeholder = [Row("REST upload vs cp on the same disk", None, "MB/s", Goal("ratio", ">=", 0.8))]
        attempt(
            "REST, latency, burst",
            placeholder,
            lambda: skeleton_rows(in_child(_skeleton, sizes), limits, sizes.rest_mib * MIB),
        )
    if "push" in only:
        placeholder = [
            Row("S3 push through a data flow vs boto3 upload_file", None, "MB/s", Goal("ratio", ">=", 0.95))
        ]
        attempt(
            "S3 push",
            placeholder,
            lambda: flow_push_rows(in_child(_push, sizes), limits, sizes.push_mib * MIB),
        )
    if "as2" in only:
        placeholder = [
            Row("AS2 receive, 10 KiB signed+encrypted, sync MDN", None, "msg/s", Goal("figure", ">=", 100))
        ]
        attempt("AS2", placeholder, lambda: as2_rows(in_child(_as2, sizes)))

    if "limits" in only:  # again at the end: each limit at its best of the two
        limits.update(best_of(limits, measure_limits()))
        for row in rows:
            if row.bounds:
                row.bound_by(limits, *row.bounds)
    sized = "quick" if quick else "full"
    print(f"\n\nPhysical limits, the best of two measurements in this run ({sized} sizes):")
    print("\n".join(limits_lines(limits, algorithms)))
    print(f"\n{sizes}\n")
    print(table(rows))
    print(f"\n{load()} at the end")
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sftp-cipher", help="both SFTP servers use this cipher (sftp -c), e.g. aes128-ctr")
    parser.add_argument("--sftp-macs", help="both SFTP servers use this MAC (sftp -o MACs=)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a check, not a measurement")
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma-separated, of {','.join(BENCHMARKS)}"
    )
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    sizes = dataclasses.replace(
        QUICK if args.quick else FULL, sftp_cipher=args.sftp_cipher, sftp_macs=args.sftp_macs
    )
    run(sizes, only, args.quick)


if __name__ == "__main__":
    main()

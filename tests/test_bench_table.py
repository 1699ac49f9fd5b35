"""`bench.all`'s table: the figures each benchmark returns become rows with the right ratio, goal
verdict and share of the physical limit. Pure logic on made-up figures: nothing is timed here."""

from __future__ import annotations

import pytest

from bench import all as bench_all
from bench.all import Goal, Limit, Row, table
from bench.ftp_bench import BARE, BARE_TLS, OURS, OURS_TLS, SAME_WORK
from bench.limits import parse_dd, parse_openssl_speed
from bench.sftp_bench import parse_kex

LIMITS = {"disk_write": 800.0, "sha256": 1600.0, "loopback": 3000.0, "ssh_cipher_mac": 1400.0}


def test_sftp_rows_take_the_median_round_and_need_every_upload_round_at_0_9() -> None:
    figures = {
        "rates": {
            # upload: ratios 1.1, 0.85, 1.2 → median 1.1 but one round under 0.9: not met
            "upload": {"tradelane": [110.0, 85.0, 120.0], "sshd": [100.0, 100.0, 100.0]},
            "download": {"tradelane": [200.0, 210.0, 190.0], "sshd": [200.0, 200.0, 200.0]},
        },
        "algorithms": {"tradelane": ("aes128-ctr", "hmac-sha2-256"), "sshd": ("aes128-ctr", "hmac-sha2-256")},
    }
    upload, download = bench_all.sftp_rows(figures, LIMITS)
    assert upload.rounds == pytest.approx([1.1, 0.85, 1.2])
    assert upload.ratio == pytest.approx(1.1)
    assert upload.figure == 110.0 and upload.anchor == 100.0
    assert not upload.met
    assert upload.limit == Limit(800.0, "disk_write")  # the slowest of disk, loopback, cipher+MAC
    assert upload.share_of_limit == pytest.approx(110 / 800)
    assert download.ratio == pytest.approx(1.0) and download.met
    assert download.limit == Limit(1400.0, "ssh_cipher_mac")  # a download writes nothing to disk


def test_ftp_rows_compare_plain_and_tls_uploads_with_the_bare_server_round_by_round() -> None:
    samples = {
        (BARE, "upload"): [400.0, 500.0],
        (BARE_TLS, "upload"): [250.0, 500.0],
        (SAME_WORK, "upload"): [300.0, 300.0],
        (OURS, "upload"): [380.0, 490.0],
        (OURS_TLS, "upload"): [200.0, 250.0],
        (BARE, "download"): [900.0, 900.0],
    }
    ftp, ftps, same_work = bench_all.ftp_rows(samples, LIMITS)
    assert ftp.rounds == pytest.approx([0.95, 0.98]) and ftp.met
    assert ftps.rounds == pytest.approx([0.8, 0.5]) and not ftps.met  # against pyftpdlib's own FTPS
    assert ftps.anchor == pytest.approx(375.0) and ftps.ratio == pytest.approx(0.65)
    assert same_work.rounds == pytest.approx([380 / 300, 490 / 300]) and same_work.anchor == 300.0
    assert ftp.limit == Limit(800.0, "disk_write")


def test_rest_rounds_are_times_so_the_anchor_divides_ours() -> None:
    figures = {
        "rest": {"cp": [1.0, 1.0, 2.0], "curl": [2.0, 1.25, 2.0]},  # ratios 0.5, 0.8, 1.0
        "latency": {"p50": 0.4, "p95": 1.2, "max": 2.0},
        "burst": {"files_per_s": 250.0},
    }
    rest, p50, p95, burst = bench_all.skeleton_rows(figures, LIMITS, rest_bytes=10**9)
    assert rest.rounds == pytest.approx([0.5, 0.8, 1.0])
    assert rest.ratio == pytest.approx(0.8) and rest.met  # goal ≥ 0.8 on the median round
    assert rest.figure == pytest.approx(1000 / 2)  # MB/s at curl's median time
    assert p50.met and not p95.met  # ≤ 0.5 s met, ≤ 1.0 s missed
    assert burst.met and burst.ratio is None and burst.share_of_limit is None


def test_s3_push_ratio_is_the_sdk_time_over_the_flow_push_time() -> None:
    [row] = bench_all.flow_push_rows({"to-s3": {"push": 4.0, "quiet": 2.0, "busy": 3.0}}, LIMITS, 10**9)
    assert row.ratio == pytest.approx(0.5) and not row.met
    assert row.limit == Limit(3000.0, "loopback")


def test_as2_rows_goals_are_absolute() -> None:
    figures = {
        "receive_per_s": 120.0,
        "send_per_s": 50.0,
        "receive_memory_ratio": 17.0,
        "send_memory_ratio": 2.0,
    }
    receive, receive_memory, send_memory = bench_all.as2_rows(figures)
    assert receive.met and not receive_memory.met and send_memory.met
    assert receive.ratio is None


def test_the_table_has_one_line_per_row_with_verdicts_and_failures() -> None:
    rows = [
        Row(
            "fast path",
            90.0,
            "MB/s",
            Goal("ratio", ">=", 0.95),
            anchor=100.0,
            anchor_name="tool",
            rounds=[0.9, 0.9],
            limit=Limit(900.0, "disk_write"),
        ),
        Row("latency", 0.3, "s", Goal("figure", "<=", 0.5)),
        Row("broken path", None, "MB/s", Goal("ratio", ">=", 1.0), error="RuntimeError: sshd exited"),
    ]
    lines = table(rows).splitlines()
    assert len(lines) == 2 + len(rows)  # header, rule, rows
    assert len({len(line) for line in lines}) == 1  # aligned columns
    fast, latency, broken = lines[2:]
    assert (
        "not met" in fast and "0.90 (0.90 0.90)" in fast and "tool 100 MB/s" in fast and "90.0 MB/s" in fast
    )
    assert "disk_write 900 MB/s (10%)" in fast and "ratio ≥ 0.95" in fast
    assert "| met" in latency and "≤ 0.5 s" in latency
    assert "failed" in broken and "sshd exited" in broken and "not met" in broken


def test_the_goal_floor_applies_only_with_rounds() -> None:
    goal = Goal("ratio", ">=", 1.0, floor=0.9)
    assert goal.met(100.0, 1.0, [1.0, 1.1, 0.95])
    assert not goal.met(100.0, 1.05, [1.1, 1.05, 0.89])
    assert goal.met(100.0, 1.0)
    assert str(goal) == "ratio ≥ 1, no round < 0.9"


def test_the_parsers_read_what_dd_openssl_and_ssh_print() -> None:
    dd = "256+0 records in\n256+0 records out\n268435456 bytes (268 MB, 256 MiB) copied, 0.5 s, 537 MB/s\n"
    assert parse_dd(dd) == pytest.approx(268435456 / 0.5 / 1e6)
    speed = (
        "The 'numbers' are in 1000s of bytes per second processed.\n"
        "type  16384 bytes\nAES-128-CTR  9330011.27k\n"
    )
    assert parse_openssl_speed(speed) == pytest.approx(9330.01127)
    kex = (
        "debug1: kex: algorithm: curve25519-sha256\n"
        "debug1: kex: client->server cipher: aes128-ctr MAC: hmac-sha2-256 compression: none\n"
    )
    assert parse_kex(kex) == ("aes128-ctr", "hmac-sha2-256")


def test_make_bench_runs_them_all_and_quick_1_the_small_sizes() -> None:
    """The README's `make bench` / `make bench QUICK=1` (dry run: nothing is measured)."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    make = shutil.which("make")
    assert make, "make is needed: it is how the README runs the benchmarks"

    # Under `make test` this is a sub-make: without the parent's flags, and not saying its directory.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}

    def recipe(*args: str) -> list[str]:
        root = Path(__file__).resolve().parent.parent
        done = subprocess.run(
            [make, "-n", "--no-print-directory", "-o", ".venv/.installed-stamp", *args],
            cwd=root, env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return done.stdout.split()

    assert recipe("bench")[-2:] == ["-m", "bench.all"]
    assert recipe("bench", "QUICK=1")[-3:] == ["-m", "bench.all", "--quick"]
    assert recipe("bench-quick")[-3:] == ["-m", "bench.all", "--quick"]


def test_limits_measured_twice_keep_each_best_and_rows_take_the_final_limit() -> None:
    before = {"disk_write": 300.0, "sha256": 1600.0, "loopback": 3000.0}
    after = {"disk_write": 900.0, "sha256": 1200.0}  # loopback not measured the second time
    best = bench_all.best_of(before, after)
    assert best == {"disk_write": 900.0, "sha256": 1600.0, "loopback": 3000.0}
    figures = {"to-s3": {"push": 1.0, "quiet": 1.0, "busy": 1.0}}
    [row] = bench_all.flow_push_rows(figures, {"disk_write": 300.0}, 10**9)
    assert row.limit is None  # no loopback figure yet
    row.bound_by(best, *row.bounds)
    assert row.limit == Limit(3000.0, "loopback")

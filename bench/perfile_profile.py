"""The per-file work of a transfer flow run, in-process and without Prefect: deterministic counts.

    python -m bench.perfile_profile [FILES] [--top N] [--warm]     # PERFILE_DUMP=DIR: .prof files

Sets up a partner, a `file` endpoint and a data flow in a throwaway TRADELANE_HOME (through the
CLI, as `bench.skeleton burst` does), takes FILES × 2 KiB uploads in through the one intake path,
then runs the flow run's per-file steps for the whole batch the way flows/transfer.py does:
start_run, count_attempts, push (each file), record_outcomes. Each step is run under cProfile;
what it prints (function calls, and CPU seconds per file) depends on the code, not on how busy
the machine is, so two revisions can be compared with the same script. Only core/ is used, and
only what every revision since issue 2 has, so the script runs unchanged against older commits.

By default the steps run in a new process that has only imported flows.transfer, as a flow run
forked from the runner's fork server has (deployments/worker.py): what each run pays once (lazy
imports, caches, the database engine, the secret key) is counted, as a burst of runs pays it.
`--warm` runs them in the process that took the files in, after a warm-up batch.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cli(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, check=True, capture_output=True)


class StoreCounts:
    """SQL statements and transactions (commits) the store's engine saw: deterministic like the calls."""

    statements = 0
    commits = 0

    @classmethod
    def install(cls) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        def statement(*_: Any) -> None:
            cls.statements += 1

        def commit(*_: Any) -> None:
            cls.commits += 1

        event.listen(Engine, "before_cursor_execute", statement)
        event.listen(Engine, "commit", commit)


def profiled(label: str, fn: Callable[[], Any], files: int, top: int) -> Any:
    profile = cProfile.Profile()
    statements, commits = StoreCounts.statements, StoreCounts.commits
    cpu0 = time.process_time()
    profile.enable()
    result = fn()
    profile.disable()
    cpu = time.process_time() - cpu0
    statements, commits = StoreCounts.statements - statements, StoreCounts.commits - commits
    stats = pstats.Stats(profile)
    calls = stats.total_calls  # type: ignore[attr-defined]
    print(
        f"{label:16} {calls:>9} calls ({calls / files:8.0f}/file)  cpu {cpu * 1000 / files:7.2f} ms/file"
        f"  store: {statements / files:5.2f} statements, {commits / files:5.2f} commits /file"
    )
    if dump := os.environ.get("PERFILE_DUMP"):  # a directory: each step's profile, for pstats
        profile.dump_stats(f"{dump}/{label}.prof")
    if top:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(top)
        print(out.getvalue())
    return result


def run_steps(ids: list[int], files: int, top: int) -> None:
    """The flow run's per-file steps for the batch `ids`, each profiled."""
    from core import delivery

    jobs = profiled("start", lambda: delivery.start(ids), files, top)
    profiled("count_attempts", lambda: delivery.count_attempts(ids), files, top)
    outcomes = profiled(
        "push",
        lambda: [delivery.Outcome.delivered(job, delivery.push(job)) for job in jobs],
        files,
        top,
    )
    profiled("record_outcomes", lambda: delivery.record_outcomes(outcomes), files, top)


def cold(argv: list[str]) -> None:
    """`--cold TOP ID...`: in a fresh process, import what the fork server preloads, then run the steps."""
    top, ids = int(argv[0]), [int(a) for a in argv[1:]]
    StoreCounts.install()
    cpu0 = time.process_time()
    import flows.transfer  # noqa: F401  (the fork server's preload)

    print(f"(fresh process: preload took {time.process_time() - cpu0:.2f} s CPU, not counted below)")
    preloaded = set(sys.modules)
    run_steps(ids, len(ids), top)
    imported = sorted(set(sys.modules) - preloaded)
    print(f"modules imported by the steps, not by the preload: {len(imported)}")
    if top:
        print("  " + " ".join(imported))


def main(argv: list[str]) -> None:
    files = int(argv[0]) if argv and argv[0].isdigit() else 30
    top = int(argv[argv.index("--top") + 1]) if "--top" in argv else 0
    home = Path(tempfile.mkdtemp(prefix="tradelane-perfile-"))
    StoreCounts.install()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TRADELANE_"))}
    env["TRADELANE_HOME"] = str(home)
    os.environ.update(TRADELANE_HOME=str(home))
    cli(env, "partner", "add", "burst", "--password", "perfile-Pass-1")
    cli(env, "endpoint", "add", "burst-dir", "--type", "file", "--path", str(home / "dest"))
    cli(env, "flow", "add", "burst-flow", "--source", "mailbox:burst", "--dest", "burst-dir")

    from sqlmodel import col, select

    from core import delivery, intake
    from core.db import session_scope
    from core.models import Partner, Transfer

    with session_scope() as session:
        partner = session.exec(select(Partner).where(Partner.name == "burst")).one()
        session.expunge(partner)
    body = os.urandom(2048)

    def take_in() -> None:
        for i in range(files):
            intake.receive_stream(partner, "upload", f"f{i:05}.bin", io.BytesIO(body), protocol="rest")

    # A warm-up file first: a flow run's process has its modules imported (the fork server).
    intake.receive_stream(partner, "upload", "warmup.bin", io.BytesIO(body), protocol="rest")
    with session_scope() as session:
        warm = [t.id for t in session.exec(select(Transfer).order_by(col(Transfer.id))).all()]
    jobs = delivery.start(warm)  # type: ignore[arg-type]
    delivery.count_attempts(warm)  # type: ignore[arg-type]
    delivery.record_outcomes([delivery.Outcome.delivered(j, delivery.push(j)) for j in jobs])

    print(f"{files} files of 2 KiB, one batch")
    profiled("intake", take_in, files, top)
    with session_scope() as session:
        ids = [t.id for t in session.exec(select(Transfer).where(col(Transfer.id).not_in(warm))).all()]
    assert len(ids) == files, ids
    if "--warm" in argv:
        run_steps(ids, files, top)  # type: ignore[arg-type]
    else:
        here = str(Path(__file__).resolve())
        args = [sys.executable, here, "--cold", str(top), *map(str, ids)]
        subprocess.run(args, env={**env, "PYTHONPATH": os.getcwd()}, check=True)
    delivered = sum(1 for p in (home / "dest").glob("f*.bin") if p.read_bytes() == body)
    print(f"delivered {delivered} of {files}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--cold"]:
        cold(sys.argv[2:])
    else:
        main(sys.argv[1:])

"""The statements PostgreSQL receives per file, by role, in the separated topology (issue 15).

    python -m bench.statements [FILES]     # a burst of FILES (default 200) × 2 KiB REST uploads

The topology of bench/scaleout.py with one worker, each role's connections named after it
(PGAPPNAME, tests/roles/topology.py); the Prefect server's (asyncpg, which does not read PGAPPNAME)
are told by their database. PostgreSQL logs every statement during the burst (`log_statement=all`):
BEGIN, COMMIT, ROLLBACK and pings included, as each is a round trip. Counts, not times: the
figures do not depend on the machine's load.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine, text

from bench import scaleout
from tests.e2e.helpers import PartnerClient
from tests.roles.topology import run_topology
from tests.system import run_postgres

LINE = re.compile(r"@@([^|]*)\|([^|]*)\|LOG:  (?:statement|execute [^:]*): ([^\n]{0,80})")


def statements_by_role(log: str) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Statements by role, and by (role, statement with its literals and parameters elided)."""
    by_role: Counter[str] = Counter()
    by_text: Counter[tuple[str, str]] = Counter()
    for match in LINE.finditer(log):
        app, database, statement = match.groups()
        named = app not in ("", "[unknown]")  # PostgreSQL says [unknown] for no name
        role = app if named else ("prefect server" if database.startswith("prefect") else "other")
        by_role[role] += 1
        by_text[(role, re.sub(r"\$\d+|'[^']*'|\d+", "?", statement).strip())] += 1
    return by_role, by_text


def main() -> None:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with run_postgres() as url, run_topology(url, workers=["worker-1"]) as topology:
        dest = topology.root / "out"
        partner, _flow = scaleout.setup(topology, "s", dest)
        with PartnerClient(topology.system, partner, scaleout.PASSWORD) as client:  # a warm-up file
            assert client.upload("warm.bin", scaleout.BODY).status_code == 201
        scaleout.wait_delivered(dest, 1)
        time.sleep(3)  # the warm-up's run ends
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            data = Path(connection.execute(text("SHOW data_directory")).scalar_one())
            connection.execute(text("ALTER SYSTEM SET log_statement = 'all'"))
            connection.execute(text("ALTER SYSTEM SET log_line_prefix = '@@%a|%d|'"))
            connection.execute(text("SELECT pg_reload_conf()"))
        log = data.parent / "log"  # where tests/system.py's run_postgres has the server log
        time.sleep(1)
        start = log.stat().st_size
        scaleout.burst(topology, partner, dest, files)
        time.sleep(3)  # the last run's records and events
        with admin.connect() as connection:
            connection.execute(text("ALTER SYSTEM RESET log_statement"))
            connection.execute(text("SELECT pg_reload_conf()"))
        admin.dispose()
        with log.open("rb") as read:
            read.seek(start)
            by_role, by_text = statements_by_role(read.read().decode(errors="replace"))
    print(f"statements PostgreSQL received per file, a burst of {files}:")
    for role, count in by_role.most_common():
        print(f"  {role:16} {count / files:5.1f}")
        for (of, statement), n in by_text.most_common():
            if of == role and n / files >= 0.2:
                print(f"      {n / files:5.2f}  {statement}")


if __name__ == "__main__":
    main()

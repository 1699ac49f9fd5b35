"""A flow run forked from the fork server does not import the main module of the process that
started it again (multiprocessing's default: `deployments.serve` under `up`, the `tradelane`
script and all of cli/ under `tradelane worker`, ~0.13-0.18 s of CPU per run): it needs only what
the fork server preloaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def in_a_forked_run(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    """`script` run as a flow run forked from a fork server (tests/forkserver_probe.py)."""
    path = tmp_path / "check.py"
    path.write_text(script)
    return subprocess.run(
        [sys.executable, "-m", "tests.forkserver_probe", str(path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_forked_run_does_not_import_the_parents_main_module(tmp_path: Path) -> None:
    done = in_a_forked_run(
        tmp_path,
        "import sys\n"
        "main = sys.modules['__main__']\n"
        "sys.exit(3 if getattr(main.__spec__, 'name', None) == 'tests.forkserver_probe' else 0)\n",
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])


def test_a_forked_run_starts_with_prefects_tls_contexts_shared(tmp_path: Path) -> None:
    """deployments/prefect_tls.py is preloaded: no run reads the CA bundle for each Prefect client."""
    done = in_a_forked_run(
        tmp_path,
        "import sys\n"
        "orchestration = sys.modules.get('prefect.client.orchestration')\n"
        "shared = type(getattr(orchestration, 'ssl', None)).__name__ == 'SharedContexts'\n"
        "sys.exit(0 if shared else 4)\n",
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])


def test_a_forked_run_finds_the_tls_context_made(tmp_path: Path) -> None:
    """The fork server made the context Prefect's clients ask for: no run reads the CA bundle."""
    done = in_a_forked_run(
        tmp_path,
        "import sys, certifi\n"
        "from prefect.settings import PREFECT_API_SSL_CERT_FILE\n"
        "from deployments.prefect_tls import SharedContexts\n"
        "made = SharedContexts.create_default_context.cache_info().currsize\n"
        "SharedContexts.create_default_context(cafile=PREFECT_API_SSL_CERT_FILE.value() or certifi.where())\n"
        "info = SharedContexts.create_default_context.cache_info()\n"
        "sys.exit(0 if made == 1 and info.misses == 1 and info.hits >= 1 else 5)\n",
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])


def test_a_forked_run_reads_the_servers_result_storage_through_a_closed_client(tmp_path: Path) -> None:
    """deployments/prefect_result_store.py is preloaded: a run's read does not leave a socket open."""
    done = in_a_forked_run(
        tmp_path,
        "import sys, prefect.results\n"
        "preloaded = 'deployments.prefect_result_store' in sys.modules\n"
        "read = prefect.results._read_server_default_result_storage_block_id\n"
        "sys.exit(0 if preloaded and read.__module__ == 'deployments.prefect_result_store' else 6)\n",
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])

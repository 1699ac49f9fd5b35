"""The deployments kept registered on the work pool, and nothing else: `python -m deployments.serve`
without its worker, so that the only workers of a topology are the `tradelane worker`s it starts.

    python -m tests.roles.reconciler

Used by tests/roles/topology.py's `start_deployments`, the one place that says which process keeps
the deployments registered: when a role of its own does that (e.g. `tradelane serve dispatcher`),
that function changes and this module goes.
"""

from __future__ import annotations

import asyncio
import logging

from core.config import get_settings
from core.permissions import make_private
from core.redact import install_log_scrubber
from deployments.serve import start_reconciler

READY = "deployments registered; keeping them in step"


async def keep_registered() -> None:
    settings = get_settings()
    reconciler = await start_reconciler(settings)
    print(READY, flush=True)
    await reconciler.forever(settings.reconcile_interval_seconds)


def main() -> None:
    install_log_scrubber()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s reconciler %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    make_private(get_settings().home_dir)
    asyncio.run(keep_registered())


if __name__ == "__main__":
    main()

"""Links between tradelane and the Prefect UI, both ways, defined once.

* To Prefect: a transfer's flow run at `PREFECT_PUBLIC_URL/runs/flow-run/<id>` (the CLI's
  `transfers` table and `--json`, `flow run`'s message, the console); none when the setting is
  empty (`Settings.prefect_links_url`).
* Back: each flow run's link artifact points at `PUBLIC_URL/console/transfers?run=<id>`, the
  console's transfers page showing that run's files.

Instance data only: no secret or token is ever part of a link.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from core.config import Settings, get_settings

CONSOLE_TRANSFERS = "/console/transfers"


def flow_run_url(base: str | None, flow_run_id: str | None) -> str | None:
    """The Prefect UI's page of a flow run under `base` (None: no link)."""
    if not base or not flow_run_id:
        return None
    return f"{base.rstrip('/')}/runs/flow-run/{quote(str(flow_run_id), safe='')}"


def prefect_run_url(flow_run_id: str | None, settings: Settings | None = None) -> str | None:
    """A flow run's page in the Prefect UI as people reach it (PREFECT_PUBLIC_URL), or None."""
    return flow_run_url((settings or get_settings()).prefect_links_url, flow_run_id)


def prefect_ui_url(settings: Settings | None = None) -> str | None:
    """The Prefect UI's home as people reach it, or None when links are hidden."""
    return (settings or get_settings()).prefect_links_url


def console_run_url(flow_run_id: str, settings: Settings | None = None) -> str:
    """The console's transfers page filtered to one flow run's files (PUBLIC_URL based)."""
    base = (settings or get_settings()).public_base_url
    return f"{base}{CONSOLE_TRANSFERS}?{urlencode({'run': str(flow_run_id)})}"

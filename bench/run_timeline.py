"""Where a burst's time goes, from Prefect's own timestamps: waiting to be created, picked up, running."""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any

import httpx


def _t(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def flow_runs(prefect_api: str, name_prefix: str = "") -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    with httpx.Client(base_url=prefect_api, timeout=30) as client:
        while True:
            query = {"offset": len(runs), "limit": 200, "sort": "ID_DESC"}
            page = client.post("/flow_runs/filter", json=query)
            page.raise_for_status()
            batch = page.json()
            runs += batch
            if len(batch) < 200:
                break
    return [r for r in runs if r["name"].startswith(name_prefix)]


def summary(prefect_api: str, name_prefix: str = "") -> str:
    """Median and max of: created → started (queue + pick-up) and run time, over the matching runs."""
    pickup, running = [], []
    for run in flow_runs(prefect_api, name_prefix):
        created, started, ended = _t(run["created"]), _t(run["start_time"]), _t(run["end_time"])
        if created and started and ended:
            pickup.append(started - created)
            running.append(ended - started)
    if not running:
        return "no finished runs"
    return (
        f"{len(running)} runs: created→started median {statistics.median(pickup):.2f} s "
        f"(max {max(pickup):.2f}); running median {statistics.median(running):.2f} s (max {max(running):.2f})"
    )

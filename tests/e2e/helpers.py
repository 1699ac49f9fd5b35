"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from typing import Any

import httpx

from tests.system import System


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PartnerClient:
    """The Cleo-shaped partner API, as a partner's script would use it."""

    def __init__(self, system: System, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=system.api, timeout=60)
        try:
            response = self.http.post(
                "/api/authentication",
                data={"grant_type": "password", "username": username, "password": password},
            )
            response.raise_for_status()
        except BaseException:
            self.http.close()  # a refused login leaves no connection to the garbage collector
            raise
        self.token = response.json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def folder_ids(self) -> dict[str, str]:
        home = self.http.get("/api/folders").json()["resources"][0]
        children = self.http.get(f"/api/folders/{home['id']}/children").json()["resources"]
        return {"home": home["id"], **{c["subspace"]: c["id"] for c in children}}

    def upload(self, name: str, body: Any, folder_id: str | None = None) -> httpx.Response:
        folder_id = folder_id or self.folder_ids()["upload"]
        return self.http.post(
            f"/api/folders/{folder_id}/files",
            content=body,
            headers={
                "Content-Disposition": f"attachment;filename={name}",
                "Content-Type": "application/octet-stream",
            },
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PartnerClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def delivered(n: int = 1) -> Any:
    return lambda rows: len(rows) >= n and all(r["state"] == "delivered" for r in rows)


def settled(n: int = 1) -> Any:
    final = {"delivered", "failed", "rejected"}
    return lambda rows: len(rows) >= n and all(r["state"] in final for r in rows)


def finished_run(system: System, flow_run_id: str, timeout: float = 30) -> dict[str, Any]:
    """The Prefect flow run once it is final: a file's transfer is recorded before its run ends."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = httpx.get(f"{system.prefect_api}/flow_runs/{flow_run_id}").json()
        if (
            run["state_type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
            or time.monotonic() > deadline
        ):
            return run
        time.sleep(0.1)


def prefect_paged(url: str, body: dict[str, Any] | None = None, limit: int = 200) -> list[Any]:
    """Everything a Prefect `.../filter` endpoint returns, page by page."""
    found: list[Any] = []
    with httpx.Client(timeout=60) as http:
        while True:
            response = http.post(url, json={**(body or {}), "limit": limit, "offset": len(found)})
            response.raise_for_status()
            page = response.json()
            found += page
            if len(page) < limit:
                return found


def prefect_events(prefect_api: str) -> list[Any]:
    now = dt.datetime.now(dt.UTC)
    window = {
        "since": (now - dt.timedelta(days=1)).isoformat(),
        "until": (now + dt.timedelta(hours=1)).isoformat(),
    }
    found: list[Any] = []
    # Prefect's next_page links carry no credentials: send the harness's auth string (in the URL) along.
    url = httpx.URL(prefect_api)
    with httpx.Client(timeout=60, auth=(url.username, url.password)) as http:
        response = http.post(
            f"{prefect_api}/events/filter", json={"filter": {"occurred": window}, "limit": 50}
        )
        response.raise_for_status()
        page = response.json()
        found += page["events"]
        while page.get("next_page") and len(found) < 20_000:
            response = http.get(page["next_page"])
            response.raise_for_status()
            page = response.json()
            found += page["events"]
    # Pages are offsets into a feed that grows while it is read: an event pushed onto a later page
    # by new ones comes twice. Each event once, by its id.
    return list({event["id"]: event for event in found}.values())

"""What `tradelane transfers` and `tradelane audit` print: tables that fit the terminal, JSON for scripts.

Tables choose their columns by the terminal's width: at 80 columns `transfers` shows id, time,
file, flow, destination and state, cutting long names with "…"; wider terminals add the partner
(100), size and tries (120), and the Prefect run link or error once the link fits whole (about 170).
A run link is never cut: it is shown whole or not at all. `--wide` prints every column in full,
however wide that is (as does `--json`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from rich import box
from rich.console import Console
from rich.text import Text

from cli.common import DataTable, styled
from core.models import AuditEvent
from core.transfers import TransferView

STATE_COLORS = {
    "delivered": "green",
    "failed": "red",
    "rejected": "yellow",
    "running": "cyan",
    "waiting": "cyan",
}
# Terminal widths at which more columns appear.
WITH_PARTNER = 100
WITH_SIZE = 120
WITH_RUN = 160

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """`--since`/`--until`: an ISO date or time (UTC unless it says), or an age like 90m, 2h, 7d."""
    now = now or datetime.now(UTC)
    value = text.strip()
    relative = _RELATIVE.fullmatch(value.lower())
    if relative:
        return now - timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use 2026-12-01, 2026-12-01T14:30, 2026-12-01T14:30+01:00, or 90m, 2h, 7d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _short_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%m-%d %H:%M")


def state_text(view: TransferView) -> str:
    """The state column: a waiting transfer says when it is tried again (UTC, as the table's times)."""
    if view.state == "waiting" and view.next_attempt_at is not None:
        return f"waiting, next try {view.next_attempt_at.astimezone(UTC):%H:%M}"
    return view.state


def run_url(ui: str | None, view: TransferView) -> str | None:
    """The transfer's flow run in the Prefect UI under `ui` (Settings.prefect_links_url), or None."""
    from core.links import flow_run_url

    return flow_run_url(ui, view.flow_run_id)


def transfers_json(rows: list[TransferView], ui: str | None) -> list[dict[str, Any]]:
    from dataclasses import asdict

    out = []
    for view in rows:
        item = asdict(view)
        item["received_at"] = view.received_at.isoformat()
        item["finished_at"] = view.finished_at.isoformat() if view.finished_at else None
        item["next_attempt_at"] = view.next_attempt_at.isoformat() if view.next_attempt_at else None
        item["run_url"] = run_url(ui, view)
        out.append(item)
    return out


def _edge_overhead(columns: int) -> int:
    """Characters a SIMPLE_HEAD table spends besides its cells: an edge each side, 3 between cells."""
    return 2 + 3 * (columns - 1)


def _share(width: int, fixed: list[int], weights: list[int]) -> list[int]:
    """Widths for the flexible columns so the whole table fits `width` (each at least 4)."""
    room = width - _edge_overhead(len(fixed) + len(weights)) - sum(fixed)
    total = sum(weights)
    return [max(4, room * w // total) for w in weights]


def transfers_table(
    rows: list[TransferView], ui: str | None, width: int, wide: bool = False
) -> tuple[DataTable, str]:
    """The table for `width` columns (every column when `wide`), and a hint for what it left out."""
    show_partner = wide or width >= WITH_PARTNER
    show_size = wide or width >= WITH_SIZE
    links = [run_url(ui, v) or "-" for v in rows]
    link_width = max([len("run / error"), *map(len, links)])
    ids = [str(v.id) for v in rows]
    times = [_short_time(v.received_at) for v in rows]
    states = [state_text(v) for v in rows]
    fixed = [max([2, *map(len, ids)]), 11, max([9, *map(len, states)])]  # id, time, state
    if show_size:
        fixed += [max([4, *(len(str(v.size)) for v in rows)]), 5]
    flexible = ["file", *(["partner"] if show_partner else []), "flow", "dest"]
    weights = {"file": 4, "partner": 2, "flow": 3, "dest": 3}
    # The run link is shown whole or not at all: room for it and 12 characters per other column.
    room = width - _edge_overhead(len(fixed) + len(flexible) + 1) - sum(fixed) - link_width
    show_run = wide or (width >= WITH_RUN and room >= 12 * len(flexible))
    if show_run and not wide:
        fixed.append(link_width)
    limits = dict(zip(flexible, _share(width, fixed, [weights[c] for c in flexible]), strict=True))

    def flex(name: str) -> dict[str, Any]:
        return {} if wide else {"no_wrap": True, "overflow": "ellipsis", "max_width": limits[name]}

    def flex_run(limit: int) -> dict[str, Any]:
        return {"no_wrap": True, "overflow": "ellipsis", "max_width": limit}

    table = DataTable(box=box.SIMPLE_HEAD, pad_edge=False, expand=False)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True, min_width=11)
    table.add_column("file", **flex("file"))
    if show_partner:
        table.add_column("partner", **flex("partner"))
    table.add_column("flow", **flex("flow"))
    table.add_column("dest", **flex("dest"))
    table.add_column("state", no_wrap=True, min_width=9)
    if show_size:
        table.add_column("size", justify="right", no_wrap=True)
        table.add_column("tries", justify="right", no_wrap=True)
    if show_run:
        # A link is never cut (the column is as wide as the longest); a long error may be.
        table.add_column("run / error", min_width=link_width, **({} if wide else flex_run(link_width)))
    hidden_errors = 0
    for view, stamp, link, state in zip(rows, times, links, states, strict=True):
        color = STATE_COLORS.get(view.state, "white")
        cells: list[str | Text] = [str(view.id), stamp, view.file]
        if show_partner:
            cells.append(view.partner)
        cells += [view.flow, view.dest, styled(state, color)]
        if show_size:
            cells += [str(view.size), str(view.attempts)]
        failed = view.state in ("failed", "rejected", "waiting") and bool(view.error)
        if show_run:
            cells.append((view.error or "") if failed else link)
        elif failed:
            hidden_errors += 1
        table.add_row(*cells)
    hint = ""
    if not show_run and rows:
        errors = f" and {hidden_errors} error(s)" if hidden_errors else ""
        hint = f"run links{errors}: --wide or --json"
    return table, hint


def print_transfers(console: Console, rows: list[TransferView], ui: str | None, wide: bool) -> None:
    if wide:
        # As wide as the table needs: lines may pass the terminal's edge, but nothing is cut.
        console = Console(width=100_000, soft_wrap=True, no_color=console.no_color)
    table, hint = transfers_table(rows, ui, console.width, wide)
    console.print(table)
    if hint:
        console.print(hint, style="dim")


def audit_json(events: list[AuditEvent]) -> list[dict[str, Any]]:
    return [
        {
            "id": e.id,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "remote_addr": e.remote_addr,
            "detail": e.detail,
        }
        for e in events
    ]


def _detail(detail: dict[str, Any]) -> str:
    def text(value: Any) -> str:
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)

    return " ".join(f"{k}={text(v)}" for k, v in detail.items() if v not in (None, "", [], {}, False))


def audit_table(events: list[AuditEvent], width: int, wide: bool = False) -> tuple[DataTable, str]:
    """The audit trail for `width` columns; details appear from 100 columns (or with --wide)."""
    show_detail = wide or width >= 100
    time_format = "%Y-%m-%d %H:%M:%S" if show_detail else "%m-%d %H:%M"
    stamps = [e.at.astimezone(UTC).strftime(time_format) for e in events]
    names = ["who", "action", "target", *(["detail"] if show_detail else [])]
    weights = {"who": 3, "action": 3, "target": 2, "detail": 6}
    stamp_width = max([10, *map(len, stamps)])
    # An IPv4 address whole (15); longer ones (IPv6) are cut at narrow widths.
    from_width = min(15, max([4, *(len(e.remote_addr or "") for e in events)]))
    fixed = [stamp_width, from_width]
    limits = dict(zip(names, _share(width, fixed, [weights[n] for n in names]), strict=True))
    limits["from"] = from_width

    def flex(name: str) -> dict[str, Any]:
        return {} if wide else {"no_wrap": True, "overflow": "ellipsis", "max_width": limits[name]}

    table = DataTable(box=box.SIMPLE_HEAD, pad_edge=False, expand=False)
    table.add_column("when (UTC)", no_wrap=True, min_width=stamp_width)
    for name in ["who", "action", "target", "from", *names[3:]]:
        table.add_column(name, **flex(name))
    for e, stamp in zip(events, stamps, strict=True):
        cells = [stamp, e.actor, e.action, e.target or "", e.remote_addr or ""]
        if show_detail:
            cells.append(_detail(e.detail))
        table.add_row(*cells)
    return table, "" if show_detail or not events else "details: --wide or --json"

"""The run table's cells for a template's steps: the chain of derived files and edi-route's envelope."""

from __future__ import annotations

from typing import Any

from core.delivery import Job


def provenance(job: Job) -> dict[str, str]:
    """The row's cells for a template's steps: the chain receipt → each derived file (the last one
    delivered), and edi-route's envelope values. None for a plain transfer."""
    cells = {}
    if job.derived:
        cells["derived"] = " → ".join(
            f"{d.step}: {d.name} ({d.size} bytes, sha256 {d.sha256})" for d in job.derived
        )
    if job.envelope:
        cells["envelope"] = describe_envelope(job.envelope)
    return cells


def describe_envelope(envelope: dict[str, Any]) -> str:
    """edi-route's envelope values in one cell: `x12: sender 'ACME', receiver 'GLOBEX', ST '850' ×2`."""
    parts = []
    for combination in envelope.get("combinations", []):
        values = ", ".join(f"{k} {v!r}" for k, v in combination.items() if k not in ("count", "rule", "dest"))
        parts.append(f"{values} ×{combination.get('count', 1)}")
    return f"{envelope.get('standard', '?')}: " + "; ".join(parts)

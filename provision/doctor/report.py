"""doctor's report: the table a person reads (area, status, reason, and the fix under each
problem), the JSON form, and whether anything failed (exit 1)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict

import click

from provision.doctor.finding import STATUSES, Finding
from provision.output import printable

COLOURS = {"ok": "green", "skip": "cyan", "warn": "yellow", "fail": "red"}


def failed(items: Iterable[Finding]) -> bool:
    """Whether any finding failed (exit 1)."""
    return any(f.status == "fail" for f in items)


def render(host: str, items: list[Finding]) -> str:
    """The table for one host: area, status, reason; the fix on the next line."""
    width = max([len(f.area) for f in items] + [8])
    lines = [click.style(host, bold=True)]
    for f in items:
        # Reasons and fixes quote the host (a GPU's name, a unit's state): printable first.
        status = click.style(f"{f.status:<4}", fg=COLOURS[f.status])
        lines.append(f"  {f.area:<{width}}  {status}  {printable(f.reason)}")
        if f.fix and f.status != "ok":
            fix = click.style("fix: " + printable(f.fix), dim=True)
            lines.append(f"  {'':<{width}}        {fix}")
    counts = {s: sum(f.status == s for f in items) for s in STATUSES}
    lines.append("  " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def to_json(items: list[Finding]) -> list[dict[str, str]]:
    """The findings as JSON-friendly dicts."""
    return [asdict(f) for f in items]

"""Durations in words ("3d 4h 5min"), one wording for every message that states one (a clock
behind, an apt source failing for days). Imports nothing of provision's, so messages anywhere
may use it.
"""

from __future__ import annotations


def human_duration(seconds: int) -> str:
    """3d 4h 5min / 7min 3s / 42s."""
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:3]
    return " ".join(shown) or "0s"

"""nvidia-smi's CSV queries, written and read one way for doctor and status: the command (with
a timeout: a wedged GPU can make nvidia-smi hang for minutes) and its cells and values."""

from __future__ import annotations


def query(kind: str, fields: str, timeout_s: int) -> str:
    """`nvidia-smi --query-<kind>=<fields>` as CSV without header or units; stderr joins
    stdout, because a failing driver's words are what the user needs to see."""
    return (
        f"timeout {timeout_s} nvidia-smi --query-{kind}={fields} --format=csv,noheader,nounits 2>&1"
    )


def cells(line: str) -> list[str]:
    """One CSV line's cells, stripped (nvidia-smi puts a space after each comma)."""
    return [c.strip() for c in line.split(",")]


def number(value: str) -> float | None:
    """A value: None for "[N/A]", "N/A", "[Not Supported]", "[Unknown Error]"..."""
    try:
        return float(value.strip())
    except ValueError:
        return None

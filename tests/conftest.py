"""Shared test wiring: tier requirements and the test-host harness on sys.path.

A tier whose prerequisites are missing is skipped with the reason; with
PROVISION_TEST_STRICT=1 (set by .ci/run) a missing prerequisite fails instead, so CI can
never pass by skipping the real-SSH tiers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "hosts"))
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture(scope="session")
def require_tier():
    """Skip (or, when strict, fail) a tier whose prerequisites are missing."""

    def require(tier: str, reason: str) -> None:
        if os.environ.get("PROVISION_TEST_STRICT") == "1":
            pytest.fail(f"{tier} tier cannot run: {reason} (PROVISION_TEST_STRICT=1)")
        pytest.skip(f"{tier} tier: {reason}")

    return require


TIERS = ("unit", "integration", "reliability", "container", "vm")


def pytest_terminal_summary(terminalreporter):
    """One timing line per tier, for CI logs."""
    totals: dict[str, list[float]] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call" and getattr(report, "when", None) != "setup":
                continue
            tier = next((t for t in TIERS if f"tests/{t}/" in report.nodeid), "other")
            totals.setdefault(tier, [0.0, 0])
            totals[tier][0] += report.duration
            totals[tier][1] += report.when == "call"
    for tier, (seconds, count) in sorted(totals.items()):
        terminalreporter.write_line(f"tier {tier}: {count} tests, {seconds:.1f}s")

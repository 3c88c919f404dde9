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
# A check that reads what its step did not declare fails every test (step.Context.read); the
# CLI subprocesses the integration tiers start inherit it.
os.environ["PROVISION_STRICT_READS"] = "1"


@pytest.fixture(scope="session")
def require_tier():
    """Skip (or, when strict, fail) a tier whose prerequisites are missing."""

    def require(tier: str, reason: str) -> None:
        if os.environ.get("PROVISION_TEST_STRICT") == "1":
            pytest.fail(f"{tier} tier cannot run: {reason} (PROVISION_TEST_STRICT=1)")
        pytest.skip(f"{tier} tier: {reason}")

    return require


TIERS = ("unit", "integration", "reliability", "container", "vm")


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    """One timing line per tier, for CI logs; then the reliability figures."""
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
    counts = figures(terminalreporter.stats)
    if counts:
        terminalreporter.write_line(summary_line(counts))


# --- reliability figures ---------------------------------------------------------------------
# Cases anywhere are marked `@pytest.mark.reliability("<figure>")` (most live in
# tests/reliability); the line printed last counts them per figure, e.g. `faults 14/14
# recovered, bad inputs 52/52 clear, secrets 0 leaks`. Nothing is printed when none ran.

# figure -> how the summary line shows it
FIGURES = {
    "faults": "faults {passed}/{total} recovered",
    "lockout": "lockout {passed}/{total} recovered",
    "bad_input": "bad inputs {passed}/{total} clear",
    "secrets": "secrets {failed} leaks",
    "host_text": "host text {passed}/{total} escaped",
}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Tag each phase's report with the case's figure, for the summary."""
    report = yield
    marker = item.get_closest_marker("reliability")
    if marker is not None and marker.args:
        report.user_properties.append(("reliability", marker.args[0]))
    return report


def figures(stats: dict) -> dict[str, dict[str, int]]:
    """Per figure: total, passed, failed, skipped cases (a case counts once)."""
    outcome: dict[tuple[str, str], str] = {}
    for reports in stats.values():
        for report in reports:
            figure = dict(getattr(report, "user_properties", ())).get("reliability")
            if figure is None or getattr(report, "when", None) not in ("setup", "call", "teardown"):
                continue
            key = (figure, report.nodeid)
            before = outcome.get(key)
            if report.failed:
                outcome[key] = "failed"
            elif report.skipped and before != "failed":
                outcome[key] = "skipped"
            elif report.passed and report.when == "call" and before is None:
                outcome[key] = "passed"
    counts: dict[str, dict[str, int]] = {}
    for (figure, _nodeid), result in outcome.items():
        c = counts.setdefault(figure, {"total": 0, "passed": 0, "failed": 0, "skipped": 0})
        c["total"] += 1
        c[result] += 1
    return counts


def summary_line(counts: dict[str, dict[str, int]]) -> str:
    """`bad inputs 52/52 clear, secrets 0 leaks`; skipped cases are named, never hidden."""
    parts = []
    for figure in [*FIGURES, *sorted(set(counts) - set(FIGURES))]:
        if figure not in counts:
            continue
        c = counts[figure]
        text = FIGURES.get(figure, figure + " {passed}/{total} passed").format(**c)
        if c["skipped"]:
            text += f" ({c['skipped']} of {c['total']} not run)"
        parts.append(text)
    return ", ".join(parts)

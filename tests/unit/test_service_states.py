"""resources.service (what check plans for a unit) and unitstate (what verify reads) count the
same UnitFileState values as enabled. The states and which ones `systemctl enable/disable`
can change are systemctl(1)'s (systemd 257, tests/data/facts/systemd-257-systemctl-is-enabled.txt):
a static, indirect, generated or transient unit has no [Install] symlinks of its own, so
planning `systemctl enable` (or disable) for it would repeat on every run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision import resources, unitstate
from provision.step import Context

DOC = "tests/data/facts/systemd-257-systemctl-is-enabled.txt"


def planned(file_state: str, **kwargs) -> list[str]:
    remote = FakeRemote().on(r"systemctl show", f"UnitFileState={file_state}\nActiveState=active\n")
    ctx = Context("box", None, {}, remote.probe)
    return [c.summary for c in resources.service(ctx, "x.service", **kwargs)]


@pytest.mark.parametrize(
    "state", ["enabled", "enabled-runtime", "alias", "static", "indirect", "generated", "transient"]
)
def test_a_state_verify_counts_as_enabled_plans_no_enable(state):
    assert planned(state) == []


@pytest.mark.parametrize("state", ["disabled", "linked", "masked", ""])
def test_a_state_verify_counts_as_not_enabled_plans_the_enable(state):
    assert planned(state) == ["enable x.service at boot"]


@pytest.mark.parametrize(("state", "want"), [
    ("enabled", ["disable x.service at boot"]), ("alias", ["disable x.service at boot"]),
    ("static", []), ("generated", []), ("transient", []), ("indirect", []), ("disabled", []),
])  # fmt: skip
def test_disable_is_planned_only_where_systemctl_disable_removes_something(state, want):
    assert planned(state, enabled=False) == want


def documented_exit_codes() -> dict[str, str]:
    """systemctl(1)'s is-enabled table: state -> exit code (a spanned cell repeats the one
    above, as the roff table's `^` says)."""
    text = (Path(__file__).resolve().parents[2] / DOC).read_text().split("@@is-enabled", 1)[1]
    rows = re.findall(r'T\{\n"([^"\n]+)"\nT\}(?::T\{\n.*?\nT\}:T\{\n([^\n]+)\nT\})?', text, re.S)
    codes: dict[str, str] = {}
    last = ""
    for name, code in rows:
        last = code or last
        codes[name.replace("\\-", "-")] = last
        if name.startswith("not"):
            break
    return codes


def test_the_enabled_states_are_the_ones_systemctl_documents_with_exit_0():
    codes = documented_exit_codes()
    assert len(codes) == 14 and codes["not-found"] == "4", codes
    assert {state for state, code in codes.items() if code == "0"} == unitstate.ENABLED_STATES

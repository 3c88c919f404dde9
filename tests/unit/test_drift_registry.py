"""Every verify check of every step has a drift case or a stated reason (issue 13 §2).

The expectation comes from the step registry itself: a new verify function without an entry in
tests/reliability/drift_table.py fails here, and so does an entry for a function that is gone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from reliability.drift_table import DRIFT

from provision.steps import STEPS

TESTS = Path(__file__).resolve().parent.parent
CITED = re.compile(r"tests/([\w/]+\.py)(?:::(\w+))?")
REGISTERED = {f"{step.name}.{fn.__name__}" for step in STEPS for fn in step.verify}


def test_every_verify_check_has_a_drift_entry():
    missing = sorted(REGISTERED - set(DRIFT))
    assert not missing, f"verify checks without a drift case or reason in drift_table.py: {missing}"


def test_no_entry_names_a_verify_check_that_is_gone():
    stale = sorted(set(DRIFT) - REGISTERED)
    assert not stale, f"drift_table.py names verify checks no step has: {stale}"


@pytest.mark.parametrize("key", sorted(DRIFT))
def test_entry_is_a_break_or_a_reason(key):
    entry = DRIFT[key]
    assert ("break" in entry) != ("reason" in entry), f"{key}: exactly one of break/reason"
    assert set(entry) <= {"break", "reason", "slow_verify", "repaired_by", "planned"}, sorted(entry)
    assert (entry.get("break") or entry.get("reason") or "").strip(), f"{key} is empty"
    steps = {step.name for step in STEPS}
    assert entry.get("repaired_by", key.split(".")[0]) in steps, key
    # The plan names the step that repairs (and maybe others), in the steps' order.
    planned = entry.get("planned", [entry.get("repaired_by", key.split(".")[0])])
    order = [step.name for step in STEPS]
    assert set(planned) <= steps and planned == sorted(planned, key=order.index), key
    assert entry.get("repaired_by", key.split(".")[0]) in planned, key


@pytest.mark.parametrize("key", sorted(k for k, e in DRIFT.items() if "reason" in e))
def test_a_reason_cites_tests_that_exist(key):
    """A reason that says where the property is proved names a real file and test function."""
    for path, name in CITED.findall(DRIFT[key]["reason"]):
        file = TESTS / path
        assert file.is_file(), f"{key} cites tests/{path}, which does not exist"
        if name:
            assert re.search(rf"^def {name}\(", file.read_text(), re.M), (
                f"{key} cites tests/{path}::{name}, which is not defined there"
            )

"""Every step's verify checks as pytest tests against testinfra's `host` fixture."""

from __future__ import annotations

import pytest

from provision.errors import Skip
from provision.steps import STEPS
from provision.verify import describe

pytestmark = pytest.mark.infra

CASES = [(step, check) for step in STEPS for check in step.verify]


@pytest.mark.parametrize(("step", "check"), CASES, ids=[f"{s.name}-{c.__name__}" for s, c in CASES])
def test_verify(host, settings, step, check):
    """One check of one step; Skip becomes a pytest skip with its reason."""
    try:
        check(host, settings[step.key])
    except Skip as exc:
        pytest.skip(f"{describe(check)}: {exc}")

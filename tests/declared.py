"""Run a step's check as the runner does: its declared reads gathered first, then `check` on a
strict Context, so a read the step did not declare fails the test (step.UndeclaredRead).

The answers come from outside the step: a FakeRemote's table (`context`), or a function of
the Read (`answered`), e.g. `absent`, the answer a host gives when nothing is there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from provision.changes import Result
from provision.facts import Read, parse_facts
from provision.step import Context, Step

FACTS_DIR = Path(__file__).parent / "data" / "facts"
# The recorded fact files that are whole gathers (the others hold one section each).
FACT_FILES = (
    "debian-12-docker.txt",
    "debian-12-nspawn.txt",
    "ubuntu-22.04-gpu.txt",
    "ubuntu-24.04-fresh.txt",
)


def recorded(name: str):
    """The Facts of a recorded fact file."""
    return parse_facts((FACTS_DIR / name).read_text())


def absent(read: Read) -> Result:
    """What a read of something that is not there answers: exit 1, nothing printed."""
    return Result(1, "")


def declared(step: Step, facts, settings_by_key: dict, **kwargs) -> list[Read]:
    """The reads `step` declares on a host with these facts and settings."""
    return step.reads(Context("box", facts, settings_by_key, gathered={}, **kwargs))


def answered(
    step: Step, facts, settings_by_key: dict, answer: Callable[[Read], Result], **kwargs
) -> Context:
    """A strict Context whose gathered reads are the step's declared ones, each answered by
    `answer`."""
    gathered = {r: answer(r) for r in declared(step, facts, settings_by_key, **kwargs)}
    return Context("box", facts, settings_by_key, gathered=gathered, strict=True, **kwargs)


def context(step: Step, facts, settings_by_key: dict, remote, **kwargs) -> Context:
    """A strict Context whose declared reads the FakeRemote answers (lazily, from its table)."""
    gathered = remote.read_all(declared(step, facts, settings_by_key, **kwargs), facts.user)
    return Context("box", facts, settings_by_key, gathered=gathered, strict=True, **kwargs)


def check_declared(step: Step, facts, settings_by_key: dict, remote):
    """Preflight and check on `context`'s strict Context: the changes, or None where the step
    refuses this host or these settings (a decision, made from declared reads); a read it did
    not declare fails the test."""
    import pytest

    from provision.errors import ProvisionError
    from provision.step import UndeclaredRead

    ctx = context(step, facts, settings_by_key, remote)
    try:
        if step.preflight is not None:
            step.preflight(ctx)
        return step.check(ctx)
    except UndeclaredRead as exc:
        pytest.fail(f"{step.name} on {facts.os_key}: {exc.message}")
    except ProvisionError:
        return None

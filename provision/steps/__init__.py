"""The registry: every step, in the order `provision all` runs them (an explicit tuple)."""

from __future__ import annotations

from provision.errors import ConfigError
from provision.step import Step
from provision.steps import (
    autostart,
    base,
    cluster,
    conda,
    containers,
    cuda,
    driver,
    expose,
    jupyter,
    network,
    pytorch,
    ssh,
    tensorboard,
    users,
)

STEPS: tuple[Step, ...] = (
    base.STEP,
    users.STEP,
    ssh.STEP,
    network.STEP,
    autostart.STEP,
    driver.STEP,
    cuda.STEP,
    containers.STEP,
    conda.STEP,
    pytorch.STEP,
    tensorboard.STEP,
    jupyter.STEP,
    expose.STEP,
    cluster.STEP,
)


def by_name(name: str) -> Step:
    """The step called `name` (CLI or settings spelling)."""
    for step in STEPS:
        if name in (step.name, step.key):
            return step
    import difflib

    close = difflib.get_close_matches(name, [s.name for s in STEPS], n=1)
    raise ConfigError(
        f"unknown step '{name}'",
        (f"did you mean '{close[0]}'? " if close else "") + "`provision list` shows the steps",
    )

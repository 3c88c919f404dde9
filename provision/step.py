"""The step model: a Step is data (name, Settings, check, verify checks); Context is what
`check` may use (facts, settings, read-only probes, templates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from provision.changes import Change, Result
from provision.facts import Facts


@dataclass(frozen=True)
class Step:
    """One thing the tool manages on a host."""

    name: str  # CLI name, kebab-case
    summary: str  # one line for `provision list`
    settings: type  # the step's Settings dataclass
    check: Callable[[Context], list[Change]]  # read-only; [] means the host is already right
    verify: tuple[Callable[[Any, Any], None], ...]  # testinfra checks: (host, settings) -> None
    # Runs for every selected step before any step changes anything: refuse early what cannot
    # work (an impossible driver/CUDA/wheel combination). Raises a ProvisionError.
    preflight: Callable[[Context], None] | None = None

    @property
    def key(self) -> str:
        """The settings prefix in inventories: `nvidia-driver` → `nvidia_driver`."""
        return self.name.replace("-", "_")


@dataclass
class Context:
    """What a step's check sees: one host's facts and settings, and read-only probes."""

    host: str
    facts: Facts
    settings_by_key: dict[str, Any]
    prober: Callable[[str, bool], Result]
    address: str = ""  # the address we reach the host at (ansible_host)
    # File states read ahead in one probe (resources.prefetch_files), for this check only:
    # (exists, [mode, owner, group], sha256, holds key material).
    file_states: dict[str, tuple[bool, list[str], str, bool]] = field(default_factory=dict)

    def settings(self, cls: type) -> Any:
        """The merged settings of the step whose Settings class is `cls`."""
        for value in self.settings_by_key.values():
            if type(value) is cls:
                return value
        raise KeyError(cls)

    def probe(self, command: str, sudo: bool = False) -> Result:
        """Run a read-only command; a non-zero exit is returned, not raised."""
        return self.prober(command, sudo)

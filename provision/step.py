"""The step model: a Step is data (name, Settings, the reads it declares, check, verify
checks); Context is what `check` may use: facts, settings, and the answers to its declared
reads (facts.reads), gathered by the runner before any check runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from provision.changes import Change, Result
from provision.errors import ProbeError, StepError
from provision.facts import Facts
from provision.facts.reads import Read
from provision.sudoers import probe_failure


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
    # Every read `check` (and preflight) makes, from the facts and settings alone: the runner
    # gathers them for all selected steps in one round trip. A read `check` makes that is not
    # declared here is a bug (Context.read).
    reads: Callable[[Context], list[Read]] | None = None
    # The services the step runs that a laptop reaches through `provision tunnel` and that
    # `ssh-config` and `doctor` know about: (name, the setting key holding the port).
    services: tuple[tuple[str, str], ...] = ()
    # What the step's changes will download, from the facts, settings and declared reads (after
    # they are gathered, before anything changes): a background fetcher (provision.prefetch)
    # fetches it while earlier steps install. [] when nothing is missing (a no-op run).
    downloads: Callable[[Context], list[Download]] | None = None

    @property
    def key(self) -> str:
        """The settings prefix in inventories: `nvidia-driver` → `nvidia_driver`."""
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Download:
    """Something a step's changes will fetch: `apt` (distribution packages, by name), `file`
    (a URL checked against its sha256, kept at `dest`, where the step looks first), `source`
    (an apt source file the step is about to write at `dest`: its `content`, so that the
    fetcher already sees the packages it enables) or `wheels` (one `pip download` of the
    requirements `names` with the pip `options` of the step's own install, for a CPython X.Y
    `python`, "" for the system python3's; `dest` is the words that start the step's pip
    install, to which the fetcher adds its folder as the last --extra-index-url)."""

    kind: str  # apt | file | source | wheels
    names: tuple[str, ...] = ()
    url: str = ""
    sha256: str = ""
    dest: str = ""
    content: str = ""
    options: tuple[str, ...] = ()  # wheels: index, find-links, --cert, --no-deps
    python: str = ""  # wheels: the target interpreter's X.Y ("" = the system python3's)
    interpreter: str = ""  # wheels: a python with pip to run it until `python3 -m venv` works
    with_fetched: bool = False  # wheels: also the step's first call's wheels, as requirements


class UndeclaredRead(StepError):
    """A check read something its step did not declare (a bug in the step)."""


@dataclass
class Context:
    """What a step's check sees: one host's facts and settings, and its reads' answers.

    `gathered` holds the answers of the declared reads (the runner's one round trip). Without
    it (unit tests that answer each read from a table) `prober` answers reads one by one.
    With it, a read that was not gathered goes to `prober` when `strict` is off (and is
    counted in `undeclared`), and is an UndeclaredRead error when it is on (every test).
    """

    host: str
    facts: Facts
    settings_by_key: dict[str, Any]
    prober: Callable[[str, bool], Result] | None = None
    address: str = ""  # the address we reach the host at (ansible_host)
    gathered: dict[Read, Result] | None = None
    strict: bool = False
    diffs: bool = True  # whether a file's current content is read for a diff (plan, -v)
    undeclared: list[Read] = field(default_factory=list)

    def settings(self, cls: type) -> Any:
        """The merged settings of the step whose Settings class is `cls`."""
        for value in self.settings_by_key.values():
            if type(value) is cls:
                return value
        raise KeyError(cls)

    def of(self, key: str) -> Any:
        """The merged settings of another step, by its key (`cuda`, `ssh`): a step reads
        another step's settings this way, never by importing it."""
        return self.settings_by_key[key]

    def read(self, command: str, sudo: bool = False) -> Result:
        """The answer to a declared read; a non-zero exit is returned, not raised. One that
        could not read the host (permission denied to the login user) is a ProbeError."""
        if self.gathered is None:
            if self.prober is None:
                raise UndeclaredRead(f"{self.host}: no reads gathered for `{command[:80]}`", "")
            return self.prober(command, sudo)
        key = Read(command, sudo)
        if key not in self.gathered:
            if self.strict or self.prober is None:
                raise UndeclaredRead(
                    f"{self.host}: a check read `{command[:120]}` (sudo={sudo}) that its step "
                    "does not declare",
                    "this is a bug in provision: the step's reads() must list it",
                )
            self.undeclared.append(key)
            return self.prober(command, sudo)
        result = self.gathered[key]
        why = probe_failure(result, sudo=False) if not sudo else ""
        if why:
            raise ProbeError(self.host, command, result, why)
        return result

"""The data compat speaks: a card, a request, a choice, and its two refusals.

Apart from the logic so that every module of the package (and the steps, doctor and the CLI
that read a `Choice`) shares one definition without importing the choice itself. A `Request`
holds only what the user asked for; the empty value of a field means "let compat choose".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from provision.errors import ConfigError


class Incompatible(ConfigError):
    """A combination that cannot work (exit 2); the hint names one that would."""


class UnknownCard(ConfigError):
    """A card name or id that is not in the table, or that matches several cards (exit 2)."""


@dataclass(frozen=True)
class Gpu:
    """One card model from the built-in table."""

    device_id: str  # PCI device id, 4 lower-case hex digits (vendor 10de implied)
    name: str  # "GeForce GTX 1080 Ti"
    arch: str  # kepler | maxwell | pascal | ... | blackwell
    compute: str  # compute capability, "6.1"
    vram_gb: float


@dataclass(frozen=True)
class Request:
    """What the user asked for explicitly (empty/0: let compat choose)."""

    branch: int = 0
    flavour: str = ""  # open | proprietary
    source: str = ""  # ubuntu | nvidia | debian
    cuda: str = ""  # toolkit "12.8"
    torch_index: str = ""  # cpu | cu126 | ...
    torch_version: str = ""  # "2.13.0"


@dataclass(frozen=True)
class Choice:
    """The decision, with the reasons shown to the user."""

    os_key: str  # "ubuntu-24.04"
    gpus: tuple[Gpu, ...]
    arch: str  # the oldest architecture among the GPUs ("" when none is known)
    driver_branch: int  # 580
    flavour: str  # open | proprietary
    source: str  # ubuntu | nvidia | debian
    cuda: str  # toolkit X.Y, the CUDA of the wheels ("" with the cpu index)
    torch_index: str  # cu130
    torch_max: str  # newest torch with kernels for the card, "" when no limit
    torch_version: str  # the requested version, "" for the newest allowed
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()  # works, but should not be chosen (an ended branch)


# `--set` keys that compat reads without a host, and the Request field each one fills.
SET_KEYS = {
    "driver.branch": "branch",
    "driver.flavour": "flavour",
    "driver.source": "source",
    "cuda.version": "cuda",
    "pytorch.index": "torch_index",
    "pytorch.version": "torch_version",
}


def request_from_sets(overrides: Iterable[str]) -> dict[str, object]:
    """Request fields from `--set step.field=value` (compat without --host); other keys are
    refused, never ignored."""
    fields: dict[str, object] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in SET_KEYS:
            raise ConfigError(
                f"--set {item} has no meaning for compat without --host",
                f"compat reads {', '.join(SET_KEYS)} (or give --host to use a host's settings)",
            )
        value = value.strip()
        if key == "driver.branch":
            if not value.isdigit():
                raise ConfigError(f"--set {item}: not a driver branch", "e.g. driver.branch=580")
            fields[SET_KEYS[key]] = int(value)
        else:
            fields[SET_KEYS[key]] = value
    return fields

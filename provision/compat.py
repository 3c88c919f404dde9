"""compat: which driver, CUDA and PyTorch for this card on this OS (the one version table).

(Being written: see issue 5. The interface below is the contract the steps use.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provision.errors import ConfigError


class Incompatible(ConfigError):
    """A combination that cannot work (exit 2); the hint names one that would."""


@dataclass(frozen=True)
class Gpu:
    """One card model from the built-in table."""

    device_id: str  # PCI device id, 4 lower-case hex digits (vendor 10de implied)
    name: str  # "GeForce GTX 1080 Ti"
    arch: str  # maxwell | pascal | volta | turing | ampere | ada | hopper | blackwell
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


def gpu_by_id(device_id: str) -> Gpu | None:
    """The card with this PCI device id ("1b06" or "10de:1b06"), or None."""
    raise NotImplementedError


def gpu_by_name(text: str) -> Gpu | None:
    """The card whose name matches (case-insensitive; "GTX 1080 Ti", "RTX 4090")."""
    raise NotImplementedError


def cuda_repo_distro(os_key: str) -> str:
    """NVIDIA's repo directory for this OS: ubuntu2204, ubuntu2404, debian12 (else Incompatible)."""
    raise NotImplementedError


def choose(
    gpus: Sequence[Gpu], os_key: str, request: Request = Request(), arch: str = ""
) -> Choice:
    """Choose driver, CUDA and wheel index; refuse an impossible request (Incompatible)."""
    raise NotImplementedError

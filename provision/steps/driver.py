"""driver: the NVIDIA driver, chosen by compat for the card and the OS.

(Being written: see issue 5.)
"""

from __future__ import annotations

from dataclasses import dataclass

from provision.settings import one_of, setting
from provision.step import Context, Step


@dataclass(frozen=True)
class Settings:
    """Settings of the driver step (inventory keys `driver.<field>`)."""

    enabled: bool = setting(True, "install the NVIDIA driver")
    require_gpu: bool = setting(True, "stop when the host has no NVIDIA GPU")
    branch: int = setting(0, "driver branch, e.g. 580 (0: compat's choice)")
    flavour: str = setting(
        "",
        "open or proprietary kernel modules (empty: compat's choice)",
        one_of("", "open", "proprietary"),
    )
    source: str = setting(
        "",
        "ubuntu (signed modules), nvidia (NVIDIA's repo) or debian (non-free); empty: compat",
        one_of("", "ubuntu", "nvidia", "debian"),
    )
    desktop: bool = setting(False, "Ubuntu: the desktop flavour instead of -server")
    persistenced: bool = setting(True, "enable nvidia-persistenced")


def check(ctx: Context) -> list:
    return []


STEP = Step(
    name="driver",
    summary="NVIDIA driver (branch and modules chosen by compat), nouveau off, packages held",
    settings=Settings,
    check=check,
    verify=(),
)

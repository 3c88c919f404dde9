"""doctor: read-only findings about a box (GPUs, PCIe, RAM, power, storage, boot safety,
reachability), each ok / warn / fail with a reason and the fix.

(Being written: see issue 6. The settings below are the contract.)
"""

from __future__ import annotations

from dataclasses import dataclass

from provision.settings import absolute_path, setting


@dataclass(frozen=True)
class Settings:
    """Settings of `provision doctor` (inventory keys `doctor.<field>`)."""

    psu_watts: int = setting(0, "the power supply's rating in W (0: the power check is skipped)")
    cpu_tdp_watts: int = setting(0, "the CPU's TDP in W (0: estimated from the core count)")
    data_mount: str = setting("", "a data disk that must be mounted here", absolute_path)
    min_free_gb: int = setting(50, "free space wanted on / for conda, CUDA and wheels (GB)")


@dataclass(frozen=True)
class SettingsGroup:
    """Settings that belong to a command rather than a step (`doctor.psu_watts`)."""

    name: str
    settings: type

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


SETTINGS = SettingsGroup("doctor", Settings)

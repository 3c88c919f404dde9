"""The settings of `provision doctor` (inventory keys `doctor.<field>`): a command's settings,
validated with the steps' before anything connects."""

from __future__ import annotations

from dataclasses import dataclass

from provision.settings import absolute_path, setting


def _not_negative(value: int) -> None:
    if value < 0:
        raise ValueError(f"{value} must be 0 or more")


@dataclass(frozen=True)
class Settings:
    """Settings of `provision doctor` (inventory keys `doctor.<field>`)."""

    psu_watts: int = setting(
        0, "the power supply's rating in W (0: the power check is skipped)", _not_negative
    )
    cpu_tdp_watts: int = setting(
        0, "the CPU's TDP in W (0: estimated from the core count)", _not_negative
    )
    data_mount: str = setting("", "a data disk that must be mounted here", absolute_path)
    min_free_gb: int = setting(
        50, "free space wanted on / for conda, CUDA and wheels (GB)", _not_negative
    )


@dataclass(frozen=True)
class SettingsGroup:
    """Settings that belong to a command rather than a step (`doctor.psu_watts`)."""

    name: str
    settings: type

    @property
    def key(self) -> str:
        """The settings prefix in inventories."""
        return self.name.replace("-", "_")


SETTINGS = SettingsGroup("doctor", Settings)

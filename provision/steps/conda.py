"""conda: a shared Miniforge (or Miniconda/Anaconda) installation for the box's users.

(Being written: see issue 5.)
"""

from __future__ import annotations

from dataclasses import dataclass

from provision.settings import absolute_path, each, one_of, setting, unix_name, url
from provision.step import Context, Step


@dataclass(frozen=True)
class Settings:
    """Settings of the conda step (inventory keys `conda.<field>`)."""

    enabled: bool = setting(True, "install conda to a shared prefix")
    distribution: str = setting(
        "miniforge",
        "miniforge (conda-forge, no ToS), miniconda or anaconda",
        one_of("miniforge", "miniconda", "anaconda"),
    )
    installer_url: str = setting("", "installer URL (empty: the pinned Miniforge release)", url)
    installer_sha256: str = setting("", "sha256 of the installer (required with installer_url)")
    prefix: str = setting("/opt/conda", "where conda is installed", absolute_path)
    group: str = setting("conda", "group that owns the prefix; the users join it", unix_name)
    users: tuple[str, ...] = setting(
        (), "accounts that get conda (empty: users.accounts and the login user)", each(unix_name)
    )
    channels: tuple[str, ...] = setting(("conda-forge",), "channels in .condarc")
    channel_alias: str = setting("", "channel mirror base URL (empty: conda.anaconda.org)", url)
    accept_tos: bool = setting(False, "accept Anaconda's Terms of Service (miniconda/anaconda)")


def check(ctx: Context) -> list:
    return []


STEP = Step(
    name="conda",
    summary="Miniforge (default) or Miniconda/Anaconda in a shared prefix, checksum-verified",
    settings=Settings,
    check=check,
    verify=(),
)

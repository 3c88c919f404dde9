"""pytorch: an environment with torch, torchvision and torchaudio from the index compat chose.

(Being written: see issue 5.)
"""

from __future__ import annotations

from dataclasses import dataclass

from provision.settings import absolute_path, setting, url
from provision.step import Context, Step

PACKAGES = ("torch", "torchvision", "torchaudio")


@dataclass(frozen=True)
class Settings:
    """Settings of the pytorch step (inventory keys `pytorch.<field>`)."""

    enabled: bool = setting(True, "create an environment with PyTorch")
    env: str = setting("dl", "environment name (conda env, or /opt/provision/envs/NAME)")
    python: str = setting("", "Python X.Y (empty: 3.12 in conda, the system python3 in a venv)")
    index: str = setting("", "wheel index tag: cpu, cu126, cu128, cu130... (empty: compat's)")
    version: str = setting("", "torch version (empty: the newest the card supports)")
    packages: tuple[str, ...] = setting(PACKAGES, "the PyTorch packages to install")
    extra_packages: tuple[str, ...] = setting((), "more pip packages (jupyterlab, ...)")
    index_url: str = setting("", "pip index (empty: https://download.pytorch.org/whl/<tag>)", url)
    extra_index_url: str = setting("", "a second pip index (e.g. a PyPI mirror)", url)
    find_links: str = setting("", "a find-links page or folder of wheels", url)
    ca_bundle: str = setting("", "CA bundle on the host for the pip index", absolute_path)


def check(ctx: Context) -> list:
    return []


STEP = Step(
    name="pytorch",
    summary="PyTorch environment (conda env or venv) from the wheel index compat chose",
    settings=Settings,
    check=check,
    verify=(),
)

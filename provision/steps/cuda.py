"""cuda: the CUDA toolkit (nvcc and libraries) from NVIDIA's apt repository or Debian's.

(Being written: see issue 5.)
"""

from __future__ import annotations

from dataclasses import dataclass

from provision.settings import one_of, setting, url
from provision.step import Context, Step

NVIDIA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos"


@dataclass(frozen=True)
class Settings:
    """Settings of the cuda step (inventory keys `cuda.<field>`)."""

    enabled: bool = setting(True, "install a CUDA toolkit (nvcc) on the host")
    version: str = setting("", "toolkit X.Y, e.g. 12.8 (empty: the CUDA of the chosen wheels)")
    source: str = setting(
        "nvidia",
        "nvidia (NVIDIA's apt repo) or distro (Debian's nvidia-cuda-toolkit)",
        one_of("nvidia", "distro"),
    )
    repo_url: str = setting(NVIDIA_REPO, "base URL of NVIDIA's CUDA apt repos (mirrors)", url)


def check(ctx: Context) -> list:
    return []


STEP = Step(
    name="cuda",
    summary="CUDA toolkit from NVIDIA's repo (cuda-keyring, pinned) or the distribution",
    settings=Settings,
    check=check,
    verify=(),
)

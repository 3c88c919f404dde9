"""What the tables say about one OS, driver branch, CUDA release or wheel tag.

Small lookups over `tables` that the choice, the steps and doctor all ask: the newest CUDA a
branch runs, the driver a CUDA release needs, whether a branch's support has ended, which
packages a source and flavour install. They answer from the tables alone (no host, no choice),
and refuse what the tables do not know with `Incompatible` naming what they do.
"""

from __future__ import annotations

import datetime
import re

from provision.compat.model import Incompatible
from provision.compat.tables import (
    BRANCHES,
    CPU_INDEX,
    CUDA_DRIVER,
    CUDA_MAJOR_FLOOR,
    DEBIAN_FIRMWARE,
    DEBIAN_KERNEL_PACKAGES,
    OS_TABLE,
    TORCH_WHEELS,
    OsInfo,
)


def version_key(text: str) -> tuple[int, ...]:
    """ "12.6" -> (12, 6): versions compare as numbers, not as text ("12.10" > "12.9")."""
    return tuple(int(part) for part in text.split("."))


def current_date() -> datetime.date:
    """Today, for branch end dates (tests pin it by replacing `compat.versions.current_date`)."""
    return datetime.date.today()


# --- OS and driver branches --------------------------------------------------------------------


def os_info(os_key: str) -> OsInfo:
    """How compat serves this OS (else Incompatible listing the ones it serves)."""
    info = OS_TABLE.get(os_key)
    if info is None:
        raise Incompatible(
            f"{os_key} is not served: no NVIDIA driver/CUDA path for it in compat's table",
            f"use one of {', '.join(OS_TABLE)}",
        )
    return info


def cuda_repo_distro(os_key: str) -> str:
    """NVIDIA's repo directory for this OS: ubuntu2204, ubuntu2404, debian12, ... (else
    Incompatible)."""
    return os_info(os_key).cuda_repo


def branch_ended(branch: int, today: datetime.date | None = None) -> bool:
    """Whether NVIDIA's support of the branch has ended (short-lived branches: always)."""
    info = BRANCHES.get(branch)
    if info is None:
        return False
    if info.ends is None:
        return True
    year, month = info.ends
    today = today or current_date()
    return (today.year, today.month) > (year, month)


def end_text(branch: int) -> str:
    """How a listed branch's support ended, for the reason and warning that name it."""
    ends = BRANCHES[branch].ends
    if ends is None:
        return "was a short-lived feature branch (no longer maintained)"
    month = datetime.date(ends[0], ends[1], 1).strftime("%B")
    return f"reached end of life in {month} {ends[0]} (no more fixes)"


def fabricmanager_package(source: str, branch: int) -> str:
    """nvidia-fabricmanager of the driver's branch for this install source ("" for none)."""
    if source == "ubuntu" or (source == "nvidia" and branch < 590):
        return f"nvidia-fabricmanager-{branch}"
    if source == "nvidia":
        return "nvidia-fabricmanager"  # unversioned from 590; nvidia-driver-pinning holds it
    return ""  # Debian (12 and 13) packages no fabric manager


def debian_kernel_package(flavour: str) -> str:
    """Debian's DKMS package of the chosen module flavour (open: contrib, proprietary: non-free)."""
    return DEBIAN_KERNEL_PACKAGES[flavour][0]


def debian_firmware_package(os_key: str) -> str:
    """The firmware package Debian's driver path installs with the module on this release:
    firmware-misc-nonfree on Debian 12, firmware-nvidia-gsp from Debian 13 on."""
    firmware = DEBIAN_FIRMWARE.get(os_key)
    if firmware is None:
        raise Incompatible(
            f"compat has no Debian driver packages for {os_key}",
            f"Debian's own driver is served on {', '.join(DEBIAN_FIRMWARE)}",
        )
    return firmware


# --- CUDA and wheel tags -----------------------------------------------------------------------


def max_cuda_for_branch(branch: int) -> str:
    """The newest CUDA the branch supports natively ("" for a branch older than any listed)."""
    fitting = [cuda for cuda, driver in CUDA_DRIVER.items() if driver <= branch]
    return max(fitting, key=version_key) if fitting else ""


def cuda_driver_floor(cuda: str) -> int:
    """The oldest driver branch that runs CUDA X.y (minor-version compatibility)."""
    return CUDA_MAJOR_FLOOR.get(version_key(cuda)[0], CUDA_DRIVER.get(cuda, 0))


def index_cuda(tag: str) -> str:
    """The CUDA version of a wheel index tag: "cu126" -> "12.6", "cu130" -> "13.0", cpu -> ""."""
    if tag == CPU_INDEX:
        return ""
    match = re.fullmatch(r"cu(\d{2,3})", tag)
    if not match:
        raise Incompatible(f"unknown wheel index {tag!r}", f"use one of {', '.join(all_tags())}")
    digits = match[1]
    return f"{int(digits[:-1])}.{digits[-1]}"


def all_tags() -> list[str]:
    """Every wheel index the table knows: cpu, then the CUDA variants oldest first."""
    tags = {tag for tags in TORCH_WHEELS.values() for tag in tags}
    return [CPU_INDEX, *sorted(tags, key=lambda t: version_key(index_cuda(t)))]


def torch_release(version: str) -> str:
    """The table's release of a torch version ("2.8.0+cu128" -> "2.8"); else Incompatible."""
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?(?:[.+a-z0-9]*)", version.strip())
    release = f"{match[1]}.{match[2]}" if match else ""
    if release not in TORCH_WHEELS:
        known = sorted(TORCH_WHEELS, key=version_key)
        raise Incompatible(
            f"torch {version} is not in compat's wheel table ({known[0]} to {known[-1]})",
            f"use pytorch.version {known[0]} to {known[-1]}, or add the release to WHEEL_BUILDS "
            "in provision/compat/tables.py",
        )
    return release

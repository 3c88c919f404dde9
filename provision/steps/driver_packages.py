"""driver's packages: those that make up the chosen driver and fabric manager, the branch
each installed driver package belongs to, the purge of another branch's packages before the
chosen one goes in, and the hold that keeps apt from moving them under a loaded module.

Pure functions of the GPU-stack choice, the facts and (driver_packages) the driver step's
Settings, which is not imported here: provision.steps.driver imports this module.
"""

from __future__ import annotations

import re

from provision import compat, shell
from provision.changes import Change, Run
from provision.facts import Facts
from provision.facts.gpu import is_driver_package

# Debian builds these from source packages of their own, versioned apart from the driver: their
# version never names a branch (trixie: nvidia-modprobe 570.133.07-1 beside driver 550.163.01-2;
# bookworm: nvidia-persistenced 535.171.04 beside 535.261.03) [H: tests/data/facts/
# debian-13-apt-nvidia.txt (their Source is empty: their own), debian-12-apt-nvidia.txt
# (versions)]. installed_branches counts them with
# the one branch installed beside them, so a branch switch still purges them (and their hold).
HELPER_PACKAGES = frozenset(
    {"nvidia-modprobe", "nvidia-persistenced", "nvidia-settings", "nvidia-xconfig"}
)


def branch_of(name: str, version: str) -> int | None:
    """The driver branch a package belongs to: from its name (nvidia-utils-580-server) or,
    for unversioned names (Debian's nvidia-smi, NVIDIA's nvidia-open), its version; None for
    what is not the driver and for the helpers, whose version is their own."""
    if not is_driver_package(name) or name in HELPER_PACKAGES:
        return None
    if name.startswith("nvidia-driver-pinning-"):
        tail = name.removeprefix("nvidia-driver-pinning-")
        return int(tail) if tail.isdigit() else None
    m = re.search(r"-(\d{3})(?:-|$)", name)
    if m:
        return int(m[1])
    m = re.match(r"(?:\d+:)?(\d{3})\.", version)
    return int(m[1]) if m else None


def installed_branches(f: Facts) -> dict[int, list[str]]:
    """Installed driver packages by branch; the helpers (HELPER_PACKAGES) with the branch
    installed beside them when there is exactly one (else they belong to none: left alone)."""
    found: dict[int, list[str]] = {}
    helpers: list[str] = []
    for name, pkg in sorted(f.packages.items()):
        if pkg.installed or pkg.status[:2] in ("hi", "ii", "iU", "iF"):
            if name in HELPER_PACKAGES:
                helpers.append(name)
                continue
            branch = branch_of(name, pkg.version)
            if branch is not None:
                found.setdefault(branch, []).append(name)
    if len(found) == 1 and helpers:
        (names,) = found.values()
        names.extend(helpers)
        names.sort()
    return found


def driver_packages(choice: compat.Choice, f: Facts, s) -> list[str]:
    """The packages that make up the chosen driver (held once installed)."""
    br = choice.driver_branch
    if choice.source == "ubuntu":
        suffix = ("" if s.desktop else "-server") + ("-open" if choice.flavour == "open" else "")
        utils = f"nvidia-utils-{br}" + ("" if s.desktop else "-server")
        if s.desktop:
            return [f"nvidia-driver-{br}{suffix}", utils]
        return [f"nvidia-headless-no-dkms-{br}{suffix}", utils]
    if choice.source == "nvidia":
        if br >= 590:
            meta = "nvidia-open" if choice.flavour == "open" else "cuda-drivers"
            return [f"nvidia-driver-pinning-{br}", meta]
        return [f"nvidia-open-{br}" if choice.flavour == "open" else f"cuda-drivers-{br}"]
    # compat's flavour decides the module package (one decision: compat names it too); the
    # firmware per release (Debian 13: firmware-nvidia-gsp, firmware-misc-nonfree has none).
    kernel = compat.debian_kernel_package(choice.flavour)
    headless = [kernel, "nvidia-smi", "libcuda1", "nvidia-persistenced"]
    firmware = compat.debian_firmware_package(choice.os_key)
    return (["nvidia-driver"] if s.desktop else []) + headless + [firmware]


def fabric_packages(choice: compat.Choice, f: Facts) -> list[str]:
    """nvidia-fabricmanager of the chosen branch on a box with NVSwitch (HGX/DGX-class boards);
    without it CUDA fails with error 802. Debian's own packages have none: refused with the way
    out."""
    switches = compat.nvswitches(f)
    if not switches:
        return []
    package = compat.fabricmanager_package(choice.source, choice.driver_branch)
    if not package:
        raise compat.Incompatible(
            f"this box has NVSwitch ({', '.join(switches)}): it needs nvidia-fabricmanager of the "
            f"driver's branch, and {compat.SOURCE_TITLES[choice.source]} has none",
            "use driver.source = nvidia (NVIDIA's repository ships the fabric manager)",
        )
    return [package]


def purge_changes(f: Facts, branch: int) -> list[Change]:
    """Purge every installed package of another driver branch, naming them all."""
    others = {b: names for b, names in installed_branches(f).items() if b != branch}
    if not others:
        return []
    names = sorted({n for group in others.values() for n in group})
    branches = ", ".join(str(b) for b in sorted(others))
    purge = shell.apt_get("purge", "--allow-change-held-packages", *names)
    return [
        Change(
            f"switch from driver branch {branches} to {branch}: purge {len(names)} packages: "
            + ", ".join(names),
            (Run(purge, timeout_s=3600, description="apt-get purge (old driver branch)"),),
        )
    ]


def hold_changes(f: Facts, wanted: list[str]) -> list[Change]:
    """Hold the driver packages: an apt upgrade must never move them under a loaded module."""
    unheld = [n for n in wanted if not (f.packages.get(n) and f.packages[n].held)]
    if not unheld:
        return []
    return [
        Change(
            f"hold {len(unheld)} driver packages: {', '.join(unheld)}",
            (Run(shell.cmd("apt-mark", "hold", *unheld)),),
        )
    ]

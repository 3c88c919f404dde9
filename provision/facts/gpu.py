"""NVIDIA hardware and driver facts, read one way for every user (facts, steps, doctor,
status): which PCI functions are NVIDIA's, which driver module is loaded, which installed
packages are the driver.

The PCI class codes are the PCI-SIG's (0x03xxxx display controller, 0x0680xx bridge: an
NVSwitch); the module line is the one the driver prints in /proc/driver/nvidia/version
("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  ...").
"""

from __future__ import annotations

import re

NVIDIA_VENDOR = "0x10de"

# One line per NVIDIA PCI function: "<slot> <device id> <class>", read from sysfs (no lspci
# needed). POSIX sh.
PCI_SCRIPT = (
    'for d in /sys/bus/pci/devices/*; do [ "$(cat "$d/vendor" 2>/dev/null)" = '
    + NVIDIA_VENDOR
    + ' ] && echo "${d##*/} $(cat "$d/device") $(cat "$d/class")"; done; true'
)

_MODULE = re.compile(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)")

# Package name prefixes that belong to a driver branch (the purge on a branch switch); the
# container toolkit and CUDA's own packages share a prefix but are not the driver.
DRIVER_PREFIXES = (
    "nvidia-",
    "libnvidia-",
    "libcuda1",
    "xserver-xorg-video-nvidia",
    "linux-modules-nvidia-",
    "linux-objects-nvidia-",
    "linux-signatures-nvidia-",
    "firmware-nvidia-",
    "cuda-drivers",
)
NOT_DRIVER = ("nvidia-container-", "libnvidia-container", "nvidia-docker", "nvidia-cuda-")


def module_version(proc_version: str) -> str:
    """The loaded kernel module's version from /proc/driver/nvidia/version ('' if none)."""
    m = _MODULE.search(proc_version)
    return m.group(1) if m else ""


def is_driver_package(name: str) -> bool:
    """Whether an installed package of this name is (part of) the NVIDIA driver."""
    return name.startswith(DRIVER_PREFIXES) and not name.startswith(NOT_DRIVER)


def parse_pci_lines(text: str) -> list[tuple[str, str, str]]:
    """(slot, device id, class) for each line PCI_SCRIPT printed."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            rows.append((parts[0], parts[1], parts[2]))
    return rows


def is_display(pci_class: str) -> bool:
    """A display controller (VGA or 3D): a GPU."""
    return pci_class.lower().startswith("0x03")


def is_nvswitch(pci_class: str) -> bool:
    """A PCI bridge of NVIDIA's, in an HGX/DGX board: an NVSwitch."""
    return pci_class.lower().startswith("0x0680")

"""Kernel facts that more than one step needs: which header packages build modules (DKMS) for
the running kernel and keep up with its updates.

Package names are Debian's and Ubuntu's: `linux-headers-<flavour>` follows kernel updates on
both (Debian: linux-headers-amd64/-cloud-amd64; Ubuntu: linux-headers-generic), and Ubuntu
22.04's HWE kernels (6.x on 22.04) need linux-headers-generic-hwe-22.04 rather than the 5.15 GA
meta package.

Kernel names (`uname -r`, the suffix of the linux-image-<name> package):
- Debian 12 and Ubuntu: `<x.y.z>-<abi>[.<n>]-<flavour>` (6.1.0-28-amd64, 6.8.0-45-generic);
- Debian 13: `<x.y.z>+deb13[.<n>]-<flavour>` (6.12.118+deb13-amd64, 6.12.115+deb13.1-cloud-amd64;
  linux-headers-amd64 depends on linux-headers-6.12.118+deb13-amd64: trixie's archive, recorded
  in tests/data/facts/debian-13-kernel-packages.txt).
"""

from __future__ import annotations

import re

KERNEL_RE = re.compile(
    r"^(\d+\.\d+)\.\d+"
    r"(?:-\d+(?:\.\d+)*|\+deb\d+(?:\.\d+)*)"  # Debian 12 / Ubuntu ABI, or Debian 13's +debNN
    r"-(?P<flavour>[a-z0-9-]+)$"
)


def headers_packages(kernel: str, os_id: str, os_version: str) -> list[str]:
    """Headers for the running kernel plus the meta package that follows kernel updates."""
    m = KERNEL_RE.match(kernel)
    if not m:
        return [f"linux-headers-{kernel}"]
    flavour = m["flavour"]
    meta = f"linux-headers-{flavour}"
    if os_id == "ubuntu" and os_version == "22.04" and flavour == "generic" and m[1] != "5.15":
        meta = "linux-headers-generic-hwe-22.04"  # the HWE kernel, not 22.04's GA 5.15
    return [f"linux-headers-{kernel}", meta]

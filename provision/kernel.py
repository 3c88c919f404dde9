"""Kernel facts that more than one step needs: which header packages build modules (DKMS) for
the running kernel and keep up with its updates.

Package names are Debian's and Ubuntu's: `linux-headers-<flavour>` follows kernel updates on
both (Debian: linux-headers-amd64/-cloud-amd64; Ubuntu: linux-headers-generic), and Ubuntu
22.04's HWE kernels (6.x on 22.04) need linux-headers-generic-hwe-22.04 rather than the 5.15 GA
meta package.
"""

from __future__ import annotations

import re


def headers_packages(kernel: str, os_id: str, os_version: str) -> list[str]:
    """Headers for the running kernel plus the meta package that follows kernel updates."""
    m = re.match(r"^(\d+\.\d+)\.\d+-\d+(?:\.\d+)*-(?P<flavour>[a-z0-9-]+)$", kernel)
    if not m:
        return [f"linux-headers-{kernel}"]
    flavour = m["flavour"]
    meta = f"linux-headers-{flavour}"
    if os_id == "ubuntu" and os_version == "22.04" and flavour == "generic" and m[1] != "5.15":
        meta = "linux-headers-generic-hwe-22.04"  # the HWE kernel, not 22.04's GA 5.15
    return [f"linux-headers-{kernel}", meta]

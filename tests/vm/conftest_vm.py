"""What the VM tier needs on this machine."""

from __future__ import annotations

import os
import shutil


def missing() -> str:
    """Why the VM tier cannot run here ('' when it can)."""
    if os.geteuid() != 0:
        return "needs root (mmdebstrap, chroot, ip netns)"
    for tool in ("mmdebstrap", "qemu-system-x86_64", "qemu-img", "sfdisk", "mke2fs", "ssh"):
        if not shutil.which(tool):
            return f"needs {tool} (apt-get install mmdebstrap qemu-system-x86 qemu-utils fdisk)"
    return ""

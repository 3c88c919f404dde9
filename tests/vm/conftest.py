"""VM tier: a disposable qemu (TCG) Debian 12 VM with its own kernel, over real SSH."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from hostrun import provision_runner


def _missing() -> str:
    if os.geteuid() != 0:
        return "needs root (mmdebstrap, chroot)"
    for tool in ("mmdebstrap", "qemu-system-x86_64", "qemu-img", "sfdisk", "mke2fs", "ssh"):
        if not shutil.which(tool):
            return f"needs {tool} (apt-get install mmdebstrap qemu-system-x86 qemu-utils fdisk)"
    return ""


@pytest.fixture(scope="module")
def vm(require_tier):
    """A fresh VM (qcow2 overlay of the cached image) for this module."""
    missing = _missing()
    if missing:
        require_tier("vm", missing)
    import vm as harness

    name = f"v{uuid.uuid4().hex[:6]}"
    host = harness.up(name)
    try:
        yield host
    finally:
        harness.down(name)


@pytest.fixture
def provision(vm, tmp_path):
    """Run the real CLI against the vm: provision(*args) -> CompletedProcess."""
    return provision_runner(vm, tmp_path / "logs")

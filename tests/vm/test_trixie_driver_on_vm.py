"""Debian 13's own NVIDIA driver (non-free nvidia-kernel-dkms 550.163.01) installed on a trixie
VM's real kernel (6.12.x+deb13-amd64): DKMS builds the module against the VM's headers and the
initramfs is rebuilt without nouveau; loading it is skipped for lack of a GPU. The Debian 12
case (test_driver_on_vm.py) took over an hour under TCG, so `slow` (not in CI):

    sudo tests/run -m slow tests/vm/test_trixie_driver_on_vm.py -s
"""

from __future__ import annotations

import time

import pytest
from common import ssh

from hostrun import booted, provision_runner

pytestmark = [pytest.mark.vm, pytest.mark.slow]
DRIVER = {
    "driver.enabled": "true",
    "driver.require_gpu": "false",
    "driver.source": "debian",
}


@pytest.fixture(scope="module")
def vm(require_tier):
    yield from booted("vm", require_tier, extra_vars=DRIVER, release="trixie")


def test_debian_13_driver_builds_the_dkms_module_for_the_trixie_kernel(vm, tmp_path):
    provision = provision_runner(vm, tmp_path / "logs")
    started = time.monotonic()
    first = provision("driver", "--host", vm.name, timeout_s=4 * 3600)
    minutes = (time.monotonic() - started) / 60
    print(f"\n[trixie driver on TCG VM] first run {minutes:.1f} min\n{first.stdout}")
    kernel = ssh(vm, "uname -r").stdout.strip()
    assert "+deb13-" in kernel, kernel
    status = ssh(vm, "dkms status").stdout
    print(f"[trixie driver on TCG VM] dkms status: {status.strip()}")
    assert any("nvidia" in ln and kernel in ln and "installed" in ln for ln in status.splitlines())
    # The module as Debian's nvidia-kernel-dkms installs it for this kernel (no GPU: not loaded).
    modinfo = ssh(vm, f"modinfo -k {kernel} -F version nvidia-current || modinfo -k {kernel} "
                  "-F version nvidia", check=False)  # fmt: skip
    print(f"[trixie driver on TCG VM] modinfo version: {modinfo.stdout.strip()}")
    assert modinfo.stdout.strip().startswith("550."), modinfo.stdout + modinfo.stderr
    lsinitramfs = ssh(
        vm, f"lsinitramfs /boot/initrd.img-{kernel} | grep -c blacklist-nouveau", timeout=1800
    )
    assert lsinitramfs.stdout.strip() not in ("", "0"), "the initramfs lacks the blacklist"
    provision("driver", "--host", vm.name, "--plan", "--detailed-exitcode", timeout_s=1800)
    verify = provision("verify", "--host", vm.name, "driver", check_rc=None)
    print(verify.stdout)
    assert verify.returncode == 0
    assert "the DKMS module is built for the running kernel" in verify.stdout
    assert "no NVIDIA GPU on this host" in verify.stdout

"""The full Debian non-free driver install on the VM's real kernel: DKMS builds the module
against the VM's own headers, the initramfs is rebuilt without nouveau; loading the module is
skipped for lack of a GPU. Measured under TCG at well over 50 minutes, so `slow` (not in CI):

    python3 -m pytest -m slow tests/vm/test_driver_on_vm.py -s
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
    yield from booted("vm", require_tier, extra_vars=DRIVER)


def test_full_driver_install_builds_the_dkms_module_for_the_vm_kernel(vm, tmp_path):
    provision = provision_runner(vm, tmp_path / "logs")
    started = time.monotonic()
    first = provision("driver", "--host", vm.name, timeout_s=4 * 3600)
    minutes = (time.monotonic() - started) / 60
    print(f"\n[driver on TCG VM] first run {minutes:.1f} min\n{first.stdout}")
    kernel = ssh(vm, "uname -r").stdout.strip()
    status = ssh(vm, "dkms status").stdout
    print(f"[driver on TCG VM] dkms status: {status.strip()}")
    assert any("nvidia" in ln and kernel in ln and "installed" in ln for ln in status.splitlines())
    modprobe = ssh(vm, "modprobe nvidia-current; echo rc=$?", check=False)
    print(
        f"[driver on TCG VM] modprobe without a GPU: {(modprobe.stdout + modprobe.stderr)[-400:]}"
    )
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

"""driver's verify checks: behaviour through testinfra (nouveau off, the packages held, the
module loaded and matching nvidia-smi, the DKMS build, nvidia-persistenced, the fabric manager).

Each check takes a testinfra host and the driver step's Settings (provision.steps.driver
imports this module for its STEP, so this one does not import it back). The file and units
that check writes and verify proves are named here once, and re-exported by the step.
"""

from __future__ import annotations

from provision import stack
from provision.errors import Skip
from provision.facts.gpu import is_driver_package, module_version
from provision.unitstate import enabled_state, not_enabled_message

BLACKLIST = "/etc/modprobe.d/provision-blacklist-nouveau.conf"
PERSISTENCED = "nvidia-persistenced.service"
FABRICMANAGER = "nvidia-fabricmanager.service"


def verify_nouveau_off(host, s) -> None:
    """nouveau is blacklisted and not loaded"""
    if not s.enabled:
        raise Skip("driver.enabled is off")
    blacklist = host.file(BLACKLIST)
    assert blacklist.exists, f"{BLACKLIST} is missing"
    assert "blacklist nouveau" in blacklist.content_string, f"{BLACKLIST} does not blacklist it"
    assert not host.file("/sys/module/nouveau").exists, "nouveau is loaded: reboot needed"


def verify_packages_held(host, s) -> None:
    """the driver packages are installed and held"""
    if not s.enabled:
        raise Skip("driver.enabled is off")
    held = host.check_output("apt-mark showhold").split()
    driver_held = [n for n in held if is_driver_package(n)]
    assert driver_held, "no NVIDIA driver package is held (apt-mark showhold)"
    for name in driver_held:
        assert host.package(name).is_installed, f"{name} is held but not installed"


def verify_unattended_skips_driver(host, s) -> None:
    """unattended-upgrades never touches the driver"""
    if not s.enabled:
        raise Skip("driver.enabled is off")
    if not host.package("unattended-upgrades").is_installed:
        raise Skip("unattended-upgrades is not installed")
    config = host.run("apt-config dump Unattended-Upgrade::Package-Blacklist").stdout
    assert "nvidia-" in config, "unattended-upgrades may upgrade nvidia-* packages"


def verify_module_loaded(host, s) -> None:
    """the NVIDIA module is loaded and matches nvidia-smi"""
    if not s.enabled:
        raise Skip("driver.enabled is off")
    if not stack.has_gpu(host):
        raise Skip("no NVIDIA GPU on this host: the module has nothing to drive")
    proc = host.file("/proc/driver/nvidia/version")
    assert proc.exists, "the NVIDIA module is not loaded: reboot needed"
    loaded = module_version(proc.content_string) or "?"
    smi = host.run("nvidia-smi --query-gpu=driver_version --format=csv,noheader")
    assert smi.rc == 0 or "mismatch" not in smi.stdout + smi.stderr, (
        f"driver/library version mismatch (module {loaded}): reboot needed"
    )
    assert smi.rc == 0, f"nvidia-smi failed: {(smi.stdout + smi.stderr).strip()[-300:]}"
    userspace = smi.stdout.split()[0]
    assert userspace == loaded, f"module {loaded} but nvidia-smi {userspace}: reboot needed"


def verify_dkms_built(host, s) -> None:
    """the DKMS module is built for the running kernel"""
    if not s.enabled:
        raise Skip("driver.enabled is off")
    if host.run("systemd-detect-virt -c -q").rc == 0:
        raise Skip("in a container: the kernel and its modules belong to the host")
    if not host.exists("dkms") or "nvidia" not in host.run("dkms status").stdout:
        raise Skip("no DKMS NVIDIA module here (Ubuntu's signed precompiled modules)")
    kernel = host.check_output("uname -r")
    status = host.check_output("dkms status")
    built = [ln for ln in status.splitlines() if "nvidia" in ln and kernel in ln]
    assert any("installed" in ln for ln in built), f"not built for {kernel}: {status.strip()}"


def verify_persistenced(host, s) -> None:
    """nvidia-persistenced is enabled with a GPU, not enabled without one, and not failed

    With a GPU it runs once the module is loaded."""
    if not s.enabled or not s.persistenced:
        raise Skip("driver.persistenced is off" if s.enabled else "driver.enabled is off")
    svc = host.service(PERSISTENCED)
    failed = host.run(f"systemctl is-failed --quiet -- {PERSISTENCED}").rc == 0
    enabled, state = enabled_state(host, PERSISTENCED)  # a missing unit: exit 4 on systemd 257
    if not stack.has_gpu(host):
        assert not failed, f"{PERSISTENCED} is failed (no NVIDIA GPU here for it to serve)"
        assert not enabled, f"{PERSISTENCED} is enabled, but there is no NVIDIA GPU"
        return
    assert enabled, not_enabled_message(PERSISTENCED, state)
    assert not failed, f"{PERSISTENCED} is failed: journalctl -u {PERSISTENCED}"
    if host.file("/proc/driver/nvidia/version").exists:
        assert svc.is_running, f"{PERSISTENCED} is not running"


def verify_fabricmanager(host, s) -> None:
    """with NVSwitch: nvidia-fabricmanager of the driver's branch is enabled and running"""
    if not s.enabled:
        raise Skip("driver.enabled is off")
    if not stack.has_nvswitch(host):
        raise Skip("no NVSwitch on this host: no fabric manager needed")
    svc = host.service(FABRICMANAGER)
    enabled, state = enabled_state(host, FABRICMANAGER)
    assert enabled, f"{not_enabled_message(FABRICMANAGER, state)}: CUDA fails with error 802"
    if host.file("/proc/driver/nvidia/version").exists:
        assert svc.is_running, f"{FABRICMANAGER} is not running: journalctl -u {FABRICMANAGER}"

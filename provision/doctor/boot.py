"""doctor's boot-safety rules: will the driver load after the next boot? Secure Boot and the
signing key, nouveau, kernel headers, a pending reboot, held driver packages and a
driver/library mismatch. Each rule reads a Box and returns its finding."""

from __future__ import annotations

from provision import compat
from provision.doctor.finding import Box, Finding, driver_packages, library_version
from provision.facts import Facts
from provision.facts.gpu import module_version


def driver_source(choice: compat.Choice | None, request: compat.Request, facts: Facts) -> str:
    """Where the driver comes from: compat's choice, the request, else the OS's first."""
    if choice is not None:
        return choice.source
    if request.source:
        return request.source
    info = compat.OS_TABLE.get(facts.os_key)
    return info.sources[0] if info else ""


def secure_boot(box: Box) -> Finding:
    """Whether the nvidia module can load under the Secure Boot state."""
    data, facts, gpus, source = box.data, box.facts, box.gpus, box.source
    state = data.sb_state or facts.secure_boot
    how = "mokutil" if data.sb_state else "EFI variables"
    if state == "disabled":
        return Finding(
            "Secure Boot", "ok", f"off ({how}): unsigned (DKMS) driver modules load as well"
        )
    if state == "bios":
        return Finding("Secure Boot", "ok", "legacy BIOS boot: no Secure Boot, any module loads")
    if state != "enabled":
        return Finding(
            "Secure Boot",
            "warn",
            "state unknown (no mokutil, EFI variables not readable)",
            "sudo apt-get install mokutil; mokutil --sb-state",
        )
    mok_fix = (
        "enrol the DKMS key: sudo mokutil --import /var/lib/dkms/mok.pub, reboot, "
        "'Enroll MOK' at the console, then driver.mok_enrolled=true; or driver.source=ubuntu "
        "(signed modules), or Secure Boot off"
    )
    if "nvidia" in data.modules:
        return Finding("Secure Boot", "ok", "on, and the nvidia module is loaded (it is signed)")
    if source == "ubuntu":
        return Finding(
            "Secure Boot", "ok", "on: Ubuntu's signed precompiled nvidia modules will load"
        )
    if data.mok_enrolled:
        return Finding("Secure Boot", "ok", "on; the DKMS signing key is enrolled (MOK)")
    if not gpus:
        return Finding(
            "Secure Boot",
            "ok",
            "on: once a driver is installed it must be signed (Ubuntu's modules, or a "
            "DKMS key enrolled as MOK)",
        )
    if data.dkms_nvidia:
        return Finding(
            "Secure Boot",
            "fail",
            "on, and the nvidia module built by DKMS is signed with a key that is not "
            "enrolled: the kernel refuses to load it",
            mok_fix,
        )
    return Finding(
        "Secure Boot",
        "warn",
        f"on: the driver from {source or 'DKMS'} is built by DKMS and loads only once its "
        "signing key is enrolled (MOK)",
        mok_fix,
    )


def nouveau(box: Box) -> Finding:
    """nouveau loaded holds the card the nvidia module needs."""
    data, facts, gpus = box.data, box.facts, box.gpus
    if "nouveau" not in data.modules:
        return Finding("nouveau", "ok", "not loaded")
    fix = (
        "provision driver blacklists nouveau and runs update-initramfs -u; then reboot "
        "(a blacklist without the initramfs and the reboot does nothing)"
    )
    if driver_packages(facts):
        return Finding(
            "nouveau",
            "fail",
            "loaded although the NVIDIA driver is installed: the nvidia module cannot bind "
            "the card",
            fix,
        )
    return Finding(
        "nouveau",
        "warn" if gpus else "ok",
        "loaded: it drives the card now and must go before the nvidia driver can load",
        fix,
    )


def headers(box: Box) -> Finding:
    """Headers for the running kernel, which DKMS builds need."""
    data, facts, source = box.data, box.facts, box.source
    kernel = data.kernel or facts.kernel
    if facts.in_container:
        return Finding("headers", "skip", "in a container the kernel belongs to its host")
    if data.headers:
        return Finding("headers", "ok", f"installed for the running kernel {kernel}")
    return Finding(
        "headers",
        "warn",
        f"none for the running kernel {kernel}: DKMS cannot build the nvidia module for it"
        + (" (Ubuntu's signed modules do not need them)" if source == "ubuntu" else ""),
        f"sudo apt-get install linux-headers-{kernel} (provision driver does on DKMS paths)",
    )


def reboot(box: Box) -> Finding:
    """A pending reboot, and the packages that asked for it."""
    data, facts = box.data, box.facts
    if not facts.reboot_required:
        return Finding("reboot", "ok", "no reboot pending")
    pkgs = ", ".join(dict.fromkeys(data.reboot_packages))
    return Finding(
        "reboot",
        "warn",
        "a reboot is pending" + (f" (for {pkgs})" if pkgs else "")
        + ": the running kernel or libraries are not the installed ones",
        "sudo reboot when no job runs (or provision all --allow-reboot)",
    )  # fmt: skip


def held(box: Box) -> Finding:
    """Driver packages not held against upgrades."""
    facts = box.facts
    packages = driver_packages(facts)
    if not packages:
        return Finding("held packages", "ok", "no NVIDIA driver packages installed yet")
    loose = sorted(n for n in packages if not facts.packages[n].held)
    if not loose:
        return Finding("held packages", "ok", f"all {len(packages)} NVIDIA driver packages held")
    shown = ", ".join(loose[:4]) + (f" and {len(loose) - 4} more" if len(loose) > 4 else "")
    return Finding(
        "held packages",
        "warn",
        f"not held: {shown}: an upgrade can replace the libraries under the loaded module "
        "(Driver/library version mismatch)",
        "sudo apt-mark hold " + " ".join(loose[:4]) + (" ..." if len(loose) > 4 else "")
        + " (provision driver holds them)",
    )  # fmt: skip


def mismatch(box: Box) -> Finding:
    """The loaded module against the installed libraries, and nvidia-smi's verdict."""
    data, facts = box.data, box.facts
    module = module_version(facts.nvidia_driver)
    library = library_version(facts)
    if data.smi_present and "version mismatch" in data.smi_output.lower():
        return Finding(
            "driver",
            "fail",
            "nvidia-smi: Driver/library version mismatch"
            + (f" (module {module} loaded, libraries {library})" if module and library else ""),
            "reboot to load the new module (sudo reboot); hold the packages afterwards",
        )
    if module and library and module != library:
        return Finding(
            "driver",
            "fail",
            f"Driver/library version mismatch: module {module} loaded, libraries {library}",
            "reboot to load the new module (sudo reboot); hold the packages afterwards",
        )
    if not module:
        if driver_packages(facts):
            return Finding(
                "driver",
                "warn",
                "installed but the nvidia module is not loaded",
                "reboot; if it still is not loaded, `sudo modprobe nvidia` says why "
                "(Secure Boot, nouveau, a failed DKMS build)",
            )
        return Finding("driver", "ok", "no NVIDIA driver installed yet (provision driver)")
    if data.smi_present and data.smi_exit != 0:
        first = data.smi_output.strip().splitlines()[:1]
        return Finding(
            "driver",
            "fail",
            f"module {module} loaded but nvidia-smi fails: {first[0] if first else 'no output'}",
            "sudo dmesg | grep -i nvrm shows the kernel side; reinstall with provision driver",
        )
    return Finding(
        "driver",
        "ok",
        f"module {module} loaded" + (", libraries match" if library else "")
        + (", nvidia-smi works" if data.smi_present else ""),
    )  # fmt: skip

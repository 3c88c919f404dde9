"""driver: the NVIDIA driver that compat chose for the card and the OS.

Manages: nouveau blacklisted (`/etc/modprobe.d/provision-blacklist-nouveau.conf`, then
`update-initramfs -u`); the package source for the chosen install path:
- `ubuntu`: Canonical's signed precompiled modules through `ubuntu-drivers install --gpgpu
  nvidia:<branch>-server` (or the desktop flavour), which work with Secure Boot;
- `nvidia`: NVIDIA's CUDA repository (cuda-keyring, see the cuda step), then
  `nvidia-driver-pinning-<branch>` + `nvidia-open`/`cuda-drivers` (590 and newer) or
  `nvidia-open-<branch>`/`cuda-drivers-<branch>` (up to 580), built by DKMS;
- `debian`: Debian 12's own 535 driver, the module of compat's flavour (`nvidia-open-kernel-dkms`
  from contrib, or `nvidia-kernel-dkms` from non-free) + `nvidia-smi`, `libcuda1`,
  `nvidia-persistenced` (`nvidia-driver` with `driver.desktop`).
Another branch already installed is purged first (the plan names every package). Kernel
headers for the running kernel on DKMS paths. The driver packages are held (`apt-mark hold`);
the base step keeps unattended-upgrades off them. `nvidia-persistenced` enabled at boot where
there is a GPU to serve (without one it would only fail: it is disabled and its failed state
cleared).
With NVSwitch (HGX/DGX-class boards): `nvidia-fabricmanager` of the same branch, held with the
driver and enabled. With a GPU: a reboot when nouveau is loaded, the module is not, or the
loaded module is older than the one on disk (the "Driver/library version mismatch") — only with
--allow-reboot.

In a container the kernel belongs to the host: headers, initramfs and the reboot are skipped.
With Secure Boot on, an unsigned DKMS path stops with the MOK enrolment steps first.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from provision import compat, shell
from provision.changes import Change, Reboot, Run
from provision.errors import Skip, StepError
from provision.facts import Facts
from provision.facts.gpu import DRIVER_PREFIXES, NOT_DRIVER
from provision.kernel import headers_packages
from provision.resources import packages, service, template_file
from provision.settings import one_of, setting
from provision.step import Context, Step
from provision.steps import base, cuda, pytorch

BLACKLIST = "/etc/modprobe.d/provision-blacklist-nouveau.conf"
INITRAMFS_STAMP = "/var/lib/provision/initramfs-nouveau-stamp"
PERSISTENCED = "nvidia-persistenced.service"
FABRICMANAGER = "nvidia-fabricmanager.service"
MOK_HINT = (
    "Secure Boot only loads signed modules. Either use Ubuntu's signed modules "
    "(driver.source = ubuntu, Ubuntu only), or enrol the DKMS signing key once: "
    "`sudo dkms generate_mok` (Debian: the key is /var/lib/dkms/mok.pub), "
    "`sudo mokutil --import /var/lib/dkms/mok.pub` (choose a one-time password), reboot at "
    "the console, pick 'Enroll MOK' in the blue MOK manager and enter that password; then "
    "rerun with driver.mok_enrolled = true. Or turn Secure Boot off in the firmware."
)


def driver_branch(value: int) -> None:
    """0 (compat chooses) or a three-digit branch number."""
    if value != 0 and not 300 <= value <= 999:
        raise ValueError(f"{value} is not a driver branch (e.g. 580; 0 lets compat choose)")


@dataclass(frozen=True)
class Settings:
    """Settings of the driver step (inventory keys `driver.<field>`)."""

    enabled: bool = setting(True, "install the NVIDIA driver")
    require_gpu: bool = setting(
        True, "stop when the host has no NVIDIA GPU (false: prepare a box before the card)"
    )
    branch: int = setting(0, "driver branch, e.g. 580 (0: compat's choice)", driver_branch)
    flavour: str = setting(
        "",
        "open or proprietary kernel modules (empty: compat's choice)",
        one_of("", "open", "proprietary"),
    )
    source: str = setting(
        "",
        "ubuntu (signed modules), nvidia (NVIDIA's repo) or debian (non-free); empty: compat",
        one_of("", "ubuntu", "nvidia", "debian"),
    )
    desktop: bool = setting(False, "the desktop driver (X11 and GL) instead of the headless one")
    persistenced: bool = setting(True, "enable nvidia-persistenced")
    mok_enrolled: bool = setting(
        False, "Secure Boot: the DKMS signing key is enrolled (MOK), DKMS modules may be built"
    )


def request(ctx: Context) -> compat.Request:
    """The user's explicit GPU-stack choices, from the driver, cuda and pytorch settings."""
    d: Settings = ctx.settings(Settings)
    c: cuda.Settings = ctx.settings(cuda.Settings)
    p: pytorch.Settings = ctx.settings(pytorch.Settings)
    return compat.Request(
        branch=d.branch,
        flavour=d.flavour,
        source=d.source,
        cuda=c.version,
        torch_index=p.index,
        torch_version=p.version,
    )


def choice_for(ctx: Context) -> compat.Choice:
    """compat's choice for this host (its GPUs and OS) and the user's explicit settings."""
    gpus, _unknown = compat.gpus_from_facts(ctx.facts)
    return compat.choose(gpus, ctx.facts.os_key, request(ctx))


def branch_of(name: str, version: str) -> int | None:
    """The driver branch a package belongs to: from its name (nvidia-utils-580-server) or,
    for unversioned names (Debian's nvidia-smi, NVIDIA's nvidia-open), its version."""
    if not name.startswith(DRIVER_PREFIXES) or name.startswith(NOT_DRIVER):
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
    """Installed driver packages by branch."""
    found: dict[int, list[str]] = {}
    for name, pkg in sorted(f.packages.items()):
        if pkg.installed or pkg.status[:2] in ("hi", "ii", "iU", "iF"):
            branch = branch_of(name, pkg.version)
            if branch is not None:
                found.setdefault(branch, []).append(name)
    return found


def driver_packages(choice: compat.Choice, f: Facts, s: Settings) -> list[str]:
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
    # compat's flavour decides the module package (one decision: compat names it too).
    kernel = compat.debian_kernel_package(choice.flavour)
    headless = [kernel, "nvidia-smi", "libcuda1", "nvidia-persistenced"]
    return (["nvidia-driver"] if s.desktop else []) + headless + ["firmware-misc-nonfree"]


def fabric_packages(choice: compat.Choice, f: Facts) -> list[str]:
    """nvidia-fabricmanager of the chosen branch on a box with NVSwitch (HGX/DGX-class boards);
    without it CUDA fails with error 802. Debian 12 has none: refused with the way out."""
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


def ubuntu_drivers_target(choice: compat.Choice, s: Settings) -> str:
    """The `ubuntu-drivers install` argument: nvidia:580-server[-open] (or desktop)."""
    flavour = ("" if s.desktop else "-server") + ("-open" if choice.flavour == "open" else "")
    return f"nvidia:{choice.driver_branch}{flavour}"


def debian_sources_changes(ctx: Context) -> list[Change]:
    """contrib, non-free and non-free-firmware for the Debian suites (the cuda step's one
    components file, shared by every GPU step)."""
    return cuda.components_changes(ctx, cuda.wanted_components(ctx))


def blacklist_changes(ctx: Context) -> list[Change]:
    """The blacklist file, written before the packages (their initramfs trigger picks it up)."""
    return template_file(ctx, "driver/blacklist-nouveau.conf.j2", BLACKLIST, {})


def initramfs_changes(ctx: Context, blacklist: list[Change]) -> list[Change]:
    """An initramfs that carries the blacklist, rebuilt after the packages are in (stamped with
    the file's hash, so an interrupted rebuild is redone and a done one is not)."""
    if ctx.facts.in_container:
        return []  # the host's kernel and initramfs
    stamp = ctx.probe(shell.cmd("cat", "--", INITRAMFS_STAMP)).stdout.strip()
    wanted = _blacklist_hash()
    if not blacklist and stamp == wanted:
        return []
    rebuild = shell.and_(
        shell.cmd("update-initramfs", "-u"),
        shell.cmd("mkdir", "-p", "--", "/var/lib/provision"),
        f"echo {wanted} > {INITRAMFS_STAMP}",
    )
    return [
        Change(
            "rebuild the initramfs without nouveau (update-initramfs -u)",
            (Run(rebuild, timeout_s=3600, description="update-initramfs -u"),),
        )
    ]


def _blacklist_hash() -> str:
    from provision.templates import render, sha256

    return sha256(render("driver/blacklist-nouveau.conf.j2"))[:16]


def secure_boot_gate(ctx: Context, choice: compat.Choice, s: Settings, installing: bool) -> None:
    """Stop before building an unsigned DKMS module that Secure Boot would refuse."""
    if not installing or ctx.facts.secure_boot != "enabled" or s.mok_enrolled:
        return
    if choice.source == "ubuntu":
        return  # Canonical's precompiled modules are signed
    raise StepError(
        f"{ctx.host}: Secure Boot is on, and the {choice.source} driver path builds a DKMS "
        "module the kernel will refuse to load until its signing key is enrolled",
        MOK_HINT,
    )


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


def install_changes(
    ctx: Context, choice: compat.Choice, s: Settings, wanted: list[str], sources_changed: bool
) -> list[Change]:
    f = ctx.facts
    b: base.Settings = ctx.settings(base.Settings)
    missing = [n for n in wanted if not f.installed(n)]
    if not missing:
        return []
    if choice.source == "ubuntu":
        changes = packages(ctx, ["ubuntu-drivers-common"], lock_timeout_s=b.apt_lock_timeout_s)
        args = ["ubuntu-drivers", "install"] + ([] if s.desktop else ["--gpgpu"])
        target = ubuntu_drivers_target(choice, s)
        run = Run(
            f"env DEBIAN_FRONTEND=noninteractive {shell.cmd(*args, target)}",
            timeout_s=b.apt_lock_timeout_s + 3600,
            description=f"ubuntu-drivers install {target}",
        )
        changes.append(
            Change(f"install the signed NVIDIA driver {target} (ubuntu-drivers)", (run,))
        )
        return changes
    changes = packages(
        ctx,
        wanted,
        lock_timeout_s=b.apt_lock_timeout_s,
        cache_max_age_s=b.apt_cache_max_age_s,
        sources_changed=sources_changed,
    )
    # A DKMS build (and two initramfs rebuilds) can take an hour on a slow box.
    return [
        dataclasses.replace(
            c,
            actions=tuple(
                dataclasses.replace(a, timeout_s=b.apt_lock_timeout_s + 3 * 3600)
                if isinstance(a, Run) and "install" in a.command
                else a
                for a in c.actions
            ),
        )
        for c in changes
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


def loaded_version(f: Facts) -> str:
    """The version of the loaded NVIDIA module, from /proc/driver/nvidia/version."""
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", f.nvidia_driver)
    return m[1] if m else ""


def reboot_changes(ctx: Context) -> list[Change]:
    """With a GPU present: reboot when nouveau holds it or the module on disk is not loaded."""
    f = ctx.facts
    if not f.gpus or f.in_container:
        return []
    probe = ctx.probe(
        "test -d /sys/module/nouveau && echo nouveau; "
        "modinfo -F version nvidia 2>/dev/null || modinfo -F version nvidia-current 2>/dev/null;"
        " true"
    )
    lines = probe.stdout.split()
    on_disk = next((x for x in lines if x != "nouveau"), "")
    loaded = loaded_version(f)
    if "nouveau" in lines:
        reason = "nouveau holds the GPU"
    elif on_disk and not loaded:
        reason = f"load the NVIDIA module {on_disk}"
    elif on_disk and loaded != on_disk:
        reason = f"the loaded module {loaded} is older than the installed {on_disk}"
    else:
        return []
    return [Change(f"reboot: {reason}", (Reboot(reason),))]


def check(ctx: Context) -> list[Change]:
    """What the driver step would change on this host."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    f = ctx.facts
    require_gpu(ctx, s)
    choice = choice_for(ctx)
    wanted = driver_packages(choice, f, s)
    installing = any(not f.installed(n) for n in wanted)
    secure_boot_gate(ctx, choice, s, installing)
    blacklist = blacklist_changes(ctx)
    changes = list(blacklist)
    sources: list[Change] = []
    if installing and choice.source == "debian":
        sources = debian_sources_changes(ctx)
    elif installing and choice.source == "nvidia":
        sources = cuda.repo_changes(ctx, ctx.settings(cuda.Settings).repo_url)
    changes += sources
    changes += purge_changes(f, choice.driver_branch)
    fabric = fabric_packages(choice, f)
    wanted_all = list(wanted)
    if choice.source != "ubuntu":
        wanted_all += fabric
        if not f.in_container:  # DKMS builds against the headers
            wanted_all += headers_packages(f.kernel, f.os_id, f.os_version)
    changes += install_changes(ctx, choice, s, wanted_all, bool(sources))
    if choice.source == "ubuntu" and fabric:  # ubuntu-drivers does not add it
        b: base.Settings = ctx.settings(base.Settings)
        changes += packages(ctx, fabric, lock_timeout_s=b.apt_lock_timeout_s)
    changes += initramfs_changes(ctx, blacklist)
    changes += hold_changes(f, wanted + fabric)
    if fabric and f.installed(fabric[0]):
        changes += service(ctx, FABRICMANAGER, running=bool(loaded_version(f)))
    elif fabric:  # installed by this run: enable it now (started once the module is loaded)
        now = ["--now"] if loaded_version(f) else []
        enable = shell.cmd("systemctl", "enable", *now, "--", FABRICMANAGER)
        changes.append(Change(f"enable {FABRICMANAGER} at boot", (Run(enable),)))
    changes += persistenced_changes(ctx, s, installing)
    changes += reboot_changes(ctx)
    return changes


def persistenced_changes(ctx: Context, s: Settings, installing: bool) -> list[Change]:
    """nvidia-persistenced: enabled (running once the module is loaded) with a GPU; without one
    it can only fail, so it is disabled, stopped and its failed state cleared (also right after
    the install that brings the unit, which Debian enables)."""
    f = ctx.facts
    if not s.persistenced:
        return []
    has_unit = f.installed("nvidia-persistenced") or any(
        n.startswith("nvidia-compute-utils-") and f.installed(n) for n in f.packages
    )
    if f.gpus:
        return service(ctx, PERSISTENCED, running=bool(loaded_version(f))) if has_unit else []
    if has_unit:
        probe = ctx.probe(
            shell.cmd(
                "systemctl", "show", "-p", "UnitFileState", "-p", "ActiveState", "--", PERSISTENCED
            )
        )
        state = dict(line.split("=", 1) for line in probe.stdout.splitlines() if "=" in line)
        enabled = state.get("UnitFileState") in ("enabled", "enabled-runtime")
        active = state.get("ActiveState", "")
        if not enabled and active in ("inactive", ""):
            return []
        why = active or "unknown"
    elif installing:
        why = "the driver packages bring it"
    else:
        return []
    # The unit may not exist yet on a plan; the re-check after applying proves the result.
    off = (
        f"{shell.cmd('systemctl', 'disable', '--now', '--', PERSISTENCED)} 2>/dev/null || true; "
        f"{shell.cmd('systemctl', 'reset-failed', '--', PERSISTENCED)} 2>/dev/null || true"
    )
    return [
        Change(
            f"disable {PERSISTENCED}: no NVIDIA GPU here for it to serve ({why})",
            (Run(off, description=f"systemctl disable --now {PERSISTENCED}"),),
        )
    ]


def require_gpu(ctx: Context, s: Settings) -> None:
    """No NVIDIA GPU: stop, unless the box is being prepared before the card arrives."""
    if not ctx.facts.gpus and s.require_gpu:
        raise StepError(
            f"{ctx.host}: no NVIDIA GPU found (no PCI device of vendor 10de)",
            "check that the card is seated and powered (`lspci -nn -d 10de:`); to prepare the "
            "box before the card arrives, set driver.require_gpu = false",
        )


def preflight(ctx: Context) -> None:
    """Before any step changes anything: a GPU is there (or not required), and the
    driver/CUDA/wheel combination can work."""
    s: Settings = ctx.settings(Settings)
    if s.enabled:
        require_gpu(ctx, s)
        fabric_packages(choice_for(ctx), ctx.facts)


# --- verify: behaviour, through testinfra ----------------------------------------------------


GPU_PROBE = (
    'for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = 0x10de ] && '
    'case "$(cat $d/class)" in 0x03*) echo gpu;; esac; done; true'
)


def has_gpu(host) -> bool:
    """Whether the host has an NVIDIA display-class PCI device (a GPU, not its audio)."""
    return "gpu" in host.run(GPU_PROBE).stdout.split()


def verify_nouveau_off(host, s: Settings) -> None:
    """nouveau is blacklisted and not loaded"""
    if not s.enabled:
        raise Skip("driver.enabled is off")
    blacklist = host.file(BLACKLIST)
    assert blacklist.exists, f"{BLACKLIST} is missing"
    assert "blacklist nouveau" in blacklist.content_string, f"{BLACKLIST} does not blacklist it"
    assert not host.file("/sys/module/nouveau").exists, "nouveau is loaded: reboot needed"


def verify_packages_held(host, s: Settings) -> None:
    """the driver packages are installed and held"""
    if not s.enabled:
        raise Skip("driver.enabled is off")
    held = host.check_output("apt-mark showhold").split()
    driver_held = [n for n in held if n.startswith(DRIVER_PREFIXES)]
    assert driver_held, "no NVIDIA driver package is held (apt-mark showhold)"
    for name in driver_held:
        assert host.package(name).is_installed, f"{name} is held but not installed"


def verify_unattended_skips_driver(host, s: Settings) -> None:
    """unattended-upgrades never touches the driver"""
    if not s.enabled:
        raise Skip("driver.enabled is off")
    if not host.package("unattended-upgrades").is_installed:
        raise Skip("unattended-upgrades is not installed")
    config = host.run("apt-config dump Unattended-Upgrade::Package-Blacklist").stdout
    assert "nvidia-" in config, "unattended-upgrades may upgrade nvidia-* packages"


def verify_module_loaded(host, s: Settings) -> None:
    """the NVIDIA module is loaded and matches nvidia-smi"""
    if not s.enabled:
        raise Skip("driver.enabled is off")
    if not has_gpu(host):
        raise Skip("no NVIDIA GPU on this host: the module has nothing to drive")
    proc = host.file("/proc/driver/nvidia/version")
    assert proc.exists, "the NVIDIA module is not loaded: reboot needed"
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", proc.content_string)
    loaded = m[1] if m else "?"
    smi = host.run("nvidia-smi --query-gpu=driver_version --format=csv,noheader")
    assert smi.rc == 0 or "mismatch" not in smi.stdout + smi.stderr, (
        f"driver/library version mismatch (module {loaded}): reboot needed"
    )
    assert smi.rc == 0, f"nvidia-smi failed: {(smi.stdout + smi.stderr).strip()[-300:]}"
    userspace = smi.stdout.split()[0]
    assert userspace == loaded, f"module {loaded} but nvidia-smi {userspace}: reboot needed"


def verify_dkms_built(host, s: Settings) -> None:
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


def verify_persistenced(host, s: Settings) -> None:
    """nvidia-persistenced is enabled and not failed with a GPU (running once the module is
    loaded); without a GPU it is neither enabled nor failed"""
    if not s.enabled or not s.persistenced:
        raise Skip("driver.persistenced is off" if s.enabled else "driver.enabled is off")
    svc = host.service(PERSISTENCED)
    failed = host.run(f"systemctl is-failed --quiet -- {PERSISTENCED}").rc == 0
    if not has_gpu(host):
        assert not failed, f"{PERSISTENCED} is failed (no NVIDIA GPU here for it to serve)"
        assert not svc.is_enabled, f"{PERSISTENCED} is enabled, but there is no NVIDIA GPU"
        return
    assert svc.is_enabled, f"{PERSISTENCED} is not enabled at boot"
    assert not failed, f"{PERSISTENCED} is failed: journalctl -u {PERSISTENCED}"
    if host.file("/proc/driver/nvidia/version").exists:
        assert svc.is_running, f"{PERSISTENCED} is not running"


NVSWITCH_PROBE = (
    'for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = 0x10de ] && '
    'case "$(cat $d/class)" in 0x0680*) echo nvswitch;; esac; done; true'
)


def verify_fabricmanager(host, s: Settings) -> None:
    """with NVSwitch: nvidia-fabricmanager of the driver's branch is enabled and running"""
    if not s.enabled:
        raise Skip("driver.enabled is off")
    if "nvswitch" not in host.run(NVSWITCH_PROBE).stdout.split():
        raise Skip("no NVSwitch on this host: no fabric manager needed")
    svc = host.service(FABRICMANAGER)
    assert svc.is_enabled, f"{FABRICMANAGER} is not enabled: CUDA fails with error 802 without it"
    if host.file("/proc/driver/nvidia/version").exists:
        assert svc.is_running, f"{FABRICMANAGER} is not running: journalctl -u {FABRICMANAGER}"


STEP = Step(
    name="driver",
    summary="NVIDIA driver (branch and modules chosen by compat), nouveau off, packages held",
    settings=Settings,
    check=check,
    verify=(
        verify_nouveau_off,
        verify_packages_held,
        verify_unattended_skips_driver,
        verify_dkms_built,
        verify_module_loaded,
        verify_persistenced,
        verify_fabricmanager,
    ),
    preflight=preflight,
)

"""driver: the NVIDIA driver that compat chose for the card and the OS.

The branch, flavour and source are the host's one GPU-stack decision (provision.stack).
Manages: nouveau blacklisted (`/etc/modprobe.d/provision-blacklist-nouveau.conf`, then
`update-initramfs -u`); the package source for the chosen install path:
- `ubuntu`: Canonical's signed precompiled modules through `ubuntu-drivers install --gpgpu
  nvidia:<branch>-server` (or the desktop flavour), which work with Secure Boot;
- `nvidia`: NVIDIA's CUDA repository (cuda-keyring: provision.cudarepo), then
  `nvidia-driver-pinning-<branch>` + `nvidia-open`/`cuda-drivers` (590 and newer) or
  `nvidia-open-<branch>`/`cuda-drivers-<branch>` (up to 580), built by DKMS;
- `debian`: Debian's own driver (535 on Debian 12, 550 on Debian 13, unversioned names), the
  module of compat's flavour (`nvidia-open-kernel-dkms` from contrib, or `nvidia-kernel-dkms`
  from non-free) + `nvidia-smi`, `libcuda1`, `nvidia-persistenced` and the release's firmware
  (`firmware-misc-nonfree` on 12, `firmware-nvidia-gsp` on 13; `nvidia-driver` with
  `driver.desktop`). Helper packages versioned on their own (trixie's nvidia-modprobe 570) never
  name a branch (driver_packages.HELPER_PACKAGES).
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
The room: which packages, the branch switch and the hold in driver_packages.py; the verify
checks in driver_verify.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from provision import compat, cudarepo, resources, shell, stack
from provision.changes import Change, Reboot, Run
from provision.errors import ProvisionError, StepError
from provision.facts.reads import Read
from provision.kernel import headers_packages
from provision.resources import packages, service, template_file
from provision.settings import one_of, setting
from provision.step import Context, Download, Step
from provision.steps.driver_packages import (  # noqa: F401 (branch_of: re-exported)
    branch_of,
    driver_packages,
    fabric_packages,
    hold_changes,
    purge_changes,
)
from provision.steps.driver_verify import (
    BLACKLIST,
    FABRICMANAGER,
    PERSISTENCED,
    verify_dkms_built,
    verify_fabricmanager,
    verify_module_loaded,
    verify_nouveau_off,
    verify_packages_held,
    verify_persistenced,
    verify_unattended_skips_driver,
)

INITRAMFS_STAMP = "/var/lib/provision/initramfs-nouveau-stamp"
MOK_HINT = (
    "Secure Boot only loads signed modules. Either use Ubuntu's signed modules "
    "(driver.source = ubuntu, Ubuntu only), or enrol the DKMS signing key once: "
    "`sudo dkms generate_mok` (Debian: the key is /var/lib/dkms/mok.pub), "
    "`sudo mokutil --import /var/lib/dkms/mok.pub` (choose a one-time password), reboot at "
    "the console, pick 'Enroll MOK' in the blue MOK manager and enter that password; then "
    "rerun with driver.mok_enrolled = true. Or turn Secure Boot off in the firmware."
)


# The module state a reboot would fix: nouveau loaded, and the NVIDIA module's version on disk.
REBOOT_READ = Read(
    "test -d /sys/module/nouveau && echo nouveau; "
    "modinfo -F version nvidia 2>/dev/null || modinfo -F version nvidia-current 2>/dev/null;"
    " true"
)
STAMP_READ = Read(shell.cmd("cat", "--", INITRAMFS_STAMP))


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


def ubuntu_drivers_target(choice: compat.Choice, s: Settings) -> str:
    """The `ubuntu-drivers install` argument: nvidia:580-server[-open] (or desktop)."""
    flavour = ("" if s.desktop else "-server") + ("-open" if choice.flavour == "open" else "")
    return f"nvidia:{choice.driver_branch}{flavour}"


def debian_sources_changes(ctx: Context) -> list[Change]:
    """contrib, non-free and non-free-firmware for the Debian suites (the one components file
    every GPU step shares)."""
    return cudarepo.components_changes(ctx, cudarepo.wanted_components(ctx))


def blacklist_changes(ctx: Context) -> list[Change]:
    """The blacklist file, written before the packages (their initramfs trigger picks it up)."""
    return template_file(ctx, "driver/blacklist-nouveau.conf.j2", BLACKLIST, {})


def initramfs_changes(ctx: Context, blacklist: list[Change]) -> list[Change]:
    """An initramfs that carries the blacklist, rebuilt after the packages are in (stamped with
    the file's hash, so an interrupted rebuild is redone and a done one is not)."""
    if ctx.facts.in_container:
        return []  # the host's kernel and initramfs
    stamp = ctx.read(STAMP_READ.command).stdout.strip()
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


def install_changes(
    ctx: Context, choice: compat.Choice, s: Settings, wanted: list[str], sources_changed: bool
) -> list[Change]:
    f = ctx.facts
    b = ctx.of("base")
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
    # NVIDIA's 590+ branch pin is a package of apt preferences: installed on its own first, so
    # that the driver's install already resolves within the branch (NVIDIA's driver installation
    # guide, "Recent Updates": "install the pinning package prior to installing the driver").
    pins = [n for n in missing if n.startswith("nvidia-driver-pinning-")]
    changes = packages(
        ctx,
        pins,
        lock_timeout_s=b.apt_lock_timeout_s,
        cache_max_age_s=b.apt_cache_max_age_s,
        sources_changed=sources_changed,
    )
    changes += packages(
        ctx,
        [n for n in wanted if n not in pins],
        lock_timeout_s=b.apt_lock_timeout_s,
        # the lists the pin's install just updated (if it did) serve the driver's as well
        cache_max_age_s=10**9 if changes else b.apt_cache_max_age_s,
        sources_changed=sources_changed and not changes,
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


def reboot_changes(ctx: Context) -> list[Change]:
    """With a GPU present: reboot when nouveau holds it or the module on disk is not loaded."""
    f = ctx.facts
    if not f.gpus or f.in_container:
        return []
    lines = ctx.read(REBOOT_READ.command).stdout.split()
    on_disk = next((x for x in lines if x != "nouveau"), "")
    loaded = stack.loaded_version(f)
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
    choice = stack.decision(ctx)
    wanted = driver_packages(choice, f, s)
    installing = any(not f.installed(n) for n in wanted)
    secure_boot_gate(ctx, choice, s, installing)
    blacklist = blacklist_changes(ctx)
    changes = list(blacklist)
    sources: list[Change] = []
    if installing and choice.source == "debian":
        sources = debian_sources_changes(ctx)
    elif installing and choice.source == "nvidia":
        sources = cudarepo.repo_changes(ctx, ctx.of("cuda").repo_url)
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
        changes += packages(ctx, fabric, lock_timeout_s=ctx.of("base").apt_lock_timeout_s)
    changes += initramfs_changes(ctx, blacklist)
    changes += hold_changes(f, wanted + fabric)
    if fabric and f.installed(fabric[0]):
        changes += service(ctx, FABRICMANAGER, running=bool(stack.loaded_version(f)))
    elif fabric:  # installed by this run: enable it now (started once the module is loaded)
        now = ["--now"] if stack.loaded_version(f) else []
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
        return service(ctx, PERSISTENCED, running=bool(stack.loaded_version(f))) if has_unit else []
    if has_unit:
        probe = ctx.read(resources.service_read(PERSISTENCED).command)
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


def reads(ctx: Context) -> list[Read]:
    """Everything check reads, from the facts, the settings and the GPU-stack decision."""
    s: Settings = ctx.settings(Settings)
    f = ctx.facts
    if not s.enabled or (not f.gpus and s.require_gpu):
        return []  # check refuses before reading anything (preflight says why)
    found = [resources.file_read(ctx, BLACKLIST)]
    if not f.in_container:
        found.append(STAMP_READ)
        if f.gpus:
            found.append(REBOOT_READ)
    found.append(resources.service_read(PERSISTENCED))
    choice = stack.try_decision(ctx)
    if choice is None:
        return found  # compat refuses: preflight and check say why
    try:
        fabric = fabric_packages(choice, f)
    except ProvisionError:
        fabric = []
    if fabric:
        found.append(resources.service_read(FABRICMANAGER))
    if any(not f.installed(n) for n in driver_packages(choice, f, s)):
        if choice.source == "debian":
            found += cudarepo.components_reads(ctx)
        elif choice.source == "nvidia":
            found += cudarepo.repo_reads(ctx, ctx.of("cuda").repo_url)
    return found


def preflight(ctx: Context) -> None:
    """Before any step changes anything: a GPU is there (or not required), and the
    driver/CUDA/wheel combination can work."""
    s: Settings = ctx.settings(Settings)
    if s.enabled:
        require_gpu(ctx, s)
        fabric_packages(stack.decision(ctx), ctx.facts)


def downloads(ctx: Context) -> list[Download]:
    """Debian's driver packages check installs, and the components file that enables them,
    for the background fetcher (NVIDIA's repository needs its keyring first: left to apt)."""
    s: Settings = ctx.settings(Settings)
    f = ctx.facts
    choice = stack.try_decision(ctx) if s.enabled and (f.gpus or not s.require_gpu) else None
    if choice is None or choice.source != "debian":
        return []
    wanted = driver_packages(choice, f, s) + fabric_packages(choice, f)
    wanted += [] if f.in_container else headers_packages(f.kernel, f.os_id, f.os_version)
    found = resources.package_downloads(ctx, wanted)
    installing = any(not f.installed(n) for n in driver_packages(choice, f, s))
    sources = resources.apt_sources(debian_sources_changes(ctx)) if installing else []
    return sources + found if found else []


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
    reads=reads,
    downloads=downloads,
)

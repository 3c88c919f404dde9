"""driver.check on recorded facts: Ubuntu 22.04/24.04 and Debian 12, with and without a GPU,
Secure Boot on/off, a branch switch; exact commands for the package and repo paths."""

import dataclasses
from pathlib import Path

import pytest

import declared
from fakes import FakeRemote
from provision import compat, cudarepo, stack
from provision.changes import Reboot, Result, Run, Upload
from provision.errors import ConfigError, StepError
from provision.facts import Package, PciDevice, parse_facts
from provision.step import Context
from provision.steps import base, cuda, driver, pytorch
from provision.templates import render, sha256

DATA = Path(__file__).parent.parent / "data" / "facts"
GTX_1080_TI = PciDevice("0000:01:00.0", "1b06", "0x030000")
RTX_4090 = PciDevice("0000:01:00.0", "2684", "0x030000")
TEMPLATE_EXAMPLES = {
    "driver/blacklist-nouveau.conf.j2": {},
}
STAMP = sha256(render("driver/blacklist-nouveau.conf.j2"))[:16]
BLACKLIST_HASH = sha256(render("driver/blacklist-nouveau.conf.j2"))


def facts(name, *, gpus=None, packages=None, secure_boot=None, nvidia_driver=None):
    f = parse_facts((DATA / f"{name}.txt").read_text())
    changes = {}
    if gpus is not None:
        changes["nvidia_pci"] = tuple(gpus)
    if packages is not None:
        changes["packages"] = {**f.packages, **packages}
    if secure_boot is not None:
        changes["secure_boot"] = secure_boot
    if nvidia_driver is not None:
        changes["nvidia_driver"] = nvidia_driver
    return dataclasses.replace(f, **changes)


def ubuntu_gpu(**kw):
    """The recorded Ubuntu 22.04 box: GTX 1080 Ti, driver 550-server held, Secure Boot on."""
    return facts("ubuntu-22.04-gpu", **kw)


def installed(*names, version="580.95.05-0ubuntu1", status="hi "):
    return {n: Package(version, status) for n in names}


def run_check(f, remote, **settings):
    s = {
        "driver": driver.Settings(**settings.pop("driver", {})),
        "cuda": cuda.Settings(**settings.pop("cuda", {})),
        "pytorch": pytorch.Settings(**settings.pop("pytorch", {})),
        "base": base.Settings(**settings.pop("base", {})),
    }
    return driver.check(declared.context(driver.STEP, f, s, remote))


def host(blacklist=True, stamp=True, modinfo="", nouveau=False, components="contrib non-free"):
    r = FakeRemote().on(r"sha256sum -- /etc/apt/sources.list.d", (1, ""))
    if blacklist:
        r.on(r"sha256sum -- /etc/modprobe.d", f"644 root root\n{BLACKLIST_HASH}  x\n")
    else:
        r.on(r"sha256sum -- /etc/modprobe.d", (1, ""))
    r.on(r"cat -- /var/lib/provision/initramfs", STAMP + "\n" if stamp else (1, ""))
    r.on(r"/sys/module/nouveau", ("nouveau\n" if nouveau else "") + modinfo)
    mirror = "http://deb.debian.org/debian/"
    lines = "".join(
        f"{mirror}\tbookworm\t{c}\t/etc/apt/sources.list:1\n" for c in ["main", *components.split()]
    )
    r.on(
        r"apt-get indextargets",
        f"@@targets\n{lines}@@fetched\n{mirror}\n@@keyring\n@@apt-key\n@@end\n",
    )
    r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")
    return r


def summaries(changes):
    return [c.summary for c in changes]


def commands(changes):
    return [a.command for c in changes for a in c.actions if isinstance(a, Run)]


# --- no GPU -----------------------------------------------------------------------------------


def test_no_gpu_stops_with_the_setting_that_allows_it():
    with pytest.raises(StepError) as info:
        run_check(facts("debian-12-nspawn"), host())
    assert "no NVIDIA GPU found" in info.value.message
    assert "driver.require_gpu = false" in info.value.hint


def test_disabled_step_does_nothing():
    assert run_check(facts("debian-12-nspawn"), FakeRemote(), driver={"enabled": False}) == []


# --- Ubuntu: Canonical's signed modules -------------------------------------------------------


def test_ubuntu_branch_switch_purges_the_old_branch_first_and_names_it():
    f = ubuntu_gpu(secure_boot="disabled")
    changes = run_check(f, host())
    text = summaries(changes)
    purge = next(s for s in text if s.startswith("switch from driver branch 550 to 580"))
    assert "libnvidia-compute-550-server" in purge and "nvidia-driver-550-server" in purge
    assert text.index(purge) < next(i for i, s in enumerate(text) if "ubuntu-drivers" in s)
    cmds = commands(changes)
    assert any(
        "apt-get" in c and "purge" in c and "--allow-change-held-packages" in c for c in cmds
    )
    assert (
        "env DEBIAN_FRONTEND=noninteractive ubuntu-drivers install --gpgpu nvidia:580-server"
        in cmds
    )


def test_ubuntu_secure_boot_is_fine_with_signed_modules():
    changes = run_check(ubuntu_gpu(secure_boot="enabled"), host())
    assert any("signed NVIDIA driver nvidia:580-server" in s for s in summaries(changes))


def test_ubuntu_turing_gets_open_modules():
    f = facts("ubuntu-24.04-fresh", gpus=[RTX_4090])
    cmds = commands(run_check(f, host()))
    assert any(c.endswith("ubuntu-drivers install --gpgpu nvidia:580-server-open") for c in cmds)


def test_ubuntu_desktop_flavour():
    f = facts("ubuntu-24.04-fresh", gpus=[RTX_4090])
    cmds = commands(run_check(f, host(), driver={"desktop": True}))
    assert any(c.endswith("ubuntu-drivers install nvidia:580-open") for c in cmds)


def test_ubuntu_installed_and_held_driver_needs_nothing():
    pkgs = installed("nvidia-headless-no-dkms-580-server", "nvidia-utils-580-server")
    f = ubuntu_gpu(
        packages={**pkgs, **{n: Package("", "un ") for n in ubuntu_gpu().packages if "550" in n}},
        nvidia_driver="NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.95.05  Sun Sep 1\n",
    )
    changes = run_check(f, host(modinfo="580.95.05\n"))
    assert summaries(changes) == []


def test_ubuntu_unheld_driver_gets_held():
    pkgs = installed("nvidia-headless-no-dkms-580-server", "nvidia-utils-580-server", status="ii ")
    f = ubuntu_gpu(
        packages={
            **pkgs,
            **{
                n: Package("", "un ")
                for n in ("nvidia-driver-550-server", "libnvidia-compute-550-server")
            },
        }
    )
    changes = run_check(f, host())
    assert "apt-mark hold nvidia-headless-no-dkms-580-server nvidia-utils-580-server" in commands(
        changes
    )


# --- reboot decisions -------------------------------------------------------------------------


def _converged_ubuntu(loaded):
    pkgs = installed("nvidia-headless-no-dkms-580-server", "nvidia-utils-580-server")
    gone = {
        n: Package("", "un ") for n in ("nvidia-driver-550-server", "libnvidia-compute-550-server")
    }
    text = (
        f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {loaded}  Sun Sep 1\n" if loaded else ""
    )
    return ubuntu_gpu(packages={**pkgs, **gone}, nvidia_driver=text)


def test_module_not_loaded_after_install_asks_for_a_reboot():
    changes = run_check(_converged_ubuntu(""), host(modinfo="580.95.05\n"))
    reboot = [a for c in changes for a in c.actions if isinstance(a, Reboot)]
    assert reboot and "load the NVIDIA module 580.95.05" in reboot[0].reason


def test_version_mismatch_asks_for_a_reboot_not_a_cryptic_error():
    changes = run_check(_converged_ubuntu("580.82.07"), host(modinfo="580.95.05\n"))
    assert summaries(changes) == [
        "reboot: the loaded module 580.82.07 is older than the installed 580.95.05"
    ]


def test_nouveau_loaded_asks_for_a_reboot():
    changes = run_check(_converged_ubuntu(""), host(nouveau=True))
    assert summaries(changes)[-1] == "reboot: nouveau holds the GPU"


def test_blacklist_then_initramfs_rebuild():
    changes = run_check(
        _converged_ubuntu("580.95.05"), host(blacklist=False, stamp=False, modinfo="580.95.05\n")
    )
    assert summaries(changes)[:2] == [
        f"write {driver.BLACKLIST}",
        "rebuild the initramfs without nouveau (update-initramfs -u)",
    ]
    upload = changes[0].actions[0]
    assert isinstance(upload, Upload) and b"blacklist nouveau" in upload.content
    assert commands(changes)[0].startswith("update-initramfs -u && mkdir -p -- /var/lib/provision")


def test_interrupted_initramfs_rebuild_is_redone():
    changes = run_check(_converged_ubuntu("580.95.05"), host(stamp=False, modinfo="580.95.05\n"))
    assert summaries(changes) == ["rebuild the initramfs without nouveau (update-initramfs -u)"]


# --- Debian 12 --------------------------------------------------------------------------------


def test_debian_nonfree_path_exact_packages_and_components():
    f = facts("debian-12-nspawn", gpus=[GTX_1080_TI])
    f = dataclasses.replace(f, container="none")
    changes = run_check(f, host(components=""), driver={"source": "debian"})
    text = summaries(changes)
    index = text.index(f"write {cudarepo.COMPONENTS_SOURCES}")
    sources = changes[index].actions[0]
    assert b"Components: contrib non-free non-free-firmware" in sources.content
    assert b"URIs: http://deb.debian.org/debian/" in sources.content  # the host's own mirror
    install = [c for c in commands(changes) if "install" in c and "nvidia-kernel-dkms" in c]
    assert install, commands(changes)
    for name in ("nvidia-kernel-dkms", "nvidia-smi", "libcuda1", "nvidia-persistenced"):
        assert name in install[0]
    assert " update --error-on=any" in commands(changes)[commands(changes).index(install[0]) - 1]
    assert "apt-mark hold nvidia-kernel-dkms nvidia-smi libcuda1 nvidia-persistenced" in " ".join(
        commands(changes)
    )


def test_debian_secure_boot_stops_with_mok_instructions():
    f = facts("debian-12-nspawn", gpus=[GTX_1080_TI], secure_boot="enabled")
    f = dataclasses.replace(f, container="none")
    with pytest.raises(StepError) as info:
        run_check(f, host(), driver={"source": "debian"})
    assert "Secure Boot is on" in info.value.message
    assert "mokutil --import" in info.value.hint and "driver.mok_enrolled = true" in info.value.hint


def test_debian_secure_boot_with_enrolled_key_goes_on():
    f = facts("debian-12-nspawn", gpus=[GTX_1080_TI], secure_boot="enabled")
    f = dataclasses.replace(f, container="none")
    changes = run_check(f, host(), driver={"source": "debian", "mok_enrolled": True})
    assert any("nvidia-kernel-dkms" in c for c in commands(changes))


def test_debian_in_a_container_skips_the_kernel_parts():
    f = facts("debian-12-nspawn")  # no GPU, in systemd-nspawn
    changes = run_check(f, host(blacklist=False), driver={"source": "debian", "require_gpu": False})
    text = " | ".join(summaries(changes))
    assert "initramfs" not in text and "reboot" not in text
    assert "linux-headers" not in " ".join(commands(changes))


def test_debian_default_is_nvidias_repo_for_580():
    f = facts("debian-12-nspawn", gpus=[RTX_4090])
    f = dataclasses.replace(f, container="none")
    r = host()
    calls = []

    def fake_repo(ctx, url):
        calls.append(url)
        return []

    original = cudarepo.repo_changes
    cudarepo.repo_changes = fake_repo
    try:
        changes = run_check(f, r, cuda={"repo_url": "http://mirror.example/cuda/repos"})
    finally:
        cudarepo.repo_changes = original
    assert calls == ["http://mirror.example/cuda/repos"]
    assert any("nvidia-open-580" in c for c in commands(changes))


def test_impossible_request_is_refused_by_preflight():
    f = facts("debian-12-nspawn", gpus=[GTX_1080_TI])
    s = {
        "driver": driver.Settings(branch=590),
        "cuda": cuda.Settings(),
        "pytorch": pytorch.Settings(),
        "base": base.Settings(),
    }
    with pytest.raises(ConfigError):
        driver.preflight(Context("box", f, s, FakeRemote().probe))


# --- pure helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, version, branch",
    [
        ("nvidia-utils-580-server", "580.95.05-0ubuntu1", 580),
        ("libnvidia-compute-550-server", "550.127.08-0ubuntu0.22.04.1", 550),
        ("nvidia-smi", "535.309.01-0+deb12u1", 535),
        ("nvidia-open", "595.45.04-1", 595),
        ("nvidia-driver-pinning-595", "595-1", 595),
        ("linux-modules-nvidia-580-server-open-6.8.0-49-generic", "6.8.0-49.49", 580),
        ("nvidia-container-toolkit", "1.17.0-1", None),
        # its own source package, versioned apart (counted with its driver: installed_branches)
        ("nvidia-persistenced", "535.171.04-1~deb12u1", None),
        ("cuda-keyring", "1.1-1", None),
        ("firmware-misc-nonfree", "20230210-5", None),
    ],
)
def test_branch_of(name, version, branch):
    assert driver.branch_of(name, version) == branch


@pytest.mark.parametrize(
    "source, branch, flavour, packages",
    [
        ("nvidia", 580, "open", ["nvidia-open-580"]),
        ("nvidia", 580, "proprietary", ["cuda-drivers-580"]),
        ("nvidia", 595, "open", ["nvidia-driver-pinning-595", "nvidia-open"]),
        ("nvidia", 595, "proprietary", ["nvidia-driver-pinning-595", "cuda-drivers"]),
        (
            "ubuntu",
            580,
            "open",
            ["nvidia-headless-no-dkms-580-server-open", "nvidia-utils-580-server"],
        ),
    ],
)
def test_driver_packages_per_path(source, branch, flavour, packages):
    choice = compat.Choice(
        os_key="ubuntu-24.04",
        gpus=(),
        arch="",
        driver_branch=branch,
        flavour=flavour,
        source=source,
        cuda="",
        torch_index="",
        torch_max="",
        torch_version="",
        reasons=(),
    )
    f = facts("ubuntu-24.04-fresh")
    assert driver.driver_packages(choice, f, driver.Settings()) == packages


def test_ubuntu_branch_from_nvidias_repo_exact_commands():
    f = facts("ubuntu-24.04-fresh", gpus=[RTX_4090], secure_boot="disabled")
    mirror = "http://archive.ubuntu.com/ubuntu/"
    lines = f"{mirror}\tnoble\tmain\t/etc/apt/sources.list.d/ubuntu.sources:1\n"
    r = host()
    r.on(
        r"apt-get indextargets",
        f"@@targets\n{lines}@@fetched\n{mirror}\n@@keyring\n@@apt-key\n@@end\n",
    )
    r.on(r"sha256sum -- /etc/apt/", (1, ""))
    r.on(r"sha256sum -- /etc/profile.d", (1, ""))
    changes = run_check(f, r, driver={"source": "nvidia", "branch": 595})
    cmds = commands(changes)
    repo = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/"
    assert any(f"{repo}cuda-keyring_1.1-1_all.deb" in c and "curl -fsSL" in c for c in cmds), cmds
    lists = [
        a for c in changes for a in c.actions if isinstance(a, Upload) and a.dest.endswith(".list")
    ]
    assert lists and lists[0].dest == "/etc/apt/sources.list.d/cuda-ubuntu2404-x86_64.list"
    assert (
        f"deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] {repo} /".encode()
        in lists[0].content
    )
    # the pin first, on its own, then the driver within it (NVIDIA's driver installation guide,
    # Recent Updates: "install the pinning package prior to installing the driver")
    pin, install = [c for c in cmds if "install --no-install-recommends" in c]
    assert pin.endswith("install --no-install-recommends nvidia-driver-pinning-595"), pin
    assert install.endswith(
        f"install --no-install-recommends nvidia-open linux-headers-{f.kernel} "
        "linux-headers-generic"
    ), install
    assert "apt-key" not in " ".join(cmds)
    assert "apt-mark hold nvidia-driver-pinning-595 nvidia-open" in cmds


def test_no_gpu_is_refused_by_preflight_before_any_step_runs():
    s = {
        "driver": driver.Settings(),
        "cuda": cuda.Settings(),
        "pytorch": pytorch.Settings(),
        "base": base.Settings(),
    }
    with pytest.raises(StepError, match="no NVIDIA GPU found"):
        driver.preflight(Context("box", facts("debian-12-nspawn"), s, FakeRemote().probe))


# --- one decision: the plan's driver packages are compat's flavour, on every OS ---------------


def debian_records():
    """Package -> fields, from the recorded apt-cache output of Debian 12 (bookworm)."""
    records = {}
    for block in (DATA / "debian-12-apt-nvidia.txt").read_text().split("\n\n"):
        fields = dict(ln.split(": ", 1) for ln in block.splitlines() if ": " in ln and ln[0] != "#")
        if "Package" in fields:
            records[fields["Package"]] = fields
    return records


@pytest.mark.parametrize("flavour", ["open", "proprietary"])
def test_debian_own_packages_follow_compats_flavour(flavour):
    f = facts("debian-12-nspawn", gpus=[RTX_4090])
    f = dataclasses.replace(f, container="none")
    changes = run_check(f, host(), driver={"source": "debian", "flavour": flavour})
    install = next(c for c in commands(changes) if " install " in c and "nvidia-smi" in c)
    records = debian_records()
    # what Debian 12 itself says each module package is (apt-cache show, 2026-12-01)
    module = next(n for n in install.split() if n in records and "kernel-dkms" in n)
    provides = records[module]["Provides"]
    if flavour == "open":
        assert module == "nvidia-open-kernel-dkms" and "nvidia-open-kernel-535" in provides
        assert records[module]["Section"].startswith("contrib/")
        assert "nvidia-kernel-dkms" not in install.split()
    else:
        assert module == "nvidia-kernel-dkms" and "nvidia-kernel-535" in provides
        assert "nvidia-open-kernel-dkms" not in install.split()
    # every package the plan names exists in Debian 12 (contrib/non-free/non-free-firmware)
    wanted = [n for n in install.split() if n.startswith(("nvidia", "libcuda", "firmware-"))]
    assert wanted and all(n in records for n in wanted), wanted
    # and compat says the same
    choice = stack.decision(
        Context(
            "box",
            f,
            {
                "driver": driver.Settings(source="debian", flavour=flavour),
                "cuda": cuda.Settings(),
                "pytorch": pytorch.Settings(),
                "base": base.Settings(),
            },
            FakeRemote().probe,
        )
    )
    assert choice.flavour == flavour and any(module in r for r in choice.reasons)


@pytest.mark.parametrize(
    "name, source, open_pkg, proprietary_pkg",
    [
        ("ubuntu-22.04-gpu", "ubuntu", "-open", None),
        ("ubuntu-24.04-fresh", "ubuntu", "-open", None),
        ("ubuntu-24.04-fresh", "nvidia", "nvidia-open-580", "cuda-drivers-580"),
        ("debian-12-nspawn", "nvidia", "nvidia-open-580", "cuda-drivers-580"),
        ("debian-12-nspawn", "debian", "nvidia-open-kernel-dkms", "nvidia-kernel-dkms"),
    ],
)
@pytest.mark.parametrize("flavour", ["open", "proprietary"])
def test_plan_packages_match_compats_flavour_on_each_os(
    name, source, open_pkg, proprietary_pkg, flavour
):
    f = facts(name, gpus=[RTX_4090])
    s = {
        "driver": driver.Settings(source=source, flavour=flavour),
        "cuda": cuda.Settings(),
        "pytorch": pytorch.Settings(),
        "base": base.Settings(),
    }
    choice = stack.decision(Context("box", f, s, FakeRemote().probe))
    assert choice.flavour == flavour
    names = driver.driver_packages(choice, f, s["driver"])
    if flavour == "open":
        assert any(open_pkg in n for n in names), names
    elif proprietary_pkg:
        assert proprietary_pkg in names and not any("open" in n for n in names), names
    else:
        assert not any("open" in n for n in names), names


# --- nvidia-persistenced: what verify checks, check sees ------------------------------------


def no_gpu_with_persistenced(state):
    f = facts("debian-12-nspawn", packages=installed("nvidia-persistenced"))
    r = host(blacklist=False)
    r.on(r"systemctl show .*nvidia-persistenced", state)
    return f, r


def test_failed_persistenced_without_a_gpu_is_disabled_and_cleared():
    f, r = no_gpu_with_persistenced("UnitFileState=enabled\nActiveState=failed\n")
    changes = run_check(f, r, driver={"source": "debian", "require_gpu": False})
    change = next(c for c in changes if driver.PERSISTENCED in c.summary)
    assert "no NVIDIA GPU" in change.summary
    cmd = change.actions[0].command
    assert "systemctl disable --now -- nvidia-persistenced.service" in cmd
    assert "systemctl reset-failed -- nvidia-persistenced.service" in cmd


def test_persistenced_without_a_gpu_left_alone_when_already_off():
    f, r = no_gpu_with_persistenced("UnitFileState=disabled\nActiveState=inactive\n")
    changes = run_check(f, r, driver={"source": "debian", "require_gpu": False})
    assert not [c for c in changes if driver.PERSISTENCED in c.summary]


def test_persistenced_with_a_gpu_is_enabled():
    f = facts("debian-12-nspawn", gpus=[GTX_1080_TI], packages=installed("nvidia-persistenced"))
    r = host()
    r.on(r"systemctl show .*nvidia-persistenced", "UnitFileState=disabled\nActiveState=failed\n")
    changes = run_check(f, r, driver={"source": "debian"})
    assert "enable nvidia-persistenced.service at boot" in summaries(changes)


class FakeService:
    def __init__(self, enabled, running):
        self.is_enabled, self.is_running = enabled, running


class FakeRun:
    def __init__(self, rc, stdout="", stderr=""):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


class FakeHost:
    """Enough of testinfra's host for verify_persistenced."""

    def __init__(self, *, gpu, enabled, running, failed, loaded=False):
        self.gpu, self.enabled, self.running, self.failed, self.loaded = (
            gpu,
            enabled,
            running,
            failed,
            loaded,
        )

    def service(self, name):
        return FakeService(self.enabled, self.running)

    def run(self, command):
        if "is-failed" in command:
            return FakeRun(0 if self.failed else 1)
        if "is-enabled" in command:  # systemctl(1): "enabled" exit 0, "disabled" exit 1
            return FakeRun(0, "enabled\n") if self.enabled else FakeRun(1, "disabled\n")
        # the sysfs PCI read (facts.gpu.PCI_SCRIPT): an RTX 4090's display function, or none
        return FakeRun(0, "0000:01:00.0 0x2684 0x030000\n" if self.gpu else "")

    def file(self, path):
        return type("File", (), {"exists": self.loaded})()


@pytest.mark.parametrize(
    "state, ok",
    [
        (dict(gpu=False, enabled=True, running=False, failed=True), False),  # issue 13 §2
        (dict(gpu=False, enabled=True, running=False, failed=False), False),
        (dict(gpu=False, enabled=False, running=False, failed=False), True),
        (dict(gpu=True, enabled=True, running=False, failed=True), False),
        (dict(gpu=True, enabled=True, running=True, failed=False, loaded=True), True),
        (dict(gpu=True, enabled=True, running=False, failed=False, loaded=True), False),
    ],
)
def test_verify_persistenced(state, ok):
    fake = FakeHost(**state)
    if ok:
        driver.verify_persistenced(fake, driver.Settings())
    else:
        with pytest.raises(AssertionError):
            driver.verify_persistenced(fake, driver.Settings())


def test_install_without_a_gpu_turns_persistenced_off_after_the_packages():
    # Debian enables the unit on install; without a GPU it would only fail (issue 13 §2)
    changes = run_check(
        facts("debian-12-nspawn"),
        host(blacklist=False),
        driver={"source": "debian", "require_gpu": False},
    )
    text = summaries(changes)
    off = next(i for i, t in enumerate(text) if t.startswith(f"disable {driver.PERSISTENCED}"))
    install = next(i for i, c in enumerate(changes) if "nvidia-smi" in " ".join(commands([c])))
    assert install < off


# --- NVSwitch boxes: the fabric manager of the driver's branch ----------------------------------

H100_SXM = PciDevice("0000:18:00.0", "2330", "0x030200")
NVSWITCH = PciDevice("0000:05:00.0", "22a3", "0x068000")  # pci.ids: GH100 [H100 NVSwitch]


@pytest.mark.parametrize(
    "source, branch, package",
    [
        ("ubuntu", 580, "nvidia-fabricmanager-580"),  # packages.ubuntu.com
        ("nvidia", 580, "nvidia-fabricmanager-580"),
        ("nvidia", 595, "nvidia-fabricmanager"),
    ],
)
def test_nvswitch_box_gets_the_fabric_manager_of_the_branch(source, branch, package):
    f = facts("ubuntu-24.04-fresh", gpus=[H100_SXM, NVSWITCH], secure_boot="disabled")
    r = host()
    calls = []
    original = cudarepo.repo_changes
    cudarepo.repo_changes = lambda ctx, url: calls.append(url) or []
    try:
        changes = run_check(f, r, driver={"source": source, "branch": branch})
    finally:
        cudarepo.repo_changes = original
    cmds = " | ".join(commands(changes))
    assert package in cmds and "install" in cmds
    assert "apt-mark hold" in cmds and package in next(c for c in commands(changes) if "hold" in c)
    assert f"enable {driver.FABRICMANAGER} at boot" in summaries(changes)


def test_no_fabric_manager_without_nvswitch():
    f = facts("ubuntu-24.04-fresh", gpus=[H100_SXM], secure_boot="disabled")
    assert "fabricmanager" not in " ".join(commands(run_check(f, host())))


def test_nvswitch_on_debian_nonfree_is_refused_with_the_way_out():
    f = facts("debian-12-nspawn", gpus=[H100_SXM, NVSWITCH])
    f = dataclasses.replace(f, container="none")
    with pytest.raises(ConfigError) as info:
        run_check(f, host(), driver={"source": "debian"})
    assert "NVSwitch" in info.value.message and "driver.source = nvidia" in info.value.hint


# --- declared reads: check and preflight read nothing else ------------------------------------

FACT_FILES = ("debian-12-docker", "debian-12-nspawn", "ubuntu-22.04-gpu", "ubuntu-24.04-fresh")
BARE = "@@targets\n@@fetched\n@@keyring\n@@apt-key\n@@end\n"


def bare_host():
    """Every read answered as on a bare host: nothing there (exit 1), apt without sources."""
    return FakeRemote().on(r".", (1, "")).on(r"apt-get indextargets", BARE)


def set_up_host():
    """The converged host's answers (host()), anything else absent."""
    r = host()
    r.answers.append((r".", Result(1, "")))  # the last rule: only what no other rule answers
    return r


# A fabric-managed HGX box with its driver (580 from NVIDIA's repo) already installed.
HGX_DONE = installed("nvidia-open-580", "nvidia-fabricmanager-580", "nvidia-persistenced")


@pytest.mark.parametrize("facts_file", FACT_FILES)
@pytest.mark.parametrize(
    "gpus, driver_settings, packages",
    [
        (None, {}, None),
        (None, {"require_gpu": False}, None),
        (None, {"require_gpu": False}, installed("nvidia-persistenced")),
        ([RTX_4090], {"source": "nvidia"}, None),
        ([RTX_4090], {"source": "debian"}, None),
        ([RTX_4090], {"flavour": "open", "persistenced": False}, None),
        ([H100_SXM, NVSWITCH], {"source": "nvidia"}, None),
        ([H100_SXM, NVSWITCH], {"source": "nvidia", "branch": 580}, HGX_DONE),
    ],
)
@pytest.mark.parametrize("answers", [bare_host, set_up_host])
def test_check_and_preflight_read_only_what_driver_declares(
    facts_file, gpus, driver_settings, packages, answers
):
    f = facts(facts_file, gpus=gpus, packages=packages)
    s = {
        "driver": driver.Settings(**driver_settings),
        "cuda": cuda.Settings(),
        "pytorch": pytorch.Settings(),
        "base": base.Settings(),
    }
    declared.check_declared(driver.STEP, f, s, answers())
    declared.check_declared(driver.STEP, dataclasses.replace(f, container="none"), s, answers())

"""The driver step on Debian 13 (trixie): Debian's own 550 with its unversioned names, a helper
package whose version is its own (nvidia-modprobe 570.133.07), firmware-nvidia-gsp, the open
module from contrib; NVIDIA's debian13 repository from 590 on (the branch pinned first); arm64.

The package names, versions and sections are trixie's own, read from the apt-cache output
recorded from deb.debian.org (tests/data/facts/debian-13-apt-nvidia.txt, 2026-12-01), never
written here by hand. The host is the recorded Debian 12 container's facts with trixie's
os-release and kernel (6.12.117+deb13-amd64, issue 19's trixie container).
"""

import dataclasses
import re
from pathlib import Path

import pytest

import declared
from fakes import FakeRemote
from provision import cudarepo
from provision.errors import ConfigError
from provision.facts import Package, PciDevice, parse_facts
from provision.step import Context
from provision.steps import base, cuda, driver, pytorch
from provision.steps.driver_packages import installed_branches, purge_changes
from provision.templates import render, sha256

DATA = Path(__file__).parent.parent / "data" / "facts"
GTX_1080_TI = PciDevice("0000:01:00.0", "1b06", "0x030000")
RTX_4090 = PciDevice("0000:01:00.0", "2684", "0x030000")
BLACKLIST_HASH = sha256(render("driver/blacklist-nouveau.conf.j2"))
STAMP = BLACKLIST_HASH[:16]
# Debian 13's own driver packages as the Debian path names them (plus what apt brings with them)
DEBIAN_STACK = (
    "nvidia-kernel-dkms",
    "nvidia-smi",
    "libcuda1",
    "nvidia-persistenced",
    "firmware-nvidia-gsp",
)
BROUGHT = ("nvidia-kernel-support", "nvidia-modprobe", "nvidia-kernel-common", "nvidia-support")


def records(suite="trixie"):
    """Package -> fields of one suite's version (trixie, or the backport), from the file."""
    found = {}
    for block in (DATA / "debian-13-apt-nvidia.txt").read_text().split("\n\n"):
        lines = [ln for ln in block.splitlines() if ": " in ln and not ln.startswith(("#", " "))]
        fields = dict(ln.split(": ", 1) for ln in lines)
        if "Package" in fields and ("bpo" in fields["Version"]) == (suite == "backports"):
            found.setdefault(fields["Package"], fields)
    return found


TRIXIE = records()


def provided_branch(name):
    """The branch a driver package provides itself as (nvidia-kernel-550.163.01, ...= 550.x)."""
    return int(re.search(r"(\d{3})\.\d+\.\d+", TRIXIE[name]["Provides"])[1])


def trixie_facts(*, gpus=(), packages=None, arch="amd64", container="none"):
    text = (DATA / "debian-12-nspawn.txt").read_text()
    text = (
        text.replace('VERSION_ID="12"', 'VERSION_ID="13"')
        .replace("bookworm", "trixie")
        .replace("Debian GNU/Linux 12", "Debian GNU/Linux 13")
        .replace('VERSION="12 ', 'VERSION="13 ')
    )
    text = re.sub(r"(@@kernel\n)[^\n]*", r"\g<1>6.12.117+deb13-amd64", text)
    f = parse_facts(text)
    assert f.os_key == "debian-13" and f.codename == "trixie"
    changes = {"nvidia_pci": tuple(gpus), "arch": arch, "container": container}
    if packages is not None:
        changes["packages"] = {**f.packages, **packages}
    return dataclasses.replace(f, **changes)


def as_installed(names, status="hi "):
    """These packages at trixie's own recorded versions."""
    return {n: Package(TRIXIE[n]["Version"], status) for n in names}


def host():
    r = FakeRemote().on(r"sha256sum -- /etc/apt/sources.list.d", (1, ""))
    r.on(r"sha256sum -- /etc/modprobe.d", f"644 root root\n{BLACKLIST_HASH}  x\n")
    r.on(r"cat -- /var/lib/provision/initramfs", STAMP + "\n")
    r.on(r"/sys/module/nouveau", "")
    mirror = "http://deb.debian.org/debian/"
    where = "/etc/apt/sources.list.d/debian.sources:1"
    lines = "".join(f"{mirror}\ttrixie\t{c}\t{where}\n" for c in ("main", "contrib", "non-free"))
    r.on(r"apt-get indextargets", f"@@targets\n{lines}@@fetched\n{mirror}\n@@keyring\n@@end\n")
    r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")
    return r


def settings(**kw):
    return {
        "driver": driver.Settings(**kw.pop("driver", {})),
        "cuda": cuda.Settings(**kw.pop("cuda", {})),
        "pytorch": pytorch.Settings(**kw.pop("pytorch", {})),
        "base": base.Settings(**kw.pop("base", {})),
    }


def run_check(f, remote, **kw):
    return driver.check(declared.context(driver.STEP, f, settings(**kw), remote))


def commands(changes):
    return [a.command for c in changes for a in c.actions if hasattr(a, "command")]


def installs(changes):
    return [c for c in commands(changes) if " install " in c and "apt-get" in c]


@pytest.fixture
def no_repo(monkeypatch):
    """NVIDIA's repository files are cudarepo's (tested there): record the URL asked for."""
    calls = []
    monkeypatch.setattr(cudarepo, "repo_changes", lambda ctx, url: calls.append(url) or [])
    return calls


# --- the branch of trixie's packages -----------------------------------------------------------


def test_trixies_driver_packages_are_branch_550_and_nvidia_modprobe_570_is_no_branch():
    driver_built = [
        n
        for n, r in TRIXIE.items()
        if r.get("Source") in ("nvidia-graphics-drivers", "nvidia-open-gpu-kernel-modules")
        and not n.startswith(("nvidia-tesla-", "nvidia-kernel-common", "nvidia-support"))
    ]
    assert {"nvidia-kernel-dkms", "nvidia-open-kernel-dkms", "libcuda1", "nvidia-smi"} <= set(
        driver_built
    )
    branch = provided_branch("nvidia-kernel-dkms")
    assert branch == 550
    for name in driver_built:
        assert driver.branch_of(name, TRIXIE[name]["Version"]) == branch, name
    # the helper's own version (570.133.07-1) must not read as branch 570
    assert TRIXIE["nvidia-modprobe"]["Version"].startswith("570.")
    assert driver.branch_of("nvidia-modprobe", TRIXIE["nvidia-modprobe"]["Version"]) is None
    for firmware in ("firmware-nvidia-graphics", "firmware-misc-nonfree"):
        assert driver.branch_of(firmware, TRIXIE[firmware]["Version"]) is None
    # the backport is the same branch (no newer driver in trixie-backports)
    backports = records("backports")
    assert driver.branch_of("nvidia-kernel-dkms", backports["nvidia-kernel-dkms"]["Version"]) == 550


def test_installed_trixie_550_counts_its_helpers_with_it():
    f = trixie_facts(packages={**as_installed(DEBIAN_STACK), **as_installed(BROUGHT, "ii ")})
    found = installed_branches(f)
    assert list(found) == [550]
    assert "nvidia-modprobe" in found[550] and "nvidia-persistenced" in found[550]
    assert purge_changes(f, 550) == []


# --- Debian 13's own packages --------------------------------------------------------------------


def test_rerun_on_a_converged_trixie_550_host_changes_no_package():
    """Issue 19: the second run planned to purge nvidia-modprobe 570 ("branch 570") and failed
    with exit 100 (the held driver packages depend on it)."""
    f = trixie_facts(
        gpus=[GTX_1080_TI],
        packages={**as_installed(DEBIAN_STACK), **as_installed(BROUGHT, "ii ")},
        container="systemd-nspawn",
    )
    changes = run_check(f, host())
    assert not [c for c in commands(changes) if "purge" in c], commands(changes)
    assert installs(changes) == [], installs(changes)
    assert not [c.summary for c in changes if "switch from driver branch" in c.summary]


@pytest.mark.parametrize("flavour", ["open", "proprietary"])
def test_trixie_debian_path_installs_trixies_own_packages(flavour, no_repo):
    f = trixie_facts(gpus=[RTX_4090], container="systemd-nspawn")
    changes = run_check(f, host(), driver={"source": "debian", "flavour": flavour})
    (install,) = installs(changes)
    names = [n for n in install.split() if n.startswith(("nvidia", "libcuda", "firmware-"))]
    # every name exists in trixie (contrib/non-free/non-free-firmware), unversioned
    assert names and all(n in TRIXIE for n in names), names
    module = next(n for n in names if n.endswith("kernel-dkms"))
    if flavour == "open":
        assert module == "nvidia-open-kernel-dkms"
        assert TRIXIE[module]["Section"].startswith("contrib/")
    else:
        assert module == "nvidia-kernel-dkms"
        assert TRIXIE[module]["Section"].startswith("non-free/")
    # the firmware is the one the module depends on; firmware-misc-nonfree no longer has it
    firmware = [n for n in names if n.startswith("firmware-")]
    assert firmware == ["firmware-nvidia-gsp"]
    assert TRIXIE[module]["Depends"].startswith("firmware-nvidia-gsp ")
    assert TRIXIE["firmware-nvidia-gsp"]["Section"].startswith("non-free-firmware/")
    assert no_repo == []  # Debian's own packages: NVIDIA's repository is not touched


def test_switch_from_trixies_550_to_nvidias_595_purges_the_helpers_with_it(no_repo):
    f = trixie_facts(
        gpus=[RTX_4090],
        packages={**as_installed(DEBIAN_STACK), **as_installed(BROUGHT, "ii ")},
        container="systemd-nspawn",
    )
    changes = run_check(f, host(), driver={"source": "nvidia", "branch": 595})
    purge = next(c for c in changes if c.summary.startswith("switch from driver branch 550"))
    for name in ("nvidia-kernel-dkms", "nvidia-modprobe", "nvidia-persistenced"):
        assert name in purge.summary, purge.summary
    assert no_repo == [cuda.Settings().repo_url]
    pin, meta = installs(changes)
    assert pin.endswith(" nvidia-driver-pinning-595") and meta.endswith(" nvidia-open"), (pin, meta)
    order = [c.summary for c in changes]
    assert order.index(purge.summary) < next(i for i, s in enumerate(order) if "install" in s)


# --- NVIDIA's debian13 repository --------------------------------------------------------------


def test_nvidias_debian13_repo_pins_the_branch_before_the_driver(no_repo):
    """From 590 NVIDIA's packages drop the branch from their names; the branch is held by
    nvidia-driver-pinning-<branch>, installed first (NVIDIA driver installation guide, Recent
    Updates: 'Ubuntu 590 and later packages' and 'install the pinning package prior to
    installing the driver')."""
    f = trixie_facts(gpus=[RTX_4090], container="systemd-nspawn")
    changes = run_check(f, host())
    assert no_repo == [cuda.Settings().repo_url]
    pin, meta = installs(changes)
    assert re.search(r" nvidia-driver-pinning-(59\d|6\d\d)$", pin), pin
    branch = pin.rsplit("-", 1)[1]
    assert meta.endswith(" nvidia-open") and f"nvidia-open-{branch}" not in meta
    hold = next(c for c in commands(changes) if c.startswith("apt-mark hold"))
    assert hold == f"apt-mark hold nvidia-driver-pinning-{branch} nvidia-open"


def test_pascal_from_nvidias_debian13_repo_is_refused_with_the_way_out():
    f = trixie_facts(gpus=[GTX_1080_TI])
    with pytest.raises(ConfigError) as info:
        driver.preflight(
            Context("box", f, settings(driver={"source": "nvidia"}), FakeRemote().probe)
        )
    assert "R580 is the last branch" in info.value.message and "590" in info.value.message
    assert "driver.source = debian" in info.value.hint


# --- arm64 -------------------------------------------------------------------------------------


def test_arm64_trixie_takes_debians_own_driver(no_repo):
    policy = (DATA / "debian-13-apt-nvidia.txt").read_text()
    assert "trixie/non-free arm64 Packages" in policy  # Debian builds it for arm64
    f = trixie_facts(gpus=[RTX_4090], arch="arm64", container="systemd-nspawn")
    changes = run_check(f, host())
    (install,) = installs(changes)
    assert "nvidia-kernel-dkms" in install and "firmware-nvidia-gsp" in install
    assert no_repo == []


def test_arm64_trixie_refuses_nvidias_repo_naming_the_missing_sbsa():
    f = trixie_facts(gpus=[RTX_4090], arch="arm64")
    with pytest.raises(ConfigError) as info:
        driver.preflight(
            Context("box", f, settings(driver={"source": "nvidia"}), FakeRemote().probe)
        )
    assert "no arm64 packages" in info.value.message and "#39" in info.value.message
    assert "driver.source = debian" in info.value.hint

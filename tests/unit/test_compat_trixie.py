"""compat on Debian 13 (trixie) and Ubuntu 26.04: the driver, flavour and wheel for every GPU
architecture and both CPUs, and the refusals with their reasons.

The expectations come from outside compat: Debian 13's own driver from the apt-cache output
recorded from deb.debian.org (tests/data/facts/debian-13-apt-nvidia.txt, 2026-12-01); NVIDIA's
debian13 repository carries 590 and newer only (NVIDIA/cuda-repo-management #38, #40) and no
arm64 (#39); R580 is the last branch for Maxwell, Pascal and Volta (NVIDIA's legacy notice);
Ubuntu 26.04's archive ships 580-server and 595 (packages.ubuntu.com resolute, from the search
corpus: documented, not run); the wheels' architectures are PyTorch's build script's
(cu126: Maxwell to Hopper; cu13x: Turing and newer).
"""

import datetime
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from provision import compat
from provision.cli import cli
from provision.compat import Incompatible, Request, choose, tables

DATA = Path(__file__).parent.parent / "data" / "facts"
TODAY = datetime.date(2026, 12, 1)  # the date the trixie packages were read


@pytest.fixture(autouse=True)
def pinned_today(monkeypatch):
    monkeypatch.setattr(compat.versions, "current_date", lambda: TODAY)


def trixie_records():
    """Package -> fields of trixie's own version (not the backport), from the recorded file."""
    records = {}
    for block in (DATA / "debian-13-apt-nvidia.txt").read_text().split("\n\n"):
        lines = [ln for ln in block.splitlines() if ": " in ln and not ln.startswith(("#", " "))]
        fields = dict(ln.split(": ", 1) for ln in lines)
        if "Package" in fields and "bpo" not in fields["Version"]:
            records.setdefault(fields["Package"], fields)
    return records


def trixie_branch():
    """The branch Debian 13's own module package provides (nvidia-kernel-550.163.01)."""
    provides = trixie_records()["nvidia-kernel-dkms"]["Provides"]
    return int(re.search(r"nvidia-kernel-(\d{3})\.\d", provides)[1])


# One card per architecture (pci.ids names them; compat's card table holds them).
CARDS = {
    "maxwell": "17c8",  # GeForce GTX 980 Ti
    "pascal": "1b06",  # GeForce GTX 1080 Ti
    "volta": "1db4",  # Tesla V100 PCIe 16GB
    "turing": "1e04",  # GeForce RTX 2080 Ti
    "ampere": "2204",  # GeForce RTX 3090
    "ada": "2684",  # GeForce RTX 4090
    "hopper": "2330",  # H100 SXM5 80GB
    "blackwell": "2b85",  # GeForce RTX 5090
}
PRE_TURING = ("maxwell", "pascal", "volta")


def card(arch):
    gpu = compat.gpu_by_id(CARDS[arch])
    assert gpu is not None and gpu.arch == arch, (arch, gpu)
    return [gpu]


def test_debian13_own_branch_is_the_recorded_one():
    # the table says what deb.debian.org says: one branch, the one the module package provides
    assert tables.DEBIAN_BRANCHES["debian-13"] == (trixie_branch(),) == (550,)
    assert "debian-13-apt-nvidia.txt" in tables.DEBIAN_BRANCH_FACTS["debian-13"].source
    records = trixie_records()
    assert records["nvidia-open-kernel-dkms"]["Section"] == "contrib/kernel"
    assert records["nvidia-kernel-dkms"]["Section"] == "non-free/kernel"
    # both DKMS packages depend on firmware-nvidia-gsp; firmware-misc-nonfree only recommends
    # firmware-nvidia-graphics: the firmware the Debian 13 path installs
    for module in ("nvidia-kernel-dkms", "nvidia-open-kernel-dkms"):
        assert records[module]["Depends"].startswith("firmware-nvidia-gsp ")
    assert "firmware-nvidia-graphics" in records["firmware-misc-nonfree"]["Recommends"]
    assert compat.debian_firmware_package("debian-13") == "firmware-nvidia-gsp"
    assert compat.debian_firmware_package("debian-12") == "firmware-misc-nonfree"


@pytest.mark.parametrize("arch", list(CARDS))
def test_debian13_amd64_every_architecture(arch):
    choice = choose(card(arch), "debian-13", cpu="amd64")
    if arch in PRE_TURING:
        # NVIDIA's debian13 repo starts at 590, past R580: Debian's own 550 is the one path,
        # ended (June 2025), said so; its CUDA 12.4 runs the cu126 wheels (12.x minor compat)
        assert (choice.source, choice.driver_branch, choice.flavour) == (
            "debian",
            trixie_branch(),
            "proprietary",
        )
        assert (choice.torch_index, choice.torch_max) == ("cu126", "2.14")
        assert any("R550" in w and "no supported branch" in w for w in choice.warnings)
        assert any(
            "NVIDIA's CUDA repository on Debian 13 (590, 595" in r and "Debian's own" in r
            for r in choice.reasons
        ), choice.reasons
    else:
        # NVIDIA's repo, the newest supported LTSB it carries (620), open modules, CUDA 13 wheels
        assert (choice.source, choice.driver_branch, choice.flavour) == ("nvidia", 620, "open")
        assert choice.torch_index == "cu132" and choice.warnings == ()
        assert any("Debian 13 non-free ships only 550" in r for r in choice.reasons)


@pytest.mark.parametrize("arch", list(CARDS))
def test_debian13_arm64_every_architecture(arch):
    # NVIDIA's debian13 repository has no sbsa packages: Debian's own 550 (arm64 too, recorded)
    # serves what it supports; Blackwell (needs >= 570) has no path on Debian 13 arm64
    policy = (DATA / "debian-13-apt-nvidia.txt").read_text()
    assert "trixie/non-free arm64 Packages" in policy and "trixie/contrib arm64 Packages" in policy
    if arch == "blackwell":
        with pytest.raises(Incompatible) as info:
            choose(card(arch), "debian-13", cpu="arm64")
        assert "Blackwell" in info.value.message and "ships 550" in info.value.message
        assert "no arm64 packages" in info.value.message and "#39" in info.value.message
        return
    choice = choose(card(arch), "debian-13", cpu="arm64")
    assert (choice.source, choice.driver_branch) == ("debian", 550)
    assert choice.flavour == "proprietary"  # before 560 NVIDIA's default; Pascal-era cards need it
    assert choice.torch_index == "cu126"
    assert any("no arm64 packages" in r for r in choice.reasons)
    assert any("Debian 13 arm64" in w for w in choice.warnings)


@pytest.mark.parametrize("arch", list(CARDS))
@pytest.mark.parametrize("cpu", ["amd64", "arm64"])
def test_ubuntu2604_every_architecture(arch, cpu):
    # Canonical's signed 580-server first (resolute ships 580-server and 595)
    choice = choose(card(arch), "ubuntu-26.04", cpu=cpu)
    assert (choice.source, choice.driver_branch) == ("ubuntu", 580)
    assert choice.flavour == ("proprietary" if arch in PRE_TURING else "open")
    assert choice.torch_index == ("cu126" if arch in PRE_TURING else "cu130")
    assert choice.warnings == ()


def test_ubuntu2604_branches_are_the_documented_ones():
    assert tables.UBUNTU_BRANCHES["ubuntu-26.04"] == (580, 595)
    fact = tables.UBUNTU_BRANCH_FACTS["ubuntu-26.04"]
    assert fact.confidence == "M" and "resolute" in fact.source and "nvidia:595" in fact.source
    choice = choose(card("ada"), "ubuntu-26.04", Request(branch=595))
    assert (choice.source, choice.driver_branch) == ("ubuntu", 595)
    # 590 is transitional in resolute: NVIDIA's ubuntu2604 repository has it (x86_64 and sbsa)
    moved = choose(card("ada"), "ubuntu-26.04", Request(branch=590), cpu="arm64")
    assert moved.source == "nvidia"
    with pytest.raises(Incompatible, match="archive does not ship driver branch 570"):
        choose(card("ada"), "ubuntu-26.04", Request(source="ubuntu", branch=570))


def test_os_table_for_the_new_releases():
    assert compat.OS_TABLE["debian-13"].cuda_repo == "debian13"
    assert compat.OS_TABLE["debian-13"].sources == ("nvidia", "debian")
    assert compat.OS_TABLE["ubuntu-26.04"].cuda_repo == "ubuntu2604"
    assert compat.OS_TABLE["ubuntu-26.04"].sources == ("ubuntu", "nvidia")
    assert tables.NVIDIA_REPO_ARCHES["debian13"] == ("amd64",)
    assert "#39" in tables.NVIDIA_REPO_ARCH_FACTS["debian13"].source
    assert "ubuntu2604" not in tables.NVIDIA_REPO_ARCHES  # x86_64 and sbsa
    assert not re.search(r"\d", compat.SOURCE_TITLES["debian"])  # release-neutral


# (id, card arch, os, request, cpu, words in the message, words in the hint)
REFUSED = [
    (
        "pascal-nvidia-debian13",
        "pascal",
        Request(source="nvidia"),
        "amd64",
        ["does not support Pascal", "R580 is the last branch", "starts at 590"],
        ["driver.source = debian (branch 550)"],
    ),
    (
        "volta-branch595-debian13",
        "volta",
        Request(branch=595),
        "amd64",
        ["does not support Volta", "starts at 590"],
        ["driver.source = debian"],
    ),
    (
        "branch580-debian13",
        "ada",
        Request(branch=580),
        "amd64",
        ["driver branch 580 is not in compat's table for NVIDIA's debian13 repository"],
        ["driver.branch = 620"],
    ),
    (
        "blackwell-debian-own",
        "blackwell",
        Request(source="debian"),
        "amd64",
        ["needs driver >= 570", "Debian 13 non-free ships only 550"],
        ["driver.source = nvidia (branch 620)"],
    ),
    (
        "arm64-nvidia-debian13",
        "ada",
        Request(source="nvidia"),
        "arm64",
        ["NVIDIA's debian13 repository has no arm64 packages", "#39"],
        ["driver.source = debian (branch 550)"],
    ),
    (
        "blackwell-arm64-debian-own",
        "blackwell",
        Request(source="debian"),
        "arm64",
        ["needs driver >= 570", "Debian 13 non-free ships only 550"],
        ["no arm64 packages"],
    ),
    (
        "debian-own-branch595",
        "ada",
        Request(source="debian", branch=595),
        "amd64",
        ["Debian 13 non-free ships only driver 550, not driver.branch = 595"],
        ["driver.source = nvidia (NVIDIA's debian13 repo ships 595)"],
    ),
]


@pytest.mark.parametrize(
    "arch, request_, cpu, words, hint_words", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_debian13_refusals_name_the_reason(arch, request_, cpu, words, hint_words):
    with pytest.raises(Incompatible) as info:
        choose(card(arch), "debian-13", request_, cpu=cpu)
    for word in words:
        assert word in info.value.message, info.value.message
    for word in hint_words:
        assert word in info.value.hint, info.value.hint


def test_uname_names_of_the_cpu_count_as_dpkg_names():
    # the facts fall back to `uname -m` where dpkg is missing
    assert choose(card("ada"), "debian-13", cpu="aarch64").source == "debian"
    assert choose(card("ada"), "debian-13", cpu="x86_64").source == "nvidia"


def test_debian12_is_unchanged_on_both_cpus():
    for cpu in ("amd64", "arm64", ""):
        choice = choose(card("ada"), "debian-12", cpu=cpu)
        assert (choice.source, choice.driver_branch) == ("nvidia", 580)
    assert any(
        "Debian 12 non-free ships only 535" in r and "NVIDIA's debian12 repo instead" in r
        for r in choose(card("ada"), "debian-12").reasons
    )


# --- provision compat --os debian-13|ubuntu-26.04 ----------------------------------------------


def compat_json(*args):
    result = CliRunner().invoke(cli, ["compat", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_cli_compat_debian13():
    pascal = compat_json("--gpu", "10de:1b06", "--os", "debian-13")
    assert pascal["driver"] == {"branch": 550, "flavour": "proprietary", "source": "debian"}
    assert pascal["pytorch"]["index"] == "cu126" and pascal["warnings"]
    ada = compat_json("--gpu", "10de:2684", "--os", "debian-13")
    assert ada["driver"] == {"branch": 620, "flavour": "open", "source": "nvidia"}
    arm = compat_json("--gpu", "10de:2684", "--os", "debian-13", "--cpu", "arm64")
    assert arm["driver"]["source"] == "debian"


def test_cli_compat_ubuntu2604():
    out = compat_json("--gpu", "10de:2b85", "--os", "ubuntu-26.04", "--cpu", "arm64")
    assert out["driver"] == {"branch": 580, "flavour": "open", "source": "ubuntu"}
    assert out["pytorch"]["index"] == "cu130"


def test_cli_compat_refuses_arm64_from_nvidias_debian13_repo_with_exit_2():
    args = ["compat", "--gpu", "10de:2684", "--os", "debian-13", "--cpu", "arm64"]
    result = CliRunner().invoke(cli, [*args, "--source", "nvidia"])
    assert result.exit_code == 2, result.output
    assert "no arm64 packages" in result.output and "driver.source = debian" in result.output


def test_an_asked_branch_comes_from_the_source_of_this_os_that_ships_it():
    # 550 is not in NVIDIA's debian13 repository (590+) but is Debian 13's own (recorded)
    choice = choose(card("ada"), "debian-13", Request(branch=trixie_branch()))
    assert (choice.source, choice.driver_branch) == ("debian", 550)
    assert any("does not ship branch 550" in r for r in choice.reasons)
    # ended, and the supported way named: NVIDIA's repo's default for the card
    assert any("driver.source = nvidia gives the supported 620" in w for w in choice.warnings)
    # on arm64 NVIDIA's repo is no way out: the refusal says why
    with pytest.raises(Incompatible) as info:
        choose(card("ada"), "debian-13", Request(source="debian", branch=595), cpu="arm64")
    assert "no arm64 packages" in info.value.hint and "driver.branch = 550" in info.value.hint

"""compat's version tables: every fact with its source and a confidence, apart from the logic.

Confidence: "H" read in a primary source (the cited file, page or package index), "M" a secondary
source (shared/docs/FIELD.md, an issue thread quoting the primary), "L" weak (inferred, reported).
A new driver branch, CUDA release or torch release is a one-line change here (a new card: in
`card_table`, kept apart because it is long); a unit test fails when an entry has no source.
Plain data only: the choice made from these facts is the rest of the package.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------------------------

# Oldest first. Compute capabilities per architecture [H: CUDA programming guide, compute
# capabilities table]. Kepler is known so that it can be refused with the reason.
ARCH_ORDER = (
    "kepler",
    "maxwell",
    "pascal",
    "volta",
    "turing",
    "ampere",
    "ada",
    "hopper",
    "blackwell",
)
ARCH_COMPUTES: dict[str, tuple[str, ...]] = {
    "kepler": ("3.0", "3.2", "3.5", "3.7"),
    "maxwell": ("5.0", "5.2", "5.3"),
    "pascal": ("6.0", "6.1", "6.2"),
    "volta": ("7.0", "7.2"),
    "turing": ("7.5",),
    "ampere": ("8.0", "8.6", "8.7"),
    "ada": ("8.9",),
    "hopper": ("9.0",),
    "blackwell": ("10.0", "10.3", "11.0", "12.0", "12.1"),
}
ARCH_TITLES = {name: "Ada" if name == "ada" else name.capitalize() for name in ARCH_ORDER}
FIRST_OPEN_ARCH = "turing"  # open kernel modules need Turing or newer [H: NVIDIA open-gpu-kernel]
OPEN_DEFAULT_BRANCH = 560  # open modules are NVIDIA's default from 560 on [H: FIELD.md]
OPEN_REQUIRED_ARCH = "blackwell"  # Blackwell: open modules only [H: NVIDIA driver README]
LAST_BRANCH = {"maxwell": 580, "pascal": 580, "volta": 580}  # R580 is their last branch [H]
MIN_BRANCH = {"blackwell": 570}  # Blackwell needs driver >= 570 [H: CUDA 12.8 release notes]
MIN_TOOLKIT = {"blackwell": "12.8"}  # nvcc targets sm_100/sm_120 from CUDA 12.8 [H]
MAX_TOOLKIT_MAJOR = {"maxwell": 12, "pascal": 12, "volta": 12}  # CUDA 13 dropped them [H]

# Architectures no driver branch of this tool serves: (last branch, newest CUDA, source).
LEGACY_ARCHS: dict[str, tuple[int, str, str]] = {
    "kepler": (
        470,
        "11.4",
        "NVIDIA: R470 is the last branch for Kepler (legacy GPU list, nvidia.com/en-us/drivers/"
        "unix/legacy-gpu); CUDA 11.4 is the newest CUDA R470 bundles [M]",
    ),
}

# Compute capabilities of Arm-only parts (Jetson modules and Arm superchips/desktops): NVIDIA
# serves them with L4T/JetPack or DGX OS, not the x86_64 PCIe driver and wheels compat chooses.
# [H: CUDA GPUs list (developer.nvidia.com/cuda-gpus); pci.ids 2026.08.22 names 2b00 "Jetson AGX
# Thor" and 2e12 "GB10"] [M: FIELD.md "11.0 (Thor) and 12.1 (GB10) are Arm/Jetson-class"]
ARM_ONLY_COMPUTES: dict[str, str] = {
    "5.3": "Jetson Nano / TX1 (Tegra X1)",
    "6.2": "Jetson TX2",
    "7.2": "Jetson AGX Xavier / Xavier NX",
    "8.7": "Jetson AGX Orin / Orin NX / Orin Nano",
    "11.0": "Jetson AGX Thor",
    "12.1": "DGX Spark / GB10 (Grace Blackwell, Arm)",
}


@dataclass(frozen=True)
class Fact:
    """A value of a table with where it was read and how sure it is."""

    source: str
    confidence: str  # H | M | L


# ---------------------------------------------------------------------------------------------
# CUDA releases: the driver branch bundled with each toolkit (the newest CUDA a branch supports
# natively), and the whole-major floors of minor-version compatibility.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CudaRelease:
    """One CUDA toolkit release."""

    bundled_branch: int  # the branch of its GA Linux driver; 0: no driver bundled
    source: str
    confidence: str


_SRC_CUDA_NOTES = "docs.nvidia.com/cuda/cuda-toolkit-release-notes, table 3 (via FIELD.md)"
_SRC_CUDA_TABLE = "NVIDIA's CUDA release notes table of bundled drivers (not re-read here)"
CUDA_RELEASES: dict[str, CudaRelease] = {
    "11.8": CudaRelease(520, _SRC_CUDA_TABLE, "M"),
    "12.0": CudaRelease(525, f"{_SRC_CUDA_NOTES}: 12.0 GA 525.60.13", "H"),
    "12.1": CudaRelease(530, _SRC_CUDA_TABLE, "M"),
    "12.2": CudaRelease(535, f"{_SRC_CUDA_NOTES}: 12.2 GA 535.54.03", "H"),
    "12.3": CudaRelease(545, _SRC_CUDA_TABLE, "M"),
    "12.4": CudaRelease(550, f"{_SRC_CUDA_NOTES}: 12.4 GA 550.54.14", "H"),
    "12.5": CudaRelease(555, _SRC_CUDA_TABLE, "M"),
    "12.6": CudaRelease(560, f"{_SRC_CUDA_NOTES}: 12.6 GA 560.28.03", "H"),
    "12.8": CudaRelease(570, f"{_SRC_CUDA_NOTES}: 12.8 GA 570.26", "H"),
    "12.9": CudaRelease(575, _SRC_CUDA_TABLE, "M"),
    "13.0": CudaRelease(580, f"{_SRC_CUDA_NOTES}: 13.0 GA 580.65.06", "H"),
    "13.1": CudaRelease(590, f"{_SRC_CUDA_NOTES}: 13.1 GA 590.44.01", "H"),
    "13.2": CudaRelease(595, "FIELD.md: 13.2 GA 595.45.04", "M"),
    "13.3": CudaRelease(610, "FIELD.md: 13.3 610.43.02", "M"),
    # From 13.4 the Linux driver is no longer bundled with the toolkit: only the major floor.
    "13.4": CudaRelease(0, "FIELD.md: CUDA 13.4 exists; driver no longer bundled", "M"),
    "13.5": CudaRelease(0, "FIELD.md: CUDA 13.5 exists; driver no longer bundled", "M"),
}
CUDA_DRIVER: dict[str, int] = {
    cuda: rel.bundled_branch for cuda, rel in CUDA_RELEASES.items() if rel.bundled_branch
}
# Minor-version compatibility: any CUDA X.y runs on a driver >= the floor of major X.
CUDA_MAJOR_FLOOR: dict[int, int] = {11: 450, 12: 525, 13: 580}
CUDA_MAJOR_FLOOR_FACTS: dict[int, Fact] = {
    major: Fact("docs.nvidia.com/deploy/cuda-compatibility, minor version compatibility", "H")
    for major in CUDA_MAJOR_FLOOR
}

# ---------------------------------------------------------------------------------------------
# Driver branches: kind, end of support, and where each one is installable.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Branch:
    """One NVIDIA driver branch."""

    kind: str  # LTSB | PB (production) | NFB (new feature, short-lived)
    ends: tuple[int, int] | None  # (year, month) support ends; None: short-lived, ended
    note: str  # shown to people
    source: str
    confidence: str


_SRC_LIFECYCLE = "FIELD.md 'Driver branches' / 'Branch status late 2026' (NVIDIA lifecycle page)"
_SRC_NFB = "NVIDIA Unix driver archive: a new feature branch, superseded within months"
BRANCHES: dict[int, Branch] = {
    535: Branch("LTSB", (2026, 6), "LTSB, CUDA 12.2", _SRC_LIFECYCLE, "H"),
    545: Branch("NFB", None, "new feature branch, CUDA 12.3", _SRC_NFB, "M"),
    550: Branch("PB", (2025, 6), "production branch, CUDA 12.4", _SRC_LIFECYCLE, "M"),
    555: Branch("NFB", None, "new feature branch, CUDA 12.5", _SRC_NFB, "M"),
    560: Branch("NFB", None, "new feature branch, CUDA 12.6", _SRC_NFB, "M"),
    570: Branch("PB", (2026, 2), "production branch, CUDA 12.8", _SRC_LIFECYCLE, "M"),
    575: Branch("NFB", None, "short-lived feature branch, CUDA 12.9", _SRC_LIFECYCLE, "M"),
    580: Branch(
        "LTSB",
        (2028, 6),
        "LTSB to June 2028, CUDA 13.0, the last branch for Maxwell/Pascal/Volta",
        _SRC_LIFECYCLE,
        "H",
    ),
    590: Branch("NFB", None, "short-lived feature branch, CUDA 13.1", _SRC_LIFECYCLE, "M"),
    595: Branch("PB", (2027, 3), "production branch to March 2027, CUDA 13.2", _SRC_LIFECYCLE, "M"),
    610: Branch("PB", (2026, 8), "CUDA 13.3", _SRC_LIFECYCLE, "M"),
    615: Branch("PB", (2026, 9), "feature/production branch", _SRC_LIFECYCLE, "M"),
    620: Branch("LTSB", (2029, 9), "LTSB to September 2029", _SRC_LIFECYCLE, "M"),
}
DEFAULT_BRANCH = 580  # the default wherever it is installable: LTSB, widest card support

# Branches per install source and OS.
_SRC_UBUNTU = (
    "ubuntu-drivers list on 22.04/24.04 (535, 570, 580; 580-server-open 0ubuntu0.24.04.1 seen) "
    "[H]; 550, 575 from apt listings, 595 (595.58.03-0ubuntu0.2x.04.1) from dpkg listings [M]"
)
UBUNTU_BRANCHES: dict[str, tuple[int, ...]] = {
    "ubuntu-22.04": (535, 550, 570, 575, 580, 595),
    "ubuntu-24.04": (535, 550, 570, 575, 580, 595),
    # 26.04 (resolute): 580-server and 595 only; its 535-server/570-server packages are
    # transitional to 580-server, its 590 modules transitional to 595.
    "ubuntu-26.04": (580, 595),
}
UBUNTU_BRANCH_FACTS = {
    "ubuntu-22.04": Fact(_SRC_UBUNTU, "M"),
    "ubuntu-24.04": Fact(_SRC_UBUNTU, "M"),
    "ubuntu-26.04": Fact(
        "packages.ubuntu.com resolute (via the search corpus, not run): source "
        "nvidia-graphics-drivers-580-server 580.173.02-0ubuntu0.26.04.1 (libnvidia-*-535-server "
        "and -570-server: transitional packages), libnvidia-extra-595-server "
        "595.71.05-0ubuntu0.26.04.1, nvidia-dkms-595 595.84-0ubuntu0.26.04.1 (amd64, arm64), "
        "linux-modules-nvidia-590-generic: transitional to 595; Canonical's "
        "`sudo ubuntu-drivers install nvidia:595` (ubuntu/ubuntu-release-notes#213)",
        "M",
    ),
}
DEBIAN_BRANCHES: dict[str, tuple[int, ...]] = {
    "debian-12": (535,),
    # trixie also has nvidia-tesla-535-* (535.274.02-1~deb13u1), branch-named packages the
    # driver step does not install; 535 ended June 2026, so 550 is Debian 13's one branch here.
    "debian-13": (550,),
}
DEBIAN_BRANCH_FACTS = {
    "debian-12": Fact(
        "apt-cache show against deb.debian.org bookworm contrib/non-free, 2026-12-01: "
        "nvidia-driver, nvidia-kernel-dkms, nvidia-open-kernel-dkms 535.261.03-1 "
        "(tests/data/facts/debian-12-apt-nvidia.txt)",
        "H",
    ),
    "debian-13": Fact(
        "apt-cache show/policy against deb.debian.org trixie, trixie-updates, trixie-security, "
        "trixie-backports (amd64, arm64), 2026-12-01: nvidia-driver, nvidia-kernel-dkms, "
        "nvidia-open-kernel-dkms (contrib), firmware-nvidia-gsp 550.163.01-2, backports "
        "550.163.01-4~bpo13+1, nvidia-modprobe 570.133.07-1 "
        "(tests/data/facts/debian-13-apt-nvidia.txt)",
        "H",
    ),
}
# The firmware package the Debian path installs with the module: Debian 12 as before; Debian 13's
# firmware-misc-nonfree no longer carries NVIDIA's firmware (it only Recommends
# firmware-nvidia-graphics), and the DKMS packages depend on firmware-nvidia-gsp of their version.
# [H: tests/data/facts/debian-12-apt-nvidia.txt, debian-13-apt-nvidia.txt]
DEBIAN_FIRMWARE: dict[str, str] = {
    "debian-12": "firmware-misc-nonfree",
    "debian-13": "firmware-nvidia-gsp",
}
# NVIDIA's CUDA repository per distribution directory.
_ALL_REPO = tuple(b for b in BRANCHES if b >= 535)
_FROM_590 = tuple(b for b in BRANCHES if b >= 590)
NVIDIA_REPO_BRANCHES_BY_REPO: dict[str, tuple[int, ...]] = {
    "ubuntu2204": _ALL_REPO,
    "ubuntu2404": _ALL_REPO,
    "ubuntu2604": _FROM_590,
    "debian12": _ALL_REPO,
    "debian13": _FROM_590,
}
NVIDIA_REPO_FACTS: dict[str, Fact] = {
    "ubuntu2204": Fact("FIELD.md 'CUDA apt repo': cuda-drivers-<branch> / pinning packages", "M"),
    "ubuntu2404": Fact("FIELD.md 'CUDA apt repo': cuda-drivers-<branch> / pinning packages", "M"),
    "ubuntu2604": Fact(
        "issue 19: NVIDIA's ubuntu2604 repository exists (x86_64 and sbsa); opened after the "
        "590 renames, so 590+ assumed (no listing of it was reachable)",
        "L",
    ),
    "debian12": Fact("FIELD.md 'CUDA apt repo': cuda-drivers-<branch> / pinning packages", "M"),
    "debian13": Fact(
        "NVIDIA/cuda-repo-management #38 'Debian 13 Repository Missing Older Drivers' (open, "
        "2026-08) and #40 (kmittman, 2026-02-02: the new debian13 repository lacks the 580 LTS "
        "drivers): 590 and newer only",
        "M",
    ),
}
# The CPU architectures (dpkg names) each repository serves; a repository not listed serves
# amd64 (x86_64) and arm64 (sbsa), as provision.cudarepo has always assumed.
NVIDIA_REPO_ARCHES: dict[str, tuple[str, ...]] = {"debian13": ("amd64",)}
NVIDIA_REPO_ARCH_FACTS: dict[str, Fact] = {
    "debian13": Fact(
        "NVIDIA/cuda-repo-management #39 (2026-02-02): 'there's no aarch64 for Debian 13' "
        "(users take the ubuntu2404 sbsa repository instead); kmittman's answer does not "
        "dispute it",
        "M",
    ),
}
NVIDIA_REPO_BRANCHES = _ALL_REPO  # the x86_64 repos compat serves (kept for importers)

# Debian's own packages of the kernel module, per flavour (the driver step installs exactly
# these; compat names them in its reasons).
DEBIAN_KERNEL_PACKAGES: dict[str, tuple[str, str]] = {
    "open": ("nvidia-open-kernel-dkms", "contrib"),
    "proprietary": ("nvidia-kernel-dkms", "non-free"),
}
DEBIAN_KERNEL_FACT = DEBIAN_BRANCH_FACTS["debian-12"]


@dataclass(frozen=True)
class OsInfo:
    """How one OS release is served."""

    title: str
    cuda_repo: str  # NVIDIA's repo directory
    sources: tuple[str, ...]  # install sources for the driver, the default first


OS_TABLE = {
    "ubuntu-22.04": OsInfo("Ubuntu 22.04", "ubuntu2204", ("ubuntu", "nvidia")),
    "ubuntu-24.04": OsInfo("Ubuntu 24.04", "ubuntu2404", ("ubuntu", "nvidia")),
    # From documentation, not run (UBUNTU_BRANCH_FACTS): Canonical's signed 580/595 first.
    "ubuntu-26.04": OsInfo("Ubuntu 26.04", "ubuntu2604", ("ubuntu", "nvidia")),
    # Default NVIDIA's repo: Debian's own 535 reached end of life in June 2026.
    "debian-12": OsInfo("Debian 12", "debian12", ("nvidia", "debian")),
    # Default NVIDIA's repo: Debian 13's own 550 ended in June 2025, NVIDIA's debian13 repo
    # carries the supported 595/620. Debian's own second: it is the only path for Maxwell, Pascal
    # and Volta (the repo starts at 590, R580 is their last branch) and for arm64 (no sbsa repo).
    "debian-13": OsInfo("Debian 13", "debian13", ("nvidia", "debian")),
}
SOURCE_TITLES = {
    "ubuntu": "the Ubuntu archive (Canonical-signed precompiled modules)",
    "nvidia": "NVIDIA's CUDA repository",
    "debian": "Debian's own packages (contrib/non-free)",
}

# The fabric manager package per install source. [H: packages.ubuntu.com nvidia-fabricmanager-580
# (multiverse, depends on nvidia-kernel-common-580-server) and -590/-595 listed]; [M: NVIDIA's
# repo renames branch packages from 590 on (driver pinning), nvidia-fabricmanager-<br> up to 580];
# [H: Debian 12 and 13 contrib/non-free/non-free-firmware have none (apt-cache, 2026-12-01)].
FABRICMANAGER_FACT = Fact(
    "packages.ubuntu.com nvidia-fabricmanager-580; NVIDIA 590 package renames; Debian 12 and 13 "
    "apt-cache (tests/data/facts/debian-1{2,3}-apt-nvidia.txt: no nvidia-fabricmanager)",
    "M",
)
FABRICMANAGER_UNIT = "nvidia-fabricmanager.service"

# ---------------------------------------------------------------------------------------------
# PyTorch wheels: per release, per CUDA variant, the TORCH_CUDA_ARCH_LIST of the x86_64 build.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WheelBuild:
    """One (torch release, CUDA variant) wheel build."""

    arch_list: str  # TORCH_CUDA_ARCH_LIST, e.g. "7.5;8.0;8.6;9.0;10.0;12.0+PTX"
    source: str
    confidence: str


_BUILD = "pytorch/pytorch .ci/manywheel/build_cuda.sh"
_SRC_28 = (
    f"{_BUILD} @00c7a380b8369d08e02dd400aa76dc6c0738b589 (its cases are 12.6/12.8/12.9, the 2.8 "
    "variants; pytorch/pytorch#157517 keeps sm_70 for 2.8)"
)
_SRC_29 = (
    f"{_BUILD} @799d09f215740cc4fb78e0bd278dce469e33ddcb (cases 12.6/12.8/12.9/13.0, the 2.9-2.10 "
    "variants; the 2.10 branch's 12.6 arm quoted in jhj0517/Whisper-WebUI#653)"
)
_SRC_211 = (
    "pytorch/pytorch#172352 and dev-discuss 'Dropping Volta support from CUDA-12.8 binaries for "
    "release 2.11': 12.6 Maxwell-Hopper, 12.8 Turing-Blackwell, 13.0 Turing-Blackwell (+PTX)"
)
_SRC_27 = (
    "FIELD.md (corrected 2026-12-01): 2.7's cu128 starts at 7.5; EutropicAI/vs-playground#59: "
    "torch 2.7.1+cu128 has no sm_70 (pytorch commit 179dcc10); not read at tag v2.7.0"
)
_SRC_26 = "FIELD.md: cu118/cu124/cu126 cover Maxwell 5.0 to Hopper 9.0; not read at tag v2.6.0"
_SRC_212 = (
    "FIELD.md (variants 2.12-2.14; cu126 Maxwell-Hopper, cu13x Turing+); the 2.11 matrix above "
    "carried forward, not read at the 2.12-2.14 tags"
)
_SRC_215 = (
    "PyPI https://pypi.org/pypi/torch/json (torch 2.15.0, uploaded 2026-10-28, read 2026-12-01): "
    "Requires-Dist cuda-toolkit==13.2.2, nvidia-cudnn-cu13, nvidia-nccl-cu13: the PyPI wheel is "
    "the CUDA 13.2 build. download.pytorch.org is not reachable from here: the variant list "
    "(no cu126) rests on FIELD.md"
)
_MAXWELL_HOPPER = "5.0;6.0;7.0;7.5;8.0;8.6;9.0"
_VOLTA_BLACKWELL = "7.0;7.5;8.0;8.6;9.0;10.0;12.0"
_TURING_BLACKWELL = "7.5;8.0;8.6;9.0;10.0;12.0"
_CUDA13 = "7.5;8.0;8.6;9.0;10.0;12.0+PTX"

WHEEL_BUILDS: dict[str, dict[str, WheelBuild]] = {
    "2.6": {
        "cu118": WheelBuild(_MAXWELL_HOPPER, _SRC_26, "M"),
        "cu124": WheelBuild(_MAXWELL_HOPPER, _SRC_26, "M"),
        "cu126": WheelBuild(_MAXWELL_HOPPER, _SRC_26, "M"),
    },
    "2.7": {
        "cu118": WheelBuild(_MAXWELL_HOPPER, _SRC_26, "M"),
        "cu126": WheelBuild(_MAXWELL_HOPPER, _SRC_26, "M"),
        "cu128": WheelBuild(_TURING_BLACKWELL, _SRC_27, "M"),
    },
    "2.8": {
        "cu126": WheelBuild(_MAXWELL_HOPPER, _SRC_28, "H"),
        "cu128": WheelBuild(_VOLTA_BLACKWELL, _SRC_28, "H"),
        "cu129": WheelBuild(_VOLTA_BLACKWELL + "+PTX", _SRC_28, "H"),
    },
    "2.9": {
        "cu126": WheelBuild(_MAXWELL_HOPPER, _SRC_29, "H"),
        "cu128": WheelBuild(_VOLTA_BLACKWELL, _SRC_29, "H"),
        "cu130": WheelBuild(_CUDA13, _SRC_29, "H"),
    },
    "2.10": {
        "cu126": WheelBuild(_MAXWELL_HOPPER, _SRC_29, "M"),
        "cu128": WheelBuild(_VOLTA_BLACKWELL, _SRC_29, "M"),
        "cu130": WheelBuild(_CUDA13, _SRC_29, "M"),
    },
    "2.11": {
        "cu126": WheelBuild(_MAXWELL_HOPPER, _SRC_211, "H"),
        "cu128": WheelBuild(_TURING_BLACKWELL, _SRC_211, "H"),
        "cu130": WheelBuild(_CUDA13, _SRC_211, "H"),
    },
    "2.12": {
        "cu126": WheelBuild(_MAXWELL_HOPPER, _SRC_212, "M"),
        "cu130": WheelBuild(_CUDA13, _SRC_212, "M"),
        "cu132": WheelBuild(_CUDA13, _SRC_212, "M"),
    },
    "2.13": {
        "cu126": WheelBuild(_MAXWELL_HOPPER, _SRC_212, "M"),
        "cu130": WheelBuild(_CUDA13, _SRC_212, "M"),
        "cu132": WheelBuild(_CUDA13, _SRC_212, "M"),
    },
    "2.14": {
        "cu126": WheelBuild(_MAXWELL_HOPPER, _SRC_212, "M"),
        "cu130": WheelBuild(_CUDA13, _SRC_212, "M"),
        "cu132": WheelBuild(_CUDA13, _SRC_212, "M"),
    },
    "2.15": {
        "cu130": WheelBuild(_CUDA13, _SRC_215, "M"),
        "cu132": WheelBuild(_CUDA13, _SRC_215, "H"),
    },
}
# Variants per release (download.pytorch.org/whl/<tag>); "cpu" exists for every release.
TORCH_WHEELS: dict[str, tuple[str, ...]] = {rel: tuple(b) for rel, b in WHEEL_BUILDS.items()}
CPU_INDEX = "cpu"
WHEEL_URL = "https://download.pytorch.org/whl/{tag}"

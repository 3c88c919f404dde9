"""compat's version tables: every fact with its source and a confidence, apart from the logic.

Confidence: "H" read in a primary source (the cited file, page or package index), "M" a secondary
source (shared/docs/FIELD.md, an issue thread quoting the primary), "L" weak (inferred, reported).
A new driver branch, CUDA release, torch release or card is a one-line change here; a unit test
fails when an entry has no source.
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
}
UBUNTU_BRANCH_FACTS = {os_key: Fact(_SRC_UBUNTU, "M") for os_key in UBUNTU_BRANCHES}
DEBIAN_BRANCHES: dict[str, tuple[int, ...]] = {"debian-12": (535,)}
DEBIAN_BRANCH_FACTS = {
    "debian-12": Fact(
        "apt-cache show against deb.debian.org bookworm contrib/non-free, 2026-12-01: "
        "nvidia-driver, nvidia-kernel-dkms, nvidia-open-kernel-dkms 535.261.03-1 "
        "(tests/data/facts/debian-12-apt-nvidia.txt)",
        "H",
    )
}
# NVIDIA's CUDA repository per distribution directory.
_ALL_REPO = tuple(b for b in BRANCHES if b >= 535)
NVIDIA_REPO_BRANCHES_BY_REPO: dict[str, tuple[int, ...]] = {
    "ubuntu2204": _ALL_REPO,
    "ubuntu2404": _ALL_REPO,
    "debian12": _ALL_REPO,
    "debian13": tuple(b for b in BRANCHES if b >= 590),
}
NVIDIA_REPO_FACTS: dict[str, Fact] = {
    "ubuntu2204": Fact("FIELD.md 'CUDA apt repo': cuda-drivers-<branch> / pinning packages", "M"),
    "ubuntu2404": Fact("FIELD.md 'CUDA apt repo': cuda-drivers-<branch> / pinning packages", "M"),
    "debian12": Fact("FIELD.md 'CUDA apt repo': cuda-drivers-<branch> / pinning packages", "M"),
    "debian13": Fact("issue 15: NVIDIA's debian13 repository reportedly carries 590+ only", "L"),
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
    # Default NVIDIA's repo: Debian's own 535 reached end of life in June 2026.
    "debian-12": OsInfo("Debian 12", "debian12", ("nvidia", "debian")),
}
SOURCE_TITLES = {
    "ubuntu": "the Ubuntu archive (Canonical-signed precompiled modules)",
    "nvidia": "NVIDIA's CUDA repository",
    "debian": "Debian 12's own packages (contrib/non-free)",
}

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

# ---------------------------------------------------------------------------------------------
# Cards
# ---------------------------------------------------------------------------------------------

# PCI device id (vendor 10de) -> name, architecture, compute capability, VRAM in GB.
CARD_SOURCES = Fact(
    "ids and names: pci.ids 2026.08.22 (pciutils/pciids @c1c12547d626, recorded in "
    "tests/data/facts/pci-ids-nvidia-2026.08.22.txt); names as nvidia-smi prints them; compute "
    "capability: developer.nvidia.com/cuda-gpus; VRAM: vendor spec sheets",
    "H",
)
# Several ids of one card (revisions, LHR, OEM) share its name. A name-only row (the same id as
# an earlier row) serves lookups by name: the id lookup gives the first row.
CARDS: tuple[tuple[str, str, str, str, float], ...] = (
    # Kepler: known, so that they are refused with the reason
    ("1180", "GeForce GTX 680", "kepler", "3.0", 2),
    ("1184", "GeForce GTX 770", "kepler", "3.0", 2),
    ("1004", "GeForce GTX 780", "kepler", "3.5", 3),
    ("100a", "GeForce GTX 780 Ti", "kepler", "3.5", 3),
    ("1005", "GeForce GTX TITAN", "kepler", "3.5", 6),
    ("100c", "GeForce GTX TITAN Black", "kepler", "3.5", 6),
    ("1024", "Tesla K40c", "kepler", "3.5", 12),
    ("1023", "Tesla K40m", "kepler", "3.5", 12),
    ("102d", "Tesla K80", "kepler", "3.7", 12),  # two GPUs of 12 GB on one board
    # Maxwell
    ("1380", "GeForce GTX 750 Ti", "maxwell", "5.0", 2),
    ("1402", "GeForce GTX 950", "maxwell", "5.2", 2),
    ("1401", "GeForce GTX 960", "maxwell", "5.2", 2),
    ("13c2", "GeForce GTX 970", "maxwell", "5.2", 4),
    ("13c0", "GeForce GTX 980", "maxwell", "5.2", 4),
    ("17c8", "GeForce GTX 980 Ti", "maxwell", "5.2", 6),
    ("17c2", "GeForce GTX TITAN X", "maxwell", "5.2", 12),
    ("13f1", "Quadro M4000", "maxwell", "5.2", 8),
    ("13f0", "Quadro M5000", "maxwell", "5.2", 8),
    ("17f0", "Quadro M6000", "maxwell", "5.2", 12),
    ("17f1", "Quadro M6000 24GB", "maxwell", "5.2", 24),
    ("17fd", "Tesla M40", "maxwell", "5.2", 12),
    ("13f2", "Tesla M60", "maxwell", "5.2", 8),  # two GPUs of 8 GB on one board
    # Pascal
    ("1d01", "GeForce GT 1030", "pascal", "6.1", 2),
    ("1c81", "GeForce GTX 1050", "pascal", "6.1", 2),
    ("1c82", "GeForce GTX 1050 Ti", "pascal", "6.1", 4),
    ("1c02", "GeForce GTX 1060 3GB", "pascal", "6.1", 3),
    ("1b84", "GeForce GTX 1060 3GB", "pascal", "6.1", 3),
    ("1c03", "GeForce GTX 1060 6GB", "pascal", "6.1", 6),
    ("1c06", "GeForce GTX 1060 6GB", "pascal", "6.1", 6),
    ("1b83", "GeForce GTX 1060 6GB", "pascal", "6.1", 6),
    ("1b81", "GeForce GTX 1070", "pascal", "6.1", 8),
    ("1b82", "GeForce GTX 1070 Ti", "pascal", "6.1", 8),
    ("1b80", "GeForce GTX 1080", "pascal", "6.1", 8),
    ("1b06", "GeForce GTX 1080 Ti", "pascal", "6.1", 11),
    ("1b00", "TITAN X (Pascal)", "pascal", "6.1", 12),
    ("1b02", "TITAN Xp", "pascal", "6.1", 12),
    ("1cb1", "Quadro P1000", "pascal", "6.1", 4),
    ("1c30", "Quadro P2000", "pascal", "6.1", 5),
    ("1bb1", "Quadro P4000", "pascal", "6.1", 8),
    ("1bb0", "Quadro P5000", "pascal", "6.1", 16),
    ("1b30", "Quadro P6000", "pascal", "6.1", 24),
    ("15f0", "Quadro GP100", "pascal", "6.0", 16),
    ("1bb3", "Tesla P4", "pascal", "6.1", 8),
    ("1b38", "Tesla P40", "pascal", "6.1", 24),
    ("15f7", "Tesla P100 PCIe 12GB", "pascal", "6.0", 12),
    ("15f8", "Tesla P100 PCIe 16GB", "pascal", "6.0", 16),
    ("15f9", "Tesla P100 SXM2 16GB", "pascal", "6.0", 16),
    # Volta
    ("1d81", "TITAN V", "volta", "7.0", 12),
    ("1dba", "Quadro GV100", "volta", "7.0", 32),
    ("1db1", "Tesla V100 SXM2 16GB", "volta", "7.0", 16),
    ("1df5", "Tesla V100 SXM2 16GB", "volta", "7.0", 16),
    ("1db3", "Tesla V100 FHHL 16GB", "volta", "7.0", 16),
    ("1db4", "Tesla V100 PCIe 16GB", "volta", "7.0", 16),
    ("1db5", "Tesla V100 SXM2 32GB", "volta", "7.0", 32),
    ("1db6", "Tesla V100 PCIe 32GB", "volta", "7.0", 32),
    ("1db8", "Tesla V100 SXM3 32GB", "volta", "7.0", 32),
    ("1df6", "Tesla V100S PCIe 32GB", "volta", "7.0", 32),
    # Turing
    ("1f82", "GeForce GTX 1650", "turing", "7.5", 4),
    ("2187", "GeForce GTX 1650 SUPER", "turing", "7.5", 4),
    ("2184", "GeForce GTX 1660", "turing", "7.5", 6),
    ("21c4", "GeForce GTX 1660 SUPER", "turing", "7.5", 6),
    ("2182", "GeForce GTX 1660 Ti", "turing", "7.5", 6),
    ("1f08", "GeForce RTX 2060", "turing", "7.5", 6),
    ("1e89", "GeForce RTX 2060", "turing", "7.5", 6),
    ("1f03", "GeForce RTX 2060 12GB", "turing", "7.5", 12),
    ("1f06", "GeForce RTX 2060 SUPER", "turing", "7.5", 8),
    ("1f42", "GeForce RTX 2060 SUPER", "turing", "7.5", 8),
    ("1f47", "GeForce RTX 2060 SUPER", "turing", "7.5", 8),
    ("1f02", "GeForce RTX 2070", "turing", "7.5", 8),
    ("1f07", "GeForce RTX 2070", "turing", "7.5", 8),
    ("1e84", "GeForce RTX 2070 SUPER", "turing", "7.5", 8),
    ("1ec2", "GeForce RTX 2070 SUPER", "turing", "7.5", 8),
    ("1ec7", "GeForce RTX 2070 SUPER", "turing", "7.5", 8),
    ("1e82", "GeForce RTX 2080", "turing", "7.5", 8),
    ("1e87", "GeForce RTX 2080", "turing", "7.5", 8),
    ("1e81", "GeForce RTX 2080 SUPER", "turing", "7.5", 8),
    ("1e04", "GeForce RTX 2080 Ti", "turing", "7.5", 11),
    ("1e07", "GeForce RTX 2080 Ti", "turing", "7.5", 11),
    ("1f11", "GeForce RTX 2060 Laptop GPU", "turing", "7.5", 6),  # pci.ids "2060 Mobile"
    ("1f15", "GeForce RTX 2060 Laptop GPU", "turing", "7.5", 6),
    ("1f51", "GeForce RTX 2060 Laptop GPU", "turing", "7.5", 6),
    ("1f55", "GeForce RTX 2060 Laptop GPU", "turing", "7.5", 6),
    ("1f12", "GeForce RTX 2060 Laptop GPU", "turing", "7.5", 6),  # Max-Q
    ("1f10", "GeForce RTX 2070 Laptop GPU", "turing", "7.5", 8),
    ("1f50", "GeForce RTX 2070 Laptop GPU", "turing", "7.5", 8),
    ("1f54", "GeForce RTX 2070 Laptop GPU", "turing", "7.5", 8),
    ("1f14", "GeForce RTX 2070 Laptop GPU", "turing", "7.5", 8),
    ("1e91", "GeForce RTX 2070 SUPER Laptop GPU", "turing", "7.5", 8),
    ("1ed1", "GeForce RTX 2070 SUPER Laptop GPU", "turing", "7.5", 8),
    ("1e90", "GeForce RTX 2080 Laptop GPU", "turing", "7.5", 8),
    ("1ed0", "GeForce RTX 2080 Laptop GPU", "turing", "7.5", 8),
    ("1e93", "GeForce RTX 2080 SUPER Laptop GPU", "turing", "7.5", 8),
    ("1ed3", "GeForce RTX 2080 SUPER Laptop GPU", "turing", "7.5", 8),
    ("1e02", "TITAN RTX", "turing", "7.5", 24),
    ("1eb1", "Quadro RTX 4000", "turing", "7.5", 8),
    ("1eb0", "Quadro RTX 5000", "turing", "7.5", 16),
    ("1e36", "Quadro RTX 6000", "turing", "7.5", 24),
    ("1e30", "Quadro RTX 6000/8000", "turing", "7.5", 24),  # the 8000 (48 GB) shares the id
    ("1e78", "Quadro RTX 6000/8000", "turing", "7.5", 24),
    ("1e30", "Quadro RTX 8000", "turing", "7.5", 48),  # name-only row: nvidia-smi's name
    ("1eb8", "Tesla T4", "turing", "7.5", 16),
    # Ampere
    ("2507", "GeForce RTX 3050", "ampere", "8.6", 8),
    ("2582", "GeForce RTX 3050 8GB", "ampere", "8.6", 8),
    ("2503", "GeForce RTX 3060", "ampere", "8.6", 12),
    ("2504", "GeForce RTX 3060", "ampere", "8.6", 12),  # Lite Hash Rate
    ("2544", "GeForce RTX 3060", "ampere", "8.6", 12),
    ("2487", "GeForce RTX 3060", "ampere", "8.6", 12),
    ("2486", "GeForce RTX 3060 Ti", "ampere", "8.6", 8),
    ("2489", "GeForce RTX 3060 Ti", "ampere", "8.6", 8),  # Lite Hash Rate
    ("2484", "GeForce RTX 3070", "ampere", "8.6", 8),
    ("2488", "GeForce RTX 3070", "ampere", "8.6", 8),  # Lite Hash Rate
    ("2482", "GeForce RTX 3070 Ti", "ampere", "8.6", 8),
    ("2206", "GeForce RTX 3080", "ampere", "8.6", 10),
    ("2216", "GeForce RTX 3080", "ampere", "8.6", 10),  # Lite Hash Rate
    ("220a", "GeForce RTX 3080 12GB", "ampere", "8.6", 12),
    ("2208", "GeForce RTX 3080 Ti", "ampere", "8.6", 12),
    ("2204", "GeForce RTX 3090", "ampere", "8.6", 24),
    ("2203", "GeForce RTX 3090 Ti", "ampere", "8.6", 24),
    ("25a2", "GeForce RTX 3050 Laptop GPU", "ampere", "8.6", 4),  # pci.ids "3050 Mobile"
    ("25a5", "GeForce RTX 3050 Laptop GPU", "ampere", "8.6", 4),
    ("25a0", "GeForce RTX 3050 Ti Laptop GPU", "ampere", "8.6", 4),
    ("25e0", "GeForce RTX 3050 Ti Laptop GPU", "ampere", "8.6", 4),
    ("25ac", "GeForce RTX 3050 6GB Laptop GPU", "ampere", "8.6", 6),
    ("2520", "GeForce RTX 3060 Laptop GPU", "ampere", "8.6", 6),
    ("2521", "GeForce RTX 3060 Laptop GPU", "ampere", "8.6", 6),
    ("2560", "GeForce RTX 3060 Laptop GPU", "ampere", "8.6", 6),
    ("2561", "GeForce RTX 3060 Laptop GPU", "ampere", "8.6", 6),
    ("249d", "GeForce RTX 3070 Laptop GPU", "ampere", "8.6", 8),
    ("24dd", "GeForce RTX 3070 Laptop GPU", "ampere", "8.6", 8),
    ("24a0", "GeForce RTX 3070 Ti Laptop GPU", "ampere", "8.6", 8),
    ("24e0", "GeForce RTX 3070 Ti Laptop GPU", "ampere", "8.6", 8),
    ("249c", "GeForce RTX 3080 Laptop GPU", "ampere", "8.6", 8),  # 8 or 16 GB boards
    ("24dc", "GeForce RTX 3080 Laptop GPU", "ampere", "8.6", 8),
    ("2420", "GeForce RTX 3080 Ti Laptop GPU", "ampere", "8.6", 16),
    ("2460", "GeForce RTX 3080 Ti Laptop GPU", "ampere", "8.6", 16),
    ("2531", "RTX A2000", "ampere", "8.6", 6),
    ("2571", "RTX A2000 12GB", "ampere", "8.6", 12),
    ("24b0", "RTX A4000", "ampere", "8.6", 16),
    ("2232", "RTX A4500", "ampere", "8.6", 20),
    ("2231", "RTX A5000", "ampere", "8.6", 24),
    ("2233", "RTX A5500", "ampere", "8.6", 24),
    ("2230", "RTX A6000", "ampere", "8.6", 48),
    ("2236", "A10", "ampere", "8.6", 24),
    ("2237", "A10G", "ampere", "8.6", 24),
    ("2235", "A40", "ampere", "8.6", 48),
    ("20b7", "A30", "ampere", "8.0", 24),
    ("20b0", "A100 SXM4 40GB", "ampere", "8.0", 40),
    ("20b1", "A100 PCIe 40GB", "ampere", "8.0", 40),
    ("20f1", "A100 PCIe 40GB", "ampere", "8.0", 40),
    ("20b2", "A100 SXM4 80GB", "ampere", "8.0", 80),
    ("20b5", "A100 PCIe 80GB", "ampere", "8.0", 80),
    # Ada Lovelace
    ("2882", "GeForce RTX 4060", "ada", "8.9", 8),
    ("2808", "GeForce RTX 4060", "ada", "8.9", 8),
    ("2803", "GeForce RTX 4060 Ti", "ada", "8.9", 8),
    ("2805", "GeForce RTX 4060 Ti 16GB", "ada", "8.9", 16),
    ("2786", "GeForce RTX 4070", "ada", "8.9", 12),
    ("2709", "GeForce RTX 4070", "ada", "8.9", 12),
    ("2783", "GeForce RTX 4070 SUPER", "ada", "8.9", 12),
    ("2782", "GeForce RTX 4070 Ti", "ada", "8.9", 12),
    ("2705", "GeForce RTX 4070 Ti SUPER", "ada", "8.9", 16),
    ("2704", "GeForce RTX 4080", "ada", "8.9", 16),
    ("2702", "GeForce RTX 4080 SUPER", "ada", "8.9", 16),
    ("2684", "GeForce RTX 4090", "ada", "8.9", 24),
    ("2685", "GeForce RTX 4090 D", "ada", "8.9", 24),
    ("28a1", "GeForce RTX 4050 Laptop GPU", "ada", "8.9", 6),  # pci.ids "4050 Max-Q / Mobile"
    ("28e1", "GeForce RTX 4050 Laptop GPU", "ada", "8.9", 6),
    ("28a0", "GeForce RTX 4060 Laptop GPU", "ada", "8.9", 8),
    ("28e0", "GeForce RTX 4060 Laptop GPU", "ada", "8.9", 8),
    ("2820", "GeForce RTX 4070 Laptop GPU", "ada", "8.9", 8),
    ("2860", "GeForce RTX 4070 Laptop GPU", "ada", "8.9", 8),
    ("27a0", "GeForce RTX 4080 Laptop GPU", "ada", "8.9", 12),
    ("27e0", "GeForce RTX 4080 Laptop GPU", "ada", "8.9", 12),
    ("2717", "GeForce RTX 4090 Laptop GPU", "ada", "8.9", 16),
    ("2757", "GeForce RTX 4090 Laptop GPU", "ada", "8.9", 16),
    ("28b0", "RTX 2000 Ada Generation", "ada", "8.9", 16),
    ("27b2", "RTX 4000 Ada Generation", "ada", "8.9", 20),
    ("27b0", "RTX 4000 SFF Ada Generation", "ada", "8.9", 20),
    ("27b1", "RTX 4500 Ada Generation", "ada", "8.9", 24),
    ("26b2", "RTX 5000 Ada Generation", "ada", "8.9", 32),
    ("26b1", "RTX 6000 Ada Generation", "ada", "8.9", 48),
    ("27b8", "L4", "ada", "8.9", 24),
    ("26b5", "L40", "ada", "8.9", 48),
    ("26b9", "L40S", "ada", "8.9", 48),
    # Hopper
    ("2331", "H100 PCIe", "hopper", "9.0", 80),
    ("2330", "H100 SXM5 80GB", "hopper", "9.0", 80),
    ("2339", "H100 SXM5 94GB", "hopper", "9.0", 94),
    ("2321", "H100 NVL", "hopper", "9.0", 94),  # pci.ids: "H100L 94GB"
    ("2335", "H200 SXM 141GB", "hopper", "9.0", 141),
    ("233b", "H200 NVL", "hopper", "9.0", 141),
    # Blackwell
    ("2901", "B200", "blackwell", "10.0", 180),
    ("3182", "B300 SXM6", "blackwell", "10.3", 288),
    ("2d83", "GeForce RTX 5050", "blackwell", "12.0", 8),
    ("2d05", "GeForce RTX 5060", "blackwell", "12.0", 8),
    ("2d04", "GeForce RTX 5060 Ti", "blackwell", "12.0", 16),  # 8 GB boards share the id
    ("2f04", "GeForce RTX 5070", "blackwell", "12.0", 12),
    ("2c05", "GeForce RTX 5070 Ti", "blackwell", "12.0", 16),
    ("2c02", "GeForce RTX 5080", "blackwell", "12.0", 16),
    ("2b85", "GeForce RTX 5090", "blackwell", "12.0", 32),
    ("2b87", "GeForce RTX 5090 D", "blackwell", "12.0", 32),
    ("2b8c", "GeForce RTX 5090 D V2", "blackwell", "12.0", 24),
    ("2d98", "GeForce RTX 5050 Laptop GPU", "blackwell", "12.0", 8),  # "5050 Max-Q / Mobile"
    ("2dd8", "GeForce RTX 5050 Laptop GPU", "blackwell", "12.0", 8),
    ("2d19", "GeForce RTX 5060 Laptop GPU", "blackwell", "12.0", 8),
    ("2d59", "GeForce RTX 5060 Laptop GPU", "blackwell", "12.0", 8),
    ("2d18", "GeForce RTX 5070 Laptop GPU", "blackwell", "12.0", 8),
    ("2d58", "GeForce RTX 5070 Laptop GPU", "blackwell", "12.0", 8),
    ("2f18", "GeForce RTX 5070 Ti Laptop GPU", "blackwell", "12.0", 12),
    ("2f58", "GeForce RTX 5070 Ti Laptop GPU", "blackwell", "12.0", 12),
    ("2c19", "GeForce RTX 5080 Laptop GPU", "blackwell", "12.0", 16),
    ("2c59", "GeForce RTX 5080 Laptop GPU", "blackwell", "12.0", 16),
    ("2c18", "GeForce RTX 5090 Laptop GPU", "blackwell", "12.0", 24),
    ("2c58", "GeForce RTX 5090 Laptop GPU", "blackwell", "12.0", 24),
    ("2c34", "RTX PRO 4000 Blackwell", "blackwell", "12.0", 24),
    ("2c31", "RTX PRO 4500 Blackwell", "blackwell", "12.0", 32),
    ("2bb3", "RTX PRO 5000 Blackwell", "blackwell", "12.0", 48),
    ("2bb1", "RTX PRO 6000 Blackwell Workstation Edition", "blackwell", "12.0", 96),
    ("2bb4", "RTX PRO 6000 Blackwell Max-Q Workstation Edition", "blackwell", "12.0", 96),
    ("2bb5", "RTX PRO 6000 Blackwell Server Edition", "blackwell", "12.0", 96),
    # Arm-only parts: known, so that they are refused with the reason (unified memory)
    ("2b00", "Jetson AGX Thor", "blackwell", "11.0", 128),
    ("2e12", "GB10", "blackwell", "12.1", 128),
)
# nvidia-smi's names where they differ from the table's (matched in full, "NVIDIA" included):
# [M: nvidia-smi output in vendor docs and issue threads].
SMI_NAMES: dict[str, str] = {
    "NVIDIA A100-SXM4-40GB": "20b0",
    "NVIDIA A100-PCIE-40GB": "20b1",
    "NVIDIA A100-SXM4-80GB": "20b2",
    "NVIDIA A100 80GB PCIe": "20b5",
    "NVIDIA H100 80GB HBM3": "2330",
    "NVIDIA H100 PCIe": "2331",
    "NVIDIA H100 NVL": "2321",
    "NVIDIA H200": "2335",
    "NVIDIA H200 NVL": "233b",
    "NVIDIA B200": "2901",
    "Tesla V100-SXM2-16GB": "1db1",
    "Tesla V100-PCIE-16GB": "1db4",
    "Tesla V100-SXM2-32GB": "1db5",
    "Tesla V100-PCIE-32GB": "1db6",
    "Tesla V100S-PCIE-32GB": "1df6",
    "Tesla P100-PCIE-12GB": "15f7",
    "Tesla P100-PCIE-16GB": "15f8",
    "Tesla P100-SXM2-16GB": "15f9",
}
NVIDIA_VENDOR = "10de"

# NVSwitch: an NVIDIA PCI function of class 0x0680 (bridge, other) on HGX/DGX-class boards;
# such boxes need nvidia-fabricmanager of the driver's own branch, or CUDA fails with error 802
# ("system not yet initialized"). [H: pci.ids 2026.08.22 1af1 "GA100 [A100 NVSwitch]", 22a3
# "GH100 [H100 NVSwitch]"] [M: NVIDIA Fabric Manager user guide]
NVSWITCH_CLASS = "0x0680"
NVSWITCH_IDS: dict[str, str] = {"1af1": "A100 NVSwitch", "22a3": "H100 NVSwitch"}
# The fabric manager package per install source. [H: packages.ubuntu.com nvidia-fabricmanager-580
# (multiverse, depends on nvidia-kernel-common-580-server) and -590/-595 listed]; [M: NVIDIA's
# repo renames branch packages from 590 on (driver pinning), nvidia-fabricmanager-<br> up to 580];
# [H: Debian 12 contrib/non-free/non-free-firmware has none (apt-cache, 2026-12-01)].
FABRICMANAGER_FACT = Fact(
    "packages.ubuntu.com nvidia-fabricmanager-580; NVIDIA 590 package renames; Debian 12 apt-cache",
    "M",
)
FABRICMANAGER_UNIT = "nvidia-fabricmanager.service"

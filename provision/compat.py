"""compat: which driver, CUDA and PyTorch for this card on this OS (the one version table).

Every version fact lives in the data tables at the top of this module, so a new driver branch,
CUDA release, torch release or card is a one-line change. Sources and confidence are noted next to
each table ([H] read in a primary source, [M] secondary, [L] weak); see shared/docs/FIELD.md.

`choose(gpus, os_key, request)` turns the cards found on a host, its OS and what the user asked
for into a `Choice` (driver branch, module flavour, install source, CUDA toolkit, PyTorch wheel
index, newest usable torch) with the reasons, or refuses an impossible combination with
`Incompatible` (exit 2) whose hint names a combination that would work.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from provision.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# Data tables
# ---------------------------------------------------------------------------------------------

# Architectures, oldest first. Compute capabilities per architecture [H: CUDA programming guide].
ARCH_ORDER = ("maxwell", "pascal", "volta", "turing", "ampere", "ada", "hopper", "blackwell")
ARCH_COMPUTES: dict[str, tuple[str, ...]] = {
    "maxwell": ("5.0", "5.2", "5.3"),
    "pascal": ("6.0", "6.1", "6.2"),
    "volta": ("7.0", "7.2"),
    "turing": ("7.5",),
    "ampere": ("8.0", "8.6", "8.7"),
    "ada": ("8.9",),
    "hopper": ("9.0",),
    "blackwell": ("10.0", "10.3", "12.0"),
}
ARCH_TITLES = {name: "Ada" if name == "ada" else name.capitalize() for name in ARCH_ORDER}
FIRST_OPEN_ARCH = "turing"  # open kernel modules need Turing or newer [H]
OPEN_REQUIRED_ARCH = "blackwell"  # Blackwell is supported by the open modules only [H: NVIDIA]
LAST_BRANCH = {"maxwell": 580, "pascal": 580, "volta": 580}  # R580 is their last branch [H]
MIN_BRANCH = {"blackwell": 570}  # Blackwell needs driver >= 570 [H]
MIN_TOOLKIT = {"blackwell": "12.8"}  # nvcc targets sm_100/sm_120 from CUDA 12.8 [H]
MAX_TOOLKIT_MAJOR = {"maxwell": 12, "pascal": 12, "volta": 12}  # CUDA 13 dropped them [H]

# Driver branch bundled with each CUDA toolkit's GA release (Linux x86_64): the newest CUDA a
# branch supports natively. [H] 12.0 12.2 12.4 12.6 12.8 13.0 13.1 (FIELD.md); [M] 13.2 13.3
# (FIELD.md); [M] 11.8 12.1 12.3 12.5 12.9 (NVIDIA's CUDA release notes table, not re-read).
CUDA_DRIVER: dict[str, int] = {
    "11.8": 520,
    "12.0": 525,
    "12.1": 530,
    "12.2": 535,
    "12.3": 545,
    "12.4": 550,
    "12.5": 555,
    "12.6": 560,
    "12.8": 570,
    "12.9": 575,
    "13.0": 580,
    "13.1": 590,
    "13.2": 595,
    "13.3": 610,
}
# Minor-version compatibility: any CUDA X.y runs on a driver >= the floor of major X [H].
CUDA_MAJOR_FLOOR = {11: 450, 12: 525, 13: 580}

# Driver branches per install source and OS. [H] Debian 12 non-free: 535.247.01 only.
# [H] Ubuntu 22.04/24.04 archive: 535, 570, 580 (ubuntu-drivers output, 580-server-open
# 0ubuntu0.24.04.1 seen); [M] 550, 575 (apt listings), 595 (595.58.03-0ubuntu0.22.04.1 and
# 0ubuntu0.24.04.1 seen in dpkg listings). [M] NVIDIA's repos: every branch in CUDA_DRIVER >= 535.
UBUNTU_BRANCHES = {
    "ubuntu-22.04": (535, 550, 570, 575, 580, 595),
    "ubuntu-24.04": (535, 550, 570, 575, 580, 595),
}
DEBIAN_BRANCHES = {"debian-12": (535,)}
NVIDIA_REPO_BRANCHES = tuple(sorted({b for b in CUDA_DRIVER.values() if b >= 535}))
DEFAULT_BRANCH = 580  # LTSB to June 2028, CUDA 13, last for Maxwell/Pascal/Volta [H]
EOL_BRANCHES = {535: "June 2026"}  # R535 LTSB end of life [M/H]
BRANCH_NOTES = {  # [M/H] FIELD.md "Driver branches"
    535: "LTSB, CUDA 12.2",
    580: "LTSB to June 2028, CUDA 13.0, the last branch for Maxwell/Pascal/Volta",
    595: "production branch to March 2027, CUDA 13.2",
    620: "LTSB to September 2029",
}


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
    "debian": "Debian non-free",
}

# PyTorch wheel variants per release (download.pytorch.org/whl/<tag>); "cpu" exists for every
# release. [H/M] FIELD.md "PyTorch wheels".
TORCH_WHEELS: dict[str, tuple[str, ...]] = {
    "2.6": ("cu118", "cu124", "cu126"),
    "2.7": ("cu118", "cu126", "cu128"),
    "2.8": ("cu126", "cu128", "cu129"),
    "2.9": ("cu126", "cu128", "cu130"),
    "2.10": ("cu126", "cu128", "cu130"),
    "2.11": ("cu126", "cu128", "cu130"),
    "2.12": ("cu126", "cu130", "cu132"),
    "2.13": ("cu126", "cu130", "cu132"),
    "2.14": ("cu126", "cu130", "cu132"),
    "2.15": ("cu130", "cu132"),
}
CPU_INDEX = "cpu"
WHEEL_URL = "https://download.pytorch.org/whl/{tag}"

# Architectures each wheel variant has kernels for, (oldest, newest). [H] cu126 5.0-9.0; cu128
# from 2.11 and cu130/cu132: Turing and newer (CUDA 13 dropped sm_50-sm_72). [M] cu118/cu124 like
# cu126. [L] cu128 before 2.11 from Maxwell (FIELD.md implies it); cu129 assumed Turing+.
WHEEL_ARCHS: dict[str, tuple[str, str]] = {
    "cu118": ("maxwell", "hopper"),
    "cu124": ("maxwell", "hopper"),
    "cu126": ("maxwell", "hopper"),
    "cu128": ("maxwell", "blackwell"),
    "cu129": ("turing", "blackwell"),
    "cu130": ("turing", "blackwell"),
    "cu132": ("turing", "blackwell"),
}
# Changes from a torch release on: (tag, first release) -> (oldest, newest).
WHEEL_ARCHS_FROM: dict[tuple[str, str], tuple[str, str]] = {
    ("cu128", "2.11"): ("turing", "blackwell"),
}

# Cards: PCI device id (vendor 10de) -> name, architecture, compute capability, VRAM in GB.
# Ids and names: pci.ids (pciutils/pciids, version 2026.05.24; the older ones also in Debian 12's
# pci.ids 2023.04.10). Compute capability: NVIDIA's CUDA GPUs list; VRAM: vendor spec sheets.
# Several ids of one card (revisions, LHR, OEM) share its name.
CARDS: tuple[tuple[str, str, str, str, float], ...] = (
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
    ("1e02", "TITAN RTX", "turing", "7.5", 24),
    ("1eb1", "Quadro RTX 4000", "turing", "7.5", 8),
    ("1eb0", "Quadro RTX 5000", "turing", "7.5", 16),
    ("1e36", "Quadro RTX 6000", "turing", "7.5", 24),
    ("1e30", "Quadro RTX 6000/8000", "turing", "7.5", 24),  # the 8000 (48 GB) shares the id
    ("1e78", "Quadro RTX 6000/8000", "turing", "7.5", 24),
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
    ("2c34", "RTX PRO 4000 Blackwell", "blackwell", "12.0", 24),
    ("2c31", "RTX PRO 4500 Blackwell", "blackwell", "12.0", 32),
    ("2bb3", "RTX PRO 5000 Blackwell", "blackwell", "12.0", 48),
    ("2bb1", "RTX PRO 6000 Blackwell Workstation Edition", "blackwell", "12.0", 96),
    ("2bb4", "RTX PRO 6000 Blackwell Max-Q Workstation Edition", "blackwell", "12.0", 96),
    ("2bb5", "RTX PRO 6000 Blackwell Server Edition", "blackwell", "12.0", 96),
)
NVIDIA_VENDOR = "10de"

# ---------------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------------


class Incompatible(ConfigError):
    """A combination that cannot work (exit 2); the hint names one that would."""


@dataclass(frozen=True)
class Gpu:
    """One card model from the built-in table."""

    device_id: str  # PCI device id, 4 lower-case hex digits (vendor 10de implied)
    name: str  # "GeForce GTX 1080 Ti"
    arch: str  # maxwell | pascal | volta | turing | ampere | ada | hopper | blackwell
    compute: str  # compute capability, "6.1"
    vram_gb: float


@dataclass(frozen=True)
class Request:
    """What the user asked for explicitly (empty/0: let compat choose)."""

    branch: int = 0
    flavour: str = ""  # open | proprietary
    source: str = ""  # ubuntu | nvidia | debian
    cuda: str = ""  # toolkit "12.8"
    torch_index: str = ""  # cpu | cu126 | ...
    torch_version: str = ""  # "2.13.0"


@dataclass(frozen=True)
class Choice:
    """The decision, with the reasons shown to the user."""

    os_key: str  # "ubuntu-24.04"
    gpus: tuple[Gpu, ...]
    arch: str  # the oldest architecture among the GPUs ("" when none is known)
    driver_branch: int  # 580
    flavour: str  # open | proprietary
    source: str  # ubuntu | nvidia | debian
    cuda: str  # toolkit X.Y, the CUDA of the wheels ("" with the cpu index)
    torch_index: str  # cu130
    torch_max: str  # newest torch with kernels for the card, "" when no limit
    torch_version: str  # the requested version, "" for the newest allowed
    reasons: tuple[str, ...]


_CARDS_BY_ID = {dev: Gpu(dev, name, arch, cc, float(vram)) for dev, name, arch, cc, vram in CARDS}

# ---------------------------------------------------------------------------------------------
# Lookups
# ---------------------------------------------------------------------------------------------


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _norm_id(device_id: str) -> str:
    text = device_id.strip().lower().removeprefix("0x")
    vendor, sep, device = text.partition(":")
    if sep:
        if vendor.removeprefix("0x") != NVIDIA_VENDOR:
            return ""
        text = device.removeprefix("0x")
    return text if re.fullmatch(r"[0-9a-f]{4}", text) else ""


def gpu_by_id(device_id: str) -> Gpu | None:
    """The card with this PCI device id ("1b06" or "10de:1b06"), or None."""
    return _CARDS_BY_ID.get(_norm_id(device_id))


_FAMILY_WORDS = ("nvidia ", "geforce ", "tesla ", "quadro ")


def _norm_name(text: str, short: bool = False) -> str:
    name = " ".join(text.lower().replace("-", " ").split())
    name = name.removeprefix("nvidia ")
    if short:
        for word in _FAMILY_WORDS:
            name = name.removeprefix(word)
    return name


def gpu_by_name(text: str) -> Gpu | None:
    """The card whose name matches (case-insensitive; "GTX 1080 Ti", "RTX 4090")."""
    wanted = _norm_name(text)
    if not wanted:
        return None
    cards = list(_CARDS_BY_ID.values())
    for short in (False, True):
        key = _norm_name(text, short)
        for gpu in cards:
            if _norm_name(gpu.name, short) == key:
                return gpu
    # A unique card whose name contains the words asked for ("1080 ti").
    matches = {gpu.name: gpu for gpu in cards if wanted in _norm_name(gpu.name)}
    return next(iter(matches.values())) if len(matches) == 1 else None


def parse_gpu(text: str, arch: str = "") -> Gpu | None:
    """A card from the CLI: a name ("GeForce GTX 1080 Ti") or a PCI id (10de:1b06, 1b06).

    An unknown card is refused, unless `arch` (the user's --arch) says what to choose for:
    then None, and `choose(..., arch=arch)` decides from the architecture.
    """
    gpu = gpu_by_id(text) if _norm_id(text) else gpu_by_name(text)
    if gpu is None:
        if arch:
            _parse_arch(arch)  # a bad --arch is refused here already
            return None
        raise Incompatible(
            f"unknown card {text!r}: not in compat's table of NVIDIA cards",
            "give --arch (e.g. ampere) or the compute capability (e.g. 8.6)",
        )
    return gpu


def gpus_from_facts(facts: object) -> tuple[list[Gpu], list[str]]:
    """The known cards among facts.gpus, and the unknown ones as "10de:xxxx" strings."""
    known: list[Gpu] = []
    unknown: list[str] = []
    for device in getattr(facts, "gpus", ()):
        gpu = gpu_by_id(device.device_id)
        if gpu is not None:
            known.append(gpu)
        elif f"{NVIDIA_VENDOR}:{device.device_id}" not in unknown:
            unknown.append(f"{NVIDIA_VENDOR}:{device.device_id}")
    return known, unknown


def arch_of(text: str) -> str:
    """An architecture from a name ("pascal"), a compute capability ("6.1") or "sm_61"."""
    return _parse_arch(text)[0]


def _parse_arch(text: str) -> tuple[str, str]:
    """(architecture, compute capability or "" when a name was given)."""
    value = text.strip().lower()
    if value in ARCH_COMPUTES:
        return value, ""
    if value in ("lovelace", "ada lovelace"):
        return "ada", ""
    match = re.fullmatch(r"(?:sm_?|compute_?)?(\d{1,2})\.?(\d)", value)
    if match:
        compute = f"{int(match[1])}.{match[2]}"
        for arch, computes in ARCH_COMPUTES.items():
            if compute in computes:
                return arch, compute
    raise Incompatible(
        f"unknown architecture {text!r}",
        f"give one of {', '.join(ARCH_ORDER)} or a compute capability (e.g. 8.6)",
    )


def cuda_repo_distro(os_key: str) -> str:
    """NVIDIA's repo directory for this OS: ubuntu2204, ubuntu2404, debian12 (else Incompatible)."""
    return _os_info(os_key).cuda_repo


def _os_info(os_key: str) -> OsInfo:
    info = OS_TABLE.get(os_key)
    if info is None:
        raise Incompatible(
            f"{os_key} is not served: no NVIDIA driver/CUDA path for it in compat's table",
            f"use one of {', '.join(OS_TABLE)}",
        )
    return info


def max_cuda_for_branch(branch: int) -> str:
    """The newest CUDA the branch supports natively ("" for a branch older than any listed)."""
    fitting = [cuda for cuda, driver in CUDA_DRIVER.items() if driver <= branch]
    return max(fitting, key=_version) if fitting else ""


def index_cuda(tag: str) -> str:
    """The CUDA version of a wheel index tag: "cu126" -> "12.6", "cu130" -> "13.0", cpu -> ""."""
    if tag == CPU_INDEX:
        return ""
    match = re.fullmatch(r"cu(\d{2,3})", tag)
    if not match:
        raise Incompatible(f"unknown wheel index {tag!r}", f"use one of {', '.join(_all_tags())}")
    digits = match[1]
    return f"{int(digits[:-1])}.{digits[-1]}"


def cuda_driver_floor(cuda: str) -> int:
    """The oldest driver branch that runs CUDA X.y (minor-version compatibility)."""
    return CUDA_MAJOR_FLOOR.get(_version(cuda)[0], CUDA_DRIVER.get(cuda, 0))


def _all_tags() -> list[str]:
    tags = {tag for tags in TORCH_WHEELS.values() for tag in tags}
    return [CPU_INDEX, *sorted(tags, key=lambda t: _version(index_cuda(t)))]


def _release(version: str) -> str:
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?(?:[.+a-z0-9]*)", version.strip())
    release = f"{match[1]}.{match[2]}" if match else ""
    if release not in TORCH_WHEELS:
        known = sorted(TORCH_WHEELS, key=_version)
        raise Incompatible(
            f"torch {version} is not in compat's wheel table ({known[0]} to {known[-1]})",
            f"use pytorch.version {known[0]} to {known[-1]}, or add the release to TORCH_WHEELS "
            "in provision/compat.py",
        )
    return release


def _wheel_archs(tag: str, release: str) -> tuple[str, str]:
    span = WHEEL_ARCHS[tag]
    for (changed_tag, first), changed in sorted(
        WHEEL_ARCHS_FROM.items(), key=lambda item: _version(item[0][1])
    ):
        if changed_tag == tag and _version(release) >= _version(first):
            span = changed
    return span


def _has_kernels(tag: str, release: str, archs: Iterable[str]) -> bool:
    oldest, newest = _wheel_archs(tag, release)
    low, high = ARCH_ORDER.index(oldest), ARCH_ORDER.index(newest)
    return all(low <= ARCH_ORDER.index(arch) <= high for arch in archs)


def _newest_release(tag: str, archs: Iterable[str]) -> str:
    archs = tuple(archs)
    releases = [
        r for r, tags in TORCH_WHEELS.items() if tag in tags and _has_kernels(tag, r, archs)
    ]
    return max(releases, key=_version) if releases else ""


def _best_index(branch: int, archs: Sequence[str], release: str = "") -> tuple[str, str]:
    """(tag, release): the wheels for the newest torch the driver and cards allow.

    Among a release's variants, prefer the newest CUDA the branch supports natively; else the
    oldest one it runs through minor-version compatibility.
    """
    native = max_cuda_for_branch(branch)
    best: tuple[tuple, str, str] | None = None
    releases = [release] if release else list(TORCH_WHEELS)
    for rel in releases:
        for tag in TORCH_WHEELS[rel]:
            cuda = index_cuda(tag)
            if branch < cuda_driver_floor(cuda) or not _has_kernels(tag, rel, archs):
                continue
            is_native = bool(native) and _version(cuda) <= _version(native)
            closeness = _version(cuda) if is_native else tuple(-n for n in _version(cuda))
            score = (_version(rel), is_native, closeness)
            if best is None or score > best[0]:
                best = (score, tag, rel)
    return (best[1], best[2]) if best else ("", "")


# ---------------------------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------------------------


def _label(arch: str, compute: dict[str, str]) -> str:
    return f"{ARCH_TITLES[arch]} (compute {compute.get(arch, ARCH_COMPUTES[arch][0])})"


def _list(items: Iterable[object]) -> str:
    return ", ".join(str(item) for item in items)


def choose(
    gpus: Sequence[Gpu], os_key: str, request: Request = Request(), arch: str = ""
) -> Choice:
    """Choose driver, CUDA and wheel index; refuse an impossible request (Incompatible)."""
    info = _os_info(os_key)
    reasons: list[str] = []

    # The cards: every architecture present constrains the choice; the oldest decides.
    compute: dict[str, str] = {}
    for gpu in gpus:
        compute.setdefault(gpu.arch, gpu.compute)
        reasons.append(f"{gpu.name}: {ARCH_TITLES[gpu.arch]}, compute {gpu.compute}")
    if arch:
        asked, asked_compute = _parse_arch(arch)
        compute.setdefault(asked, asked_compute or ARCH_COMPUTES[asked][0])
        what = "no NVIDIA GPU found" if not gpus else "architecture given"
        reasons.append(f"{what}: choosing for {ARCH_TITLES[asked]} as asked (--arch {arch})")
    elif not gpus:
        reasons.append(
            "no NVIDIA GPU found: choosing for a current card (Turing or newer); "
            "give --arch for an older one"
        )
    archs = sorted(compute, key=ARCH_ORDER.index)
    oldest = archs[0] if archs else ""
    if len(archs) > 1:
        reasons.append(
            f"mixed architectures ({_list(ARCH_TITLES[a] for a in archs)}): "
            f"choosing for the oldest, {ARCH_TITLES[oldest]}"
        )
    pre_turing = [a for a in archs if ARCH_ORDER.index(a) < ARCH_ORDER.index(FIRST_OPEN_ARCH)]
    open_only = [a for a in archs if a == OPEN_REQUIRED_ARCH]
    if pre_turing and open_only:
        raise Incompatible(
            f"{ARCH_TITLES[pre_turing[0]]} and Blackwell cards cannot share one driver: "
            "Blackwell needs the open kernel modules, which do not support "
            f"{ARCH_TITLES[pre_turing[0]]}",
            "put the cards in different machines",
        )

    source, branch = _choose_driver(info, os_key, request, compute, reasons)
    flavour = _choose_flavour(request, compute, pre_turing, open_only, reasons)
    index, torch_max = _choose_wheels(source, branch, request, compute, reasons)
    cuda = _choose_toolkit(branch, index, request, compute, reasons)

    return Choice(
        os_key=os_key,
        gpus=tuple(gpus),
        arch=oldest,
        driver_branch=branch,
        flavour=flavour,
        source=source,
        cuda=cuda,
        torch_index=index,
        torch_max=torch_max,
        torch_version=request.torch_version,
        reasons=tuple(reasons),
    )


def _choose_driver(
    info: OsInfo, os_key: str, request: Request, compute: dict[str, str], reasons: list[str]
) -> tuple[str, int]:
    archs = list(compute)
    source = request.source or info.sources[0]
    if source not in info.sources:
        raise Incompatible(
            f"driver.source = {source} is not available on {info.title}",
            f"use driver.source = {' or '.join(info.sources)}",
        )
    if source == "ubuntu":
        shipped = UBUNTU_BRANCHES[os_key]
    elif source == "debian":
        shipped = DEBIAN_BRANCHES[os_key]
    else:
        shipped = NVIDIA_REPO_BRANCHES
    branch = request.branch or (DEFAULT_BRANCH if DEFAULT_BRANCH in shipped else max(shipped))

    if branch not in shipped:
        if source == "ubuntu" and not request.source and branch in NVIDIA_REPO_BRANCHES:
            source, shipped = "nvidia", NVIDIA_REPO_BRANCHES
            reasons.append(
                f"the {info.title} archive does not ship branch {branch}: "
                "installing it from NVIDIA's CUDA repository"
            )
        elif source == "debian":
            raise Incompatible(
                f"Debian 12 non-free ships only driver {_list(shipped)}, "
                f"not driver.branch = {branch}",
                f"use driver.source = nvidia (NVIDIA's debian12 repo ships {branch})"
                if branch in NVIDIA_REPO_BRANCHES
                else f"use driver.source = nvidia with driver.branch = {DEFAULT_BRANCH}",
            )
        elif source == "ubuntu":
            raise Incompatible(
                f"the {info.title} archive does not ship driver branch {branch} "
                f"(it ships {_list(shipped)})",
                "use driver.source = nvidia (NVIDIA's CUDA repository)"
                if branch in NVIDIA_REPO_BRANCHES
                else f"use driver.branch = {DEFAULT_BRANCH}",
            )
        else:
            raise Incompatible(
                f"driver branch {branch} is not in compat's table ({_list(NVIDIA_REPO_BRANCHES)})",
                f"use driver.branch = {DEFAULT_BRANCH}",
            )

    for arch in archs:
        last = LAST_BRANCH.get(arch)
        if last and branch > last:
            raise Incompatible(
                f"driver branch {branch} does not support {_label(arch, compute)}: "
                f"R{last} is the last branch for Maxwell, Pascal and Volta",
                f"use driver.branch = {last}",
            )
        least = MIN_BRANCH.get(arch)
        if least and branch < least:
            where = "Debian 12 non-free ships only 535; " if source == "debian" else ""
            raise Incompatible(
                f"{_label(arch, compute)} needs driver >= {least}; {where}"
                f"driver.branch = {branch} is too old",
                "use driver.source = nvidia (branch 580)"
                if source == "debian"
                else f"use driver.branch = {DEFAULT_BRANCH} (the default)",
            )

    how = {
        "ubuntu": f"installed with ubuntu-drivers install --gpgpu nvidia:{branch}-server "
        "(signed precompiled modules: Secure Boot works, kernel updates do not break them)",
        "nvidia": f"installed from NVIDIA's {info.cuda_repo} repository",
        "debian": "installed from Debian non-free (nvidia-driver, DKMS)",
    }[source]
    note = f" ({BRANCH_NOTES[branch]})" if branch in BRANCH_NOTES else ""
    if request.branch:
        reasons.append(f"driver {branch}{note} as asked")
    elif source == "debian":
        reasons.append(f"driver {branch}: the only branch Debian 12 non-free ships")
    else:
        reasons.append(f"driver {branch}{note}")
    reasons.append(how)
    if source == "nvidia" and not request.source and os_key.startswith("debian"):
        reasons.append(
            "Debian 12 non-free ships only 535, which reached end of life in June 2026: "
            "NVIDIA's debian12 repo instead"
        )
    if branch in EOL_BRANCHES:
        reasons.append(
            f"R{branch} reached end of life in {EOL_BRANCHES[branch]} (no more fixes); "
            f"driver {DEFAULT_BRANCH} is the supported LTSB"
        )
    return source, branch


def _choose_flavour(
    request: Request,
    compute: dict[str, str],
    pre_turing: list[str],
    open_only: list[str],
    reasons: list[str],
) -> str:
    flavour = request.flavour
    if flavour and flavour not in ("open", "proprietary"):
        raise Incompatible(
            f"driver.flavour = {flavour} is not a module flavour", "use open or proprietary"
        )
    if flavour == "open" and pre_turing:
        raise Incompatible(
            f"open kernel modules need Turing or newer; {_label(pre_turing[0], compute)} "
            "needs the proprietary ones",
            "use driver.flavour = proprietary (or leave it empty)",
        )
    if flavour == "proprietary" and open_only:
        raise Incompatible(
            f"{_label(open_only[0], compute)} is supported by the open kernel modules only",
            "use driver.flavour = open (or leave it empty)",
        )
    if flavour:
        reasons.append(f"{flavour} kernel modules as asked")
        return flavour
    if pre_turing:
        reasons.append(
            f"proprietary kernel modules: the open ones need Turing or newer "
            f"({ARCH_TITLES[pre_turing[0]]} is older)"
        )
        return "proprietary"
    reasons.append("open kernel modules (NVIDIA's default since 560, Turing and newer)")
    return "open"


def _choose_wheels(
    source: str, branch: int, request: Request, compute: dict[str, str], reasons: list[str]
) -> tuple[str, str]:
    archs = sorted(compute, key=ARCH_ORDER.index)
    release = _release(request.torch_version) if request.torch_version else ""
    native = max_cuda_for_branch(branch)
    tag = request.torch_index.strip().lower()

    if not tag:
        tag, _ = _best_index(branch, archs, release)
        if not tag:
            alt_tag, alt_rel = _best_index(branch, archs)
            needs = {cuda_driver_floor(index_cuda(t)) for t in TORCH_WHEELS[release]}
            raise Incompatible(
                f"torch {release} has no wheels that driver {branch} can run for "
                f"{_list(_label(a, compute) for a in archs) or 'this host'} "
                f"(its variants: {_list(TORCH_WHEELS[release])}; they need driver >= "
                f"{min(needs)})",
                (f"use pytorch.version = {alt_rel} ({alt_tag}) or " if alt_tag else "use ")
                + f"driver.branch = {max(needs | {DEFAULT_BRANCH})}",
            )
        newest = _newest_release(tag, archs)
        why = "the newest torch" + (f" {release}" if release else "")
        reasons.append(
            f"wheel index {tag}: {why} that driver {branch} (CUDA {native} natively) can run"
            + (f" with kernels for {_list(ARCH_TITLES[a] for a in archs)}" if archs else "")
        )
        _note_minor_compat(tag, branch, native, reasons)
        return tag, _torch_max(tag, newest, archs, reasons)

    if tag not in WHEEL_ARCHS and tag != CPU_INDEX:
        raise Incompatible(f"unknown wheel index {tag!r}", f"use one of {_list(_all_tags())}")
    if release and tag != CPU_INDEX and tag not in TORCH_WHEELS[release]:
        published = [r for r, tags in TORCH_WHEELS.items() if tag in tags]
        span = (
            f" ({tag} exists for torch {min(published, key=_version)} to "
            f"{max(published, key=_version)})"
            if published
            else ""
        )
        raise Incompatible(
            f"torch {release} has no {tag} wheels{span}",
            f"torch {release} wheels: {_list([*TORCH_WHEELS[release], CPU_INDEX])}; "
            f"use one of those as pytorch.index",
        )
    if tag == CPU_INDEX:
        reasons.append("wheel index cpu as asked: torch will not use the GPU")
        return tag, ""

    alt_tag, _ = _best_index(branch, archs, release)
    for arch in archs:
        if release:
            has_kernels = _has_kernels(tag, release, [arch])
        else:
            has_kernels = bool(_newest_release(tag, [arch]))
        if not has_kernels:
            oldest, newest = _wheel_archs(tag, release or _newest_release(tag, ()))
            limit = _newest_release(alt_tag, archs) if alt_tag else ""
            raise Incompatible(
                f"{tag} wheels have no kernels for {_label(arch, compute)}: {tag} builds cover "
                f"{ARCH_TITLES[oldest]} to {ARCH_TITLES[newest]}",
                f"use pytorch.index = {alt_tag}"
                + (f" (torch <= {limit})" if limit and limit != _latest_release() else "")
                if alt_tag
                else "use a wheel index with kernels for the card",
            )

    cuda = index_cuda(tag)
    floor = cuda_driver_floor(cuda)
    if branch < floor:
        need = max(floor, DEFAULT_BRANCH)
        other = f"use pytorch.index = {alt_tag}" if alt_tag else "use another pytorch.index"
        fix = (
            f"driver.source = nvidia with driver.branch = {need}"
            if source == "debian"
            else f"driver.branch = {need}"
        )
        raise Incompatible(
            f"{tag} wheels need driver >= {floor}; driver.branch = {branch} gives at most "
            f"CUDA {native}",
            f"{other} or {fix}",
        )
    reasons.append(f"wheel index {tag} as asked")
    _note_minor_compat(tag, branch, native, reasons)
    return tag, _torch_max(tag, _newest_release(tag, archs), archs, reasons)


def _note_minor_compat(tag: str, branch: int, native: str, reasons: list[str]) -> None:
    cuda = index_cuda(tag)
    if native and _version(cuda) > _version(native):
        reasons.append(
            f"CUDA {cuda} wheels run on driver {branch} (CUDA {native}) through minor-version "
            f"compatibility (CUDA {_version(cuda)[0]}.x needs driver >= "
            f"{cuda_driver_floor(cuda)}); features of newer drivers are unavailable"
        )


def _latest_release() -> str:
    return max(TORCH_WHEELS, key=_version)


def _torch_max(tag: str, newest: str, archs: Sequence[str], reasons: list[str]) -> str:
    if not newest or newest == _latest_release():
        return ""
    cards = f" that have kernels for {_list(ARCH_TITLES[a] for a in archs)}" if archs else ""
    reasons.append(f"torch <= {newest}: the newest release with {tag} wheels{cards}")
    return newest


def _choose_toolkit(
    branch: int, index: str, request: Request, compute: dict[str, str], reasons: list[str]
) -> str:
    if not request.cuda:
        cuda = index_cuda(index)
        if cuda:
            reasons.append(f"CUDA toolkit {cuda}: the CUDA of the {index} wheels")
        return cuda
    cuda = request.cuda.strip()
    if cuda not in CUDA_DRIVER:
        raise Incompatible(
            f"unknown CUDA toolkit version {cuda!r}",
            f"use one of {_list(sorted(CUDA_DRIVER, key=_version))}",
        )
    native = max_cuda_for_branch(branch)
    floor = cuda_driver_floor(cuda)
    wheel_cuda = index_cuda(index)
    if branch < floor:
        runnable = [c for c in CUDA_DRIVER if cuda_driver_floor(c) <= branch]
        best = max(runnable, key=_version) if runnable else ""
        raise Incompatible(
            f"CUDA {cuda} needs driver >= {floor}; driver.branch = {branch} gives at most "
            f"CUDA {native}",
            f"use cuda.version = {wheel_cuda or best} "
            f"or driver.branch = {max(floor, DEFAULT_BRANCH)}",
        )
    major = _version(cuda)[0]
    for arch in compute:
        top = MAX_TOOLKIT_MAJOR.get(arch)
        if top and major > top:
            raise Incompatible(
                f"CUDA {cuda} does not support {_label(arch, compute)}: CUDA 13 dropped "
                "Maxwell, Pascal and Volta",
                f"use cuda.version = {wheel_cuda if wheel_cuda.startswith('12.') else '12.6'} "
                f"(a {top}.x toolkit)",
            )
        least = MIN_TOOLKIT.get(arch)
        if least and _version(cuda) < _version(least):
            raise Incompatible(
                f"CUDA {cuda} cannot build for {_label(arch, compute)}: it needs CUDA >= {least}",
                f"use cuda.version = {wheel_cuda or least}",
            )
    extra = f" (the wheels bring their own CUDA {wheel_cuda} runtime)" if wheel_cuda else ""
    reasons.append(f"CUDA toolkit {cuda} as asked{extra}")
    return cuda


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def _gpu_line(gpu: Gpu) -> str:
    vram = f"{gpu.vram_gb:g} GB"
    return (
        f"{gpu.name} ({NVIDIA_VENDOR}:{gpu.device_id}): {ARCH_TITLES[gpu.arch]}, "
        f"compute {gpu.compute}, {vram}"
    )


def describe(choice: Choice) -> str:
    """Several lines for people: the cards, driver, CUDA, torch, then why."""
    lines = [f"OS:       {choice.os_key}"]
    if choice.gpus:
        for number, gpu in enumerate(choice.gpus):
            lines.append(f"{'GPUs:' if number == 0 else '':<10}{_gpu_line(gpu)}")
    elif choice.arch:
        lines.append(f"GPUs:     none found; chosen for {ARCH_TITLES[choice.arch]}")
    else:
        lines.append("GPUs:     none found; chosen for a current card (Turing or newer)")
    lines.append(
        f"driver:   {choice.driver_branch}, {choice.flavour} kernel modules, "
        f"from {SOURCE_TITLES[choice.source]}"
    )
    lines.append(f"CUDA:     {choice.cuda or 'none (cpu wheels)'}")
    torch = f"index {choice.torch_index} ({WHEEL_URL.format(tag=choice.torch_index)})"
    if choice.torch_version:
        torch += f", torch {choice.torch_version}"
    if choice.torch_max:
        torch += f", torch <= {choice.torch_max}"
    lines.append(f"PyTorch:  {torch}")
    lines.append("why:")
    lines.extend(f"  - {reason}" for reason in choice.reasons)
    return "\n".join(lines)


def to_json(choice: Choice) -> dict[str, object]:
    """A JSON-friendly view of the choice (`provision compat --json`)."""
    return {
        "os": choice.os_key,
        "gpus": [
            {
                "device_id": f"{NVIDIA_VENDOR}:{gpu.device_id}",
                "name": gpu.name,
                "arch": gpu.arch,
                "compute": gpu.compute,
                "vram_gb": gpu.vram_gb,
            }
            for gpu in choice.gpus
        ],
        "arch": choice.arch,
        "driver": {
            "branch": choice.driver_branch,
            "flavour": choice.flavour,
            "source": choice.source,
        },
        "cuda": choice.cuda,
        "pytorch": {
            "index": choice.torch_index,
            "index_url": WHEEL_URL.format(tag=choice.torch_index),
            "max": choice.torch_max,
            "version": choice.torch_version,
        },
        "reasons": list(choice.reasons),
    }

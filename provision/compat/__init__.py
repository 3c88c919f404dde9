"""compat: which driver, CUDA and PyTorch for this card on this OS, from one set of tables.

`choose(gpus, os_key, request)` turns the cards found on a host, its OS and what the user asked
for into a `Choice` (driver branch, module flavour, install source, CUDA toolkit, PyTorch wheel
index, newest usable torch) with the reasons and warnings, or refuses an impossible combination
with `Incompatible` (exit 2) whose hint names a combination that would work.

The package keeps the facts apart from the logic, one concern a module:

  tables        version facts, each with its source and confidence (architectures, CUDA,
                driver branches, install sources, wheel builds)
  card_table    the PCI ids of the cards compat knows
  model         Gpu, Request, Choice and the two refusals (Incompatible, UnknownCard)
  cards         a card or architecture from a name, an id or a host's facts
  versions      lookups over the tables: branch end, CUDA floors, wheel tags, packages
  kernels       which wheel builds have kernels for a card, which to take or suggest
  choice        choose(): the cards first, then driver_choice, then wheel_choice
  driver_choice install source, driver branch and kernel-module flavour
  wheel_choice  wheel index, newest torch allowed, CUDA toolkit
  words         how the reasons and refusals name architectures and lists
  explain       describe() for people, to_json() for `provision compat --json`

Importers use `compat.X` for the names in `__all__`; the modules are the package's own layout.
"""

from __future__ import annotations

# compat has always offered more constants than __all__ names as compat.X: the `X as X` imports
# keep them for importers that read them so.
from provision.compat.card_table import CARD_SOURCES, CARDS, NVIDIA_VENDOR
from provision.compat.card_table import NVSWITCH_CLASS as NVSWITCH_CLASS
from provision.compat.card_table import NVSWITCH_IDS as NVSWITCH_IDS
from provision.compat.card_table import SMI_NAMES as SMI_NAMES
from provision.compat.cards import (
    arch_of,
    find_cards,
    gpu_by_id,
    gpu_by_name,
    gpus_from_facts,
    nvswitches,
    parse_gpu,
)
from provision.compat.choice import choose
from provision.compat.explain import describe, to_json
from provision.compat.model import SET_KEYS as SET_KEYS
from provision.compat.model import (
    Choice,
    Gpu,
    Incompatible,
    Request,
    UnknownCard,
    request_from_sets,
)
from provision.compat.tables import (
    ARCH_COMPUTES,
    ARCH_ORDER,
    ARCH_TITLES,
    BRANCHES,
    CPU_INDEX,
    CUDA_DRIVER,
    CUDA_MAJOR_FLOOR,
    CUDA_RELEASES,
    DEBIAN_BRANCHES,
    DEFAULT_BRANCH,
    NVIDIA_REPO_BRANCHES,
    OS_TABLE,
    SOURCE_TITLES,
    TORCH_WHEELS,
    UBUNTU_BRANCHES,
    WHEEL_BUILDS,
    WHEEL_URL,
    OsInfo,
)
from provision.compat.tables import ARM_ONLY_COMPUTES as ARM_ONLY_COMPUTES
from provision.compat.tables import DEBIAN_KERNEL_PACKAGES as DEBIAN_KERNEL_PACKAGES
from provision.compat.tables import FIRST_OPEN_ARCH as FIRST_OPEN_ARCH
from provision.compat.tables import LAST_BRANCH as LAST_BRANCH
from provision.compat.tables import LEGACY_ARCHS as LEGACY_ARCHS
from provision.compat.tables import MAX_TOOLKIT_MAJOR as MAX_TOOLKIT_MAJOR
from provision.compat.tables import MIN_BRANCH as MIN_BRANCH
from provision.compat.tables import MIN_TOOLKIT as MIN_TOOLKIT
from provision.compat.tables import NVIDIA_REPO_ARCHES as NVIDIA_REPO_ARCHES
from provision.compat.tables import NVIDIA_REPO_BRANCHES_BY_REPO as NVIDIA_REPO_BRANCHES_BY_REPO
from provision.compat.tables import OPEN_DEFAULT_BRANCH as OPEN_DEFAULT_BRANCH
from provision.compat.tables import OPEN_REQUIRED_ARCH as OPEN_REQUIRED_ARCH
from provision.compat.versions import (
    branch_ended,
    cuda_driver_floor,
    cuda_repo_distro,
    debian_firmware_package,
    debian_kernel_package,
    fabricmanager_package,
    index_cuda,
    max_cuda_for_branch,
)

__all__ = [
    "ARCH_COMPUTES",
    "ARCH_ORDER",
    "ARCH_TITLES",
    "BRANCHES",
    "CARDS",
    "CARD_SOURCES",
    "CPU_INDEX",
    "CUDA_DRIVER",
    "CUDA_MAJOR_FLOOR",
    "CUDA_RELEASES",
    "DEBIAN_BRANCHES",
    "DEFAULT_BRANCH",
    "NVIDIA_REPO_BRANCHES",
    "NVIDIA_VENDOR",
    "OS_TABLE",
    "SOURCE_TITLES",
    "TORCH_WHEELS",
    "UBUNTU_BRANCHES",
    "WHEEL_BUILDS",
    "WHEEL_URL",
    "Choice",
    "Gpu",
    "Incompatible",
    "OsInfo",
    "Request",
    "UnknownCard",
    "arch_of",
    "branch_ended",
    "choose",
    "cuda_driver_floor",
    "cuda_repo_distro",
    "debian_firmware_package",
    "debian_kernel_package",
    "describe",
    "fabricmanager_package",
    "find_cards",
    "gpu_by_id",
    "gpu_by_name",
    "gpus_from_facts",
    "index_cuda",
    "max_cuda_for_branch",
    "nvswitches",
    "parse_gpu",
    "request_from_sets",
    "to_json",
]

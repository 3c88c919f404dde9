"""compat: which driver, CUDA and PyTorch for this card on this OS (the one version table).

The facts, each with its source and confidence, live in `provision.compat.tables`; this module
is the choice made from them. `choose(gpus, os_key, request)` turns the cards found on a host,
its OS and what the user asked for into a `Choice` (driver branch, module flavour, install
source, CUDA toolkit, PyTorch wheel index, newest usable torch) with the reasons and warnings,
or refuses an impossible combination with `Incompatible` (exit 2) whose hint names a
combination that would work.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from provision.compat.tables import (
    ARCH_COMPUTES,
    ARCH_ORDER,
    ARCH_TITLES,
    ARM_ONLY_COMPUTES,
    BRANCHES,
    CARD_SOURCES,
    CARDS,
    CPU_INDEX,
    CUDA_DRIVER,
    CUDA_MAJOR_FLOOR,
    CUDA_RELEASES,
    DEBIAN_BRANCHES,
    DEBIAN_KERNEL_PACKAGES,
    DEFAULT_BRANCH,
    FIRST_OPEN_ARCH,
    LAST_BRANCH,
    LEGACY_ARCHS,
    MAX_TOOLKIT_MAJOR,
    MIN_BRANCH,
    MIN_TOOLKIT,
    NVIDIA_REPO_BRANCHES,
    NVIDIA_REPO_BRANCHES_BY_REPO,
    NVIDIA_VENDOR,
    NVSWITCH_CLASS,
    NVSWITCH_IDS,
    OPEN_DEFAULT_BRANCH,
    OPEN_REQUIRED_ARCH,
    OS_TABLE,
    SMI_NAMES,
    SOURCE_TITLES,
    TORCH_WHEELS,
    UBUNTU_BRANCHES,
    WHEEL_BUILDS,
    WHEEL_URL,
    OsInfo,
)
from provision.errors import ConfigError

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

# ---------------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------------


class Incompatible(ConfigError):
    """A combination that cannot work (exit 2); the hint names one that would."""


class UnknownCard(ConfigError):
    """A card name or id that is not in the table, or that matches several cards (exit 2)."""


@dataclass(frozen=True)
class Gpu:
    """One card model from the built-in table."""

    device_id: str  # PCI device id, 4 lower-case hex digits (vendor 10de implied)
    name: str  # "GeForce GTX 1080 Ti"
    arch: str  # kepler | maxwell | pascal | ... | blackwell
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
    warnings: tuple[str, ...] = ()  # works, but should not be chosen (an ended branch)


_CARDS = tuple(Gpu(dev, name, arch, cc, float(vram)) for dev, name, arch, cc, vram in CARDS)
_CARDS_BY_ID: dict[str, Gpu] = {}
for _gpu in _CARDS:
    _CARDS_BY_ID.setdefault(_gpu.device_id, _gpu)  # the first row of an id; later: name-only


def _today() -> datetime.date:
    """Today, for branch end dates (tests replace it)."""
    return datetime.date.today()


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


_BRAND = {"nvidia", "geforce", "gpu"}  # words nvidia-smi and people add or leave out
_SERIES = {"tesla", "quadro", "rtx", "gtx", "gt"}  # dropped when a model number is given


def _tokens(text: str, drop: Iterable[str] = ()) -> tuple[str, ...]:
    """Lower-case words, letters and digits apart ("rtx3090" -> rtx 3090), sorted."""
    value = re.sub(r"[()\[\],/_\-]", " ", text.lower())
    value = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", value)
    words = ["laptop" if w == "mobile" else w for w in value.split()]
    dropped = set(drop)
    return tuple(sorted(w for w in words if w not in dropped))


def find_cards(text: str) -> list[Gpu]:
    """The cards whose name matches `text`, one per name: nvidia-smi's exact name first, then
    the name without brand words, then the model number alone, then every name containing the
    words asked for (several: the caller lists them)."""
    if not _tokens(text, _BRAND):
        return []
    whole = _tokens(text)
    for alias, device_id in SMI_NAMES.items():
        if _tokens(alias) == whole:
            return [_CARDS_BY_ID[device_id]]
    by_name: dict[str, Gpu] = {}
    for gpu in _CARDS:
        by_name.setdefault(gpu.name, gpu)
    names = list(by_name.values())
    wanted = _tokens(text, _BRAND)
    exact = [g for g in names if _tokens(g.name, _BRAND) == wanted]
    if exact:
        return exact
    model = _tokens(text, _BRAND | _SERIES)
    if not model:
        return []
    if any(w.isdigit() for w in model):
        same = [g for g in names if _tokens(g.name, _BRAND | _SERIES) == model]
        if same:
            return same
    asked = Counter(model)
    return [g for g in names if not asked - Counter(_tokens(g.name, _BRAND | _SERIES))]


def gpu_by_name(text: str) -> Gpu | None:
    """The card whose name matches (forgiving: case, spaces, NVIDIA/GeForce, "rtx3090"), or
    None when none or several do."""
    found = find_cards(text)
    return found[0] if len(found) == 1 else None


def _card_line(gpu: Gpu) -> str:
    return f"{gpu.name} ({NVIDIA_VENDOR}:{gpu.device_id}, {gpu.vram_gb:g} GB)"


def parse_gpu(text: str, arch: str = "") -> Gpu | None:
    """A card from the CLI: a name ("GeForce GTX 1080 Ti", "4090", "A100") first, else a PCI id
    (10de:1b06, or 4 hex digits). Several matching names: UnknownCard listing them.

    An unknown card is refused, unless `arch` (the user's --arch) says what to choose for:
    then None, and `choose(..., arch=arch)` decides from the architecture.
    """
    found = find_cards(text)
    if len(found) > 1:
        raise UnknownCard(
            f"{text!r} matches {len(found)} cards: " + "; ".join(_card_line(g) for g in found),
            "give the full name (as nvidia-smi prints it) or the PCI id, e.g. "
            f"--gpu {NVIDIA_VENDOR}:{found[0].device_id}",
        )
    gpu = found[0] if found else gpu_by_id(text) if _norm_id(text) else None
    if gpu is None:
        if arch:
            _parse_arch(arch)  # a bad --arch is refused here already
            return None
        raise UnknownCard(
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


def nvswitches(facts: object) -> list[str]:
    """The NVSwitch functions among facts.nvidia_pci, as "10de:xxxx name" strings."""
    found = []
    for device in getattr(facts, "nvidia_pci", ()):
        if device.pci_class.startswith(NVSWITCH_CLASS) or device.device_id in NVSWITCH_IDS:
            name = NVSWITCH_IDS.get(device.device_id, "NVSwitch")
            found.append(f"{NVIDIA_VENDOR}:{device.device_id} {name}")
    return found


def fabricmanager_package(source: str, branch: int) -> str:
    """nvidia-fabricmanager of the driver's branch for this install source ("" for none)."""
    if source == "ubuntu" or (source == "nvidia" and branch < 590):
        return f"nvidia-fabricmanager-{branch}"
    if source == "nvidia":
        return "nvidia-fabricmanager"  # unversioned from 590; nvidia-driver-pinning holds it
    return ""  # Debian 12 packages no fabric manager


def debian_kernel_package(flavour: str) -> str:
    """Debian's DKMS package of the chosen module flavour (open: contrib, proprietary: non-free)."""
    return DEBIAN_KERNEL_PACKAGES[flavour][0]


def branch_ended(branch: int, today: datetime.date | None = None) -> bool:
    """Whether NVIDIA's support of the branch has ended (short-lived branches: always)."""
    info = BRANCHES.get(branch)
    if info is None:
        return False
    if info.ends is None:
        return True
    year, month = info.ends
    today = today or _today()
    return (today.year, today.month) > (year, month)


def _end_text(branch: int) -> str:
    ends = BRANCHES[branch].ends
    if ends is None:
        return "was a short-lived feature branch (no longer maintained)"
    month = datetime.date(ends[0], ends[1], 1).strftime("%B")
    return f"reached end of life in {month} {ends[0]} (no more fixes)"


# `--set` keys that compat reads without a host, and the Request field each one fills.
SET_KEYS = {
    "driver.branch": "branch",
    "driver.flavour": "flavour",
    "driver.source": "source",
    "cuda.version": "cuda",
    "pytorch.index": "torch_index",
    "pytorch.version": "torch_version",
}


def request_from_sets(overrides: Iterable[str]) -> dict[str, object]:
    """Request fields from `--set step.field=value` (compat without --host); other keys are
    refused, never ignored."""
    fields: dict[str, object] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in SET_KEYS:
            raise ConfigError(
                f"--set {item} has no meaning for compat without --host",
                f"compat reads {', '.join(SET_KEYS)} (or give --host to use a host's settings)",
            )
        value = value.strip()
        if key == "driver.branch":
            if not value.isdigit():
                raise ConfigError(f"--set {item}: not a driver branch", "e.g. driver.branch=580")
            fields[SET_KEYS[key]] = int(value)
        else:
            fields[SET_KEYS[key]] = value
    return fields


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
            f"use pytorch.version {known[0]} to {known[-1]}, or add the release to WHEEL_BUILDS "
            "in provision/compat/tables.py",
        )
    return release


# --- kernels: a card runs a build when the build has SASS for its major version at a minor
# --- no newer than the card's, or PTX at or below its compute capability (JIT).


def _runs(compute: str, arch_list: str) -> bool:
    have = _version(compute)
    for item in arch_list.split(";"):
        ptx = item.endswith("+PTX")
        built = _version(item.removesuffix("+PTX"))
        if built[0] == have[0] and built[1] <= have[1]:
            return True
        if ptx and built <= have:
            return True
    return False


def _has_kernels(tag: str, release: str, computes: Iterable[str]) -> bool:
    build = WHEEL_BUILDS[release][tag]
    return all(_runs(cc, build.arch_list) for cc in computes)


def _span(arch_list: str) -> str:
    """ "compute 7.5 (Turing) to 12.0 (Blackwell)" for a TORCH_CUDA_ARCH_LIST."""
    items = [i.removesuffix("+PTX") for i in arch_list.split(";")]

    def named(cc: str) -> str:
        arch = next(a for a, ccs in ARCH_COMPUTES.items() if cc in ccs)
        return f"{cc} ({ARCH_TITLES[arch]})"

    return f"compute {named(items[0])} to {named(items[-1])}"


def _coverage(tag: str, releases: Sequence[str]) -> str:
    """How the builds of one tag cover the architectures, grouped by range."""
    groups: dict[str, list[str]] = {}
    for rel in sorted(releases, key=_version):
        groups.setdefault(_span(WHEEL_BUILDS[rel][tag].arch_list), []).append(rel)
    parts = [f"{span} (torch {_releases_text(rels)})" for span, rels in groups.items()]
    return f"{tag} builds cover " + " and ".join(parts)


def _releases_text(rels: Sequence[str]) -> str:
    if len(rels) > 2:
        return f"{rels[0]} to {rels[-1]}"
    return " and ".join(rels)


def _newest_release(tag: str, computes: Iterable[str]) -> str:
    computes = tuple(computes)
    releases = [
        r for r, tags in TORCH_WHEELS.items() if tag in tags and _has_kernels(tag, r, computes)
    ]
    return max(releases, key=_version) if releases else ""


def _best_index(branch: int, computes: Sequence[str], release: str = "") -> tuple[str, str]:
    """(tag, release): the wheels for the newest torch the driver (branch 0: any) and cards
    allow. Among a release's variants, prefer the newest CUDA the branch supports natively;
    else the oldest one it runs through minor-version compatibility."""
    native = max_cuda_for_branch(branch) if branch else ""
    best: tuple[tuple, str, str] | None = None
    releases = [release] if release else list(TORCH_WHEELS)
    for rel in releases:
        for tag in TORCH_WHEELS[rel]:
            cuda = index_cuda(tag)
            if branch and branch < cuda_driver_floor(cuda):
                continue
            if not _has_kernels(tag, rel, computes):
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


def _desktop_computes(arch: str) -> list[str]:
    return [cc for cc in ARCH_COMPUTES[arch] if cc not in ARM_ONLY_COMPUTES]


def _refuse_unserved(what: str, arch: str, compute: str) -> None:
    """Kepler and older, and Arm-only parts: refused with the real reason."""
    if arch in LEGACY_ARCHS:
        last, cuda, _source = LEGACY_ARCHS[arch]
        raise Incompatible(
            f"{what} is {ARCH_TITLES[arch]} (compute {compute or ARCH_COMPUTES[arch][2]}): the "
            f"last NVIDIA driver for {ARCH_TITLES[arch]} is R{last} (CUDA {cuda} at most), "
            f"older than any branch compat installs (R535 and newer), and no current PyTorch "
            f"build has {ARCH_TITLES[arch]} kernels (they start at Maxwell, compute 5.0)",
            f"a Maxwell-or-newer card works (e.g. Pascal with driver.branch = {DEFAULT_BRANCH} "
            f"and pytorch.index = cu126, torch <= 2.14); this card needs R{last}, CUDA 11.x and "
            "an old PyTorch built for it, set up by hand",
        )
    if compute in ARM_ONLY_COMPUTES:
        raise Incompatible(
            f"{what}: compute {compute} is {ARM_ONLY_COMPUTES[compute]}, an Arm system that "
            "NVIDIA serves with JetPack/L4T (Jetson) or DGX OS, not the x86_64 PCIe driver, "
            "CUDA repository and wheels compat chooses",
            "use NVIDIA's JetPack (Jetson) or DGX OS image and its PyTorch builds on that "
            "device; compat serves x86_64 boxes with PCIe/SXM cards",
        )


def choose(
    gpus: Sequence[Gpu],
    os_key: str,
    request: Request = Request(),
    arch: str = "",
    unknown: Sequence[str] = (),
    today: datetime.date | None = None,
) -> Choice:
    """Choose driver, CUDA and wheel index; refuse an impossible request (Incompatible).

    `unknown`: cards the user named (or the host has) that are not in the table; with `arch`
    the choice is made for that architecture instead."""
    today = today or _today()
    info = _os_info(os_key)
    reasons: list[str] = []
    warnings: list[str] = []

    # The cards: every architecture present constrains the choice; the oldest decides.
    compute: dict[str, str] = {}
    targets: list[str] = []  # compute capabilities the wheels must have kernels for
    for gpu in gpus:
        _refuse_unserved(gpu.name, gpu.arch, gpu.compute)
        compute.setdefault(gpu.arch, gpu.compute)
        if gpu.compute not in targets:
            targets.append(gpu.compute)
        reasons.append(f"{gpu.name}: {ARCH_TITLES[gpu.arch]}, compute {gpu.compute}")
    if arch:
        asked, asked_compute = _parse_arch(arch)
        _refuse_unserved(f"--arch {arch}", asked, asked_compute)
        compute.setdefault(asked, asked_compute or _desktop_computes(asked)[0])
        for cc in [asked_compute] if asked_compute else _desktop_computes(asked):
            if cc not in targets:
                targets.append(cc)
        if unknown:
            what = f"{_list(unknown)} not in compat's card table"
        elif gpus:
            what = "architecture given"
        else:
            what = "no NVIDIA GPU found"
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

    source, branch = _choose_driver(info, os_key, request, compute, today, reasons, warnings)
    flavour = _choose_flavour(request, branch, compute, pre_turing, open_only, reasons)
    if source == "debian":
        package, component = DEBIAN_KERNEL_PACKAGES[flavour]
        reasons.append(f"Debian's {flavour} module: {package} from {component}, built by DKMS")
    index, torch_max = _choose_wheels(source, branch, request, compute, targets, reasons)
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
        warnings=tuple(warnings),
    )


def _shipped(source: str, os_key: str, info: OsInfo) -> tuple[int, ...]:
    if source == "ubuntu":
        return UBUNTU_BRANCHES[os_key]
    if source == "debian":
        return DEBIAN_BRANCHES[os_key]
    return NVIDIA_REPO_BRANCHES_BY_REPO[info.cuda_repo]


def _fits(branch: int, archs: Iterable[str]) -> bool:
    return all(MIN_BRANCH.get(a, 0) <= branch <= LAST_BRANCH.get(a, 10_000) for a in archs)


def _default_branch(shipped: Sequence[int], archs: Sequence[str], today) -> int:
    """R580 where it is installable and supported; else the newest current LTSB, else the
    newest current branch that fits the cards (0: none)."""
    current = [b for b in shipped if not branch_ended(b, today) and _fits(b, archs)]
    if DEFAULT_BRANCH in current:
        return DEFAULT_BRANCH
    ltsb = [b for b in current if BRANCHES[b].kind == "LTSB"]
    return max(ltsb or current or [0])


def _choose_driver(
    info: OsInfo,
    os_key: str,
    request: Request,
    compute: dict[str, str],
    today,
    reasons: list[str],
    warnings: list[str],
) -> tuple[str, int]:
    archs = list(compute)
    source = request.source or info.sources[0]
    if source not in info.sources:
        raise Incompatible(
            f"driver.source = {source} is not available on {info.title}",
            f"use driver.source = {' or '.join(info.sources)}",
        )
    shipped = _shipped(source, os_key, info)
    branch = request.branch
    if not branch:
        branch = _default_branch(shipped, archs, today)
        if not branch and not request.source:
            for other in info.sources[1:]:
                branch = _default_branch(_shipped(other, os_key, info), archs, today)
                if branch:
                    source, shipped = other, _shipped(other, os_key, info)
                    break
        if not branch:
            # No supported branch fits: the newest that does (an ended one is warned about;
            # the checks below say what a branch cannot do).
            fitting = [b for b in shipped if _fits(b, archs)]
            if not fitting and not request.source:
                raise Incompatible(
                    f"no driver branch for {_list(_label(a, compute) for a in archs)} from "
                    f"{SOURCE_TITLES[source]} on {info.title} (it ships {_list(shipped)})",
                    "use another driver.source, or a card that its branches support",
                )
            branch = max(fitting or shipped)

    if branch not in shipped:
        if source == "ubuntu" and not request.source and branch in NVIDIA_REPO_BRANCHES:
            source, shipped = "nvidia", _shipped("nvidia", os_key, info)
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
                f"driver branch {branch} is not in compat's table for NVIDIA's {info.cuda_repo} "
                f"repository ({_list(shipped)})",
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
        "debian": "installed from Debian 12's own packages (DKMS)",
    }[source]
    note = f" ({BRANCHES[branch].note})" if branch in BRANCHES else ""
    if request.branch:
        reasons.append(f"driver {branch}{note} as asked")
    elif source == "debian":
        reasons.append(f"driver {branch}: the only branch Debian 12 ships")
    else:
        reasons.append(f"driver {branch}{note}")
    reasons.append(how)
    if source == "nvidia" and not request.source and os_key.startswith("debian"):
        reasons.append(
            "Debian 12 non-free ships only 535, which reached end of life in June 2026: "
            "NVIDIA's debian12 repo instead"
        )
    if branch_ended(branch, today):
        supported = _default_branch(shipped, archs, today)
        fix = f"; driver {supported} ({BRANCHES[supported].note}) is supported" if supported else ""
        repo = _default_branch(_shipped("nvidia", os_key, info), archs, today)
        if not supported and repo and source != "nvidia":
            fix = f"; driver.source = nvidia gives the supported {repo}"
        text = f"R{branch} {_end_text(branch)}{fix}"
        reasons.append(text)
        warnings.append(text)
    return source, branch


def _choose_flavour(
    request: Request,
    branch: int,
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
    if branch < OPEN_DEFAULT_BRANCH:
        reasons.append(
            f"proprietary kernel modules: NVIDIA's default before {OPEN_DEFAULT_BRANCH} "
            f"(driver {branch}); driver.flavour = open chooses the open ones"
        )
        return "proprietary"
    reasons.append("open kernel modules (NVIDIA's default since 560, Turing and newer)")
    return "open"


def _with_driver(branch: int, tag: str, source: str) -> str:
    """ " with driver.branch = N": the driver the named wheels need (the current one if it can)."""
    floor = cuda_driver_floor(index_cuda(tag))
    need = branch if branch >= floor else max(floor, DEFAULT_BRANCH)
    prefix = "driver.source = nvidia with " if source == "debian" and need != branch else ""
    return f" with {prefix}driver.branch = {need}"


def _choose_wheels(
    source: str,
    branch: int,
    request: Request,
    compute: dict[str, str],
    targets: list[str],
    reasons: list[str],
) -> tuple[str, str]:
    archs = sorted(compute, key=ARCH_ORDER.index)
    labels = _list(_label(a, compute) for a in archs) or "this host"
    release = _release(request.torch_version) if request.torch_version else ""
    native = max_cuda_for_branch(branch)
    tag = request.torch_index.strip().lower()

    if not tag:
        tag, _ = _best_index(branch, targets, release)
        if not tag:
            with_kernels = [t for t in TORCH_WHEELS[release] if _has_kernels(t, release, targets)]
            alt_tag, alt_rel = _best_index(branch, targets)
            if not alt_tag:
                alt_tag, alt_rel = _best_index(0, targets)
            if not with_kernels:
                spans = _list(
                    f"{t} {_span(WHEEL_BUILDS[release][t].arch_list)}"
                    for t in TORCH_WHEELS[release]
                )
                raise Incompatible(
                    f"torch {release} has no build with kernels for {labels}: its variants "
                    f"cover {spans}",
                    f"use pytorch.version = {alt_rel} ({alt_tag})"
                    + _with_driver(branch, alt_tag, source)
                    if alt_tag
                    else "use a card that the release supports",
                )
            needs = {cuda_driver_floor(index_cuda(t)) for t in with_kernels}
            raise Incompatible(
                f"torch {release} has no wheels that driver {branch} can run for {labels} "
                f"(its variants with kernels for it: {_list(with_kernels)}; they need driver >= "
                f"{min(needs)})",
                (f"use pytorch.version = {alt_rel} ({alt_tag}) or " if alt_tag else "use ")
                + f"driver.branch = {max(needs | {DEFAULT_BRANCH})}",
            )
        newest = _newest_release(tag, targets)
        why = "the newest torch" + (f" {release}" if release else "")
        reasons.append(
            f"wheel index {tag}: {why} that driver {branch} (CUDA {native} natively) can run"
            + (f" with kernels for {_list(ARCH_TITLES[a] for a in archs)}" if archs else "")
        )
        _note_minor_compat(tag, branch, native, reasons)
        return tag, _torch_max(tag, newest, archs, reasons)

    if tag not in _all_tags():
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

    published = [r for r, tags in TORCH_WHEELS.items() if tag in tags]
    for arch in archs:
        arch_targets = [cc for cc in targets if cc in ARCH_COMPUTES[arch]] or [compute[arch]]
        good = [r for r in published if _has_kernels(tag, r, arch_targets)]
        if (release and release in good) or (not release and good):
            continue
        alt_tag, alt_rel = _best_index(branch, targets, release)
        if not alt_tag:
            alt_tag, alt_rel = _best_index(branch, targets)
        if not alt_tag:
            alt_tag, alt_rel = _best_index(0, targets)
        if release:
            span = _span(WHEEL_BUILDS[release][tag].arch_list)
            what = f"torch {release}'s {tag} build covers {span}"
            if good:
                what += f"; {tag} has {ARCH_TITLES[arch]} kernels in torch {_releases_text(good)}"
        else:
            what = f"no torch release's {tag} build has them: {_coverage(tag, published)}"
        limit = _newest_release(alt_tag, targets) if alt_tag else ""
        hint = "use a wheel index with kernels for the card"
        if alt_tag:
            pin = f"pytorch.version = {alt_rel}, " if release and alt_rel != release else ""
            pinned = bool(release) and alt_rel == release
            cap = f" (torch <= {limit})" if limit and limit != _latest_release() else ""
            cap = "" if pinned else cap
            hint = f"use {pin}pytorch.index = {alt_tag}{cap}" + _with_driver(
                branch, alt_tag, source
            )
            if release and good:
                hint += f", or pytorch.version = {max(good, key=_version)} with {tag}"
        raise Incompatible(
            f"{tag} wheels have no kernels for {_label(arch, compute)}: {what}", hint
        )

    cuda = index_cuda(tag)
    floor = cuda_driver_floor(cuda)
    if branch < floor:
        need = max(floor, DEFAULT_BRANCH)
        alt_tag, _ = _best_index(branch, targets, release)
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
    return tag, _torch_max(tag, _newest_release(tag, targets), archs, reasons)


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
    if cuda not in CUDA_RELEASES:
        raise Incompatible(
            f"unknown CUDA toolkit version {cuda!r}",
            f"use one of {_list(sorted(CUDA_RELEASES, key=_version))}",
        )
    native = max_cuda_for_branch(branch)
    floor = cuda_driver_floor(cuda)
    wheel_cuda = index_cuda(index)
    if branch < floor:
        runnable = [c for c in CUDA_RELEASES if cuda_driver_floor(c) <= branch]
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
    """Several lines for people: the cards, driver, CUDA, torch, warnings, then why."""
    lines = [f"OS:       {choice.os_key}"]
    if choice.gpus:
        for number, gpu in enumerate(choice.gpus):
            lines.append(f"{'GPUs:' if number == 0 else '':<10}{_gpu_line(gpu)}")
    elif choice.arch:
        lines.append(f"GPUs:     none known; chosen for {ARCH_TITLES[choice.arch]}")
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
    lines.extend(f"warning:  {text}" for text in choice.warnings)
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
        "warnings": list(choice.warnings),
        "reasons": list(choice.reasons),
    }

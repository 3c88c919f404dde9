"""Which card or architecture a name, a PCI id or a host's facts mean.

People and nvidia-smi name the same card many ways ("NVIDIA GeForce RTX 3090", "rtx3090",
"3090", 10de:2204); these lookups turn them into rows of `card_table`, forgiving of case, brand
words and spacing but never guessing between two cards: several matches are listed back to the
user (`UnknownCard`). Architectures come from a name or a compute capability ("ampere", "8.6",
"sm_86"), since a card missing from the table can still be chosen for by its architecture.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from provision.compat.card_table import (
    CARDS,
    NVIDIA_VENDOR,
    NVSWITCH_CLASS,
    NVSWITCH_IDS,
    SMI_NAMES,
)
from provision.compat.model import Gpu, Incompatible, UnknownCard
from provision.compat.tables import ARCH_COMPUTES, ARCH_ORDER

_CARDS = tuple(Gpu(dev, name, arch, cc, float(vram)) for dev, name, arch, cc, vram in CARDS)
_CARDS_BY_ID: dict[str, Gpu] = {}
for _gpu in _CARDS:
    _CARDS_BY_ID.setdefault(_gpu.device_id, _gpu)  # the first row of an id; later: name-only


def _norm_id(device_id: str) -> str:
    """4 lower-case hex digits from "1B06", "0x1b06" or "10de:1b06" ("" for another vendor or
    not an id)."""
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
    """One card of an ambiguous name, as UnknownCard lists them."""
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
            parse_arch(arch)  # a bad --arch is refused here already
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
    return parse_arch(text)[0]


def parse_arch(text: str) -> tuple[str, str]:
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


def nvswitches(facts: object) -> list[str]:
    """The NVSwitch functions among facts.nvidia_pci, as "10de:xxxx name" strings."""
    found = []
    for device in getattr(facts, "nvidia_pci", ()):
        if device.pci_class.startswith(NVSWITCH_CLASS) or device.device_id in NVSWITCH_IDS:
            name = NVSWITCH_IDS.get(device.device_id, "NVSwitch")
            found.append(f"{NVIDIA_VENDOR}:{device.device_id} {name}")
    return found

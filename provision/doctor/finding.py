"""What every doctor rule works with: a Finding (one line of the report), the cards on the
box (GpuInfo), the Box a rule reads (everything gathered, settings, the GPU-stack choice, the
declared services) and the small formatting helpers the rules share."""

from __future__ import annotations

import re
from dataclasses import dataclass

from provision import compat
from provision.doctor.parsers import DoctorData, SmiGpu, slot_key
from provision.doctor.settings import Settings
from provision.facts import Facts
from provision.facts.gpu import is_driver_package

STATUSES = ("ok", "skip", "warn", "fail")
GIB = 1024**3
NO_TENSOR_CORES = re.compile(r"GTX 16\d\d")  # Turing GTX 16xx: no tensor cores


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report."""

    area: str
    status: str  # ok | skip | warn | fail
    reason: str
    fix: str = ""


@dataclass(frozen=True)
class GpuInfo:
    """A card on the box: its slot, the table's entry (None: unknown) and nvidia-smi's line."""

    slot: str
    device_id: str
    model: compat.Gpu | None
    smi: SmiGpu | None
    lspci_name: str

    @property
    def name(self) -> str:
        """The best name known: compat's table, nvidia-smi, lspci, the PCI id."""
        if self.model:
            return self.model.name
        if self.smi:
            return self.smi.name
        return self.lspci_name or f"10de:{self.device_id}"

    @property
    def vram_gib(self) -> float | None:
        """nvidia-smi's memory total, else the table's (None: unknown)."""
        if self.smi and self.smi.memory_mib:
            return self.smi.memory_mib / 1024
        return self.model.vram_gb if self.model else None


@dataclass(frozen=True)
class Service:
    """A service a step declares (Step.services) with this host's settings for it."""

    step: str  # the step's CLI name: `provision tensorboard`
    key: str  # its settings prefix: `tensorboard.port`
    name: str  # the service's name as the step declares it
    title: str  # how the report names it ("TensorBoard")
    port: int
    bind_all: bool | None  # the step's `bind_all` setting; None: the step has none


@dataclass(frozen=True)
class Box:
    """What a rule reads: the gathered data and facts, the settings, the cards, the one
    GPU-stack choice (and its finding), the driver source it implies, the services."""

    data: DoctorData
    settings: Settings
    facts: Facts
    gpus: list[GpuInfo]
    choice: compat.Choice | None
    stack: Finding
    source: str
    services: tuple[Service, ...] = ()


def gpu_infos(data: DoctorData, facts: Facts) -> list[GpuInfo]:
    """The NVIDIA display controllers in slot order, with what is known about each."""
    by_bus = {g.bus_id: g for g in data.smi_gpus}
    infos = []
    for device in sorted(facts.gpus, key=lambda d: slot_key(d.slot)):
        key = slot_key(device.slot)
        name = re.search(r"\[([^\]]*)\] \[10de:", device.name)
        infos.append(
            GpuInfo(
                slot=key,
                device_id=device.device_id,
                model=compat.gpu_by_id(device.device_id),
                smi=by_bus.get(key),
                lspci_name=name[1] if name else "",
            )
        )
    return infos


def short(slot: str) -> str:
    """A slot without the usual domain: 01:00.0."""
    return slot.removeprefix("0000:")


def gb(n_bytes: float) -> str:
    """Memory (RAM, VRAM, swap) in binary GB, as cards and DIMMs are sold."""
    return f"{n_bytes / GIB:.0f} GB" if n_bytes >= 10 * GIB else f"{n_bytes / GIB:.1f} GB"


def disk_gb(n_bytes: float) -> str:
    """Disk space in decimal GB, as doctor.min_free_gb counts it."""
    return f"{n_bytes / 1e9:.0f} GB" if n_bytes >= 1e10 else f"{n_bytes / 1e9:.1f} GB"


def has_tensor_cores(gpu: compat.Gpu) -> bool:
    """Volta and newer, except the Turing GTX 16xx cards."""
    volta = compat.ARCH_ORDER.index("volta")
    return compat.ARCH_ORDER.index(gpu.arch) >= volta and not NO_TENSOR_CORES.search(gpu.name)


def driver_packages(facts: Facts) -> dict[str, str]:
    """Installed NVIDIA driver packages -> version."""
    return {
        name: pkg.version
        for name, pkg in facts.packages.items()
        if pkg.installed and is_driver_package(name)
    }


def _upstream(version: str) -> str:
    return version.split(":")[-1].split("-")[0].split("~")[0]


def library_version(facts: Facts) -> str:
    """The user-space libraries' version from the installed packages ("" if none)."""
    for prefix in ("libnvidia-compute-", "libcuda1", "libnvidia-ml1", "nvidia-utils-"):
        for name, pkg in sorted(facts.packages.items()):
            if pkg.installed and name.startswith(prefix):
                return _upstream(pkg.version)
    return ""

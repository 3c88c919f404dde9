"""doctor's hardware rules: the cards and what compat would install for them, PCIe links,
CPU, RAM against VRAM, swap, power against the PSU, the root disk and free space. Each rule
reads a Box and returns its finding(s)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provision import compat
from provision import stack as stack_decision
from provision.doctor.finding import (
    GIB,
    Box,
    Finding,
    GpuInfo,
    disk_gb,
    gb,
    has_tensor_cores,
    short,
)
from provision.errors import ProvisionError
from provision.facts import Facts

BASE_WATTS = 100  # board, RAM, disks, fans
WATTS_PER_CORE = 10  # the CPU estimate without doctor.cpu_tdp_watts
PSU_WARN = 0.8  # a PSU is happiest below 80 % of its rating
RAM_SLACK = 0.94  # MemTotal is a few % below the installed RAM (firmware, kernel)
FREE_FAIL_GB = 5  # below this apt and dpkg stop working
LOAD_HINT = "an idle card may drop its link speed; check under load"
SOURCE_SHORT = {"ubuntu": "Ubuntu's signed modules", "nvidia": "NVIDIA's repo", "debian": "Debian"}


def cards(box: Box) -> list[Finding]:
    """Each NVIDIA card: what it is, or that compat does not know it."""
    gpus = box.gpus
    if not gpus:
        return [
            Finding(
                "GPU",
                "warn",
                "no NVIDIA GPU found (no display controller with vendor 10de on the PCI bus)",
                "seat the card and its power cables; in a VM pass the GPU through; then "
                "`lspci -nn -d 10de:` lists it",
            )
        ]
    out = []
    for number, gpu in enumerate(gpus):
        area = f"GPU {number}"
        where = f"{short(gpu.slot)}, 10de:{gpu.device_id}"
        if gpu.model is None:
            out.append(
                Finding(
                    area,
                    "warn",
                    f"{gpu.name} ({where}) is not in compat's card table",
                    "give the architecture: provision compat --host HOST --arch ampere "
                    "(or 8.6), and set driver.branch if needed",
                )
            )
            continue
        vram = gpu.vram_gib
        tensor = "tensor cores" if has_tensor_cores(gpu.model) else "no tensor cores"
        vram_text = "VRAM unknown" if vram is None else f"{vram:.0f} GB VRAM"
        arch = compat.ARCH_TITLES[gpu.model.arch]
        out.append(
            Finding(
                area,
                "ok",
                f"{gpu.name} ({where}): {arch}, {vram_text}, compute {gpu.model.compute}, {tensor}",
            )
        )
    return out


def stack(box: Box) -> Finding:
    """What compat chooses for the box (decided once, in Box.stack)."""
    return box.stack


def choose_stack(
    gpus: list[GpuInfo], facts: Facts, settings_by_key: Mapping[str, Any]
) -> tuple[compat.Choice | None, Finding]:
    """The host's one GPU-stack decision (provision.stack, as the GPU steps see it) and its
    finding."""
    known = [g.model for g in gpus if g.model]
    if gpus and not known:
        return None, Finding(
            "GPU stack",
            "warn",
            "no card compat knows: it cannot choose the driver, CUDA and PyTorch",
            "provision compat --host HOST --arch <architecture or compute capability>",
        )
    try:
        choice = stack_decision.decide(facts, settings_by_key)
    except ProvisionError as exc:
        return None, Finding(
            "GPU stack",
            "fail",
            f"compat refuses: {exc.message}",
            exc.hint or "see `provision compat --host HOST`",
        )
    return choice, Finding(
        "GPU stack",
        "ok",
        f"compat chooses driver {choice.driver_branch} ({choice.flavour}, "
        f"{SOURCE_SHORT.get(choice.source, choice.source)}), CUDA {choice.cuda or 'none'}, "
        f"PyTorch index {choice.torch_index}"
        + (f" (torch <= {choice.torch_max})" if choice.torch_max else ""),
    )


def pcie(box: Box) -> list[Finding]:
    """Each card's link width and generation against what it can do."""
    data, gpus = box.data, box.gpus
    out = []
    for number, gpu in enumerate(gpus):
        area = f"PCIe {number}"
        link = data.links.get(gpu.slot)
        smi = gpu.smi
        if link is None or link.width is None:
            out.append(
                Finding(
                    area,
                    "skip",
                    f"{short(gpu.slot)}: link width and speed not readable "
                    "(no sysfs link files, lspci -vv needs root)",
                    "run doctor as a user with sudo, or check `sudo lspci -vv -s SLOT`",
                )
            )
            continue
        max_width = link.max_width or (smi.width_max if smi else None) or 16
        max_gen = link.max_gen or (smi.gen_max if smi else None)
        gen = link.gen
        if smi and smi.gen_current:
            gen = smi.gen_current
        shown = f"x{link.width} (of x{max_width}), gen {gen or '?'} (of {max_gen or '?'})"
        problems = []
        if link.width < max_width or link.width < 16 <= max_width:
            problems.append(f"the link runs at x{link.width} of the card's x{max_width}")
        if gen and max_gen and gen < max_gen:
            problems.append(f"gen {gen} of {max_gen}: {LOAD_HINT}")
        if not problems:
            out.append(Finding(area, "ok", f"{short(gpu.slot)}: {shown}"))
            continue
        width_fix = (
            "move the card to a slot wired x16 (the board manual lists the electrical width; "
            "M.2 or other cards may share lanes)"
        )
        gen_fix = "check under load (nvidia-smi -q -d PCIE while training); if it stays low, "
        gen_fix += "reseat the card, drop a riser, or set the slot's PCIe gen in the firmware"
        out.append(
            Finding(
                area,
                "warn",
                f"{short(gpu.slot)}: " + "; ".join(problems),
                width_fix if link.width < max_width or link.width < 16 <= max_width else gen_fix,
            )
        )
    return out


def cpu(box: Box) -> Finding:
    """The CPU model, cores and threads."""
    data = box.data
    if not data.threads and not data.cpu_model:
        return Finding("CPU", "skip", "the CPU was not readable (/proc/cpuinfo)")
    cores = f"{data.cores} cores, " if data.cores else ""
    return Finding(
        "CPU", "ok", f"{data.cpu_model or 'unknown model'}: {cores}{data.threads} threads"
    )


def memory(box: Box) -> list[Finding]:
    """RAM against the 2 x VRAM rule, and swap."""
    gpus, facts = box.gpus, box.facts
    ram = facts.mem_total_kb * 1024
    vram = [g.vram_gib for g in gpus]
    if not gpus:
        ram_finding = Finding(
            "RAM", "ok", f"{gb(ram)} RAM (no GPU: the 2 x VRAM rule does not apply yet)"
        )
    elif None in vram:
        ram_finding = Finding(
            "RAM",
            "skip",
            f"{gb(ram)} RAM; the VRAM of an unknown card is not known (needs nvidia-smi)",
            "install the driver (provision driver) and run doctor again",
        )
    else:
        total = sum(v for v in vram if v) * GIB
        wanted = 2 * total
        text = f"{gb(ram)} RAM for {gb(total)} VRAM (rule: 2 x VRAM = {gb(wanted)})"
        if ram >= RAM_SLACK * wanted:
            ram_finding = Finding("RAM", "ok", text)
        else:
            ram_finding = Finding(
                "RAM",
                "warn",
                text + ": data loaders and pinned memory will swap",
                f"add RAM to at least {gb(wanted)}, or use fewer DataLoader workers",
            )
    if facts.swap_total_kb > 0:
        swap = Finding("swap", "ok", f"{gb(facts.swap_total_kb * 1024)} swap")
    else:
        swap = Finding(
            "swap",
            "warn",
            "no swap: running out of RAM kills the job (OOM killer) instead of slowing it",
            "sudo fallocate -l 16G /swapfile && sudo chmod 600 /swapfile && sudo mkswap "
            "/swapfile && sudo swapon /swapfile; add `/swapfile none swap sw 0 0` to /etc/fstab",
        )
    return [ram_finding, swap]


def power(box: Box) -> Finding:
    """GPUs + CPU + base against the PSU's rating (doctor.psu_watts)."""
    data, settings, gpus = box.data, box.settings, box.gpus
    if not settings.psu_watts:
        return Finding(
            "power",
            "skip",
            "skipped: the PSU rating is not set",
            "set doctor.psu_watts=850 (your PSU's rating) in the inventory",
        )
    limits = [g.smi.power_limit_w if g.smi else None for g in gpus]
    if None in limits:
        return Finding(
            "power",
            "skip",
            "skipped: the GPUs' power limits need nvidia-smi (the driver)",
            "install the driver (provision driver) and run doctor again",
        )
    gpu_w = round(sum(w for w in limits if w))
    if settings.cpu_tdp_watts:
        cpu_w, cpu_text = settings.cpu_tdp_watts, f"CPU {settings.cpu_tdp_watts} W"
    else:
        cores = data.cores or data.threads
        cpu_w = WATTS_PER_CORE * cores
        cpu_text = f"CPU ~{cpu_w} W (estimate: {cores} cores x {WATTS_PER_CORE} W)"
    total = gpu_w + cpu_w + BASE_WATTS
    share = total / settings.psu_watts
    text = (
        f"{total} W of a {settings.psu_watts} W PSU ({share:.0%}): GPUs {gpu_w} W + "
        f"{cpu_text} + {BASE_WATTS} W base"
    )
    fix = (
        f"a PSU of at least {int(total / PSU_WARN / 50 + 0.999) * 50} W, or lower the GPU "
        "power limit (sudo nvidia-smi -pl WATTS)"
    )
    if not settings.cpu_tdp_watts:
        fix += "; set doctor.cpu_tdp_watts for a better estimate"
    if share > 1:
        return Finding("power", "fail", text + ": above the PSU's rating", fix)
    if share > PSU_WARN:
        return Finding("power", "warn", text + f": above {PSU_WARN:.0%}", fix)
    return Finding("power", "ok", text)


def _root_disk(facts: Facts):
    return next((d for d in facts.disks if d.mountpoint == "/"), None)


def storage(box: Box) -> list[Finding]:
    """The root disk's kind, free space on /, the data disk (doctor.data_mount)."""
    data, settings, facts = box.data, box.settings, box.facts
    out = []
    root = _root_disk(facts)
    if root is None:
        why = "a container's root" if facts.in_container else "no block device"
        out.append(Finding("root disk", "skip", f"/ is not on a block device lsblk shows ({why})"))
    elif root.rotational:
        out.append(
            Finding(
                "root disk",
                "warn",
                f"/ is on a rotational disk ({root.name}): conda, pip and datasets crawl on an HDD",
                "install the OS on an SSD/NVMe and keep the HDD for bulk data "
                "(a VM's virtual disk may just report rotational)",
            )
        )
    else:
        out.append(Finding("root disk", "ok", f"/ is on an SSD ({root.name}, not rotational)"))
    free = data.root_free_bytes
    if free is None:
        out.append(Finding("free space", "skip", "df / gave nothing"))
    else:
        text = f"{disk_gb(free)} free on /"
        if data.root_size_bytes:
            text += f" of {disk_gb(data.root_size_bytes)}"
        fix = (
            "free space (sudo apt-get clean; conda clean -a; pip cache purge) or grow the "
            f"root filesystem; conda, CUDA and wheels want {settings.min_free_gb} GB"
        )
        if free < FREE_FAIL_GB * 10**9:
            out.append(Finding("free space", "fail", text + ": apt and dpkg will fail", fix))
        elif free < settings.min_free_gb * 10**9:
            out.append(
                Finding(
                    "free space",
                    "warn",
                    text + f" (doctor.min_free_gb = {settings.min_free_gb})",
                    fix,
                )
            )
        else:
            out.append(Finding("free space", "ok", text))
    if settings.data_mount:
        mount = data.mounts.get(settings.data_mount)
        if mount is None:
            out.append(
                Finding(
                    "data disk",
                    "fail",
                    f"nothing is mounted at {settings.data_mount} (doctor.data_mount)",
                    f"mount the disk at {settings.data_mount} and add it to /etc/fstab by UUID "
                    "(blkid shows it), with nofail",
                )
            )
        else:
            out.append(
                Finding(
                    "data disk", "ok", f"{settings.data_mount}: {mount[0]} ({mount[1]}) mounted"
                )
            )
    return out

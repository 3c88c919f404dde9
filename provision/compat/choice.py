"""The choice: driver, CUDA and PyTorch for these cards on this OS, or a refusal.

`choose(gpus, os_key, request)` turns the cards found on a host (or named by the user), its OS
and what the user asked for into one `Choice` with the reasons and warnings shown to people.
Every architecture present constrains it and the oldest decides; the driver is chosen first
(`driver_choice`), then the wheels that driver runs and the toolkit (`wheel_choice`). Cards no
branch of this tool serves (Kepler, Arm-only parts) are refused with the real reason before
anything is chosen.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from provision.compat import versions
from provision.compat.cards import parse_arch
from provision.compat.driver_choice import choose_driver, choose_flavour
from provision.compat.model import Choice, Gpu, Incompatible, Request
from provision.compat.tables import (
    ARCH_COMPUTES,
    ARCH_ORDER,
    ARCH_TITLES,
    ARM_ONLY_COMPUTES,
    DEBIAN_KERNEL_PACKAGES,
    DEFAULT_BRANCH,
    FIRST_OPEN_ARCH,
    LEGACY_ARCHS,
    OPEN_REQUIRED_ARCH,
)
from provision.compat.wheel_choice import choose_toolkit, choose_wheels
from provision.compat.words import listing

ASK_NOTHING = Request()  # the default request: compat chooses everything


def _desktop_computes(arch: str) -> list[str]:
    """The compute capabilities of an architecture's x86_64 cards (Arm-only parts left out)."""
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
    request: Request = ASK_NOTHING,
    arch: str = "",
    unknown: Sequence[str] = (),
    today: datetime.date | None = None,
    cpu: str = "",
) -> Choice:
    """Choose driver, CUDA and wheel index; refuse an impossible request (Incompatible).

    `unknown`: cards the user named (or the host has) that are not in the table; with `arch`
    the choice is made for that architecture instead. `cpu`: the host's dpkg architecture
    (amd64, arm64; "" unknown): NVIDIA's repository is no source where it has no packages for
    it."""
    today = today or versions.current_date()
    info = versions.os_info(os_key)
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
        asked, asked_compute = parse_arch(arch)
        _refuse_unserved(f"--arch {arch}", asked, asked_compute)
        compute.setdefault(asked, asked_compute or _desktop_computes(asked)[0])
        for cc in [asked_compute] if asked_compute else _desktop_computes(asked):
            if cc not in targets:
                targets.append(cc)
        if unknown:
            what = f"{listing(unknown)} not in compat's card table"
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
            f"mixed architectures ({listing(ARCH_TITLES[a] for a in archs)}): "
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

    source, branch = choose_driver(
        info, os_key, request, compute, today, reasons, warnings, cpu=cpu
    )
    flavour = choose_flavour(request, branch, compute, pre_turing, open_only, reasons)
    if source == "debian":
        package, component = DEBIAN_KERNEL_PACKAGES[flavour]
        reasons.append(f"Debian's {flavour} module: {package} from {component}, built by DKMS")
    index, torch_max = choose_wheels(source, branch, request, compute, targets, reasons)
    cuda = choose_toolkit(branch, index, request, compute, reasons)

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

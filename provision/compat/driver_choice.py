"""The driver half of the choice: install source, branch and kernel-module flavour.

The source is the OS's default (Canonical's signed modules on Ubuntu, NVIDIA's repository on
Debian 12) unless asked; the branch is R580 where it is installable and supported, else the
newest supported one that fits every card; the flavour follows the oldest card (the open
modules need Turing, Blackwell needs them). A request that cannot work is refused here with
`Incompatible`, whose hint names a branch or source that would.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from provision.compat.model import Incompatible, Request
from provision.compat.tables import (
    ARCH_TITLES,
    BRANCHES,
    DEBIAN_BRANCHES,
    DEFAULT_BRANCH,
    LAST_BRANCH,
    MIN_BRANCH,
    NVIDIA_REPO_BRANCHES,
    NVIDIA_REPO_BRANCHES_BY_REPO,
    OPEN_DEFAULT_BRANCH,
    SOURCE_TITLES,
    UBUNTU_BRANCHES,
    OsInfo,
)
from provision.compat.versions import branch_ended, end_text
from provision.compat.words import label, listing


def _shipped(source: str, os_key: str, info: OsInfo) -> tuple[int, ...]:
    """The branches this install source ships for this OS."""
    if source == "ubuntu":
        return UBUNTU_BRANCHES[os_key]
    if source == "debian":
        return DEBIAN_BRANCHES[os_key]
    return NVIDIA_REPO_BRANCHES_BY_REPO[info.cuda_repo]


def _fits(branch: int, archs: Iterable[str]) -> bool:
    """Whether the branch supports every one of these architectures (new enough, not past the
    last branch of an old one)."""
    return all(MIN_BRANCH.get(a, 0) <= branch <= LAST_BRANCH.get(a, 10_000) for a in archs)


def _default_branch(shipped: Sequence[int], archs: Sequence[str], today: datetime.date) -> int:
    """R580 where it is installable and supported; else the newest current LTSB, else the
    newest current branch that fits the cards (0: none)."""
    current = [b for b in shipped if not branch_ended(b, today) and _fits(b, archs)]
    if DEFAULT_BRANCH in current:
        return DEFAULT_BRANCH
    ltsb = [b for b in current if BRANCHES[b].kind == "LTSB"]
    return max(ltsb or current or [0])


def choose_driver(
    info: OsInfo,
    os_key: str,
    request: Request,
    compute: dict[str, str],
    today: datetime.date,
    reasons: list[str],
    warnings: list[str],
) -> tuple[str, int]:
    """(source, branch) for the cards on this OS; appends the reasons, and a warning for an
    ended branch (it still works, but should not be chosen)."""
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
                    f"no driver branch for {listing(label(a, compute) for a in archs)} from "
                    f"{SOURCE_TITLES[source]} on {info.title} (it ships {listing(shipped)})",
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
                f"Debian 12 non-free ships only driver {listing(shipped)}, "
                f"not driver.branch = {branch}",
                f"use driver.source = nvidia (NVIDIA's debian12 repo ships {branch})"
                if branch in NVIDIA_REPO_BRANCHES
                else f"use driver.source = nvidia with driver.branch = {DEFAULT_BRANCH}",
            )
        elif source == "ubuntu":
            raise Incompatible(
                f"the {info.title} archive does not ship driver branch {branch} "
                f"(it ships {listing(shipped)})",
                "use driver.source = nvidia (NVIDIA's CUDA repository)"
                if branch in NVIDIA_REPO_BRANCHES
                else f"use driver.branch = {DEFAULT_BRANCH}",
            )
        else:
            raise Incompatible(
                f"driver branch {branch} is not in compat's table for NVIDIA's {info.cuda_repo} "
                f"repository ({listing(shipped)})",
                f"use driver.branch = {DEFAULT_BRANCH}",
            )

    for arch in archs:
        last = LAST_BRANCH.get(arch)
        if last and branch > last:
            raise Incompatible(
                f"driver branch {branch} does not support {label(arch, compute)}: "
                f"R{last} is the last branch for Maxwell, Pascal and Volta",
                f"use driver.branch = {last}",
            )
        least = MIN_BRANCH.get(arch)
        if least and branch < least:
            where = "Debian 12 non-free ships only 535; " if source == "debian" else ""
            raise Incompatible(
                f"{label(arch, compute)} needs driver >= {least}; {where}"
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
        text = f"R{branch} {end_text(branch)}{fix}"
        reasons.append(text)
        warnings.append(text)
    return source, branch


def choose_flavour(
    request: Request,
    branch: int,
    compute: dict[str, str],
    pre_turing: list[str],
    open_only: list[str],
    reasons: list[str],
) -> str:
    """open or proprietary kernel modules for the branch and the cards (`pre_turing`: the
    architectures the open ones do not support; `open_only`: those only they support)."""
    flavour = request.flavour
    if flavour and flavour not in ("open", "proprietary"):
        raise Incompatible(
            f"driver.flavour = {flavour} is not a module flavour", "use open or proprietary"
        )
    if flavour == "open" and pre_turing:
        raise Incompatible(
            f"open kernel modules need Turing or newer; {label(pre_turing[0], compute)} "
            "needs the proprietary ones",
            "use driver.flavour = proprietary (or leave it empty)",
        )
    if flavour == "proprietary" and open_only:
        raise Incompatible(
            f"{label(open_only[0], compute)} is supported by the open kernel modules only",
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

"""The driver half of the choice: install source, branch and kernel-module flavour.

The source is the OS's default (Canonical's signed modules on Ubuntu, NVIDIA's repository on
Debian) unless asked, among those that serve the host's CPU architecture (NVIDIA's debian13
repository has no arm64); the branch is R580 where it is installable and supported, else the
newest supported one that fits every card, else (no supported branch anywhere, e.g. Pascal on
Debian 13) the newest that fits, with a warning; the flavour follows the oldest card (the open
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
    NVIDIA_REPO_ARCHES,
    NVIDIA_REPO_BRANCHES_BY_REPO,
    OPEN_DEFAULT_BRANCH,
    SOURCE_TITLES,
    UBUNTU_BRANCHES,
    OsInfo,
)
from provision.compat.versions import branch_ended, end_text
from provision.compat.words import label, listing

BOTH_CPUS = ("amd64", "arm64")
UNAME_TO_DPKG = {"x86_64": "amd64", "aarch64": "arm64"}  # the facts fall back to uname -m


def _shipped(source: str, os_key: str, info: OsInfo) -> tuple[int, ...]:
    """The branches this install source ships for this OS."""
    if source == "ubuntu":
        return UBUNTU_BRANCHES[os_key]
    if source == "debian":
        return DEBIAN_BRANCHES[os_key]
    return NVIDIA_REPO_BRANCHES_BY_REPO[info.cuda_repo]


def serves_cpu(source: str, info: OsInfo, cpu: str) -> bool:
    """Whether the source has packages for this CPU architecture (dpkg name; "" is unknown and
    taken as served). Only NVIDIA's repositories differ: debian13 has no sbsa directory."""
    cpu = UNAME_TO_DPKG.get(cpu, cpu)
    if source != "nvidia" or cpu not in BOTH_CPUS:
        return True  # unknown, or another CPU: provision.cudarepo refuses it with its reason
    return cpu in NVIDIA_REPO_ARCHES.get(info.cuda_repo, BOTH_CPUS)


def _no_cpu(info: OsInfo, cpu: str) -> str:
    """Why NVIDIA's repository is no source for this CPU."""
    cpu = UNAME_TO_DPKG.get(cpu, cpu)
    served = "/".join(NVIDIA_REPO_ARCHES.get(info.cuda_repo, BOTH_CPUS))
    return (
        f"NVIDIA's {info.cuda_repo} repository has no {cpu} packages (it serves {served} only; "
        "NVIDIA/cuda-repo-management#39)"
    )


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


def _way_out(
    info: OsInfo, os_key: str, archs: Sequence[str], cpu: str, today: datetime.date, but: str
) -> str:
    """ "driver.source = S (branch B)": a source of this OS other than `but` whose branches fit
    the cards on this CPU (a supported one first), or "" when there is none."""
    found = []
    for source in info.sources:
        if source == but or not serves_cpu(source, info, cpu):
            continue
        shipped = _shipped(source, os_key, info)
        fitting = [b for b in shipped if _fits(b, archs)]
        if fitting:
            found.append((source, _default_branch(shipped, archs, today) or max(fitting)))
    if not found:
        return ""
    source, branch = found[0]
    return f"driver.source = {source} (branch {branch})"


def choose_driver(
    info: OsInfo,
    os_key: str,
    request: Request,
    compute: dict[str, str],
    today: datetime.date,
    reasons: list[str],
    warnings: list[str],
    cpu: str = "",
) -> tuple[str, int]:
    """(source, branch) for the cards on this OS and CPU (dpkg architecture, "" unknown);
    appends the reasons, and a warning for an ended branch (it still works, but should not be
    chosen)."""
    archs = list(compute)
    if request.source and request.source not in info.sources:
        raise Incompatible(
            f"driver.source = {request.source} is not available on {info.title}",
            f"use driver.source = {' or '.join(info.sources)}",
        )
    if request.source and not serves_cpu(request.source, info, cpu):
        other = _way_out(info, os_key, archs, cpu, today, request.source)
        raise Incompatible(
            f"driver.source = nvidia on {info.title} {cpu}: {_no_cpu(info, cpu)}",
            f"use {other}" if other else f"no driver source of {info.title} serves {cpu}",
        )
    candidates = [s for s in info.sources if serves_cpu(s, info, cpu)]
    source = request.source or candidates[0]
    if not request.source and source != info.sources[0]:
        reasons.append(f"{_no_cpu(info, cpu)}: {SOURCE_TITLES[source]} instead")
    shipped = _shipped(source, os_key, info)
    repo = NVIDIA_REPO_BRANCHES_BY_REPO[info.cuda_repo]
    branch = request.branch
    if not branch:
        branch = _default_branch(shipped, archs, today)
        if not branch and not request.source:
            for other in candidates[1:]:
                branch = _default_branch(_shipped(other, os_key, info), archs, today)
                if branch:
                    source, shipped = other, _shipped(other, os_key, info)
                    break
        if not branch:
            # No supported branch fits: the newest that does (an ended one is warned about;
            # the checks below say what a branch cannot do), from the first source that has one.
            fitting = [b for b in shipped if _fits(b, archs)]
            if not fitting and not request.source:
                for other in candidates[1:]:
                    other_fitting = [b for b in _shipped(other, os_key, info) if _fits(b, archs)]
                    if other_fitting:
                        first = shipped
                        source, shipped, fitting = (
                            other,
                            _shipped(other, os_key, info),
                            other_fitting,
                        )
                        reasons.append(
                            f"no branch of {SOURCE_TITLES[candidates[0]]} on {info.title} "
                            f"({listing(first)}) supports "
                            f"{listing(label(a, compute) for a in archs)}: "
                            f"{SOURCE_TITLES[other]} instead"
                        )
                        break
            if not fitting and not request.source:
                skipped = [s for s in info.sources if s not in candidates]
                why = f"; {_no_cpu(info, cpu)}" if skipped else ""
                raise Incompatible(
                    f"no driver branch for {listing(label(a, compute) for a in archs)} from "
                    f"{SOURCE_TITLES[source]} on {info.title} (it ships {listing(shipped)}){why}",
                    "use another driver.source, or a card that its branches support"
                    if len(candidates) > 1
                    else f"use a card that {listing(shipped)} supports, or another OS",
                )
            branch = max(fitting or shipped)

    if branch not in shipped and not request.source:
        # an asked branch that another source of this OS ships (for this CPU): from there
        other = next((o for o in candidates if branch in _shipped(o, os_key, info)), "")
        if other:
            where = f"the {info.title} archive" if source == "ubuntu" else SOURCE_TITLES[source]
            reasons.append(
                f"{where} does not ship branch {branch}: installing it from {SOURCE_TITLES[other]}"
            )
            source, shipped = other, _shipped(other, os_key, info)
    nvidia_ok = serves_cpu("nvidia", info, cpu)
    if branch not in shipped:
        if source == "debian":
            if branch in repo and nvidia_ok:
                hint = f"use driver.source = nvidia (NVIDIA's {info.cuda_repo} repo ships {branch})"
            elif nvidia_ok:
                best = _default_branch(repo, archs, today) or max(repo)
                hint = f"use driver.source = nvidia with driver.branch = {best}"
            else:
                hint = f"{_no_cpu(info, cpu)}: use driver.branch = {max(shipped)}"
            raise Incompatible(
                f"{info.title} non-free ships only driver {listing(shipped)}, "
                f"not driver.branch = {branch}",
                hint,
            )
        if source == "ubuntu":
            best = _default_branch(shipped, archs, today) or max(shipped)
            raise Incompatible(
                f"the {info.title} archive does not ship driver branch {branch} "
                f"(it ships {listing(shipped)})",
                "use driver.source = nvidia (NVIDIA's CUDA repository)"
                if branch in repo and nvidia_ok
                else f"use driver.branch = {best}",
            )
        fix = _default_branch(shipped, archs, today)
        other = _way_out(info, os_key, archs, cpu, today, "nvidia")
        raise Incompatible(
            f"driver branch {branch} is not in compat's table for NVIDIA's {info.cuda_repo} "
            f"repository ({listing(shipped)})",
            f"use driver.branch = {fix}" if fix else f"use {other or 'another OS'}",
        )

    for arch in archs:
        last = LAST_BRANCH.get(arch)
        if last and branch > last:
            starts = (
                f"; {SOURCE_TITLES[source]} on {info.title} starts at {min(shipped)}"
                if min(shipped) > last
                else ""
            )
            other = _way_out(info, os_key, archs, cpu, today, source)
            raise Incompatible(
                f"driver branch {branch} does not support {label(arch, compute)}: "
                f"R{last} is the last branch for Maxwell, Pascal and Volta{starts}",
                f"use driver.branch = {last}" if not starts else f"use {other or 'another OS'}",
            )
        least = MIN_BRANCH.get(arch)
        if least and branch < least:
            where = (
                f"{info.title} non-free ships only {listing(shipped)}; "
                if source == "debian"
                else ""
            )
            other = _way_out(info, os_key, archs, cpu, today, source) if source == "debian" else ""
            raise Incompatible(
                f"{label(arch, compute)} needs driver >= {least}; {where}"
                f"driver.branch = {branch} is too old",
                (f"use {other}" if other else f"{_no_cpu(info, cpu)}: no source serves it")
                if source == "debian"
                else f"use driver.branch = {DEFAULT_BRANCH} (the default)",
            )

    how = {
        "ubuntu": f"installed with ubuntu-drivers install --gpgpu nvidia:{branch}-server "
        "(signed precompiled modules: Secure Boot works, kernel updates do not break them)",
        "nvidia": f"installed from NVIDIA's {info.cuda_repo} repository",
        "debian": f"installed from {info.title}'s own packages (DKMS)",
    }[source]
    note = f" ({BRANCHES[branch].note})" if branch in BRANCHES else ""
    if request.branch:
        reasons.append(f"driver {branch}{note} as asked")
    elif source == "debian" and len(shipped) == 1:
        reasons.append(f"driver {branch}: the only branch {info.title} ships")
    else:
        reasons.append(f"driver {branch}{note}")
    reasons.append(how)
    if source == "nvidia" and not request.source and "debian" in info.sources:
        own = DEBIAN_BRANCHES[os_key]
        ended = f", which {end_text(max(own))}" if branch_ended(max(own), today) else ""
        reasons.append(
            f"{info.title} non-free ships only {listing(own)}{ended}: "
            f"NVIDIA's {info.cuda_repo} repo instead"
        )
    if branch_ended(branch, today):
        supported = _default_branch(shipped, archs, today)
        fix = f"; driver {supported} ({BRANCHES[supported].note}) is supported" if supported else ""
        nvidia = _shipped("nvidia", os_key, info) if serves_cpu("nvidia", info, cpu) else ()
        repo_default = _default_branch(nvidia, archs, today)
        if not supported and repo_default and source != "nvidia":
            fix = f"; driver.source = nvidia gives the supported {repo_default}"
        if not supported and not repo_default:
            cards = listing(label(a, compute) for a in archs)
            where = info.title if serves_cpu("nvidia", info, cpu) else f"{info.title} {cpu}"
            fix = f"; no supported branch serves {cards} on {where}"
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

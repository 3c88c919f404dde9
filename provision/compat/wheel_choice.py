"""The PyTorch half of the choice: the wheel index, the newest torch it allows, the toolkit.

The wheels must have kernels for every card and run on the chosen driver (natively, or through
CUDA's minor-version compatibility); without a request the newest torch wins, and among its
variants the newest CUDA the driver runs natively. The CUDA toolkit follows the wheels unless
asked. A request that cannot work is refused with `Incompatible`, whose hint names the index,
torch release or driver that would serve it.
"""

from __future__ import annotations

from collections.abc import Sequence

from provision.compat.kernels import (
    arch_span,
    best_index,
    coverage,
    has_kernels,
    latest_release,
    newest_release,
    releases_text,
    suggest_index,
)
from provision.compat.model import Incompatible, Request
from provision.compat.tables import (
    ARCH_COMPUTES,
    ARCH_ORDER,
    ARCH_TITLES,
    CPU_INDEX,
    CUDA_RELEASES,
    DEFAULT_BRANCH,
    MAX_TOOLKIT_MAJOR,
    MIN_TOOLKIT,
    TORCH_WHEELS,
    WHEEL_BUILDS,
)
from provision.compat.versions import (
    all_tags,
    cuda_driver_floor,
    index_cuda,
    max_cuda_for_branch,
    torch_release,
    version_key,
)
from provision.compat.words import label, listing


def _with_driver(branch: int, tag: str, source: str) -> str:
    """ " with driver.branch = N": the driver the named wheels need (the current one if it can)."""
    floor = cuda_driver_floor(index_cuda(tag))
    need = branch if branch >= floor else max(floor, DEFAULT_BRANCH)
    prefix = "driver.source = nvidia with " if source == "debian" and need != branch else ""
    return f" with {prefix}driver.branch = {need}"


def choose_wheels(
    source: str,
    branch: int,
    request: Request,
    compute: dict[str, str],
    targets: list[str],
    reasons: list[str],
) -> tuple[str, str]:
    """(wheel index, newest torch allowed or ""): the wheels that have kernels for every card
    (`targets`: their compute capabilities) and run on the driver branch."""
    archs = sorted(compute, key=ARCH_ORDER.index)
    labels = listing(label(a, compute) for a in archs) or "this host"
    release = torch_release(request.torch_version) if request.torch_version else ""
    native = max_cuda_for_branch(branch)
    tag = request.torch_index.strip().lower()

    if not tag:
        tag, _ = best_index(branch, targets, release)
        if not tag:
            with_kernels = [t for t in TORCH_WHEELS[release] if has_kernels(t, release, targets)]
            alt_tag, alt_rel = suggest_index(branch, targets)
            if not with_kernels:
                spans = listing(
                    f"{t} {arch_span(WHEEL_BUILDS[release][t].arch_list)}"
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
                f"(its variants with kernels for it: {listing(with_kernels)}; they need driver >= "
                f"{min(needs)})",
                (f"use pytorch.version = {alt_rel} ({alt_tag}) or " if alt_tag else "use ")
                + f"driver.branch = {max(needs | {DEFAULT_BRANCH})}",
            )
        newest = newest_release(tag, targets)
        why = "the newest torch" + (f" {release}" if release else "")
        reasons.append(
            f"wheel index {tag}: {why} that driver {branch} (CUDA {native} natively) can run"
            + (f" with kernels for {listing(ARCH_TITLES[a] for a in archs)}" if archs else "")
        )
        _note_minor_compat(tag, branch, native, reasons)
        return tag, _torch_max(tag, newest, archs, reasons)

    if tag not in all_tags():
        raise Incompatible(f"unknown wheel index {tag!r}", f"use one of {listing(all_tags())}")
    if release and tag != CPU_INDEX and tag not in TORCH_WHEELS[release]:
        published = [r for r, tags in TORCH_WHEELS.items() if tag in tags]
        span = (
            f" ({tag} exists for torch {min(published, key=version_key)} to "
            f"{max(published, key=version_key)})"
            if published
            else ""
        )
        raise Incompatible(
            f"torch {release} has no {tag} wheels{span}",
            f"torch {release} wheels: {listing([*TORCH_WHEELS[release], CPU_INDEX])}; "
            f"use one of those as pytorch.index",
        )
    if tag == CPU_INDEX:
        reasons.append("wheel index cpu as asked: torch will not use the GPU")
        return tag, ""

    published = [r for r, tags in TORCH_WHEELS.items() if tag in tags]
    for arch in archs:
        arch_targets = [cc for cc in targets if cc in ARCH_COMPUTES[arch]] or [compute[arch]]
        good = [r for r in published if has_kernels(tag, r, arch_targets)]
        if (release and release in good) or (not release and good):
            continue
        alt_tag, alt_rel = suggest_index(branch, targets, release)
        if release:
            span = arch_span(WHEEL_BUILDS[release][tag].arch_list)
            what = f"torch {release}'s {tag} build covers {span}"
            if good:
                what += f"; {tag} has {ARCH_TITLES[arch]} kernels in torch {releases_text(good)}"
        else:
            what = f"no torch release's {tag} build has them: {coverage(tag, published)}"
        limit = newest_release(alt_tag, targets) if alt_tag else ""
        hint = "use a wheel index with kernels for the card"
        if alt_tag:
            pin = f"pytorch.version = {alt_rel}, " if release and alt_rel != release else ""
            pinned = bool(release) and alt_rel == release
            cap = f" (torch <= {limit})" if limit and limit != latest_release() else ""
            cap = "" if pinned else cap
            hint = f"use {pin}pytorch.index = {alt_tag}{cap}" + _with_driver(
                branch, alt_tag, source
            )
            if release and good:
                hint += f", or pytorch.version = {max(good, key=version_key)} with {tag}"
        raise Incompatible(f"{tag} wheels have no kernels for {label(arch, compute)}: {what}", hint)

    cuda = index_cuda(tag)
    floor = cuda_driver_floor(cuda)
    if branch < floor:
        need = max(floor, DEFAULT_BRANCH)
        alt_tag, _ = best_index(branch, targets, release)
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
    return tag, _torch_max(tag, newest_release(tag, targets), archs, reasons)


def _note_minor_compat(tag: str, branch: int, native: str, reasons: list[str]) -> None:
    """Say so when the wheels' CUDA is newer than the driver's and runs through minor-version
    compatibility (it works, without the newer driver's features)."""
    cuda = index_cuda(tag)
    if native and version_key(cuda) > version_key(native):
        reasons.append(
            f"CUDA {cuda} wheels run on driver {branch} (CUDA {native}) through minor-version "
            f"compatibility (CUDA {version_key(cuda)[0]}.x needs driver >= "
            f"{cuda_driver_floor(cuda)}); features of newer drivers are unavailable"
        )


def _torch_max(tag: str, newest: str, archs: Sequence[str], reasons: list[str]) -> str:
    """The torch cap to pin ("" when the newest release serves the cards), with its reason."""
    if not newest or newest == latest_release():
        return ""
    cards = f" that have kernels for {listing(ARCH_TITLES[a] for a in archs)}" if archs else ""
    reasons.append(f"torch <= {newest}: the newest release with {tag} wheels{cards}")
    return newest


def choose_toolkit(
    branch: int, index: str, request: Request, compute: dict[str, str], reasons: list[str]
) -> str:
    """The CUDA toolkit: the wheels' CUDA unless one is asked for, which must run on the
    driver and build for every card."""
    if not request.cuda:
        cuda = index_cuda(index)
        if cuda:
            reasons.append(f"CUDA toolkit {cuda}: the CUDA of the {index} wheels")
        return cuda
    cuda = request.cuda.strip()
    if cuda not in CUDA_RELEASES:
        raise Incompatible(
            f"unknown CUDA toolkit version {cuda!r}",
            f"use one of {listing(sorted(CUDA_RELEASES, key=version_key))}",
        )
    native = max_cuda_for_branch(branch)
    floor = cuda_driver_floor(cuda)
    wheel_cuda = index_cuda(index)
    if branch < floor:
        runnable = [c for c in CUDA_RELEASES if cuda_driver_floor(c) <= branch]
        best = max(runnable, key=version_key) if runnable else ""
        raise Incompatible(
            f"CUDA {cuda} needs driver >= {floor}; driver.branch = {branch} gives at most "
            f"CUDA {native}",
            f"use cuda.version = {wheel_cuda or best} "
            f"or driver.branch = {max(floor, DEFAULT_BRANCH)}",
        )
    major = version_key(cuda)[0]
    for arch in compute:
        top = MAX_TOOLKIT_MAJOR.get(arch)
        if top and major > top:
            raise Incompatible(
                f"CUDA {cuda} does not support {label(arch, compute)}: CUDA 13 dropped "
                "Maxwell, Pascal and Volta",
                f"use cuda.version = {wheel_cuda if wheel_cuda.startswith('12.') else '12.6'} "
                f"(a {top}.x toolkit)",
            )
        least = MIN_TOOLKIT.get(arch)
        if least and version_key(cuda) < version_key(least):
            raise Incompatible(
                f"CUDA {cuda} cannot build for {label(arch, compute)}: it needs CUDA >= {least}",
                f"use cuda.version = {wheel_cuda or least}",
            )
    extra = f" (the wheels bring their own CUDA {wheel_cuda} runtime)" if wheel_cuda else ""
    reasons.append(f"CUDA toolkit {cuda} as asked{extra}")
    return cuda

"""Which PyTorch wheels have kernels for a card, and which wheels to take or suggest.

A card runs a build when the build has SASS for its major version at a minor no newer than the
card's, or PTX at or below its compute capability (JIT). Every build's TORCH_CUDA_ARCH_LIST is
in `tables.WHEEL_BUILDS`; the answers here are read from it, never from a host, so that
`provision compat` without --host says the same as a plan on the box.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from provision.compat.tables import ARCH_COMPUTES, ARCH_TITLES, TORCH_WHEELS, WHEEL_BUILDS
from provision.compat.versions import (
    cuda_driver_floor,
    index_cuda,
    max_cuda_for_branch,
    version_key,
)


def _runs(compute: str, arch_list: str) -> bool:
    """Whether a card of this compute capability runs a build of this TORCH_CUDA_ARCH_LIST."""
    have = version_key(compute)
    for item in arch_list.split(";"):
        ptx = item.endswith("+PTX")
        built = version_key(item.removesuffix("+PTX"))
        if built[0] == have[0] and built[1] <= have[1]:
            return True
        if ptx and built <= have:
            return True
    return False


def has_kernels(tag: str, release: str, computes: Iterable[str]) -> bool:
    """Whether the release's `tag` build runs on every one of these compute capabilities."""
    build = WHEEL_BUILDS[release][tag]
    return all(_runs(cc, build.arch_list) for cc in computes)


def arch_span(arch_list: str) -> str:
    """ "compute 7.5 (Turing) to 12.0 (Blackwell)" for a TORCH_CUDA_ARCH_LIST."""
    items = [i.removesuffix("+PTX") for i in arch_list.split(";")]

    def named(cc: str) -> str:
        arch = next(a for a, ccs in ARCH_COMPUTES.items() if cc in ccs)
        return f"{cc} ({ARCH_TITLES[arch]})"

    return f"compute {named(items[0])} to {named(items[-1])}"


def coverage(tag: str, releases: Sequence[str]) -> str:
    """How the builds of one tag cover the architectures, grouped by range."""
    groups: dict[str, list[str]] = {}
    for rel in sorted(releases, key=version_key):
        groups.setdefault(arch_span(WHEEL_BUILDS[rel][tag].arch_list), []).append(rel)
    parts = [f"{cover} (torch {releases_text(rels)})" for cover, rels in groups.items()]
    return f"{tag} builds cover " + " and ".join(parts)


def releases_text(rels: Sequence[str]) -> str:
    """ "2.6 to 2.10" for three or more releases (sorted), "2.8 and 2.9" for two."""
    if len(rels) > 2:
        return f"{rels[0]} to {rels[-1]}"
    return " and ".join(rels)


def newest_release(tag: str, computes: Iterable[str]) -> str:
    """The newest release whose `tag` build has kernels for the cards ("" for none)."""
    computes = tuple(computes)
    releases = [
        r for r, tags in TORCH_WHEELS.items() if tag in tags and has_kernels(tag, r, computes)
    ]
    return max(releases, key=version_key) if releases else ""


def best_index(branch: int, computes: Sequence[str], release: str = "") -> tuple[str, str]:
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
            if not has_kernels(tag, rel, computes):
                continue
            is_native = bool(native) and version_key(cuda) <= version_key(native)
            closeness = version_key(cuda) if is_native else tuple(-n for n in version_key(cuda))
            score = (version_key(rel), is_native, closeness)
            if best is None or score > best[0]:
                best = (score, tag, rel)
    return (best[1], best[2]) if best else ("", "")


def suggest_index(branch: int, computes: Sequence[str], release: str = "") -> tuple[str, str]:
    """(tag, release) that a refusal suggests instead: of the pinned release when the driver
    runs one, else of the newest release it runs, else of the newest any driver runs (the hint
    then names the driver those need)."""
    if release:
        found = best_index(branch, computes, release)
        if found[0]:
            return found
    found = best_index(branch, computes)
    return found if found[0] else best_index(0, computes)


def latest_release() -> str:
    """The newest torch release in the table."""
    return max(TORCH_WHEELS, key=version_key)

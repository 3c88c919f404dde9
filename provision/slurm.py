"""What a Slurm cluster of the lab's boxes must agree on, decided from the facts alone.

The decisions the cluster step makes before anything is installed, kept apart from the step so
they can be checked against Slurm's own rules with no host:

- which Slurm each release ships and whether a mix of releases can form one cluster (Slurm's
  compatibility window, refused with the reason before any package moves);
- the node lines of slurm.conf, from `slurmd -C` on each box (RealMemory with a margin, so a
  kernel that reserves a little more memory does not drain the node: "Low RealMemory");
- gres.conf: `AutoDetect=nvml` only where the NVML plugin is installed, else `File=` lines;
- accounts whose UID or GID differ between boxes (files on a shared home then belong to
  someone else), named with the hosts that disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Slurm's major releases in order (year.month; slurm.schedmd.com/upgrades.html "Release
# Cycle": 9-monthly until 23.11, 6-monthly from 24.05).
RELEASES = (
    "20.02", "20.11", "21.08", "22.05", "23.02", "23.11", "24.05", "24.11", "25.05", "25.11",
)  # fmt: skip
# The distributions' slurm-wlm: Debian from deb.debian.org's Packages (2026-12-03: bookworm
# 22.05.8-4+deb12u3, trixie 24.11.5-4+deb13u1); Ubuntu from packages.ubuntu.com's listings
# (jammy 21.08.5, noble 23.11.4) [M: Ubuntu's archive is not reachable from here].
DISTRIBUTION_SLURM = {
    "debian-12": "22.05",
    "debian-13": "24.11",
    "ubuntu-22.04": "21.08",
    "ubuntu-24.04": "23.11",
}
# "Slurm has long supported in-place upgrades from the previous two major releases ... Slurm
# 24.11 introduced compatibility with the previous three" (upgrades.html, "Compatibility
# Window"); and slurmd may not be newer than slurmctld.
FIRST_WIDE_WINDOW = "24.11"
MEMORY_MARGIN = 0.02  # of RealMemory, at least MEMORY_MARGIN_MIN_MB
MEMORY_MARGIN_MIN_MB = 256
NODE_FIELDS = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")


def major(version: str) -> str:
    """'22.05.8-4+deb12u3' -> '22.05' ('' when it is not a Slurm version)."""
    m = re.match(r"(?:[0-9]+:)?([0-9]{2}\.[0-9]{2})", version.strip())
    return m[1] if m else ""


def window(controller: str) -> int:
    """How many earlier major releases a controller of this release talks to."""
    return 3 if RELEASES.index(controller) >= RELEASES.index(FIRST_WIDE_WINDOW) else 2


def version_problems(releases: dict[str, str], controller: str) -> list[str]:
    """Why these boxes' Slurm releases ({host: 'YY.MM'}) cannot form one cluster under
    CONTROLLER; empty when they can."""
    problems = []
    ours = releases[controller]
    for host, release in sorted(releases.items()):
        if host == controller:
            continue
        if release not in RELEASES or ours not in RELEASES:
            problems.append(f"{host}: Slurm {release or '?'} is not a release provision knows")
            continue
        behind = RELEASES.index(ours) - RELEASES.index(release)
        if behind < 0:
            problems.append(
                f"{host}: Slurm {release} is newer than the controller {controller}'s {ours} "
                "(slurmd may not be newer than slurmctld): make the newest box the controller"
            )
        elif behind > window(ours):
            problems.append(
                f"{host}: Slurm {release} is {behind} major releases behind the controller "
                f"{controller}'s {ours}; Slurm {ours} talks to {window(ours)} earlier ones "
                "(slurm.schedmd.com/upgrades.html): give the boxes closer releases"
            )
    return problems


@dataclass(frozen=True)
class NodeHardware:
    """One box as `slurmd -C` describes it."""

    cpus: int
    boards: int
    sockets_per_board: int
    cores_per_socket: int
    threads_per_core: int
    real_memory_mb: int


def parse_slurmd_c(text: str) -> NodeHardware:
    """`slurmd -C`'s first line: NodeName=... CPUs=16 Boards=1 SocketsPerBoard=1
    CoresPerSocket=8 ThreadsPerCore=2 RealMemory=64259."""
    line = next((ln for ln in text.splitlines() if ln.startswith("NodeName=")), "")
    values = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
    try:
        return NodeHardware(
            *(int(values[f]) for f in NODE_FIELDS), real_memory_mb=int(values["RealMemory"])
        )
    except (KeyError, ValueError):
        raise ValueError(f"slurmd -C printed no node line: {text[:200]!r}") from None


def configured_memory_mb(real_memory_mb: int) -> int:
    margin = max(MEMORY_MARGIN_MIN_MB, int(real_memory_mb * MEMORY_MARGIN))
    return max(1, real_memory_mb - margin)


def node_line(name: str, hw: NodeHardware, gpus: int, addr: str = "") -> str:
    """The slurm.conf NodeName line for one box (NodeAddr: the address the inventory gives,
    so the nodes need not resolve each other's names)."""
    parts = [
        f"NodeName={name}",
        *([f"NodeAddr={addr}"] if addr else []),
        f"CPUs={hw.cpus}",
        f"Boards={hw.boards}",
        f"SocketsPerBoard={hw.sockets_per_board}",
        f"CoresPerSocket={hw.cores_per_socket}",
        f"ThreadsPerCore={hw.threads_per_core}",
        f"RealMemory={configured_memory_mb(hw.real_memory_mb)}",
    ]
    if gpus:
        parts.append(f"Gres=gpu:{gpus}")
    return " ".join(parts) + " State=UNKNOWN"


def gres_lines(name: str, gpus: int, nvml_plugin: bool) -> list[str]:
    """gres.conf for one box: NVML's autodetection where its plugin is installed (Debian:
    slurm-wlm-nvml-plugin, contrib), else one File= line per device; nothing without GPUs
    (a controller without a GPU is a node like any other)."""
    if not gpus:
        return []
    if nvml_plugin:
        return [f"NodeName={name} AutoDetect=nvml"]
    return [f"NodeName={name} Name=gpu File=/dev/nvidia{i}" for i in range(gpus)]


def id_conflicts(accounts: dict[str, dict[str, tuple[int, int]]]) -> list[str]:
    """Accounts ({host: {name: (uid, gid)}}) whose UID or GID differ between the hosts that
    have them, one message per account naming each host's numbers."""
    names = sorted({n for by_name in accounts.values() for n in by_name})
    problems = []
    for name in names:
        seen = {h: ids[name] for h, ids in sorted(accounts.items()) if name in ids}
        if len(set(seen.values())) > 1:
            listed = ", ".join(f"{h} {uid}:{gid}" for h, (uid, gid) in seen.items())
            problems.append(
                f"account {name} has different UID:GID on the boxes ({listed}): give it one "
                "UID and GID everywhere (usermod -u / groupmod -g, then chown its files)"
            )
    return problems

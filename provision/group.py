"""The group phase of a Slurm cluster: the facts of every box, read before any box changes.

A cluster is every inventory host whose `cluster.controller` names the same host (which must
name itself). A box's slurm.conf lists every node, so a run on one box still reads all of
them: config.load_hosts gives each member's HostConfig the others' (`attach`), and before any
step runs, the runner reads each member once (`READ`, one round trip, as root), decides with
provision.slurm, and refuses with every reason (a version mix outside Slurm's window, UID
conflicts, clocks apart, a name twice) before anything is installed anywhere. What it
decided (`ClusterPlan`) travels in each member's settings under PLAN to the cluster step.

munge: one key, made on the controller (munge's postinst, or the cluster step). The runner
runs the controller first; then, if a node's key differs, it reads the controller's key once
(`read_key`: the output is never written to a transcript, and is masked in everything after)
and the nodes' cluster steps write it (0400 munge:munge). The plan only compares sha256 sums.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from provision import nfshome, slurm
from provision.errors import ConfigError, ProvisionError
from provision.facts import split_sections

MEMBERS = "cluster.members"  # HostConfig.settings key: the other members' HostConfigs
PLAN = "cluster.plan"  # HostConfig.settings key: the ClusterPlan (dotted: never a step key)
MUNGE_KEY = "/etc/munge/munge.key"
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62})$")
MARK = "@@"  # facts.split_sections' markers
SECTIONS = ("hostname", "cpus", "memory", "gpus", "packages", "candidate", "os", "accounts",
            "groups", "munge", "clock")  # fmt: skip
FIRST_ID, LAST_ID = 1000, 60000  # Debian's UID_MIN..UID_MAX (login.defs): people's accounts
# One read per member (as root: the munge key's sum). Each section after its mark line.
READ = "; ".join(
    [
        f"echo '{MARK}hostname'; hostname -s",
        f"echo '{MARK}cpus'; lscpu -p=CPU,CORE,SOCKET",
        f"echo '{MARK}memory'; awk '/^MemTotal:/ {{print $2}}' /proc/meminfo",
        f"echo '{MARK}gpus'; ls /dev | grep -c '^nvidia[0-9][0-9]*$'",
        f"echo '{MARK}packages'; dpkg-query -W -f '${{Package}} ${{Version}} ${{db:Status-Abbrev}}"
        "\\n' slurmd slurmctld slurm-wlm-basic-plugins slurm-wlm-nvml-plugin munge 2>/dev/null",
        f"echo '{MARK}candidate'; apt-cache policy slurm-wlm-basic-plugins 2>/dev/null"
        " | awk '/Candidate:/ {print $2}'",
        f"echo '{MARK}os'; . /etc/os-release && echo \"$ID-$VERSION_ID\"",
        f"echo '{MARK}accounts'; getent passwd"
        ' | awk -F: \'($3 >= 1000 && $3 < 60000) || $1 == "slurm" {print $1":"$3":"$4}\'',
        f"echo '{MARK}groups'; getent group"
        " | awk -F: '$3 >= 1000 && $3 < 60000 {print $1\":\"$3}'",
        f"echo '{MARK}munge'; sha256sum {MUNGE_KEY} 2>/dev/null | cut -d' ' -f1",
        f"echo '{MARK}clock'; date +%s",
    ]
)


@dataclass(frozen=True)
class Member:
    """What the group phase read on one box."""

    host: str  # inventory name
    hostname: str  # `hostname -s`: what slurmd calls itself, so the NodeName
    hardware: slurm.NodeHardware
    gpus: int
    release: str  # Slurm major ('22.05'): installed, else apt's candidate, else the distro's
    packages: dict[str, str]  # installed package -> version
    accounts: dict[str, tuple[int, int]]
    munge_sum: str  # sha256 of /etc/munge/munge.key ('' when there is none)
    clock_s: int
    os: str
    groups: dict[str, int] = field(default_factory=dict)  # groups with a GID 1000-59999


@dataclass(frozen=True)
class Node:
    """One node of the cluster as every box's slurm.conf and gres.conf describe it."""

    host: str
    hostname: str
    line: str  # slurm.conf NodeName line
    gres: tuple[str, ...]  # gres.conf lines


@dataclass(frozen=True)
class ClusterPlan:
    """What the cluster step on each member renders and compares against."""

    name: str
    controller: str  # inventory name
    controller_hostname: str
    nodes: tuple[Node, ...]
    gres_types: str  # "gpu" when any node has GPUs
    munge_sum: str  # the controller's key's sha256 ('' when it has none yet)
    munge_key: bytes | None = field(default=None, repr=False)  # only after read_key
    hostnames: dict[str, str] = field(default_factory=dict)  # inventory name -> hostname
    share: nfshome.Share | None = None  # cluster.nfs_home: the shared homes
    # Every users.accounts name of the cluster -> the UID:GID it has, or gets, on every box.
    accounts: dict[str, tuple[int, int]] = field(default_factory=dict)


# --- which hosts form a cluster (config time: nothing is sent) ------------------------------


def attach(configs: list, lookup: Callable[[list[str]], list], all_hosts: list[str]) -> list:
    """The configs, each cluster member carrying every member's HostConfig under MEMBERS.
    `lookup(names)` loads HostConfigs of inventory hosts; `all_hosts`: the inventory's.
    A ConfigError (exit 2) when a controller is no inventory host or does not name itself."""
    wanted = {hc.settings["cluster"].controller for hc in configs if "cluster" in hc.settings}
    wanted.discard("")
    if not wanted:
        return configs
    everyone = lookup(all_hosts)
    groups: dict[str, list] = {}
    for hc in everyone:
        groups.setdefault(hc.settings["cluster"].controller, []).append(hc)
    for hc in configs:
        s = hc.settings.get("cluster")
        if not s or not s.controller:
            continue
        where = hc.sources.get("cluster.controller", "")
        if hc.name not in all_hosts:
            raise ConfigError(
                f"{hc.name}: a host given by address cannot join a cluster",
                "add it to the inventory, in the cluster's group",
                where=where,
            )
        if s.controller not in all_hosts:
            raise ConfigError(
                f"{hc.name}: cluster.controller = {s.controller!r} is not a host of the inventory",
                "name the inventory host that runs slurmctld (e.g. cluster.controller = box1 "
                "under [lab:vars])",
                where=where,
            )
        if s.controller not in [m.name for m in groups.get(s.controller, [])]:
            raise ConfigError(
                f"{hc.name}: the controller {s.controller} is not in its own cluster (its "
                "cluster.controller differs)",
                f"set cluster.controller = {s.controller} for {s.controller} too (put the "
                "controller in the cluster's group)",
                where=where,
            )
    for controller in wanted:
        agree_on_share(groups.get(controller, []))
    out = []
    for hc in configs:
        s = hc.settings.get("cluster")
        if s and s.controller:
            members = tuple(groups[s.controller])
            hc = dataclasses.replace(hc, settings={**hc.settings, MEMBERS: members})
        out.append(hc)
    return out


def agree_on_share(members: list) -> None:
    """Every member names the same cluster.nfs_home and nfs_path, and the server is one of
    them (a ConfigError, exit 2, naming the first member that differs)."""
    if not members:
        return
    head = members[0]
    want = (head.settings["cluster"].nfs_home, head.settings["cluster"].nfs_path)
    names = [m.name for m in members]
    for hc in members:
        s = hc.settings["cluster"]
        if (s.nfs_home, s.nfs_path) != want:
            raise ConfigError(
                f"{hc.name}: cluster.nfs_home/nfs_path = {s.nfs_home or '(none)'}:{s.nfs_path},"
                f" but {head.name} has {want[0] or '(none)'}:{want[1]} (one cluster, one share)",
                "set cluster.nfs_home (and nfs_path) once for the cluster's group, e.g. under "
                "[lab:vars]",
                where=hc.sources.get(
                    "cluster.nfs_home" if s.nfs_home != want[0] else "cluster.nfs_path", ""
                ),
            )
    if want[0] and want[0] not in names:
        raise ConfigError(
            f"{head.name}: cluster.nfs_home = {want[0]!r} is not a box of this cluster "
            f"({', '.join(names)})",
            "name the cluster's controller, whose disk holds the homes",
            where=head.sources.get("cluster.nfs_home", ""),
        )
    controller = head.settings["cluster"].controller
    if want[0] and want[0] != controller:
        # The controller runs first (it makes the munge key every other box needs), so the
        # homes must be exported by then: a box that mounts them cannot run before their server.
        raise ConfigError(
            f"{head.name}: cluster.nfs_home = {want[0]} is not the controller {controller}: the "
            "shared homes are served by the controller",
            f"set cluster.nfs_home = {controller} (the box with the homes' disk as controller)",
            where=head.sources.get("cluster.nfs_home", ""),
        )


def members_of(hc) -> tuple:
    """The HostConfigs of hc's cluster (empty: it is in none)."""
    return hc.settings.get(MEMBERS, ())


# --- reading the members --------------------------------------------------------------------


def sections(text: str) -> dict[str, list[str]]:
    """READ's output split at its mark lines (host text: data only)."""
    return {name: body.splitlines() for name, body in split_sections(text).items()}


def hardware(cpu_lines: list[str], mem_kb: int) -> slurm.NodeHardware:
    """NodeHardware from `lscpu -p=CPU,CORE,SOCKET` and MemTotal, the way `slurmd -C` counts:
    the same numbers before slurmd is installed as after (tests compare them on a real box)."""
    rows = [ln.split(",") for ln in cpu_lines if ln and not ln.startswith("#")]
    rows = [r for r in rows if len(r) >= 3 and all(x.isdigit() for x in r[:3])]
    if not rows:
        raise ValueError("lscpu listed no CPUs")
    sockets = {r[2] for r in rows}
    cores = {(r[2], r[1]) for r in rows}
    return slurm.NodeHardware(
        cpus=len(rows),
        boards=1,
        sockets_per_board=len(sockets),
        cores_per_socket=len(cores) // len(sockets),
        threads_per_core=max(1, len(rows) // len(cores)),
        real_memory_mb=mem_kb // 1024,
    )


def parse_member(host: str, text: str) -> Member:
    """A Member from READ's output; ProvisionError naming what is missing."""
    s = sections(text)
    missing = [k for k in SECTIONS if k not in s]
    if missing:
        raise ProvisionError(
            f"{host}: the cluster read printed no {', '.join(missing)}",
            "the transcript has the command and what it printed",
        )
    name = (s["hostname"] or [""])[0].strip().lower()
    if not HOSTNAME_RE.match(name):
        raise ProvisionError(
            f"{host}: its hostname {name[:64]!r} cannot be a Slurm node name",
            "give the box a plain hostname (hostnamectl set-hostname box1)",
        )
    try:
        mem_kb = int((s["memory"] or ["0"])[0])
        hw = hardware(s["cpus"], mem_kb)
    except ValueError as exc:
        raise ProvisionError(f"{host}: cannot read its CPUs and memory: {exc}", "") from None
    packages = {}
    for line in s["packages"]:
        parts = line.split()
        if len(parts) >= 3 and parts[2].startswith("ii"):
            packages[parts[0]] = parts[1]
    os_name = (s["os"] or [""])[0].strip()
    candidate = (s["candidate"] or [""])[0].strip()
    release = (
        slurm.major(packages.get("slurm-wlm-basic-plugins", ""))
        or slurm.major(candidate if candidate != "(none)" else "")
        or slurm.DISTRIBUTION_SLURM.get(os_name, "")
    )
    accounts = {}
    for line in s["accounts"]:
        parts = line.split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            accounts[parts[0]] = (int(parts[1]), int(parts[2]))
    groups = {}
    for line in s.get("groups", []):
        parts = line.split(":")
        if len(parts) == 2 and parts[1].isdigit():
            groups[parts[0]] = int(parts[1])
    gpus = (s["gpus"] or ["0"])[0].strip()
    munge = (s["munge"] or [""])[0].strip()
    clock = (s["clock"] or ["0"])[0].strip()
    return Member(
        host=host,
        hostname=name,
        hardware=hw,
        gpus=int(gpus) if gpus.isdigit() else 0,
        release=release,
        packages=packages,
        accounts=accounts,
        munge_sum=munge if re.fullmatch(r"[0-9a-f]{64}", munge) else "",
        clock_s=int(clock) if clock.isdigit() else 0,
        os=os_name,
        groups=groups,
    )


# --- deciding -------------------------------------------------------------------------------


def wanted_accounts(member_configs) -> list[str]:
    """Every users.accounts name of the members (HostConfigs), in inventory order, once."""
    names = []
    for hc in member_configs:
        users = hc.settings.get("users")
        names += list(getattr(users, "accounts", ()))
    return list(dict.fromkeys(names))


def account_ids(members: list[Member], wanted: list[str]) -> tuple[dict, list[str]]:
    """The UID:GID of each wanted account on every box, and why one cannot be had.

    An account some box has keeps its numbers (id_conflicts refuses ones that differ); a new
    one gets the lowest number from FIRST_ID that no box uses as a UID or a GID (the GID of a
    group of its name where one exists), for both. Every box decides the same from the same
    read, so the controller and the nodes create it alike. A number another box gives to
    another account or group is refused, naming both."""
    known = {}
    for m in members:
        for name, ids in m.accounts.items():
            known.setdefault(name, ids)
    taken = {i for m in members for ids in m.accounts.values() for i in ids}
    taken |= {gid for m in members for gid in m.groups.values()}
    out, found = {}, []
    for name in wanted:
        ids = known.get(name)
        if ids is None:
            group_gids = {m.groups[name] for m in members if name in m.groups}
            if len(group_gids) > 1:
                listed = ", ".join(f"{m.host} {m.groups[name]}" for m in members
                                   if name in m.groups)  # fmt: skip
                found.append(f"group {name} has different GIDs on the boxes ({listed}): give it "
                             "one GID everywhere (groupmod -g)")  # fmt: skip
                continue
            free = next(n for n in range(FIRST_ID, LAST_ID) if n not in taken)
            if group_gids:  # the group exists: its GID; the same number as UID when free
                gid = group_gids.pop()
                uids = {uid for m in members for uid, _g in m.accounts.values()}
                ids = (gid if gid not in uids else free, gid)
            else:
                ids = (free, free)
            taken |= set(ids)
        for m in members:
            for other, (uid, _gid) in m.accounts.items():
                if other != name and uid == ids[0]:
                    found.append(
                        f"account {name} is UID {ids[0]} on the cluster, but {m.host} gives "
                        f"UID {ids[0]} to {other}: renumber one (usermod -u)"
                    )
            for other, gid in m.groups.items():
                if other != name and gid == ids[1]:
                    found.append(f"account {name}'s group is GID {ids[1]} on the cluster, but "
                                 f"{m.host} gives GID {ids[1]} to group {other}: renumber one "
                                 "(groupmod -g)")  # fmt: skip
        out[name] = ids
    return out, found


def problems(
    members: list[Member], controller: str, now_s: float, max_skew_s: int, wanted=()
) -> list[str]:
    """Why these boxes cannot form one cluster under `controller` (empty: they can)."""
    found = []
    names: dict[str, str] = {}
    for m in members:
        if m.hostname in names:
            found.append(
                f"{m.host} and {names[m.hostname]} both call themselves {m.hostname!r}: Slurm "
                "knows a node by its hostname; give each box its own (hostnamectl set-hostname)"
            )
        names[m.hostname] = m.host
        if not m.release:
            found.append(f"{m.host}: no Slurm release is known for {m.os or 'its OS'}")
        skew = abs(m.clock_s - now_s)
        if skew > max_skew_s:
            found.append(
                f"{m.host}: its clock is {skew:.0f} s off this machine's (munge refuses "
                f"credentials from a clock more than a few minutes apart; allowed "
                f"{max_skew_s} s): turn on base.time_sync, or fix the clock"
            )
    releases = {m.host: m.release for m in members if m.release}
    if controller in releases:
        found += slurm.version_problems(releases, controller)
    return found + account_problems(members, wanted)


def account_problems(members: list[Member], wanted=()) -> list[str]:
    """Accounts whose numbers differ between the boxes, or that cannot get one number."""
    conflicts = slurm.id_conflicts({m.host: m.accounts for m in members})
    return conflicts or account_ids(members, list(wanted))[1]


def decide(
    members: list[Member], settings_of: dict[str, Any], controller: str, wanted=()
) -> ClusterPlan:
    """The ClusterPlan from every member (inventory order), its cluster settings and the
    accounts the members' users steps want (`wanted`)."""
    head = next(m for m in members if m.host == controller)
    nodes = []
    for m in members:
        s = settings_of[m.host]
        if not s.compute:
            continue
        nvml = "slurm-wlm-nvml-plugin" in m.packages
        nodes.append(
            Node(
                m.host,
                m.hostname,
                slurm.node_line(m.hostname, m.hardware, m.gpus, s.node_addr),
                tuple(slurm.gres_lines(m.hostname, m.gpus, nvml)),
            )
        )
    cs = settings_of[controller]
    share = None
    if cs.nfs_home:
        server = next(m for m in members if m.host == cs.nfs_home)
        share = nfshome.Share(
            server=server.host,
            server_at=settings_of[server.host].node_addr or server.hostname,
            path=cs.nfs_path,
            clients=tuple(
                nfshome.Client(m.host, m.hostname, settings_of[m.host].node_addr)
                for m in members
                if m.host != server.host
            ),
        )
    return ClusterPlan(
        name=cs.name or "cluster",
        controller=controller,
        controller_hostname=head.hostname,
        nodes=tuple(nodes),
        gres_types="gpu" if any(n.gres for n in nodes) else "",
        munge_sum=head.munge_sum,
        hostnames={m.host: m.hostname for m in members},
        share=share,
        accounts=account_ids(members, list(wanted))[0],
    )


def refusal(controller: str, found: list[str]) -> ProvisionError:
    """The error that stops every member before anything changes."""
    return ProvisionError(
        f"the cluster of {controller} cannot be formed; nothing was changed on any box:\n  "
        + "\n  ".join(found),
        "fix the boxes named above (or leave one out of the cluster), then run again",
    )


# --- the munge key --------------------------------------------------------------------------


def read_key(remote) -> bytes:
    """The controller's munge key, through Remote.read_secret (never logged, masked after)."""
    text = remote.read_secret(f"base64 -w0 {MUNGE_KEY}")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) < 32:
        raise ProvisionError(
            f"{remote.host}: {MUNGE_KEY} is missing or shorter than 32 bytes",
            "run the cluster step on the controller first (it makes the key)",
        )
    return key


def with_key(plan: ClusterPlan, key: bytes, munge_sum: str) -> ClusterPlan:
    return dataclasses.replace(plan, munge_key=key, munge_sum=munge_sum)


def now() -> float:
    return time.time()

"""Shared homes for a cluster: one box exports a path (`/home` by default) over NFS to the
cluster's other boxes, which mount it with a systemd automount.

A job runs as its user on whichever node Slurm picks, so that user's home must be the same
everywhere. Decide-only: what the server exports and what the clients mount, from the group
phase's plan; the cluster step (steps/cluster.py) writes it and checks it.

- The export is limited to the other members' addresses (their `cluster.node_addr`, else what
  their hostname resolves to on the server: the address the server sees them connect from),
  `root_squash` kept (root on a node is not root on the homes).
- A client mounts `SERVER:PATH` (NFSv4) through `PATH.automount`: mounted at the first use,
  so a boot with the server down does not hang, and a changed `.mount` takes effect at the
  next mount. The mount covers the box's own PATH: the plan says how many entries it hides.
  Mounting it is applied as a guarded change (a fresh SSH login must still work: the login
  user's authorized_keys now come from the server's copy of its home), else it is undone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXPORTS = "/etc/exports.d/provision-cluster.exports"
# Under the shared path, owned by nobody:nogroup (root squashed is nobody): verify's batch job
# runs as root and writes its proof file here; no other user can write in it.
CHECK_DIR = ".provision-check"
# Paths whose systemd unit name is the path with '/' -> '-' (no escaping needed: no '-', no
# leading dots, lowercase letters, digits, '_' and inner dots).
PATH_RE = re.compile(r"^(/[a-z0-9_][a-z0-9_.]{0,63}){1,8}$")
EXPORT_OPTIONS = "rw,sync,no_subtree_check,root_squash"
SYSTEM_ONLY = ("/", "/etc", "/usr", "/var", "/boot", "/root", "/proc", "/sys", "/dev", "/run",
               "/tmp", "/bin", "/sbin", "/lib", "/opt")  # fmt: skip


def shared_path(value: str) -> None:
    """Validator of cluster.nfs_path."""
    if not PATH_RE.match(value) or ".." in value:
        raise ValueError(
            f"{value!r} is not a path the tool shares (absolute; lowercase letters, digits, _ "
            "and inner dots; e.g. /home or /srv/data)"
        )
    if value in SYSTEM_ONLY:
        raise ValueError(f"{value} belongs to the system; share /home or a data path")


def unit_name(path: str, kind: str) -> str:
    """systemd's name for the mount or automount unit of `path` (`systemd-escape --path`)."""
    return path.strip("/").replace("/", "-") + "." + kind


def unit_path(path: str, kind: str) -> str:
    return f"/etc/systemd/system/{unit_name(path, kind)}"


@dataclass(frozen=True)
class Client:
    """A box that mounts the share."""

    host: str  # inventory name
    hostname: str
    node_addr: str  # cluster.node_addr ('' : its hostname resolves)


@dataclass(frozen=True)
class Share:
    """The cluster's shared path: who exports it, where, to whom."""

    server: str  # inventory name
    server_at: str  # what clients mount from: the server's node_addr, else its hostname
    path: str
    clients: tuple[Client, ...]

    def is_client(self, host: str) -> bool:
        return any(c.host == host for c in self.clients)


def first_address(getent_ahostsv4: str) -> str:
    """The first address of `getent ahostsv4 NAME` ('' when it printed none)."""
    for line in getent_ahostsv4.splitlines():
        fields = line.split()
        if fields and re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", fields[0]):
            return fields[0]
    return ""


def exports_line(share: Share, resolved: dict[str, str]) -> tuple[str, list[str]]:
    """The exports(5) line and the clients' hostnames that have no address.

    `resolved`: hostname -> its first address as the server resolves it."""
    addresses, missing = [], []
    for c in share.clients:
        addr = c.node_addr or resolved.get(c.hostname, "")
        if addr:
            addresses.append(addr)
        else:
            missing.append(c.hostname)
    hosts = " ".join(f"{a}({EXPORT_OPTIONS})" for a in dict.fromkeys(addresses))
    return f"{share.path} {hosts}", missing

"""cluster: the lab's boxes as one Slurm cluster (Slurm and munge from the distribution).

Manages, on every box whose `cluster.controller` names the same inventory host: munge (one key,
the controller's, 0400 munge:munge, munged running), slurm-client, slurmd on the compute nodes
(every box unless `cluster.compute = false`), slurmctld on the controller, and the same
`/etc/slurm/slurm.conf`, `gres.conf` and `cgroup.conf` on each, rendered from what the group
phase read on all of them (provision/group.py: it also refuses a version mix outside Slurm's
window, UID conflicts and clocks apart before anything is installed). Restarts slurmctld and
slurmd when their configuration changes, munge when its key does. Never reboots.

With `cluster.nfs_home` (the controller), the homes are shared (provision/nfshome.py): the
controller exports `cluster.nfs_path` to the other boxes, which mount it through a systemd
automount, applied guarded (a fresh login must work with it mounted, else the box undoes it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provision import group, nfshome, shell
from provision.changes import Change, Guarded, Restart, Run, Upload
from provision.errors import ProvisionError, Skip
from provision.facts.reads import Read
from provision.resources import (
    file_content,
    file_read,
    packages,
    service,
    service_read,
    template_file,
)
from provision.settings import ip_address, positive, setting
from provision.step import Context, Step

SLURM_CONF = "/etc/slurm/slurm.conf"
GRES_CONF = "/etc/slurm/gres.conf"
CGROUP_CONF = "/etc/slurm/cgroup.conf"
MUNGE_SUM_READ = Read(f"sha256sum {group.MUNGE_KEY} 2>/dev/null | cut -d' ' -f1", sudo=True)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
CONTROLLER_PACKAGES = ("munge", "slurmctld", "slurm-client")
NODE_PACKAGES = ("munge", "slurmd", "slurm-client")


def inventory_name(value: str) -> None:
    if value and not NAME_RE.match(value):
        raise ValueError(f"{value!r} is not an inventory host name")


def cluster_name(value: str) -> None:
    if value and not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", value):
        raise ValueError(f"{value!r} is not a cluster name (lowercase letters, digits, _ -)")


def optional_ip(value: str) -> None:
    if value:
        ip_address(value)


@dataclass(frozen=True)
class Settings:
    """Settings of the cluster step (inventory keys `cluster.<field>`)."""

    controller: str = setting(
        "",
        "the inventory host that runs slurmctld; the hosts naming the same one are one cluster "
        "(empty: no cluster)",
        inventory_name,
    )
    name: str = setting("", "ClusterName (empty: cluster)", cluster_name)
    partition: str = setting("main", "the default partition (every node)", cluster_name)
    compute: bool = setting(True, "run jobs on this box (slurmd); off: a head node only")
    node_addr: str = setting(
        "", "the address the other boxes reach this one at (empty: its hostname resolves)",
        optional_ip,
    )  # fmt: skip
    cgroups: bool = setting(
        True, "confine jobs with cgroups to the cores, memory and GPUs they asked for"
    )
    max_clock_skew_s: int = setting(60, "refuse boxes whose clock is further off", positive)
    nfs_home: str = setting(
        "",
        "share nfs_path from this box to the others over NFS: the controller's name (empty: "
        "no share)",
        inventory_name,
    )
    nfs_path: str = setting("/home", "the path nfs_home shares (mounted on first use)",
                            nfshome.shared_path)  # fmt: skip
    rollback_after_s: int = setting(
        90, "undo the share's mount on a box after this long without a fresh login", positive
    )


def plan_of(ctx: Context) -> group.ClusterPlan | None:
    """The group phase's decision for this box's cluster (None: not decided, e.g. `verify`)."""
    return ctx.settings_by_key.get(group.PLAN)


def is_controller(ctx: Context, s: Settings) -> bool:
    return s.controller == ctx.host


def units(ctx: Context, s: Settings) -> list[str]:
    return (["slurmctld"] if is_controller(ctx, s) else []) + (["slurmd"] if s.compute else [])


def resolve_read(name: str) -> Read:
    return Read(shell.cmd("getent", "ahostsv4", name))


def reads(ctx: Context) -> list[Read]:
    """What check reads, from the settings and the group phase's plan."""
    s: Settings = ctx.settings(Settings)
    plan = plan_of(ctx)
    if not s.controller or plan is None:
        return []
    wanted = [
        MUNGE_SUM_READ,
        service_read("munge"),
        *(service_read(u) for u in units(ctx, s)),
    ]
    wanted += [file_read(ctx, d) for d in (SLURM_CONF, GRES_CONF, CGROUP_CONF)]
    if not is_controller(ctx, s):  # the key's state (never its content: it is 0400)
        wanted.append(file_read(ctx, group.MUNGE_KEY))
    wanted += [resolve_read(n) for n in names_to_resolve(plan, ctx)]
    return wanted + share_reads(ctx, plan)


def names_to_resolve(plan: group.ClusterPlan, ctx: Context) -> list[str]:
    """The node names slurmd and slurmctld look up on this box (no NodeAddr given)."""
    names = [plan.controller_hostname]
    names += [n.hostname for n in plan.nodes if "NodeAddr=" not in n.line]
    own = plan.hostnames.get(ctx.host, "")
    return [n for n in dict.fromkeys(names) if n != own]


def preflight(ctx: Context) -> None:
    """Every node name must resolve here before anything is installed."""
    s: Settings = ctx.settings(Settings)
    plan = plan_of(ctx)
    if not s.controller or plan is None:
        return
    missing = [n for n in names_to_resolve(plan, ctx) if not ctx.read(resolve_read(n).command).ok]
    if missing:
        raise ProvisionError(
            f"{ctx.host}: cannot resolve the cluster's node names {', '.join(missing)} (Slurm "
            "finds nodes by name)",
            "add them to DNS or /etc/hosts on every box, or set cluster.node_addr for those boxes",
        )


def rendered(plan: group.ClusterPlan, s: Settings) -> dict:
    return {
        "cluster_name": plan.name,
        "controller": plan.controller_hostname,
        "nodes": [n.line for n in plan.nodes],
        "gres_types": plan.gres_types,
        "partition": s.partition,
        "cgroups": s.cgroups,
    }


def munge_key(ctx: Context, s: Settings, plan: group.ClusterPlan) -> list[Change]:
    """The controller makes the key once; every other box gets the controller's."""
    have = ctx.read(MUNGE_SUM_READ.command, sudo=True).stdout.strip()
    if is_controller(ctx, s):
        if have:
            return []
        make = shell.and_(
            f"[ -e {group.MUNGE_KEY} ] || mungekey --create --keyfile={group.MUNGE_KEY}",
            shell.cmd("chown", "munge:munge", "--", group.MUNGE_KEY),
            shell.cmd("chmod", "0400", "--", group.MUNGE_KEY),
        )
        return [
            Change(
                f"create the cluster's munge key {group.MUNGE_KEY}", (Run(make), Restart("munge"))
            )
        ]
    if plan.munge_key is not None:
        # slurmd restarted after munge: it registers at once with the new key, not at the
        # controller's next ping (SlurmdTimeout/3, 100 s by default).
        copied = file_content(
            ctx, group.MUNGE_KEY, plan.munge_key, mode="0400", owner="munge", group="munge",
            restart="munge", summary=f"copy {plan.controller}'s munge key to {group.MUNGE_KEY}",
        )  # fmt: skip
        after = tuple(Restart(u, True) for u in units(ctx, s))
        return [Change(c.summary, c.actions + after, c.diff) for c in copied]
    if have and have == plan.munge_sum:
        return []
    # Only a plan gets here (the runner reads the key before a node's apply): nothing runs.
    missing = shell.cmd(
        "sh", "-c", f"echo 'the munge key of {plan.controller} was not read' >&2; exit 1"
    )
    return [Change(f"copy {plan.controller}'s munge key to {group.MUNGE_KEY} (0400 munge:munge)",
                   (Run(missing),))]  # fmt: skip


def check(ctx: Context) -> list[Change]:
    """What the cluster step would change on this box."""
    s: Settings = ctx.settings(Settings)
    if not s.controller:
        return []
    plan = plan_of(ctx)
    if plan is None:
        raise ProvisionError(
            f"{ctx.host}: the cluster was not read (no group phase)", "this is a bug in provision"
        )
    controller = is_controller(ctx, s)
    wanted = list(CONTROLLER_PACKAGES) if controller else []
    wanted += [p for p in NODE_PACKAGES if s.compute or p != "slurmd"]
    wanted += share_packages(ctx, plan)
    base = ctx.of("base")
    changes = packages(
        ctx,
        list(dict.fromkeys(wanted)),
        lock_timeout_s=base.apt_lock_timeout_s,
        cache_max_age_s=base.apt_cache_max_age_s,
    )
    # The key first: its munge restart then comes before the daemons' (restarts run in the
    # order they were first asked for), so slurmd registers with the cluster's key.
    changes += munge_key(ctx, s, plan)
    variables = rendered(plan, s)
    restarts = units(ctx, s)
    first, *more = restarts or [None]
    files = [("cluster/slurm.conf.j2", SLURM_CONF, variables)]
    files.append(
        ("cluster/gres.conf.j2", GRES_CONF, {"lines": [g for n in plan.nodes for g in n.gres]})
    )
    if s.cgroups:
        files.append(("cluster/cgroup.conf.j2", CGROUP_CONF, {}))
    for template, dest, values in files:
        found = template_file(
            ctx, template, dest, values, restart=first, restart_only_if_running=True
        )
        changes += [Change(c.summary, c.actions + tuple(Restart(u, True) for u in more), c.diff)
                    for c in found]  # fmt: skip
    changes += service(ctx, "munge")
    for unit in restarts:
        changes += service(ctx, unit)
    return changes + share_changes(ctx, s, plan)


# --- the shared homes (cluster.nfs_home; nfshome.py decides) --------------------------------


def check_dir_read(share: nfshome.Share) -> Read:
    return Read(shell.cmd("stat", "-c", "%U:%G:%a", "--", f"{share.path}/{nfshome.CHECK_DIR}"),
                sudo=True)  # fmt: skip


def covered_read(share: nfshome.Share) -> Read:
    """How many entries the box's own path holds (the mount will cover them), unless its
    automount is already on."""
    automount = nfshome.unit_name(share.path, "automount")
    return Read(
        f"if systemctl is-active -q {shell.cmd(automount)}; then echo mounted; "
        f"else ls -A -- {shell.cmd(share.path)} 2>/dev/null | wc -l; fi"
    )


def share_reads(ctx: Context, plan: group.ClusterPlan) -> list[Read]:
    share = plan.share
    if share is None:
        return []
    if share.server == ctx.host:
        return [file_read(ctx, nfshome.EXPORTS), check_dir_read(share), service_read("nfs-server")]
    automount = nfshome.unit_name(share.path, "automount")
    return [
        file_read(ctx, nfshome.unit_path(share.path, "mount")),
        file_read(ctx, nfshome.unit_path(share.path, "automount")),
        service_read(automount),
        covered_read(share),
    ]


def share_packages(ctx: Context, plan: group.ClusterPlan) -> list[str]:
    share = plan.share
    if share is None:
        return []
    return ["nfs-kernel-server"] if share.server == ctx.host else ["nfs-common"]


def exported(ctx: Context, share: nfshome.Share) -> list[Change]:
    """On the server: the path exported to the other boxes' addresses, nfs-server running, and
    the directory verify's job writes in (nobody's: what root on a client is squashed to)."""
    resolved = {
        c.hostname: nfshome.first_address(ctx.read(resolve_read(c.hostname).command).stdout)
        for c in share.clients
        if not c.node_addr
    }
    line, missing = nfshome.exports_line(share, resolved)
    if missing:
        raise ProvisionError(
            f"{ctx.host}: cannot export {share.path}: {', '.join(missing)} do not resolve here",
            "add them to DNS or /etc/hosts on this box, or set cluster.node_addr for them",
        )
    changes = []
    check_dir = f"{share.path}/{nfshome.CHECK_DIR}"
    if ctx.read(check_dir_read(share).command, sudo=True).stdout.strip() != "nobody:nogroup:755":
        make = shell.cmd("install", "-d", "-o", "nobody", "-g", "nogroup", "-m", "0755", "--",
                         check_dir)  # fmt: skip
        changes.append(Change(f"make {check_dir} (nobody's: verify's job writes there)",
                              (Run(make),)))  # fmt: skip
    variables = {"path": share.path, "line": line}
    for c in template_file(ctx, "cluster/exports.j2", nfshome.EXPORTS, variables):
        changes.append(Change(c.summary, (*c.actions, Run("exportfs -ra")), c.diff))
    return changes + service(ctx, "nfs-server")


def mounted(ctx: Context, s: Settings, share: nfshome.Share) -> list[Change]:
    """On a client: the share's mount and automount units; a new or changed one is applied
    guarded (a fresh login must work with the share mounted, else the box undoes it)."""
    automount = nfshome.unit_name(share.path, "automount")
    mount = nfshome.unit_name(share.path, "mount")
    values = {"path": share.path, "server": share.server_at, "automount": automount}
    written = template_file(ctx, "cluster/share.mount.j2", nfshome.unit_path(share.path, "mount"),
                            values)  # fmt: skip
    written += template_file(
        ctx, "cluster/share.automount.j2", nfshome.unit_path(share.path, "automount"), values
    )
    if not written:
        return service(ctx, automount)
    uploads = tuple(a for c in written for a in c.actions if isinstance(a, Upload))
    path = shell.cmd(share.path)
    source = shell.cmd(f"{share.server_at}:{share.path}")
    failed = shell.group(f"echo {source} did not mount >&2; exit 1")
    activate = shell.and_(
        "systemctl daemon-reload",
        shell.cmd("systemctl", "enable", "--", automount),
        shell.cmd("systemctl", "start", "--", automount),
        f"timeout 40 ls -A -- {path}/ >/dev/null",
        shell.group(f"findmnt -n -t nfs4 --mountpoint {path} >/dev/null || " + failed),
    )
    wants = f"/etc/systemd/system/multi-user.target.wants/{automount}"
    # Undone even while busy (the session that ran the change had its working directory in
    # the mounted home): a lazy unmount, only of the NFS and autofs layers (a /home partition
    # of the box's own stays).
    restore = shell.seq(
        f"systemctl stop {shell.cmd(mount)} {shell.cmd(automount)} 2>/dev/null",
        shell.if_(f"findmnt -n -t nfs4,nfs --mountpoint {path} >/dev/null", f"umount -l -- {path}"),
        shell.quiet(shell.cmd("systemctl", "stop", "--", automount)),
        shell.if_(f"findmnt -n -t autofs --mountpoint {path} >/dev/null", f"umount -l -- {path}"),
        shell.if_(
            shell.exists(nfshome.unit_path(share.path, "automount")),
            shell.and_("systemctl daemon-reload", shell.cmd("systemctl", "start", "--", automount)),
            shell.seq(shell.cmd("rm", "-f", "--", wants), "systemctl daemon-reload"),
        ),
    )
    covered = ctx.read(covered_read(share).command).stdout.strip()
    hides = ""
    if covered.isdigit() and covered != "0":
        noun = "entry" if covered == "1" else "entries"
        hides = f"; it covers this box's own {share.path} ({covered} {noun})"
    summary = (
        f"mount {share.server_at}:{share.path} on {share.path} (NFS, at first use: {automount})"
        f"{hides} (confirmed by a fresh login)"
    )
    guarded = Guarded(
        uploads=uploads, activate=activate, restore=restore, rollback_after_s=s.rollback_after_s
    )
    return [Change(summary, (guarded,), "".join(c.diff for c in written))]


def share_changes(ctx: Context, s: Settings, plan: group.ClusterPlan) -> list[Change]:
    share = plan.share
    if share is None:
        return []
    if share.server == ctx.host:
        return exported(ctx, share)
    return mounted(ctx, s, share)


# --- verify -----------------------------------------------------------------------------------


def _in_cluster(s: Settings) -> None:
    if not s.controller:
        raise Skip("cluster.controller is not set (not in a cluster)")


def verify_munge(host, s: Settings) -> None:
    """munge works here and the controller accepts this box's credentials (the same key)"""
    _in_cluster(s)
    out = host.run("munge -n | unmunge")
    assert out.rc == 0, f"munge -n | unmunge failed: {out.stderr.strip()[-300:]}"
    # A key that differs from the controller's still passes the local round trip; slurmctld
    # refuses its credentials ("Zero Bytes were transmitted or received").
    ping = host.run("timeout 30 scontrol ping")
    assert ping.rc == 0, (
        f"slurmctld does not answer this box (a munge key other than the controller's, or "
        f"slurmctld down): {(ping.stdout.strip().splitlines() or [''])[0][:200]}"
    )


def _is_controller_host(host) -> bool:
    conf = host.run(f"sed -n 's/^SlurmctldHost=//p' {SLURM_CONF}").stdout.strip()
    return bool(conf) and conf == host.run("hostname -s").stdout.strip()


def verify_node_idle(host, s: Settings) -> None:
    """this box is a Slurm node in state idle (or busy with jobs), not down or drained"""
    _in_cluster(s)
    if not s.compute:
        raise Skip("cluster.compute is off (a head node only)")
    active = host.run("systemctl is-active slurmd").stdout.strip()
    assert active == "active", f"slurmd is {active or 'not running'} here"
    # A box slurmctld does not answer (its munge key not the controller's: verify_munge) gets
    # no state from sinfo however long it asks: fail then, not after the wait below (two
    # seconds' grace: a slurmctld just restarted answered within 0.2 s here).
    ping = host.run("for i in 1 2 3; do timeout 30 scontrol ping && exit 0; sleep 1; done; exit 1")
    assert ping.rc == 0, (
        f"slurmctld does not answer this box, sinfo cannot tell its state: "
        f"{(ping.stdout.strip().splitlines() or [''])[0][:200]}"
    )
    # sinfo's short state: idle, alloc, mix (a suffix such as * means not responding).
    probe = (
        'for i in $(seq 30); do s=$(sinfo -h -N -n "$(hostname -s)" -o %t 2>/dev/null); '
        'case $s in idle|alloc|mix) echo $s; exit 0;; esac; sleep 1; done; echo "${s:-none}"; '
        "scontrol show node \"$(hostname -s)\" | grep -E 'State=|Reason=' ; exit 1"
    )
    out = host.run(probe)
    assert out.rc == 0, f"the node is not idle: {out.stdout.strip()[-400:]}"


def verify_srun_everywhere(host, s: Settings) -> None:
    """on the controller: `srun -N<all nodes> hostname` runs on every node"""
    _in_cluster(s)
    if not _is_controller_host(host):
        raise Skip("runs on the controller")
    nodes = sorted(set(host.run("sinfo -h -N -o %N").stdout.split()))
    assert nodes, "sinfo lists no nodes"
    # Reach every slurmd before a job is made: a job launched onto a node whose slurmd is
    # stopped, on another port or on another munge key fails there, and that node then stays
    # "completing" until slurmctld resends the kill (KillWait + 2 x MessageTimeout, looked at
    # once a minute: up to two minutes after the node is repaired). Nothing listening at a
    # node's address and SlurmdPort fails at once (srun would take MessageTimeout to say so).
    listening = host.run(
        "port=$(scontrol show config | sed -n 's/^SlurmdPort *= *//p'); "
        '[ -n "$port" ] && command -v bash >/dev/null || exit 0; '
        "sinfo -h -N -o '%N %o' | sort -u | while read -r n a; do "
        'timeout 5 bash -c ": </dev/tcp/$a/$port" 2>/dev/null || echo "$n ($a:$port)"; done'
    )
    closed = [ln.strip() for ln in listening.stdout.splitlines() if ln.strip()]
    assert not closed, f"nothing accepts connections at slurmd's port on {', '.join(closed)}"
    # Then a step without a job (-Z, root only) on every node: slurmd there accepts this box's
    # credentials (the same munge key), and nothing stays behind when it does not.
    probe = host.run("timeout 60 " + shell.cmd("srun", "-Z", "-w", ",".join(nodes), "true"))
    assert probe.rc == 0, (
        f"a task cannot be started on every node (slurmd there unreachable or on another "
        f"munge key): {probe.stderr.strip()[-400:]}"
    )
    # A node still cleaning up a failed job (state comp) is busy up to two minutes (110 s seen
    # on the container LAN after a repaired node): wait 150 s for that; a node not responding
    # (a * suffix), down or drained fails at once. Then -I30: fail rather than queue when the
    # nodes cannot be had.
    ready = host.run(
        "for i in $(seq 150); do s=$(sinfo -h -N -o '%N=%t' | sort -u); "
        "echo \"$s\" | grep -qvE '=(idle|mix|alloc)$' || exit 0; "
        "echo \"$s\" | grep -qvE '=(idle|mix|alloc|comp)$' && break; sleep 1; done; "
        "echo $s; exit 1"
    )
    assert ready.rc == 0, f"not every node is schedulable: {ready.stdout.strip()[-300:]}"
    out = host.run(f"timeout 120 srun -I30 -N{len(nodes)} --ntasks-per-node=1 hostname -s")
    assert out.rc == 0, f"srun -N{len(nodes)} failed: {out.stderr.strip()[-400:]}"
    ran = sorted(set(out.stdout.split()))
    assert ran == nodes, f"srun ran on {ran}, the nodes are {nodes}"


# What a job with one CPU and 64 MiB sees on each node (cgroup v2: Debian 12 and 13 and Ubuntu
# 22.04 and 24.04 boot with the unified hierarchy): its cgroup, the smallest memory.max from it
# up to the root (Slurm sets the limit on the job's and the step's cgroup, not the task's), its
# cpuset, the CPUs Slurm says it was given, the node's online CPUs.
CONFINED_MEM_MB = 64
CONFINED_PROBE = (
    "cg=$(sed -n 's/^0:://p' /proc/self/cgroup); p=/sys/fs/cgroup$cg; m=max; "
    'while [ -n "$cg" ] && [ "$p" != /sys/fs/cgroup ]; do '
    'v=$(cat "$p/memory.max" 2>/dev/null || echo max); '
    'if [ "$v" != max ] && { [ "$m" = max ] || [ "$v" -lt "$m" ]; }; then m=$v; fi; '
    "p=${p%/*}; done; "
    'c=$(cat "/sys/fs/cgroup$cg/cpuset.cpus.effective" 2>/dev/null); '
    'echo "$(hostname -s) cgroup=${cg:-none} mem=$m cpus=${c:-none} '
    'given=${SLURM_CPUS_ON_NODE:-none} online=$(getconf _NPROCESSORS_ONLN)"'
)


def cpu_count(cpuset: str) -> int:
    """How many CPUs a cpuset list names ("0-2,5" is four)."""
    count = 0
    for part in filter(None, cpuset.split(",")):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def confinement_problems(lines: list[str], nodes: list[str]) -> list[str]:
    """What each node's probe line (CONFINED_PROBE) says is not confined; [] when all are."""
    seen = {}
    for line in lines:
        node, *pairs = line.split()
        seen[node] = dict(p.partition("=")[::2] for p in pairs)
    problems = [f"{n}: no line from the job" for n in nodes if n not in seen]
    limit = CONFINED_MEM_MB * 1024 * 1024
    for node, got in sorted(seen.items()):
        if got.get("cgroup", "none") == "none":
            problems.append(f"{node}: the job is in no cgroup v2 (a cgroup v1 or hybrid boot)")
            continue
        mem = got.get("mem", "max")
        if not mem.isdigit() or int(mem) > limit:
            problems.append(
                f"{node}: the job asked for {CONFINED_MEM_MB} MiB and may use "
                f"{'all the memory' if mem == 'max' else mem + ' bytes'} (ConstrainRAMSpace)"
            )
        given, online, cpus = got.get("given", ""), got.get("online", ""), got.get("cpus", "")
        if not (given.isdigit() and online.isdigit()) or int(given) >= int(online):
            continue  # the job was given every CPU of the node: nothing to confine it to
        try:
            usable = cpu_count(cpus)
        except ValueError:
            usable = int(online)
        if usable != int(given):
            problems.append(
                f"{node}: the job was given {given} of {online} CPUs and may run on "
                f"{usable} ({cpus}) (ConstrainCores)"
            )
    return problems


def verify_job_confined(host, s: Settings) -> None:
    """on the controller: a job given one CPU and 64 MiB is held to them on every node (cgroups)"""
    _in_cluster(s)
    if not s.cgroups:
        raise Skip("cluster.cgroups is off: jobs are not confined")
    if not _is_controller_host(host):
        raise Skip("runs on the controller")
    nodes = sorted(set(host.run("sinfo -h -N -o %N").stdout.split()))
    assert nodes, "sinfo lists no nodes"
    out = host.run(
        f"timeout 120 srun -I30 -N{len(nodes)} --ntasks-per-node=1 -c1 "
        f"--mem={CONFINED_MEM_MB}M sh -c {shell.cmd(CONFINED_PROBE)}"
    )
    assert out.rc == 0, f"the confined job failed: {out.stderr.strip()[-400:]}"
    lines = [ln for ln in out.stdout.splitlines() if " cgroup=" in ln]
    problems = confinement_problems(lines, nodes)
    assert not problems, "a job is not held to what it was given: " + "; ".join(problems)


def _sharing(s: Settings) -> None:
    _in_cluster(s)
    if not s.nfs_home:
        raise Skip("cluster.nfs_home is not set (no shared homes)")


def verify_share_exported(host, s: Settings) -> None:
    """on the box sharing the homes: nfs-server runs and exports the path to named addresses"""
    _sharing(s)
    if not host.file(nfshome.EXPORTS).exists:
        raise Skip(f"runs on the box that shares {s.nfs_path} ({nfshome.EXPORTS} is not here)")
    active = host.run("systemctl is-active nfs-server").stdout.strip()
    assert active == "active", f"nfs-server is {active or 'not running'}"
    out = host.run("exportfs -s")
    assert out.rc == 0, f"exportfs -s failed: {out.stderr.strip()[-300:]}"
    lines = [ln.split() for ln in out.stdout.splitlines()]
    clients = [ln[1] for ln in lines if len(ln) == 2 and ln[0] == s.nfs_path]
    assert clients, f"{s.nfs_path} is not exported (exportfs -s: {out.stdout.strip()[-300:]})"
    wide = [c for c in clients if c.split("(")[0] in ("*", "") or "/" in c.split("(")[0]]
    assert not wide, f"{s.nfs_path} is exported to everyone or a network: {wide}"
    squashed = [c for c in clients if "no_root_squash" in c]
    assert not squashed, f"{s.nfs_path} is exported without root squashing: {squashed}"


def verify_share_mounted(host, s: Settings) -> None:
    """on the other boxes: the shared path is the NFS mount from the box sharing it"""
    _sharing(s)
    if host.file(nfshome.EXPORTS).exists:
        raise Skip(f"this box shares {s.nfs_path}")
    automount = nfshome.unit_name(s.nfs_path, "automount")
    active = host.run(f"systemctl is-active {shell.cmd(automount)}").stdout.strip()
    assert active == "active", f"{automount} is {active or 'not running'}"
    path = shell.cmd(s.nfs_path)
    # The automount's autofs stays mounted there; the NFS mount is stacked on it once used.
    out = host.run(
        f"timeout 40 ls -A -- {path}/ >/dev/null; "
        f"findmnt -n -t nfs4,nfs -o SOURCE,FSTYPE --mountpoint {path}"
    )
    found = out.stdout.split()
    assert len(found) == 2, (
        f"{s.nfs_path} is not an NFS mount here: {out.stdout.strip()[:200] or 'not mounted'}"
    )
    assert found[0].endswith(f":{s.nfs_path}"), f"{s.nfs_path} is mounted from {found[0]}"


def verify_shared_home_job(host, s: Settings) -> None:
    """on the controller: a batch job writes a file in the shared path; another node reads it"""
    _sharing(s)
    if not _is_controller_host(host):
        raise Skip("runs on the controller")
    nodes = sorted(set(host.run("sinfo -h -N -o %N").stdout.split()))
    if len(nodes) < 2:
        raise Skip(f"one node only ({', '.join(nodes) or 'none'}): nothing to share with")
    import secrets

    token = secrets.token_hex(8)
    proof = f"{s.nfs_path}/{nfshome.CHECK_DIR}/verify-{token}"
    writer, reader = nodes[-1], nodes[0]  # two nodes: at most one of them is the server
    job = shell.cmd("sh", "-c", f"echo {token} > {shell.cmd(proof)}")
    wrote = host.run(
        "timeout 180 "
        + shell.cmd("sbatch", "--wait", "-Q", "-N1", "-w", writer, "-o", "/dev/null", "--wrap", job)
    )
    assert wrote.rc == 0, (
        f"the batch job on {writer} could not write {proof}: {wrote.stderr.strip()[-300:]}"
    )
    seen = host.run("timeout 120 " + shell.cmd("srun", "-I30", "-N1", "-w", reader, "cat", proof))
    host.run("timeout 60 " + shell.cmd("srun", "-I30", "-N1", "-w", reader, "rm", "-f", proof))
    assert seen.stdout.strip() == token, (
        f"{reader} does not see the file the job on {writer} wrote in {s.nfs_path}: "
        f"{(seen.stderr or seen.stdout).strip()[-300:]}"
    )


def verify_one_gpu_job(host, s: Settings) -> None:
    """a job that asks for one GPU sees exactly one (CUDA_VISIBLE_DEVICES, nvidia-smi -L)"""
    _in_cluster(s)
    if not _is_controller_host(host):
        raise Skip("runs on the controller")
    gpus = host.run("sinfo -h -o %G").stdout
    if "gpu" not in gpus:
        raise Skip("no node has a GPU (Gres=gpu in slurm.conf)")
    job = "echo CVD=$CUDA_VISIBLE_DEVICES; nvidia-smi -L"
    out = host.run(f"timeout 300 srun -N1 --gres=gpu:1 sh -c {shell.cmd(job)}")
    assert out.rc == 0, f"the one-GPU job failed: {out.stderr.strip()[-400:]}"
    lines = out.stdout.splitlines()
    cvd = [ln for ln in lines if ln.startswith("CVD=")]
    listed = [ln for ln in lines if ln.startswith("GPU ")]
    assert cvd and "," not in cvd[0] and cvd[0] != "CVD=", f"CUDA_VISIBLE_DEVICES: {cvd}"
    assert len(listed) == 1, f"nvidia-smi -L inside the job lists {len(listed)} GPUs"


STEP = Step(
    name="cluster",
    summary="the lab's boxes as one Slurm cluster (munge, slurmctld, slurmd from the distro)",
    settings=Settings,
    check=check,
    verify=(
        verify_munge,
        verify_node_idle,
        verify_srun_everywhere,
        verify_job_confined,
        verify_share_exported,
        verify_share_mounted,
        verify_shared_home_job,
        verify_one_gpu_job,
    ),
    preflight=preflight,
    reads=reads,
)

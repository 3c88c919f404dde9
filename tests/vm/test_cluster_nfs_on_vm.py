"""Shared homes across a cluster: two Debian 12 VMs on a test LAN (tests/hosts/lan.py), the
controller exporting /home over NFS (a kernel server: a container cannot run one), the other
box mounting it through its systemd automount; Slurm's jobs with cgroup confinement on (the
VMs have kernels of their own).

Expectations from outside the code: `exportfs -s` and `findmnt` on the boxes, a file a batch
job (and a user over SSH) wrote on one box read on the other, `sinfo`/`srun`. Minutes under
TCG, so `slow` (not in CI):

    sudo tests/run -m slow tests/vm/test_cluster_nfs_on_vm.py -s
"""

from __future__ import annotations

import time
import uuid

import pytest
from common import GPU_STACK_OFF, ssh

from hostrun import provision_runner, require_lan_tier

pytestmark = [pytest.mark.vm, pytest.mark.slow]
SUBNET = "10.77.2"
SETTINGS = {
    **GPU_STACK_OFF,
    "cluster.nfs_home": "",  # the controller's name, set below
    "base.packages": "ca-certificates",
    "base.kernel_headers": "false",
    "base.unattended_upgrades": "false",
}
TIMES: dict[str, float] = {}


def host_line(host) -> str:
    return (
        f"{host.name} ansible_host={host.addr} ansible_port={host.port} ansible_user={host.user} "
        f"ansible_ssh_private_key_file={host.key_file} provision_known_hosts={host.known_hosts}"
    )


def write_lab(work, hosts, extra=None, root_on_first=False):
    """The inventory: both boxes in [lab], the first the controller sharing /home."""
    values = {**SETTINGS, "cluster.controller": hosts[0].name, "cluster.nfs_home": hosts[0].name}
    values.update(extra or {})
    rows = [host_line(h) for h in hosts]
    if root_on_first:
        rows[0] = rows[0].replace(f"ansible_user={hosts[0].user}", "ansible_user=root")
    lines = ["[lab]", *rows, "", "[lab:vars]", *(f"{k}={v}" for k, v in values.items())]
    (work / "inventory.ini").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def lab(require_tier, tmp_path_factory):
    """A LAN with two VMs; the first is the controller and shares /home."""
    require_lan_tier(require_tier)
    import lan
    import vm

    tag = uuid.uuid4().hex[:4]
    name = f"nf{tag}"
    hosts = []
    started = time.monotonic()
    try:
        lan.create(name, subnet=f"{SUBNET}.0/24")
        for i in range(2):
            hosts.append(vm.up(f"nfs{i + 1}-{tag}", lan=name, lan_addr=f"{SUBNET}.{21 + i}"))
        TIMES["boot"] = time.monotonic() - started
        work = tmp_path_factory.mktemp("lab")
        write_lab(work, hosts)
        yield {"hosts": hosts, "work": work}
    finally:
        for host in hosts:
            vm.down(host.name, graceful=False)
        lan.destroy(name)
        print(f"\n[nfs VMs] stage times (s): { {k: round(v) for k, v in TIMES.items()} }")


def run(lab, *args, check_rc=0):
    inv = lab["work"] / "inventory.ini"
    return provision_runner(lab["hosts"][0], lab["work"] / "logs")(
        *args, "-i", str(inv), check_rc=check_rc, timeout_s=3600
    )


def line_of(out: str, host: str, words: str) -> str:
    return next(ln for ln in out.splitlines() if ln.startswith(host + " ") and words in ln)


def test_the_homes_are_shared_and_a_job_on_one_box_writes_what_the_other_reads(lab):
    a, b = lab["hosts"]
    started = time.monotonic()
    first = run(lab, "cluster", "--host", "lab")
    TIMES["first cluster run"] = time.monotonic() - started
    text = first.stdout + first.stderr
    assert "mount " + a.name + ":/home on /home" in text, text
    again = run(lab, "cluster", "--host", "lab", "--plan", "--detailed-exitcode")
    assert "planned" not in again.stdout, again.stdout
    out = run(lab, "verify", "cluster", "--host", "lab").stdout
    assert line_of(out, a.name, "exports the path").split()[2] == "passed", out
    assert line_of(out, b.name, "shared path is the NFS mount").split()[2] == "passed", out
    assert line_of(out, a.name, "a batch job writes a file").split()[2] == "passed", out
    assert line_of(out, a.name, "is held to them on every node").split()[2] == "passed", out
    exports = ssh(a, "exportfs -s", user="root").stdout
    assert f"/home  {SUBNET}.22(" in exports or f"/home {SUBNET}.22(" in exports, exports
    mount = ssh(b, "ls /home >/dev/null; findmnt -n -t nfs4 -o SOURCE,FSTYPE --mountpoint /home",
                user="root").stdout.split()  # fmt: skip
    assert mount == [f"{a.name}:/home", "nfs4"], mount
    # A user's file, written over SSH on the server, read on the other box as that user.
    token = uuid.uuid4().hex
    ssh(a, f"echo {token} > ~/shared-{token}", user=a.user)
    assert ssh(b, f"cat ~/shared-{token}", user=b.user).stdout.strip() == token
    # Root on the other box is squashed: it cannot write in the user's home.
    denied = ssh(b, f"touch /home/{b.user}/root-{token}", user="root", check=False)
    assert denied.returncode != 0


# check -> (the box broken, how, the words of the verify line that fails). A lab's mistakes: a
# hand-edited exports file opened to everyone, the automount switched off, the proof
# directory's owner changed, a node's memory confinement turned off (the check on the
# controller fails naming the node).
DRIFTS = {
    "verify_share_exported": (
        0,
        "echo '/home *(rw,no_root_squash,no_subtree_check)' > "
        "/etc/exports.d/provision-cluster.exports && exportfs -ra",
        "exports the path",
        0,
    ),
    "verify_share_mounted": (
        1,
        "systemctl disable home.automount && systemctl stop home.automount",
        "shared path is the NFS mount",
        1,
    ),
    "verify_job_confined": (
        1,
        "sed -i 's/^ConstrainRAMSpace=yes/ConstrainRAMSpace=no/' /etc/slurm/cgroup.conf && "
        "systemctl restart slurmd",
        "is held to them on every node",
        0,
    ),
    "verify_shared_home_job": (
        0,
        "chown root:root /home/.provision-check",
        "a batch job writes a file",
        0,
    ),
}


# check -> what its failing line says, beyond "failed" ({b}: the broken box's name): the
# confinement check must fail for the memory limit, not for a node still restarting.
WHY = {
    "verify_job_confined": "{b}: the job asked for 64 MiB and may use all the memory "
    "(ConstrainRAMSpace)",
}


@pytest.mark.parametrize("check", sorted(DRIFTS))
def test_drift_is_planned_and_repaired(lab, check):
    broken, command, words, failing = DRIFTS[check]
    hosts = lab["hosts"]
    ssh(hosts[broken], command, user="root")
    before = run(lab, "verify", "cluster", "--host", "lab", check_rc=1).stdout
    failed = line_of(before, hosts[failing].name, words)
    assert failed.split()[2] == "failed", before
    assert WHY.get(check, "").format(b=hosts[broken].name) in failed, failed
    plan = run(lab, "cluster", "--host", "lab", "--plan", "--detailed-exitcode", check_rc=3)
    planned = [ln for ln in plan.stdout.splitlines() if " planned " in ln]
    assert [ln.split()[0] for ln in planned] == [hosts[broken].name], plan.stdout
    run(lab, "cluster", "--host", "lab")
    run(lab, "cluster", "--host", "lab", "--plan", "--detailed-exitcode")
    after = run(lab, "verify", "cluster", "--host", "lab").stdout
    assert line_of(after, hosts[failing].name, words).split()[2] == "passed", after


def test_an_account_has_one_uid_and_logs_in_on_the_other_box_with_keys_from_the_share(lab):
    """users.accounts in a cluster (`provision users` reads every box too): the same UID:GID
    on both boxes; the home and its keys made on the box that shares /home, none on the other
    (root is squashed there); the account logs in on the other box with the keys in its
    shared home."""
    a, b = lab["hosts"]
    pub = f"{a.key_file}.pub"
    write_lab(lab["work"], [a, b], {"users.accounts": "alice", "users.authorized_keys": pub})
    try:
        run(lab, "users", "--host", "lab")
        ids = {ssh(h, "id -u alice; id -g alice", user="root").stdout.split()[0] for h in (a, b)}
        assert len(ids) == 1, f"alice's UID differs: {ids}"
        assert ssh(b, "id -un", user="alice").stdout.strip() == "alice"
        owner = ssh(b, "stat -c %U /home/alice/.ssh/authorized_keys", user="alice").stdout
        assert owner.strip() == "alice"
        for step in ("users", "cluster"):
            again = run(lab, step, "--host", "lab", "--plan", "--detailed-exitcode")
            assert "planned" not in again.stdout, again.stdout
        out = run(lab, "verify", "users", "--host", "lab").stdout
        assert line_of(out, b.name, "authorized_keys hold the keys").split()[2] == "passed", out
    finally:
        write_lab(lab["work"], [a, b])


def test_a_mount_that_locks_the_login_out_is_undone(lab):
    """The login user's keys are not in the server's copy of its home: after the mount a
    fresh login to the other box fails, so the box undoes the mount (lazily: the session's
    own directory was in it) and stays reachable with its own /home."""
    a, b = lab["hosts"]
    write_lab(lab["work"], [a, b], root_on_first=True)  # the server stays reachable as root
    keys = f"/home/{b.user}/.ssh/authorized_keys"
    ssh(b, "systemctl disable --now home.automount; systemctl stop home.mount; "
           "umount -l /home 2>/dev/null; rm -f /etc/systemd/system/home.mount "
           "/etc/systemd/system/home.automount; systemctl daemon-reload", user="root")  # fmt: skip
    assert ssh(b, "true", user=b.user).returncode == 0  # b's own /home again
    ssh(a, f"mv {keys} {keys}.away", user="root")
    try:
        out = run(lab, "cluster", "--host", "lab", check_rc=1)
        text = out.stdout + out.stderr
        assert "a fresh login" in text and "failed" in text, text
        assert "the old configuration was restored" in text, text
        assert ssh(b, "true", user=b.user, timeout=60).returncode == 0
        left = ssh(b, "findmnt -n -t nfs4,autofs --mountpoint /home; "
                      "ls /etc/systemd/system/home.mount 2>&1", user="root", check=False)  # fmt: skip
        assert "nfs4" not in left.stdout and "autofs" not in left.stdout, left.stdout
        assert "No such file" in left.stdout, left.stdout
    finally:
        ssh(a, f"mv {keys}.away {keys}", user="root", check=False)
        write_lab(lab["work"], [a, b])
    run(lab, "cluster", "--host", "lab")
    out = run(lab, "verify", "cluster", "--host", "lab").stdout
    assert line_of(out, b.name, "shared path is the NFS mount").split()[2] == "passed", out

"""The cluster step on boxes on a LAN: a controller and a node (then a third box), Debian 12
containers each with its own address and name (tests/hosts/lan.py), reached over real SSH.

Expectations from outside the code: Slurm's own tools on the boxes (`sinfo` states, `srun -N`
running `hostname` on every node, `munge -n | unmunge`), the files' modes as `stat` prints
them, and the refusals happening before anything is installed (`dpkg-query` on every box).
jobs are not confined by cgroups here (cluster.cgroups=false): the containers run on this
machine's cgroup hierarchy, not one of their own; confinement is left to a real box.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest
from common import ssh

from hostrun import provision_runner, require_lan_tier

pytestmark = pytest.mark.container
ADDRS = ("10.77.1.11", "10.77.1.12", "10.77.1.13", "10.77.1.14")
SETTINGS = {
    "cluster.cgroups": "false",
    "base.packages": "ca-certificates",
    "base.kernel_headers": "false",
    "base.unattended_upgrades": "false",
}


def host_line(host) -> str:
    return (
        f"{host.name} ansible_host={host.addr} ansible_port={host.port} ansible_user={host.user} "
        f"ansible_ssh_private_key_file={host.key_file} provision_known_hosts={host.known_hosts}"
    )


def write_lab(path, hosts, proxy: str, extra: dict | None = None):
    """The lab's inventory: every box in [lab], the first one the controller."""
    values = {**SETTINGS, "base.apt_proxy": proxy, "cluster.controller": hosts[0].name}
    values.update(extra or {})
    lines = ["[lab]", *(host_line(h) for h in hosts), "", "[lab:vars]"]
    lines += [f"{k}={v}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def lab(require_tier, tmp_path_factory):
    """A LAN with a controller and one node (Debian 12); the test adds a third."""
    require_lan_tier(require_tier)
    import container
    import lan

    tag = uuid.uuid4().hex[:4]
    name = f"cl{tag}"
    hosts = []
    try:
        record = lan.create(name, subnet="10.77.1.0/24")
        for i in range(2):
            hosts.append(container.up(f"n{i + 1}-{tag}", lan=name, lan_addr=ADDRS[i]))
        work = tmp_path_factory.mktemp("lab")
        yield {"lan": name, "hosts": hosts, "proxy": record["proxy"], "work": work, "tag": tag}
    finally:
        for host in hosts:
            container.down(host.name)
        lan.destroy(name)


def run(lab, *args, check_rc=0):
    inv = lab["work"] / "inventory.ini"
    return provision_runner(lab["hosts"][0], lab["work"] / "logs")(
        *args, "-i", str(inv), check_rc=check_rc, timeout_s=1800
    )


def installed(host, package: str) -> bool:
    out = ssh(host, f"dpkg-query -W -f '${{db:Status-Abbrev}}' {package}", check=False)
    return out.stdout.startswith("ii")


def test_a_uid_conflict_is_refused_before_anything_is_installed(lab):
    a, b = lab["hosts"]
    write_lab(lab["work"] / "inventory.ini", [a, b], lab["proxy"])
    ssh(a, "useradd -u 1500 -m alice", user="root")
    ssh(b, "useradd -u 1501 -m alice", user="root")
    try:
        proc = run(lab, "cluster", "--host", "lab", check_rc=1)
        text = proc.stdout + proc.stderr
        assert "account alice has different UID:GID" in text, text
        assert f"{a.name} 1500:1500" in text and f"{b.name} 1501:1501" in text
        assert "nothing was changed on any box" in text
        assert not installed(a, "munge") and not installed(b, "munge")
    finally:
        ssh(a, "userdel -r alice", user="root", check=False)
        ssh(b, "userdel -r alice", user="root", check=False)


def test_a_version_mix_outside_the_window_is_refused_before_anything_is_installed(lab):
    import container

    a, b = lab["hosts"]
    newer = container.up(f"tx-{lab['tag']}", lan=lab["lan"], lan_addr=ADDRS[3], release="trixie")
    try:
        write_lab(lab["work"] / "inventory.ini", [a, b, newer], lab["proxy"])
        proc = run(lab, "cluster", "--host", "lab", check_rc=1)
        text = proc.stdout + proc.stderr
        assert f"{newer.name}: Slurm 24.11 is newer than the controller {a.name}'s 22.05" in text
        assert not any(installed(h, "munge") for h in (a, b, newer))
    finally:
        container.down(newer.name)


def test_the_cluster_converges_and_runs_jobs_on_every_node(lab):
    a, b = lab["hosts"]
    write_lab(lab["work"] / "inventory.ini", [a, b], lab["proxy"])
    run(lab, "base", "--host", "lab")
    proc = run(lab, "cluster", "--host", "lab")
    assert "reading the 2 boxes" in proc.stdout + proc.stderr
    again = run(lab, "cluster", "--host", "lab", "--plan", "--detailed-exitcode")
    assert "planned" not in again.stdout, again.stdout
    out = run(lab, "verify", "cluster", "--host", "lab")  # exit 0: nothing failed
    srun_lines = [ln for ln in out.stdout.splitlines() if "srun -N<all nodes>" in ln]
    assert sorted(ln.split()[2] for ln in srun_lines) == ["passed", "skipped"], out.stdout
    srun = ssh(a, "srun -N2 hostname -s", user="root", timeout=120)
    assert sorted(srun.stdout.split()) == sorted([a.name, b.name])
    for host in (a, b):
        stat = ssh(host, "stat -c '%a %U %G' /etc/munge/munge.key", user="root").stdout.split()
        assert stat == ["400", "munge", "munge"]
    sums = {ssh(h, "sha256sum /etc/munge/munge.key", user="root").stdout.split()[0] for h in (a, b)}
    assert len(sums) == 1, "the node's munge key is not the controller's"
    conf = {
        ssh(h, "sha256sum /etc/slurm/slurm.conf", user="root").stdout.split()[0] for h in (a, b)
    }
    assert len(conf) == 1, "slurm.conf differs between the boxes"


def test_the_key_is_in_no_transcript_and_no_output(lab):
    a, _b = lab["hosts"]
    key64 = ssh(a, "base64 -w0 /etc/munge/munge.key", user="root").stdout.strip()
    assert len(key64) > 40
    logs = lab["work"] / "logs"
    found = subprocess.run(["grep", "-rlF", key64[:40], str(logs)], capture_output=True, text=True)
    assert found.stdout == "", f"the munge key is in {found.stdout}"
    assert any(logs.iterdir())


def test_a_node_added_to_the_group_joins_on_the_next_run(lab):
    import container

    a, b = lab["hosts"]
    c = container.up(f"n3-{lab['tag']}", lan=lab["lan"], lan_addr=ADDRS[2])
    lab["hosts"].append(c)
    write_lab(lab["work"] / "inventory.ini", [a, b, c], lab["proxy"])
    run(lab, "base", "--host", c.name)
    run(lab, "cluster", "--host", "lab")
    srun = ssh(a, "srun -N3 hostname -s", user="root", timeout=120)
    assert sorted(srun.stdout.split()) == sorted([a.name, b.name, c.name])
    again = run(lab, "cluster", "--host", "lab", "--plan", "--detailed-exitcode")
    assert again.returncode == 0


# check -> (the box broken, how, the box whose verify line fails). Each break is one a lab
# meets: a key copied by hand, a daemon stopped, a node's slurm.conf edited (its slurmd on
# another port: the controller cannot reach it).
DRIFTS = {
    "verify_munge": (
        1,
        "head -c 1024 /dev/urandom > /etc/munge/munge.key; systemctl restart munge",
        1,
    ),
    "verify_node_idle": (2, "systemctl disable --now slurmd", 2),
    "verify_srun_everywhere": (
        1,
        "sed -i 's/^MpiDefault=none/MpiDefault=none\\nSlurmdPort=6819/' /etc/slurm/slurm.conf"
        " && systemctl restart slurmd",
        0,
    ),
}
DESCRIBED = {
    "verify_munge": "munge works here",
    "verify_node_idle": "this box is a Slurm node in state idle",
    "verify_srun_everywhere": "srun -N<all nodes> hostname",
}


def verify_line(out: str, host: str, check: str) -> str:
    return next(
        ln for ln in out.splitlines() if ln.startswith(host + " ") and DESCRIBED[check] in ln
    )


@pytest.mark.parametrize("check", sorted(DRIFTS))
def test_drift_is_planned_and_repaired(lab, check):
    broken, command, failing = DRIFTS[check]
    hosts = lab["hosts"]
    assert len(hosts) == 3, "runs after the third box joined"
    ssh(hosts[broken], command, user="root")
    before = run(lab, "verify", "cluster", "--host", "lab", check_rc=1)
    assert verify_line(before.stdout, hosts[failing].name, check).split()[2] == "failed"
    plan = run(lab, "cluster", "--host", "lab", "--plan", "--detailed-exitcode", check_rc=3)
    planned = [ln for ln in plan.stdout.splitlines() if " planned " in ln]
    assert [ln.split()[0] for ln in planned] == [hosts[broken].name], plan.stdout
    run(lab, "cluster", "--host", "lab")
    run(lab, "cluster", "--host", "lab", "--plan", "--detailed-exitcode")
    after = run(lab, "verify", "cluster", "--host", "lab")
    assert verify_line(after.stdout, hosts[failing].name, check).split()[2] == "passed"


def test_status_and_doctor_show_the_cluster_and_a_running_job(lab):
    a = lab["hosts"][0]
    names = sorted(h.name for h in lab["hosts"])
    job = ssh(a, "sbatch --parsable -N1 --wrap 'sleep 60'", user="root").stdout.strip()
    try:
        ssh(a, f"for i in $(seq 30); do squeue -h -j {job} -o %T | grep -q RUNNING && exit 0; "
               "sleep 1; done; exit 1", user="root")  # fmt: skip
        out = run(lab, "status", "--host", "lab").stdout
        assert out.count("SLURM NODE") == 1, out
        rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.split()}
        assert all(rows[n][1] in ("idle", "alloc", "mix") for n in names), out
        assert rows[job][1:4] == ["root", "RUNNING", "1"], out
        doctor = run(lab, "doctor", "--host", a.name, check_rc=None).stdout
        assert "slurmctld answers" in doctor and "none down or drained" in doctor, doctor
    finally:
        ssh(a, f"scancel {job}", user="root", check=False)

"""The cluster step and its group phase (provision/group.py, provision/steps/cluster.py).

Expectations from outside the code: `slurmd -C` of Debian 12's slurmd on this machine (the
group phase must count CPUs and memory as slurmd does, before slurmd is installed), Debian's
slurmctld 22.05.8 reading the rendered slurm.conf (skipped where it is not installed), the
packaging's paths (/etc/slurm, /etc/munge/munge.key 0400 munge:munge: munge.postinst), and
the inventory rules of the issue (`cluster.controller` names the controller, which must name
itself). The real cluster runs in tests/container/test_cluster_on_container.py.
"""

import getpass
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from test_slurm import run_slurmctld

from declared import check_declared, recorded
from fakes import FakeRemote
from provision import config, group, inventory, slurm
from provision.changes import Result, Upload
from provision.errors import ConfigError, ProvisionError
from provision.steps import base, cluster
from provision.templates import render
from provision.transport import Remote

TEMPLATE_EXAMPLES = {
    "cluster/slurm.conf.j2": {
        "cluster_name": "lab",
        "controller": "box1",
        "nodes": [
            "NodeName=box1 CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 "
            "ThreadsPerCore=1 RealMemory=3840 State=UNKNOWN"
        ],
        "gres_types": "",
        "partition": "main",
        "cgroups": True,
    },
    "cluster/gres.conf.j2": {"lines": ["NodeName=box2 Name=gpu File=/dev/nvidia0"]},
    "cluster/cgroup.conf.j2": {},
}
INVENTORY = """[lab]
box1 ansible_host=192.0.2.11
box2 ansible_host=192.0.2.12
box3 ansible_host=192.0.2.13

[lab:vars]
cluster.controller = box1
"""


def member_text(hostname="box1", cpus=("0,0,0", "1,1,0"), mem_kb=4_000_000, gpus=0,
                packages="", os="debian-12", accounts="alice:1000:1000", munge="", clock=1000,
                groups="alice:1000"):  # fmt: skip
    """READ's output as a host prints it."""
    m = group.MARK
    return "\n".join([
        f"{m}hostname", hostname, f"{m}cpus", "# CPU,Core,Socket", *cpus, f"{m}memory",
        str(mem_kb), f"{m}gpus", str(gpus), f"{m}packages", packages, f"{m}candidate",
        "(none)", f"{m}os", os, f"{m}accounts", accounts, f"{m}groups", groups, f"{m}munge", munge,
        f"{m}clock",
        str(clock), "",
    ])  # fmt: skip


# --- the group phase's read ---------------------------------------------------------------


def test_the_read_counts_cpus_and_memory_as_slurmd_does_on_this_box():
    if not shutil.which("slurmd"):
        pytest.skip("Debian's slurmd is not installed here (apt-get install slurmd): the "
                    "comparison with slurmd -C needs it")  # fmt: skip
    out = subprocess.run(["bash", "-c", group.READ], capture_output=True, text=True).stdout
    member = group.parse_member("here", out)
    expected = slurm.parse_slurmd_c(subprocess.check_output(["slurmd", "-C"], text=True))
    assert member.hardware == expected
    assert member.release == "22.05"
    assert member.accounts["slurm"] == (64030, 64030)  # Debian's fixed slurm UID


def test_a_two_socket_box_with_hyperthreads():
    # lscpu -p numbers CPUs, cores and sockets; 2 sockets x 4 cores x 2 threads.
    rows = [f"{cpu},{cpu % 8},{(cpu % 8) // 4}" for cpu in range(16)]
    hw = group.hardware(rows, 64 * 1024 * 1024)
    assert (hw.cpus, hw.sockets_per_board, hw.cores_per_socket, hw.threads_per_core) == (
        16, 2, 4, 2,
    )  # fmt: skip
    assert hw.real_memory_mb == 65536


def test_a_hostname_that_cannot_be_a_node_name_is_refused():
    with pytest.raises(ProvisionError, match="cannot be a Slurm node name"):
        group.parse_member("box1", member_text(hostname="box_1;rm"))


def test_the_release_is_the_installed_one_else_the_distributions():
    installed = group.parse_member(
        "b", member_text(packages="slurm-wlm-basic-plugins 22.05.8-4+deb12u3 ii ")
    )
    assert installed.release == "22.05"
    assert group.parse_member("b", member_text(os="debian-13")).release == "24.11"


def test_every_reason_is_named_before_anything_changes():
    members = [
        group.parse_member("box1", member_text("box1", os="debian-12")),
        group.parse_member("box2", member_text("box2", os="debian-13")),  # newer than box1
        group.parse_member("box3", member_text("box2", accounts="alice:1001:1001")),
        group.parse_member("box4", member_text("box4", clock=5000)),
    ]
    found = group.problems(members, "box1", now_s=1000, max_skew_s=60)
    text = "\n".join(found)
    assert "box3 and box2 both call themselves 'box2'" in text
    assert "box2: Slurm 24.11 is newer than the controller box1's 22.05" in text
    assert "account alice has different UID:GID" in text and "box3 1001:1001" in text
    assert "box4: its clock is 4000 s off" in text
    assert len(found) == 4


def test_a_debian_13_controller_and_debian_12_nodes_are_four_releases_apart():
    # 22.05 -> 23.02, 23.11, 24.05, 24.11: one more than 24.11's window of three.
    members = [
        group.parse_member("box1", member_text("box1", os="debian-13")),
        group.parse_member("box2", member_text("box2", os="debian-12")),
    ]
    (found,) = group.problems(members, "box1", now_s=1000, max_skew_s=60)
    assert "box2: Slurm 22.05 is 4 major releases behind the controller box1's 24.11" in found


def test_boxes_of_one_release_form_a_cluster():
    members = [group.parse_member(h, member_text(h)) for h in ("box1", "box2")]
    assert group.problems(members, "box1", now_s=1000, max_skew_s=60) == []


# --- which hosts form the cluster (config time) -------------------------------------------


def load(text: str, hosts: list[str], tmp_path: Path):
    path = tmp_path / "inventory.ini"
    path.write_text(text)
    return config.load_hosts(inventory.load(path), hosts)


def test_one_box_of_the_group_carries_every_member(tmp_path):
    (hc,) = load(INVENTORY, ["box2"], tmp_path)
    assert [m.name for m in group.members_of(hc)] == ["box1", "box2", "box3"]


def test_a_controller_that_is_no_inventory_host_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="'box9' is not a host of the inventory") as exc:
        load(INVENTORY.replace("= box1", "= box9"), ["box2"], tmp_path)
    assert exc.value.where.endswith("inventory.ini:7")


def test_a_controller_outside_its_own_cluster_is_a_config_error(tmp_path):
    text = INVENTORY.replace("box1 ansible_host=192.0.2.11", "box1 ansible_host=192.0.2.11 "
                             "cluster.controller=box2")  # fmt: skip
    with pytest.raises(ConfigError, match="controller box1 is not in its own cluster"):
        load(text, ["box3"], tmp_path)


# --- the step on one box ------------------------------------------------------------------


def plan_for(members, key=None):
    settings = {m.host: cluster.Settings(controller="box1") for m in members}
    decided = group.decide(members, settings, "box1")
    return group.with_key(decided, key, "a" * 64) if key else decided


MEMBERS = [
    group.parse_member("box1", member_text("box1", munge="a" * 64)),
    group.parse_member("box2", member_text("box2", gpus=2)),
]


def node_remote(munge_sum=""):
    r = FakeRemote()
    r.on(r"sha256sum /etc/munge/munge.key", munge_sum + "\n")
    r.on(r"getent ahostsv4", "192.0.2.11 STREAM box1\n")
    r.on(r"systemctl show", "UnitFileState=disabled\nActiveState=inactive\n")
    r.on(r"stat -c .*--", (1, ""))
    return r


def settings_for(host_plan, host="box2"):
    return {
        "cluster": cluster.Settings(controller="box1"),
        "base": base.Settings(),
        group.PLAN: host_plan,
    }


def node_check(host_plan, remote):
    facts = recorded("debian-12-nspawn.txt")
    return check_declared(cluster.STEP, facts, settings_for(host_plan), remote)


def test_a_fresh_node_gets_slurmd_the_same_files_and_the_controllers_key():
    # declared.context names the box "box"; the plan names it box2 (a node, not the controller)
    changes = node_check(plan_for(MEMBERS, key=b"k" * 1024), node_remote())
    summaries = [c.summary for c in changes]
    assert summaries[0] == "install 3 packages: munge, slurmd, slurm-client"
    uploads = {a.dest: a for c in changes for a in c.actions if isinstance(a, Upload)}
    conf = uploads[cluster.SLURM_CONF].content.decode()
    assert "SlurmctldHost=box1\n" in conf
    assert (
        "NodeName=box2 CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 "
        "RealMemory=3650 Gres=gpu:2 State=UNKNOWN\n" in conf
    )  # 4_000_000 kB = 3906 MiB, less the 256 MiB minimum margin
    assert "GresTypes=gpu" in conf and "Gres=gpu:2" in conf
    assert uploads[cluster.GRES_CONF].content.decode().count("File=/dev/nvidia") == 2
    key = uploads[group.MUNGE_KEY]
    assert (key.mode, key.owner, key.group, key.content) == ("0400", "munge", "munge", b"k" * 1024)
    munge_change = next(c for c in changes if group.MUNGE_KEY in c.summary)
    assert "k" * 32 not in munge_change.diff  # a secret's content is never diffed
    assert "start slurmd" in summaries and "enable munge at boot" in summaries


def test_the_plan_shows_the_key_copy_without_the_key():
    changes = node_check(plan_for(MEMBERS), node_remote(munge_sum="b" * 64))
    copy = [c for c in changes if "munge key" in c.summary]
    assert (
        copy
        and copy[0].summary == "copy box1's munge key to /etc/munge/munge.key (0400 munge:munge)"
    )


def test_a_node_with_the_controllers_key_keeps_it():
    changes = node_check(plan_for(MEMBERS), node_remote(munge_sum="a" * 64))
    assert not [c for c in changes if "munge key" in c.summary]


def test_a_name_that_does_not_resolve_is_refused_before_any_change():
    r = node_remote()
    r.on(r"getent ahostsv4", (2, ""))
    assert node_check(plan_for(MEMBERS), r) is None  # check_declared: refused (a decision)


def test_slurmctld_reads_the_rendered_slurm_conf(tmp_path):
    """Debian's slurmctld starts its cluster from the template's slurm.conf (Debian's paths
    moved into tmp_path, its own port), and its gres.conf."""
    if not shutil.which("slurmctld"):
        pytest.skip("Debian's slurmctld is not installed here (apt-get install slurmctld)")
    here = socket.gethostname()
    members = [group.parse_member("box1", member_text(here)), MEMBERS[1]]
    p = plan_for(members)
    conf = render("cluster/slurm.conf.j2", **cluster.rendered(p, cluster.Settings())).decode()
    for path in ("/var/lib/slurm", "/run", "/var/log/slurm"):
        conf = conf.replace(f"={path}/", f"={tmp_path}/")
    conf = conf.replace("SlurmUser=slurm", f"SlurmUser={getpass.getuser()}")
    conf += "SlurmctldPort=16818\n"
    (tmp_path / "slurmctld").mkdir()
    (tmp_path / "slurm.conf").write_text(conf)
    gres = [g for n in p.nodes for g in n.gres]
    (tmp_path / "gres.conf").write_bytes(render("cluster/gres.conf.j2", lines=gres))
    (tmp_path / "cgroup.conf").write_bytes(render("cluster/cgroup.conf.j2"))
    out = run_slurmctld(tmp_path / "slurm.conf")
    assert "started on cluster cluster" in out, out
    assert "fatal" not in out and "error: Parse" not in out, out


# --- the munge key never reaches a transcript ---------------------------------------------


class KeyRemote(Remote):
    def __init__(self):
        from provision.connection import Connection

        self.lines = []
        super().__init__(Connection(host="box1", addr="192.0.2.1", user="root"),
                         log=self.lines.append)  # fmt: skip
        self.is_root = True

    def _exec(self, command, timeout_s, stdin):
        # the key read, and any later command printing the same text
        return Result(0, "c2VjcmV0LWtleS1ieXRlcy0wMTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcA==\n")


def test_the_key_read_is_withheld_from_the_transcript_and_masked_after():
    remote = KeyRemote()
    key = group.read_key(remote)
    assert key.startswith(b"secret-key-bytes")
    remote.run("echo later", check=False)  # a later command printing the same text
    logged = "\n".join(remote.lines)
    assert "c2VjcmV0" not in logged
    assert "output withheld: a secret" in logged and "***" in logged


def test_a_missing_key_is_an_error_naming_the_fix():
    remote = KeyRemote()
    remote._exec = lambda c, t, s: Result(1, "", "base64: No such file or directory")
    with pytest.raises(ProvisionError):
        group.read_key(remote)


def test_plan_is_never_repr_with_the_key():
    p = plan_for(MEMBERS, key=b"topsecret" * 8)
    assert "topsecret" not in repr(p)

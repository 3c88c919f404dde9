"""provision/slurm.py: what the lab's boxes must agree on to be one Slurm cluster.

Expectations come from outside the code: Slurm's upgrade guide (slurm.schedmd.com/upgrades.html:
two earlier major releases, three from 24.11, e.g. "slurmdbd 25.11.x is capable of accepting
messages from ... 25.11.x, 25.05.x, 24.11.x, or 24.05.x"; slurmd not newer than slurmctld),
Debian's Packages (bookworm slurm-wlm 22.05.8-4+deb12u3, trixie 24.11.5-4+deb13u1), the
output of the real `slurmd -C` 22.05.8 on a Debian 12 machine (tests/data/slurm), and, where
Debian's slurmctld is installed, slurmctld itself reading the node lines.
"""

import getpass
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from provision import slurm

DATA = Path(__file__).parent.parent / "data" / "slurm"


@pytest.mark.parametrize(
    "controller, node, ok",
    [
        ("25.11", "24.05", True),  # the guide's own example: three back from 24.11 on
        ("25.11", "23.11", False),
        ("24.11", "23.11", True),
        ("24.11", "22.05", False),  # Debian 13 controller, Debian 12 node: four back
        ("23.11", "22.05", True),  # Ubuntu 24.04 controller, Debian 12 node: two back
        ("23.11", "21.08", False),  # Ubuntu 24.04 controller, Ubuntu 22.04 node: three back
        ("23.02", "21.08", True),
        ("22.05", "24.11", False),  # a node newer than its controller
    ],
)
def test_the_compatibility_window(controller, node, ok):
    problems = slurm.version_problems({"box1": controller, "box2": node}, "box1")
    assert (problems == []) is ok, problems
    if not ok:
        assert problems[0].startswith(f"box2: Slurm {node} is ")


def test_a_debian_12_and_13_mix_is_refused_with_the_reason():
    releases = {"box1": slurm.DISTRIBUTION_SLURM["debian-13"], "box2": "22.05", "box3": "24.11"}
    (problem,) = slurm.version_problems(releases, "box1")
    assert "box2: Slurm 22.05 is 4 major releases behind the controller box1's 24.11" in problem
    assert "talks to 3 earlier ones" in problem


def test_the_debian_versions_reduce_to_their_major_release():
    assert slurm.major("22.05.8-4+deb12u3") == slurm.DISTRIBUTION_SLURM["debian-12"]
    assert slurm.major("24.11.5-4+deb13u1") == slurm.DISTRIBUTION_SLURM["debian-13"]
    assert slurm.major("(none)") == ""


def test_slurmd_c_of_a_real_box_gives_the_node_line():
    hw = slurm.parse_slurmd_c((DATA / "slurmd-C-22.05.8-debian12.txt").read_text())
    assert hw == slurm.NodeHardware(2, 1, 1, 2, 1, 24105)
    line = slurm.node_line("box1", hw, 2, addr="10.0.0.11")
    assert line == (
        "NodeName=box1 NodeAddr=10.0.0.11 CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 "
        "ThreadsPerCore=1 RealMemory=23623 Gres=gpu:2 State=UNKNOWN"
    )  # 2 % of 24105 MiB kept back: a little less memory after a kernel update does not drain it


def test_a_small_box_keeps_at_least_the_minimum_margin():
    assert slurm.configured_memory_mb(4000) == 4000 - slurm.MEMORY_MARGIN_MIN_MB


def test_slurmd_c_without_a_node_line_is_an_error():
    with pytest.raises(ValueError, match="no node line"):
        slurm.parse_slurmd_c("slurmd: error: something\n")


def test_gres_nvml_only_with_its_plugin_else_device_files_and_nothing_without_gpus():
    assert slurm.gres_lines("box1", 2, True) == ["NodeName=box1 AutoDetect=nvml"]
    assert slurm.gres_lines("box1", 2, False) == [
        "NodeName=box1 Name=gpu File=/dev/nvidia0",
        "NodeName=box1 Name=gpu File=/dev/nvidia1",
    ]
    assert slurm.gres_lines("head", 0, True) == []


def test_id_conflicts_name_the_account_and_each_hosts_numbers():
    accounts = {
        "box1": {"alice": (1001, 1001), "bob": (1002, 1002)},
        "box2": {"alice": (1001, 1001), "bob": (1003, 1003)},
        "box3": {"alice": (1001, 1001)},
    }
    (problem,) = slurm.id_conflicts(accounts)
    assert problem.startswith(
        "account bob has different UID:GID on the boxes (box1 1002:1002, box2 1003:1003)"
    )
    assert slurm.id_conflicts({"box1": {"a": (5, 5)}, "box2": {"a": (5, 5)}}) == []


# A minimal configuration of this test's own around the node lines (Debian's paths moved into
# tmp_path; the cluster step's slurm.conf template lands with the step).
CONF = """ClusterName=lab
SlurmctldHost={here}
AuthType=auth/munge
SlurmUser={user}
StateSaveLocation={tmp}/state
SlurmctldLogFile={tmp}/slurmctld.log
SlurmctldPidFile={tmp}/slurmctld.pid
SlurmctldPort=16817
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MailProg=/bin/true
GresTypes=gpu
{nodes}
PartitionName=main Nodes=ALL Default=YES State=UP
"""


def run_slurmctld(conf) -> str:
    """What Debian's slurmctld prints in its first seconds on this slurm.conf (then stopped)."""
    proc = subprocess.Popen(["slurmctld", "-D", "-v", "-f", str(conf)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=6)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    return out


def test_slurmctld_accepts_the_node_lines(tmp_path):
    """Debian's own slurmctld parses the node lines and starts its cluster (it runs a few
    seconds, then this test stops it); a bad node line stops it with 'fatal'."""
    if not shutil.which("slurmctld"):
        pytest.skip("Debian's slurmctld is not installed here (apt-get install slurmctld); "
                    "README: run by hand")  # fmt: skip
    hw = slurm.parse_slurmd_c((DATA / "slurmd-C-22.05.8-debian12.txt").read_text())
    here = socket.gethostname()
    nodes = [slurm.node_line(here, hw, 0, "127.0.0.1"), slurm.node_line("box2", hw, 2, "127.0.0.2")]
    (tmp_path / "state").mkdir()
    conf = tmp_path / "slurm.conf"
    conf.write_text(CONF.format(here=here, user=getpass.getuser(), tmp=tmp_path,
                                nodes="\n".join(nodes)))  # fmt: skip
    gres = slurm.gres_lines("box2", 2, False)
    (tmp_path / "gres.conf").write_text("".join(f"{line}\n" for line in gres))
    out = run_slurmctld(conf)
    assert "started on cluster lab" in out, out
    assert "fatal" not in out and "error: Parse" not in out, out

"""doctor's Slurm rows (provision/doctor/cluster.py) on a box of a cluster.

The texts are what `scontrol ping` and `sinfo -h -N -o '%N|%t|%E'` print on Debian 12's Slurm
22.05: `Slurmctld(primary) at box1 is UP` / `is DOWN` (seen on the container tier with a
node's munge key replaced), states idle/mix/drain/down*, and slurmctld's own drain reasons
as its users report them ("gres/gpu count reported lower than configured (0 < 4)", "Low
RealMemory", "Not responding").
"""

import dataclasses

from test_doctor import HEALTHY, load

from provision import doctor


def slurm_rows(ping: str, nodes: tuple[str, ...] = ()):
    data, facts = load(HEALTHY)
    data = dataclasses.replace(data, slurm_ping=ping, slurm_nodes=nodes)
    return [f for f in doctor.findings(data, doctor.Settings(), facts) if f.area == "slurm"]


UP = "Slurmctld(primary) at box1 is UP\nexit=0\n"


def test_no_row_on_a_box_outside_a_cluster():
    assert slurm_rows("") == []


def test_a_healthy_cluster_is_one_ok_row():
    (row,) = slurm_rows(UP, ("box1|idle|none", "box2|mix|none"))
    assert row.status == "ok" and "2 node(s), none down or drained" in row.reason


def test_a_controller_that_refuses_this_box_fails_with_the_key_fix():
    (row,) = slurm_rows("Slurmctld(primary) at box1 is DOWN\nexit=1\n")
    assert row.status == "fail"
    assert "munge key other than the controller's" in row.reason
    assert "provision cluster" in row.fix


def test_drained_and_down_nodes_each_get_slurms_reason_and_the_fix():
    rows = slurm_rows(
        UP,
        (
            "box1|idle|none",
            "box2|drain|gres/gpu count reported lower than configured (0 < 4)",
            "box3|down*|Not responding",
            "box4|drain|Low RealMemory",
        ),
    )
    assert [r.status for r in rows] == ["warn", "warn", "warn"]
    by_node = {r.reason.split()[1]: r for r in rows}
    assert "(0 < 4)" in by_node["box2"].reason and "GPUs" in by_node["box2"].fix
    assert "state=resume" in by_node["box2"].fix
    assert "munge key" in by_node["box3"].fix
    assert "less memory" in by_node["box4"].fix


def test_a_node_not_responding_but_idle_is_a_warning():
    (row,) = slurm_rows(UP, ("box2|idle*|none",))
    assert row.status == "warn" and row.reason == "node box2 is idle*"

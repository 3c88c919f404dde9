"""`provision status` on boxes of a Slurm cluster: the nodes and jobs table.

The lines are in the formats the status script asks for (sinfo(1) `-o '%N|%t|%G|%E'`:
node, compact state, gres, reason; squeue(1) `-o '%i|%u|%T|%D|%b|%N|%r'`: job id, user,
state, node count, tres per node, nodes, reason), with states and gres as the man pages and
Debian 12's Slurm 22.05 print them (`idle`, `mix`, `drain`, `down*`; `gpu:2`, `(null)`,
`gres:gpu:1`, `N/A`). The container tier runs the real sinfo/squeue
(tests/container/test_cluster_on_container.py).
"""

from provision.status import parse
from provision.status.show import cluster_lines, render

SINFO = [
    "box1|mix|gpu:2|none",
    "box2|drain|gpu:4|gres/gpu count reported lower than configured (0 < 4)",
    "box3|down*|(null)|Not responding",
    "box1|mix|gpu:2|none",  # a second partition: the same node again
]
SQUEUE = [
    "41|alice|RUNNING|1|gres:gpu:1|box1|None",
    "42|bob|PENDING|2|gres:gpu:2|  |Resources",
    "43|carol|RUNNING|1|N/A|box1|None",
    "garbage line",
]


def status_text(nodes, jobs) -> str:
    return "\n".join(["@@slurm-nodes", *nodes, "@@slurm-jobs", *jobs, ""])


def test_nodes_with_state_gpus_and_the_drain_reason():
    st = parse("box1", status_text(SINFO, SQUEUE))
    assert [(n.name, n.state) for n in st.slurm_nodes] == [
        ("box1", "mix"), ("box2", "drain"), ("box3", "down*"),
    ]  # fmt: skip
    text = "\n".join(cluster_lines([st]))
    assert "gres/gpu count reported lower than configured (0 < 4)" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("box2"))
    assert row.split()[:3] == ["box2", "drain", "4"]


def test_jobs_with_gpus_per_node_where_they_run_and_why_they_wait():
    st = parse("box1", status_text(SINFO, SQUEUE))
    assert [j.job_id for j in st.slurm_jobs] == ["41", "42", "43"]  # the garbage line dropped
    lines = cluster_lines([st])
    rows = {ln.split()[0]: ln.split() for ln in lines if ln[:2] in ("41", "42", "43")}
    assert rows["41"] == ["41", "alice", "RUNNING", "1", "1", "box1"]
    assert rows["42"] == ["42", "bob", "PENDING", "2", "2", "Resources"]
    assert rows["43"][4] == "-"


def test_a_cluster_is_shown_once_however_many_of_its_boxes_are_asked():
    a = parse("box1", status_text(SINFO, SQUEUE))
    b = parse("box2", status_text(SINFO, SQUEUE))
    text = render([a, b])
    assert text.count("SLURM NODE") == 1 and "seen from box1" in text


def test_a_box_without_slurm_has_no_cluster_table():
    st = parse("box9", "@@slurm-nodes\n")
    assert st.slurm_nodes == [] and "SLURM" not in render([st])


def test_an_idle_cluster_says_no_jobs():
    st = parse("box1", status_text(["box1|idle|(null)|none"], []))
    assert "no jobs running or queued" in "\n".join(cluster_lines([st]))


def test_host_text_is_made_printable():
    st = parse("box1", status_text(["box1|drain|(null)|bad\x1b[31mreason"], []))
    assert "\x1b" not in render([st])

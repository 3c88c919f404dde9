"""The cluster's confinement check reads what a job's cgroup holds on each node.

Expectations from outside the code: the cpuset list format of the kernel's cgroup-v2 docs
("0-4,6,8-10" is nine CPUs), the lines the probe prints run here in a shell against a fake
cgroup tree (the same `sh` the job runs), and what Slurm sets on cgroup v2 (memory.max on the
job's and the step's cgroup, not the task's: Slurm's doc/cgroups v2 "memory.limit_in_bytes ->
memory.max").
"""

from __future__ import annotations

import subprocess

import pytest

from provision.steps import cluster

MIB64 = str(64 * 1024 * 1024)


@pytest.mark.parametrize(
    ("cpuset", "count"), [("0", 1), ("0-4,6,8-10", 9), ("3,5", 2), ("", 0), ("0-1", 2)]
)
def test_cpu_count_reads_the_kernels_list_format(cpuset, count):
    assert cluster.cpu_count(cpuset) == count


def line(node, mem=MIB64, cpus="1", given="1", online="2", cg="/system.slice/job_3/step_0"):
    return f"{node} cgroup={cg} mem={mem} cpus={cpus} given={given} online={online}"


def test_a_job_held_to_its_cpu_and_memory_on_every_node_passes():
    lines = [line("box1"), line("box2", cpus="0")]
    assert cluster.confinement_problems(lines, ["box1", "box2"]) == []


def test_memory_without_a_limit_names_the_node_and_the_setting():
    problems = cluster.confinement_problems([line("box1"), line("box2", mem="max")],
                                            ["box1", "box2"])  # fmt: skip
    assert problems == [
        "box2: the job asked for 64 MiB and may use all the memory (ConstrainRAMSpace)"
    ]


def test_a_limit_above_what_was_asked_is_a_problem():
    big = str(128 * 1024 * 1024)
    (problem,) = cluster.confinement_problems([line("box1", mem=big)], ["box1"])
    assert f"may use {big} bytes" in problem


def test_every_cpu_for_a_one_cpu_job_names_the_node_and_the_setting():
    (problem,) = cluster.confinement_problems([line("box1", cpus="0-1")], ["box1"])
    assert problem == "box1: the job was given 1 of 2 CPUs and may run on 2 (0-1) (ConstrainCores)"


def test_a_node_whose_one_cpu_the_job_was_given_has_no_cores_to_check():
    assert cluster.confinement_problems([line("box1", cpus="0", online="1")], ["box1"]) == []


def test_a_node_with_no_line_and_a_job_in_no_cgroup_are_problems():
    problems = cluster.confinement_problems([line("box1", cg="none")], ["box1", "box2"])
    assert problems == [
        "box2: no line from the job",
        "box1: the job is in no cgroup v2 (a cgroup v1 or hybrid boot)",
    ]


def test_the_probe_finds_the_smallest_limit_above_the_task(tmp_path):
    """The probe, run by sh over a fake /sys/fs/cgroup (the paths rewritten to tmp_path): the
    task's own memory.max is "max", the step's is 64 MiB, the job's larger."""
    root = tmp_path / "cg"
    task = root / "system.slice/job_3/step_0/user/task_0"
    task.mkdir(parents=True)
    (root / "system.slice/memory.max").write_text("max\n")
    (root / "system.slice/job_3/memory.max").write_text(f"{2 * int(MIB64)}\n")
    (root / "system.slice/job_3/step_0/memory.max").write_text(MIB64 + "\n")
    (task / "memory.max").write_text("max\n")
    (task / "cpuset.cpus.effective").write_text("1\n")
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("0::/system.slice/job_3/step_0/user/task_0\n")
    probe = cluster.CONFINED_PROBE.replace("/proc/self/cgroup", str(proc)).replace(
        "/sys/fs/cgroup", str(root)
    )
    out = subprocess.run(
        ["sh", "-c", probe], capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin", "SLURM_CPUS_ON_NODE": "1"},
    )  # fmt: skip
    node, *pairs = out.stdout.split()
    got = dict(p.partition("=")[::2] for p in pairs)
    assert got["mem"] == MIB64 and got["cpus"] == "1" and got["given"] == "1", out.stdout
    assert got["cgroup"] == "/system.slice/job_3/step_0/user/task_0"
    assert cluster.confinement_problems([out.stdout.strip()], [node]) == []

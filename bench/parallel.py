"""Benchmark: no-op `provision all` on N container hosts at once vs one, each behind a delay line.

    sudo python3 bench/parallel.py --hosts 16 --rtt-ms 20 --runs 3

Boots N container hosts (tests/hosts/testhost.py up --rtt-ms: each reached through its own
user-space delay line, tests/hosts/delay.py, since this kernel has no netem), provisions them
all at once (the bench's integration settings: GPU steps off), then interleaves no-op runs of
`provision all` on the first host and on all N (`--parallel N`). Prints a `## parallel hosts`
section and writes it into bench/results.md; bench/run.py's `--parallel N` and `--all` call
`run()`. Every host is torn down at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # bench/run.py: timed, provision_env, machine, write_section

PREFIX = "bench-p"
BOOT_AT_ONCE = 4  # container boots copy a 315 MB rootfs each: a few at a time
HOST_SECONDS = re.compile(r"^# (\d+) commands, ([\d.]+)s$")


def inotify_room(hosts: int) -> None:
    """Refuse early when N more containers cannot boot: each one's systemd, dbus, logind and
    agetty hold about 8 inotify instances, counted against root's fs.inotify.max_user_instances
    (128 by default) shared by every container on this machine; a container past it stops
    while booting."""
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    used = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            used += sum(os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify" for fd in fds)
        except OSError:
            continue
    if used + 8 * hosts > limit:
        raise SystemExit(
            f"{hosts} more containers need about {8 * hosts} inotify instances; {used} of "
            f"fs.inotify.max_user_instances={limit} are in use (other test hosts?). Raise it "
            "(`sysctl fs.inotify.max_user_instances=1024`) or use fewer --hosts"
        )


def host_up(name: str, rtt_ms: float) -> Path:
    """Boot a container host behind a delay line; its inventory."""
    argv = [sys.executable, str(bench.TESTHOST), "up", "--name", name, "--rtt-ms", str(rtt_ms)]
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def merged_inventory(inventories: list[Path], dest: Path) -> Path:
    """One inventory for several testhosts: each host's [testhosts:vars] (its own ssh.port,
    tensorboard.port) moved onto its host line, which keeps the delayed ansible_port and its
    own known_hosts file."""
    lines = ["[testhosts]"]
    for path in inventories:
        host_line, settings = "", []
        section = ""
        for line in path.read_text().splitlines():
            if line.startswith("["):
                section = line
            elif line.strip() and not line.startswith("#"):
                if section == "[testhosts]":
                    host_line = line
                else:
                    settings.append(line.replace(" ", ""))
        lines.append(" ".join([host_line, *settings]))
    dest.write_text("\n".join(lines) + "\n")
    return dest


def provision_multi(inventory: Path, target: str, log_dir: Path, *extra: str) -> float:
    """`provision all` on a host or group; its wall time."""
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "provision", "all", "-i", str(inventory), "--host", target]
    argv += ["--log-dir", str(log_dir), *extra]
    out = log_dir.parent / f"{log_dir.name}.out"
    return bench.timed(argv, env=bench.provision_env(), cwd=bench.WORK, stdout_file=out)


def host_seconds(log_dir: Path) -> list[float]:
    """Each host's own time in a run (the transcripts' last line, `# N commands, Xs`)."""
    found = []
    for transcript in log_dir.iterdir():
        lines = transcript.read_text().rstrip().splitlines()
        match = HOST_SECONDS.match(lines[-1]) if lines else None
        if match:
            found.append(float(match.group(2)))
    return found


STATE = Path(os.environ.get("PROVISION_TESTHOST_STATE", "/tmp/provision-testhosts"))
TICK = os.sysconf("SC_CLK_TCK")


def _ticks(pid: str, children: bool) -> int:
    """utime + stime of a process (and of its reaped children), in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return sum(int(f) for f in fields[11 : 15 if children else 13])


def cpu_now(names: list[str]) -> dict[str, float]:
    """CPU seconds used so far: the whole machine (busy, /proc/stat), provision (this
    process's reaped children), the hosts (each container's sshd listener with its reaped
    children: logins, shells, the commands) and the delay lines."""
    import resource

    roots = set()
    for name in names:
        with contextlib.suppress(OSError):
            st = os.stat(STATE / name / "rootfs")
            roots.add((st.st_dev, st.st_ino))
    hosts = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"[listener]" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            st = os.stat(f"/proc/{pid}/root")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in roots:
            hosts += _ticks(pid, children=True)
    lines = 0
    for name in names:
        with contextlib.suppress(OSError, ValueError, KeyError):
            record = json.loads((STATE / name / "delay.json").read_text())
            lines += _ticks(str(record["pid"]), children=False)
    cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "machine": (sum(cpu) - cpu[3] - cpu[4]) / TICK,
        "provision": usage.ru_utime + usage.ru_stime,
        "hosts": hosts / TICK,
        "delay lines": lines / TICK,
    }


def timed_cpu(names: list[str], call) -> tuple[float, dict[str, float]]:
    """Run `call` (returns its wall time); also the CPU seconds each part used meanwhile."""
    before = cpu_now(names)
    wall = call()
    time.sleep(0.3)  # sshd reaps the sessions' processes just after the client left
    after = cpu_now(names)
    return wall, {k: after[k] - before[k] for k in before}


def cpu_table(one: list[dict], many: list[dict], hosts: int) -> str:
    """Median CPU seconds per no-op run, by part."""
    rows = [
        "| CPU seconds per no-op run (median) | provision (client) | the hosts (sshd, logins, "
        "commands) | delay lines | whole machine (all sessions) |",
        "|---|---|---|---|---|",
    ]
    for label, runs in (("1 host", one), (f"{hosts} hosts", many)):
        cells = [f"{statistics.median(r[k] for r in runs):.2f}" for k in runs[0]]
        rows.append(f"| {label} | {cells[1]} | {cells[2]} | {cells[3]} | {cells[0]} |")
    return "\n".join(rows)


def run(hosts: int, rtt_ms: float, runs: int) -> str:
    """Boot, provision, time no-op runs on one host vs all; the markdown section."""
    bench.WORK.mkdir(parents=True, exist_ok=True)
    names = [f"{PREFIX}{i}" for i in range(1, hosts + 1)]
    inotify_room(hosts)
    load_before = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        bench.log(f"booting {hosts} container hosts behind {rtt_ms:g} ms delay lines")
        with ThreadPoolExecutor(BOOT_AT_ONCE) as pool:
            inventories = list(pool.map(lambda n: host_up(n, rtt_ms), names))
        inventory = merged_inventory(inventories, bench.WORK / f"inventory-p{hosts}.ini")
        many_args = ("--parallel", str(hosts))
        bench.log(f"fresh provision all on {hosts} hosts at once")
        fresh = provision_multi(inventory, "testhosts", bench.WORK / "logs-pfresh", *many_args)
        one, many, one_host, many_host, one_cpu, many_cpu = [], [], [], [], [], []
        for i in range(runs):  # interleaved, so load spikes hit both alike
            wall, cpu = timed_cpu(
                names, lambda: provision_multi(inventory, names[0], bench.WORK / "logs-p1")
            )
            one.append(wall)
            one_cpu.append(cpu)
            one_host += host_seconds(bench.WORK / "logs-p1")
            wall, cpu = timed_cpu(
                names,
                lambda: provision_multi(inventory, "testhosts", bench.WORK / "logs-pn", *many_args),
            )
            many.append(wall)
            many_cpu.append(cpu)
            many_host += host_seconds(bench.WORK / "logs-pn")
            bench.log(f"no-op {i + 1}: 1 host {one[-1]:.2f}s, {hosts} hosts {many[-1]:.2f}s")
    finally:
        with ThreadPoolExecutor(BOOT_AT_ONCE) as pool:
            list(pool.map(bench.host_down, names))
    ratio = statistics.median(many) / statistics.median(one)
    med_one, cores = statistics.median(one), os.cpu_count() or 1
    host_cpu = statistics.median(r["hosts"] for r in many_cpu)
    client_each = (
        statistics.median(r["provision"] for r in many_cpu)
        - statistics.median(r["provision"] for r in one_cpu)
    ) / max(1, hosts - 1)
    verdict = "met" if ratio <= 1.3 else "MISSED"
    command = f"sudo python3 bench/parallel.py --hosts {hosts} --rtt-ms {rtt_ms:g} --runs {runs}"
    return (
        f"## parallel hosts\n\n"
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, `{command}`: "
        f"{hosts} container hosts, each reached through its own delay line adding {rtt_ms:g} ms "
        "of round trip (tests/hosts/delay.py, a user-space TCP relay: this kernel has no "
        f"netem), no-op `provision all --parallel {hosts}` vs one host, {runs} run(s) each, "
        f"interleaved. Machine: {bench.machine()} (load average {load_before} at the start; "
        "the machine is shared: other sessions' work shows in these figures).\n\n"
        "| hosts | median no-op wall (s) | min / max (s) | each host's own time, median / max "
        "(s) | ratio to one host |\n"
        "|---|---|---|---|---|\n"
        f"| 1 | {statistics.median(one):.2f} | {min(one):.2f} / {max(one):.2f} | "
        f"{statistics.median(one_host):.2f} / {max(one_host):.2f} | 1.00x |\n"
        f"| {hosts} | {statistics.median(many):.2f} | {min(many):.2f} / {max(many):.2f} | "
        f"{statistics.median(many_host):.2f} / {max(many_host):.2f} | {ratio:.2f}x |\n\n"
        f"Target: {hosts} hosts <= 1.3x one host: {verdict} ({ratio:.2f}x). "
        f"Fresh `provision all` on the {hosts} hosts at once: {fresh:.1f} s.\n\n"
        "Where the time goes: every test host is a container on this same machine, so the "
        "hosts' own work (sshd's key exchange and login, the facts script, the run lock, the "
        "reads batch) runs on the same cores as provision and the delay lines:\n\n"
        f"{cpu_table(one_cpu, many_cpu, hosts)}\n\n"
        f"The {hosts} hosts' own CPU alone, {host_cpu:.2f} s, needs at least "
        f"{host_cpu / cores:.2f} s of wall on {cores} cores ({host_cpu / cores / med_one:.2f}x "
        "the one-host run) even with a client that cost nothing; provision's own CPU grows "
        f"by {client_each * 1000:.0f} ms per extra host. Real hosts each bring their own CPUs.\n"
    )


def main() -> None:
    """The CLI: run() and write its section into bench/results.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--results", type=Path, default=bench.BENCH / "results.md")
    args = parser.parse_args()
    started = time.monotonic()
    section = run(args.hosts, args.rtt_ms, args.runs)
    print(section)
    bench.write_section(args.results, "parallel", section)
    bench.log(f"wrote {args.results} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()

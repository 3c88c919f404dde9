"""Benchmark: no-op re-runs of `provision all` against Ansible and pyinfra on one disposable host.

    python3 bench/run.py [--kind vm|container] [--runs 5] [--keep] [--skip-tools]

Boots a host with tests/hosts/testhost.py, provisions it once (the integration tier's settings:
the inventory testhost writes, GPU steps off), then times N no-op re-runs of `provision all`
and of `provision all --plan` (remote commands from each transcript's last line), converges
an Ansible playbook (bench/ansible/site.yml) and a pyinfra deploy (bench/pyinfra/deploy.py)
that express the same desired state (the files are copied byte-identical from the host after
provision wrote them) and times N no-op runs of each. Bytes sent are counted in one extra run
per tool through a counting TCP forwarder. Also measures start-up (`--help`, `list`).
Prints a table and writes bench/results.md. Run as root (the test hosts need it); ansible-core
and pyinfra are installed from PyPI into /tmp/bench-venv on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
TESTHOST = REPO / "tests" / "hosts" / "testhost.py"
VENV = Path("/tmp/bench-venv")
WORK = Path("/tmp/bench-work")
# The declared-reads batch (provision/facts/reads.py): each read starts with a printf of its
# nonce marker; a file-state read (facts/files.py) is a stat, then sha256sum, of one path.
READ_START = re.compile(r"^printf '@@([0-9a-f]+) (\d+)\\n'$")
FILE_READ = re.compile(r"^\( stat -c '%a %U %G' -- (\S+) && sha256sum")
READ_OUTPUT = re.compile(r"^@@([0-9a-f]+) (\d+)$")
BATCH_LINE = "$ sudo e=$(mktemp) || exit 70"
# resources.prefetch_files: several files in one probe, `@@<i>` sections in its output
SUMMARY = re.compile(r"^# (\d+) commands, ([\d.]+)s$")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def provision_env() -> dict[str, str]:
    """The environment for provision runs: bytecode cached like an installed package (this
    machine sets PYTHONDONTWRITEBYTECODE, which would recompile every module on each run)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": "/tmp/bench-pycache"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def timed(argv: list[str], env=None, cwd=None, stdout_file: Path | None = None) -> float:
    """Run a command; its wall time. Fails loudly with its output."""
    start = time.perf_counter()
    with open(stdout_file or os.devnull, "w") as out:
        proc = subprocess.run(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        text = stdout_file.read_text()[-4000:] if stdout_file else ""
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}\n{text}")
    return elapsed


# --- the host ------------------------------------------------------------------------------


def host_up(name: str, kind: str) -> Path:
    log(f"booting {kind} host {name}")
    out = subprocess.run(
        [sys.executable, str(TESTHOST), "up", "--name", name, "--kind", kind],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def host_down(name: str) -> None:
    log(f"tearing down {name}")
    subprocess.run([sys.executable, str(TESTHOST), "down", "--name", name], check=False)


def read_inventory(path: Path) -> dict:
    """Connection values of the single host in a testhost inventory."""
    for line in path.read_text().splitlines():
        if "ansible_host=" in line:
            name, *pairs = line.split()
            values = dict(p.split("=", 1) for p in pairs)
            return {
                "name": name,
                "addr": values["ansible_host"],
                "port": int(values["ansible_port"]),
                "user": values["ansible_user"],
                "key": values["ansible_ssh_private_key_file"],
                "known_hosts": values["provision_known_hosts"],
            }
    raise SystemExit(f"no host line in {path}")


def ssh_cat(host: dict, path: str) -> bytes:
    argv = ["ssh", "-i", host["key"], "-p", str(host["port"]), "-o", "BatchMode=yes"]
    argv += ["-o", f"UserKnownHostsFile={host['known_hosts']}", "-o", "StrictHostKeyChecking=yes"]
    argv += [f"{host['user']}@{host['addr']}", "sudo", "cat", "--", path]
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE).stdout


# --- counting forwarder (bytes sent) ---------------------------------------------------------


class CountingForwarder:
    """127.0.0.1:PORT -> the host's sshd, counting bytes each way (one extra run per tool)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = 0  # client -> host
        self.received = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.sent = self.received = self.connections = 0

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.connections += 1
            threading.Thread(
                target=self._pump, args=(client, upstream, "sent"), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, "received"), daemon=True
            ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counter: str) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                with self.lock:
                    setattr(self, counter, getattr(self, counter) + len(data))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


def proxied_known_hosts(host: dict, port: int, dest: Path) -> Path:
    """The host's known_hosts lines, rewritten for the forwarder's port."""
    text = Path(host["known_hosts"]).read_text()
    dest.write_text(text.replace(f"]:{host['port']} ", f"]:{port} "))
    return dest


# --- provision -------------------------------------------------------------------------------


def provision_run(inventory: Path, host: str, log_dir: Path, *extra: str) -> tuple[float, Path]:
    """One `provision all` run; its wall time and its transcript."""
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "provision", "all", "-i", str(inventory), "--host", host]
    argv += ["--log-dir", str(log_dir), *extra]
    wall = timed(argv, env=provision_env(), cwd=WORK, stdout_file=log_dir.parent / "last.out")
    (transcript,) = log_dir.iterdir()
    return wall, transcript


def transcript_commands(transcript: Path) -> int:
    last = transcript.read_text().rstrip().splitlines()[-1]
    match = SUMMARY.match(last)
    if not match:
        raise SystemExit(f"{transcript}: no '# N commands, Xs' line at the end: {last!r}")
    return int(match.group(1))


def batch_reads(lines: list[str]) -> tuple[dict[tuple[str, str], str], int]:
    """The file-state reads of the declared-reads batch ({(nonce, index): path}) and the
    number of reads in it."""
    files, reads, current = {}, 0, None
    for line in lines:
        start = READ_START.match(line)
        if start:
            current, reads = start.groups(), reads + 1
            continue
        found = FILE_READ.match(line)
        if found and current is not None:
            files[current] = found.group(1)
        current = None
    return files, reads


def command_breakdown(transcript: Path) -> dict[str, int]:
    """What the no-op run's commands are: facts, the run lock, the declared reads, others."""
    lines = transcript.read_text().splitlines()
    files, reads = batch_reads(lines)
    kinds: dict[str, int] = {}
    for line in lines:
        if not line.startswith("$ "):
            continue
        if line == "$ ":
            kind = "facts (one batched script)"
        elif "/run/lock/provision.run.lock" in line:
            kind = "the run lock (held on its own channel)"
        elif line == BATCH_LINE:
            kind = f"declared reads (one batch: {reads} reads, {len(files)} of them file states)"
        else:
            kind = "other probes: " + line[2:60]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def fresh_overhead(transcript: Path, wall: float) -> str:
    """Where a fresh run's time went: remote commands (the longest named) vs provision's own."""
    text = transcript.read_text().splitlines()
    timed_commands, command = [], ""
    for line in text:
        if line.startswith("$ "):
            words = line[2:].split()
            while words and (words[0] in ("sudo", "env") or "=" in words[0]):
                words = words[1:]  # sudo env VAR=... : name the command itself
            command = " ".join(words) or "facts"
        match = re.match(r"^# exit -?\d+ in ([\d.]+)s$", line)
        if match:
            timed_commands.append((float(match.group(1)), command))
    remote = sum(t for t, _ in timed_commands)
    longest = sorted(timed_commands, reverse=True)[:3]
    named = "; ".join(f"{t:.1f} s `{c[:50]}`" for t, c in longest)
    return (
        f"{wall:.1f} s wall, {len(timed_commands)} commands taking {remote:.1f} s on the host "
        f"(longest: {named}); provision's own time (start-up, connect, rendering, the gaps "
        f"between commands) {wall - remote:.1f} s = {100 * (wall - remote) / wall:.0f} %."
    )


def managed_files(transcript: Path) -> list[tuple[str, str, str, str]]:
    """(path, mode, owner, group) of every file provision reads, from a no-op transcript: the
    batch's file-state reads and, in its output, the stat line that follows each marker."""
    lines = transcript.read_text().splitlines()
    files, _reads = batch_reads(lines)
    found = []
    for i, line in enumerate(lines):
        marker = READ_OUTPUT.match(line)
        if marker and marker.groups() in files and i + 1 < len(lines):
            meta = lines[i + 1].split()
            if len(meta) == 3 and not lines[i + 1].startswith("@@"):
                found.append((files[marker.groups()], *meta))
    return found


# --- the other tools -------------------------------------------------------------------------


def ensure_venv() -> None:
    if (VENV / "bin" / "ansible-playbook").exists() and (VENV / "bin" / "pyinfra").exists():
        return
    log("installing ansible-core and pyinfra into /tmp/bench-venv")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([VENV / "bin" / "pip", "install", "-q", "ansible-core", "pyinfra"], check=True)


def tool_version(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    return out.splitlines()[0].strip() if out else "?"


def write_tool_inputs(host: dict, files: list, kind: str, work: Path, port: int, kh: str) -> dict:
    """Vars, inventories and ansible.cfg for the other tools, for sshd on PORT."""
    root = work / "files"
    ca_files = [path for path, *_ in files if path.startswith("/usr/local/share/ca-certificates/")]
    from provision.steps.base import ESSENTIALS  # the same list base installs

    variables = {
        "packages": list(ESSENTIALS),
        "files_root": str(root),
        "ca_files": ca_files,
        "timesyncd_running": kind != "container",
        "tensorboard_user": host["user"],
    }
    (work / "vars.json").write_text(json.dumps(variables, indent=1))
    ssh_args = (
        f"-o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes -o ControlMaster=auto "
        f"-o ControlPersist=60s -o ControlPath={work}/cm-%C"
    )
    (work / f"ansible-{port}.ini").write_text(
        "[all]\n"
        f"bench ansible_host={host['addr']} ansible_port={port} ansible_user={host['user']} "
        f"ansible_ssh_private_key_file={host['key']} ansible_ssh_common_args='{ssh_args}' "
        f"ansible_python_interpreter=/usr/bin/python3\n"
    )
    (work / "ansible.cfg").write_text(
        "[defaults]\nhost_key_checking = True\nretry_files_enabled = False\n"
        "[ssh_connection]\npipelining = True\n"
    )
    pyinfra_data = {
        "ssh_port": port,
        "ssh_user": host["user"],
        "ssh_key": host["key"],
        "ssh_known_hosts_file": kh,
        "ssh_strict_host_key_checking": "yes",
    }
    (work / f"pyinfra-{port}.py").write_text(f"hosts = [({host['addr']!r}, {pyinfra_data!r})]\n")
    return variables


def ansible_argv(work: Path, port: int, verbose: bool = False) -> list[str]:
    argv = [str(VENV / "bin" / "ansible-playbook"), "-i", str(work / f"ansible-{port}.ini")]
    argv += ["-e", f"@{work / 'vars.json'}", str(BENCH / "ansible" / "site.yml")]
    return argv + (["-vvv"] if verbose else [])


def pyinfra_argv(work: Path, port: int, verbose: bool = False) -> list[str]:
    argv = [str(VENV / "bin" / "pyinfra"), "-y", str(work / f"pyinfra-{port}.py")]
    argv += [str(BENCH / "pyinfra" / "deploy.py")]
    return argv + (["--debug"] if verbose else [])


def tool_env(work: Path) -> dict[str, str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(work / "ansible.cfg")}
    env["BENCH_VARS"] = str(work / "vars.json")
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = "/tmp/bench-pycache"
    return env


def count_ansible(output: str) -> int:
    """ssh processes Ansible started (one per module with pipelining, plus file transfers)."""
    return len(re.findall(r"SSH: EXEC ", output))


def count_pyinfra(output: str) -> int:
    """Commands pyinfra ran (facts and operations), from its --debug log."""
    return len(re.findall(r"Running command on ", output))


def changes_reported(output: str) -> str:
    """What a no-op run of Ansible or pyinfra says it changed ('' when nothing)."""
    ansible = re.search(r"changed=(\d+)", output)
    if ansible:
        return "" if ansible.group(1) == "0" else f"changed={ansible.group(1)}"
    # pyinfra's summary: Grand total  OPERATIONS  SUCCESS(changed)  ERROR  NO-CHANGE
    pyinfra = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)", output)
    if pyinfra and pyinfra.group(2) not in ("-", "0"):
        return f"{pyinfra.group(2)} operations changed"
    return ""


# --- start-up --------------------------------------------------------------------------------


def startup(repeats: int = 10) -> dict:
    env = provision_env()
    py = sys.executable
    subprocess.run([py, "-m", "provision", "list"], env=env, capture_output=True, check=True)
    cases = {
        "python3 -c pass (interpreter floor)": [py, "-c", "pass"],
        "provision --help": [py, "-m", "provision", "--help"],
        "provision list": [py, "-m", "provision", "list"],
    }
    times = {label: [] for label in cases}
    for _ in range(repeats):  # interleaved, so load spikes hit all three alike
        for label, argv in cases.items():
            times[label].append(timed(argv, env=env))
    result = {label: statistics.median(t) for label, t in times.items()}
    proc = subprocess.run(
        [py, "-X", "importtime", "-c", "import sys, provision.cli; print(sorted(sys.modules))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)", line)
        if match and len(match.group(3)) <= 3:  # top-level imports and their children
            rows.append((int(match.group(2)), match.group(4)))
    heavy = [
        m
        for m in ("fabric", "paramiko", "invoke", "testinfra", "jinja2", "rich")
        if m in proc.stdout
    ]
    return {"medians": result, "top": sorted(rows, reverse=True)[:10], "eager": heavy}


# --- the table -------------------------------------------------------------------------------


def summarize(label: str, walls: list[float], commands, byte_count) -> dict:
    return {
        "tool": label,
        "median": statistics.median(walls),
        "min": min(walls),
        "max": max(walls),
        "commands": commands,
        "bytes": byte_count,
    }


def table(rows: list[dict]) -> str:
    base = rows[0]["median"]
    lines = [
        "| tool | median wall (s) | min / max (s) | remote commands | bytes sent / received "
        "| ratio to provision |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        sent = f"{r['bytes'][0]:,} / {r['bytes'][1]:,}" if r["bytes"] else "not measured"
        lines.append(
            f"| {r['tool']} | {r['median']:.2f} | {r['min']:.2f} / {r['max']:.2f} | "
            f"{r['commands']} | {sent} | {r['median'] / base:.2f}x |"
        )
    return "\n".join(lines)


def machine() -> str:
    load = os.getloadavg()
    return (
        f"`{' '.join(platform.uname())}`, {os.cpu_count()} cores, load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end"
    )


def merged_inventory(inventories: list[Path], dest: Path) -> Path:
    """One inventory for several testhosts: each host's [testhosts:vars] (its own ssh.port,
    tensorboard.port) moved onto its host line."""
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


def parallel_hosts(count: int, runs: int) -> str:
    """No-op `provision all` on COUNT container hosts at once vs one of them."""
    names = [f"bench-p{i}" for i in range(1, count + 1)]
    try:
        inventories = [host_up(name, "container") for name in names]
        inventory = merged_inventory(inventories, WORK / f"inventory-{count}.ini")
        log(f"fresh provision all on {count} hosts at once")
        fresh = provision_multi(inventory, "testhosts", WORK / "logs-pfresh")
        one, many = [], []
        for _ in range(runs):  # interleaved, so load spikes hit both alike
            one.append(provision_multi(inventory, names[0], WORK / "logs-p1"))
            many.append(provision_multi(inventory, "testhosts", WORK / "logs-pn"))
            log(f"no-op: 1 host {one[-1]:.2f}s, {count} hosts {many[-1]:.2f}s")
    finally:
        for name in names:
            host_down(name)
    ratio = statistics.median(many) / statistics.median(one)
    return (
        f"## parallel hosts\n\n{datetime.date.today().isoformat()}, "
        f"`python3 bench/run.py --parallel {count} --runs {runs}` ({count} container hosts, "
        f"`--parallel` default). Machine: {machine()}.\n\n"
        "| hosts | median no-op wall (s) | min / max (s) | ratio to one host |\n"
        "|---|---|---|---|\n"
        f"| 1 | {statistics.median(one):.2f} | {min(one):.2f} / {max(one):.2f} | 1.00x |\n"
        f"| {count} | {statistics.median(many):.2f} | {min(many):.2f} / {max(many):.2f} "
        f"| {ratio:.2f}x |\n\n"
        f"Fresh `provision all` on the {count} hosts at once: {fresh:.1f} s.\n"
    )


def provision_multi(inventory: Path, target: str, log_dir: Path) -> float:
    """`provision all` on a host or group; its wall time."""
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "provision", "all", "-i", str(inventory), "--host", target]
    argv += ["--log-dir", str(log_dir)]
    return timed(argv, env=provision_env(), cwd=WORK, stdout_file=log_dir.parent / "last.out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("vm", "container"), default="vm")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--name", default="bench")
    parser.add_argument("--keep", action="store_true", help="leave the host running")
    parser.add_argument("--inventory", type=Path, help="use this running testhost instead")
    parser.add_argument("--skip-tools", action="store_true", help="provision only")
    parser.add_argument("--results", type=Path, default=BENCH / "results.md")
    parser.add_argument(
        "--parallel", type=int, metavar="N", help="only: no-op on N container hosts vs one"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    WORK.mkdir(parents=True, exist_ok=True)
    if args.parallel:
        report = parallel_hosts(args.parallel, args.runs)
        print(report)
        write_section(args.results, "parallel", report)
        return
    log("start-up timings")
    start = startup()
    if not args.skip_tools:
        ensure_venv()
    inventory = args.inventory or host_up(args.name, args.kind)
    host = read_inventory(inventory)
    name = host["name"]
    forwarder = None
    try:
        log("fresh provision all")
        fresh_wall, fresh_log = provision_run(inventory, name, WORK / "logs-fresh")
        fresh_commands = fresh_overhead(fresh_log, fresh_wall)
        rows, notes = [], []
        walls, counts = [], set()
        transcript = None
        for i in range(args.runs):
            wall, transcript = provision_run(inventory, name, WORK / "logs-noop")
            walls.append(wall)
            counts.add(transcript_commands(transcript))
            log(f"provision no-op {i + 1}: {wall:.2f}s")
        breakdown = command_breakdown(transcript)
        files = managed_files(transcript)
        forwarder = CountingForwarder(host["port"])
        proxy_kh = str(proxied_known_hosts(host, forwarder.port, WORK / "known_hosts-proxy"))
        proxy_inv = WORK / "inventory-proxy.ini"
        proxy_inv.write_text(
            inventory.read_text()
            .replace(f"ansible_port={host['port']} ", f"ansible_port={forwarder.port} ")
            .replace(
                f"provision_known_hosts={host['known_hosts']}", f"provision_known_hosts={proxy_kh}"
            )
        )
        forwarder.reset()
        provision_run(proxy_inv, name, WORK / "logs-bytes")
        provision_bytes = (forwarder.sent, forwarder.received)
        rows.append(
            summarize("provision all", walls, "/".join(map(str, sorted(counts))), provision_bytes)
        )
        walls, counts = [], set()
        for _ in range(args.runs):
            wall, plan_log = provision_run(inventory, name, WORK / "logs-plan", "--plan")
            walls.append(wall)
            counts.add(transcript_commands(plan_log))
        forwarder.reset()
        provision_run(proxy_inv, name, WORK / "logs-bytes", "--plan")
        rows.append(
            summarize(
                "provision all --plan",
                walls,
                "/".join(map(str, sorted(counts))),
                (forwarder.sent, forwarder.received),
            )
        )
        versions = {}
        if not args.skip_tools:
            root = WORK / "files"
            shutil.rmtree(root, ignore_errors=True)
            for path, mode, owner, group in files:
                dest = root / path.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(ssh_cat(host, path))
                if (mode, owner, group) != ("644", "root", "root"):
                    notes.append(f"{path} is {mode} {owner}:{group}; the tools write 0644 root")
            for port, kh in ((host["port"], host["known_hosts"]), (forwarder.port, proxy_kh)):
                write_tool_inputs(host, files, args.kind, WORK, port, kh)
            env = tool_env(WORK)
            versions["ansible"] = tool_version([str(VENV / "bin" / "ansible"), "--version"])
            versions["pyinfra"] = tool_version([str(VENV / "bin" / "pyinfra"), "--version"])
            for label, argv_of, counter in (
                ("ansible-playbook", ansible_argv, count_ansible),
                ("pyinfra", pyinfra_argv, count_pyinfra),
            ):
                log(f"{label}: converge")
                timed(
                    argv_of(WORK, host["port"]),
                    env=env,
                    cwd=WORK,
                    stdout_file=WORK / f"{label}-converge.out",
                )
                walls = []
                for i in range(args.runs):
                    out = WORK / f"{label}-noop.out"
                    walls.append(
                        timed(argv_of(WORK, host["port"]), env=env, cwd=WORK, stdout_file=out)
                    )
                    log(f"{label} no-op {i + 1}: {walls[-1]:.2f}s")
                    changed = changes_reported(out.read_text())
                    if changed:
                        notes.append(f"{label} no-op run {i + 1} reported changes: {changed}")
                forwarder.reset()
                out = WORK / f"{label}-counted.out"
                timed(
                    argv_of(WORK, forwarder.port, verbose=True), env=env, cwd=WORK, stdout_file=out
                )
                rows.append(
                    summarize(
                        label, walls, counter(out.read_text()), (forwarder.sent, forwarder.received)
                    )
                )
    finally:
        if forwarder:
            forwarder.close()
        if not args.inventory and not args.keep:
            host_down(args.name)
    report = render(args, rows, breakdown, start, fresh_wall, fresh_commands, versions, notes)
    print(report)
    write_section(args.results, args.kind, report)
    log(f"wrote {args.results}")


HEADER = """# Benchmark results

Written by `python3 bench/run.py`; one section per host kind, the latest run of each.
Medians and ratios only: these machines are noisy (2 cores shared with CI and TCG VMs).
"""


def write_section(path: Path, kind: str, section: str) -> None:
    """Replace this kind's section of results.md, keeping the other kind's."""
    text = path.read_text() if path.exists() else HEADER
    parts = re.split(r"(?m)^(?=## )", text)
    kept = [p for p in parts if not p.startswith(f"## {kind} host")]
    path.write_text("".join(kept).rstrip("\n") + "\n\n" + section)


def render(args, rows, breakdown, start, fresh_wall, fresh_commands, versions, notes) -> str:
    today = datetime.date.today().isoformat()
    out = [
        f"## {args.kind} host",
        "",
        f"{today}, `python3 bench/run.py --kind {args.kind} --runs {args.runs}` on a "
        f"{args.kind} test host. Machine: {machine()}.",
        f"Tools: {versions.get('ansible', '-')}, {versions.get('pyinfra', '-')}.",
        "",
        f"No-op re-runs of the same desired state, {args.runs} runs each (medians; the bytes "
        "and Ansible/pyinfra command counts come from one extra run through a counting "
        "forwarder with -vvv / --debug):",
        "",
        table(rows),
        "",
        f"Fresh `provision all` on the new host: {fresh_commands}",
        "",
        "What provision's no-op run sends:",
        "",
    ]
    out += [f"- {count} x {kind}" for kind, count in breakdown.items()]
    out += ["", "Start-up (median of 10, bytecode cached):", ""]
    out += [f"- {label}: {t:.3f} s" for label, t in start["medians"].items()]
    eager = ", ".join(start["eager"]) or "none"
    out += [
        f"- eagerly imported by `import provision.cli` (fabric, paramiko, invoke, testinfra,"
        f" jinja2, rich): {eager}",
        "",
        "Top imports of `import provision.cli` (cumulative µs):",
        "",
    ]
    out += [f"- {name}: {us:,}" for us, name in start["top"]]
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()

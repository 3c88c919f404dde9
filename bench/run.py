"""Benchmark: no-op re-runs of `provision all` against Ansible and pyinfra on one disposable host.

    python3 bench/run.py [--kind vm|container] [--runs 5] [--rtt-ms 0,20,50] [--gpu-off]
                         [--keep] [--skip-tools] [--all]

Boots a host with tests/hosts/testhost.py with every step on (the GPU stack on the harness's
stand-ins, served on 127.0.0.1: the FIXTURE CUDA apt repo and conda installer, the real torch
wheel of /opt/wheels; `--gpu-off`: the integration tier's settings only), provisions it once,
then times N no-op re-runs of `provision all` and of `provision all --plan` (remote commands
from each transcript's last line), converges an Ansible playbook (bench/ansible/site.yml) and
a pyinfra deploy (bench/pyinfra/deploy.py) that express the same desired state (the files are
copied byte-identical from the host after provision wrote them) and times N no-op runs of
each, and of `ssh host true`. Bytes sent are counted in one extra run per tool through a
counting TCP forwarder. Then, for each RTT above 0, the same no-op runs through a delay line
(tests/hosts/delay.py: this kernel has no netem). Also measures start-up (`--help`, `list`),
prints the issue's targets met / missed and writes bench/results.md. `--all` adds the other
sections (bench/parallel.py, fresh.py, labcache.py). Run as root (the test hosts need it);
ansible-core and pyinfra are installed from PyPI into /tmp/bench-venv on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
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
HOSTS = REPO / "tests" / "hosts"
TESTHOST = HOSTS / "testhost.py"
VENV = Path("/tmp/bench-venv")
WORK = Path("/tmp/bench-work")
# The declared-reads batch (provision/facts/reads.py): each read starts with a printf of its
# nonce marker; a file-state read (facts/files.py) is a stat, then sha256sum, of one path.
READ_START = re.compile(r"^# @@([0-9a-f]+) (\d+)$")
FILE_READ = re.compile(r"^\{ \( stat -c '%a %U %G' -- (\S+) && sha256sum")
READ_OUTPUT = re.compile(r"^@@([0-9a-f]+) (\d+)$")
BATCH_LINE = "$ sudo d=$(mktemp -d) || exit 70"
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


def host_up(name: str, kind: str, extra: dict[str, str] | None = None) -> Path:
    log(f"booting {kind} host {name}")
    sets = [a for key, value in (extra or {}).items() for a in ("--set", f"{key}={value}")]
    out = subprocess.run(
        [sys.executable, str(TESTHOST), "up", "--name", name, "--kind", kind, *sets],
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


def ssh_argv(host: dict, port: int | None = None, known_hosts: str | None = None) -> list[str]:
    """OpenSSH to the host as its user (no connection sharing), through PORT if given."""
    argv = ["ssh", "-i", host["key"], "-p", str(port or host["port"]), "-o", "BatchMode=yes"]
    argv += ["-o", f"UserKnownHostsFile={known_hosts or host['known_hosts']}"]
    argv += ["-o", "StrictHostKeyChecking=yes", "-o", "ControlMaster=no"]
    return [*argv, f"{host['user']}@{host['addr']}"]


def ssh_cat(host: dict, path: str) -> bytes:
    argv = [*ssh_argv(host), "sudo", "cat", "--", path]
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE).stdout


def ssh_out(host: dict, command: str) -> str:
    """A command's stdout on the host (as its user; the command says sudo where it needs it)."""
    return subprocess.run(
        [*ssh_argv(host), command], check=True, stdout=subprocess.PIPE, text=True
    ).stdout


# --- every step on: the GPU stack on the harness's fixtures ---------------------------------

ENV_PATH = "/opt/conda/envs/dl"  # conda.prefix and pytorch.env defaults
ENV_LINK = "/opt/provision/envs/dl"


@contextlib.contextmanager
def gpu_sources(root: Path):
    """The GPU stack's stand-ins (tests/hosts/gpustack.py: the FIXTURE CUDA apt repository
    and conda installer, the REAL torch wheel of /opt/wheels) served on 127.0.0.1 for the
    bench's duration; yields the settings that turn every step on (those of
    tests/container/test_gpu_stack_on_container.py's `stack` fixture)."""
    sys.path.insert(0, str(HOSTS))
    import aptrepo
    import gpustack

    reason = aptrepo.missing_tools()
    if reason:
        raise SystemExit(f"every step on needs the fixture tools ({reason}); or --gpu-off")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    with gpustack.served(root) as urls:
        yield gpustack.settings(urls)


def inventory_settings(inventory: Path) -> dict[str, str]:
    """The key=value lines of a testhost inventory's [testhosts:vars]."""
    found = {}
    for line in inventory.read_text().splitlines():
        if "=" in line and "ansible_host=" not in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found[key.strip()] = value.strip()
    return found


def gpu_vars(host: dict, settings: dict[str, str]) -> dict:
    """What the other tools need for the GPU steps' state, read from the host after provision
    converged it (the held packages, the installed CUDA packages, the conda group's members)
    and from the settings (the installer, the torch find-links)."""
    from provision import groupshare
    from provision.steps.conda import CACHE_DIR, bashrc_line
    from provision.steps.pytorch_install import SYSTEM_CA

    held = ssh_out(host, "apt-mark showhold").split()
    cuda = ssh_out(
        host, "dpkg-query -W -f '${db:Status-Abbrev}${Package}\\n' cuda-keyring 'cuda-toolkit-*'"
    )
    members = ssh_out(host, "getent group conda").strip().rsplit(":", 1)[-1]
    installer = settings["conda.installer_url"]
    return {
        "held_packages": held,
        "cuda_packages": [line[3:] for line in cuda.splitlines() if line.startswith("ii ")],
        "conda_prefix": "/opt/conda",
        "conda_group": "conda",
        "conda_users": [u for u in members.split(",") if u],
        "conda_installer_url": installer,
        "conda_installer_sha256": settings["conda.installer_sha256"],
        "conda_installer": f"{CACHE_DIR}/{installer.rsplit('/', 1)[-1]}",
        "conda_unshared_probe": groupshare.unshared_probe("/opt/conda", "conda"),
        "conda_share": groupshare.share_command("/opt/conda", "conda"),
        "bashrc_line": bashrc_line("/opt/conda"),
        "env_path": ENV_PATH,
        "env_link": ENV_LINK,
        "env_python": settings.get("pytorch.python", "3.11"),
        # The build too (2.13.0+cpu, as provision checks it): the pyinfra deploy looks for
        # this exact line in `pip freeze`.
        "torch": f"torch=={settings['pytorch.version']}+{settings['pytorch.index']}",
        "pip_args": (
            f"--index-url {settings['pytorch.index_url']} "
            f"--find-links {settings['pytorch.find_links']} --cert {SYSTEM_CA}"
        ),
    }


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
        if line == BATCH_LINE:
            command = "the declared reads (one batch)"
        elif line.startswith("$ "):
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


def slowest_reads(host: dict, transcript: Path, top: int = 3) -> str:
    """The declared-reads batch of a no-op transcript run again on the host with a clock
    before each read: its slowest reads (why the batch, one round trip, takes what it does)."""
    lines = transcript.read_text().splitlines()
    if BATCH_LINE not in lines:
        return ""
    script, reads = [], []
    for line in lines[lines.index(BATCH_LINE) :]:
        if READ_OUTPUT.match(line):
            break  # the batch's output begins
        start = READ_START.match(line)
        if start or line == "wait":  # the reads, one after another here, then the end
            script.append("printf '@@T %s\\n' \"$(date +%s%N)\"")
        if start:
            reads.append("")
        elif reads and not reads[-1]:
            reads[-1] = line.strip("{( ")[:70]
        if line.endswith("; } &"):  # the batch runs its reads at once; here each alone
            line = line[: -len(" &")]
        script.append(line[len("$ sudo ") :] if line == BATCH_LINE else line)
    proc = subprocess.run(
        [*ssh_argv(host), "sudo", "sh", "-s"],
        input="\n".join(script) + "\n",
        capture_output=True,
        text=True,
    )
    stamps = [int(m.group(1)) for m in re.finditer(r"(?m)^@@T (\d+)$", proc.stdout)]
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(stamps)]
    took = sorted(zip(gaps, reads, strict=False), reverse=True)
    if len(took) != len(reads):
        return ""
    named = "; ".join(f"{t:.2f} s `{what}`" for t, what in took[:top])
    total = sum(t for t, _ in took)
    return f"the batch's {len(reads)} reads take {total:.2f} s on the host (slowest: {named})"


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


# The files the playbook and the deploy name one by one (with their handlers); every other
# managed file (the GPU steps') goes through their loop over `managed_files`.
NAMED_FILES = (
    "/etc/apt/apt.conf.d/51provision-unattended-upgrades",
    "/etc/apt/apt.conf.d/52provision-periodic",
    "/etc/systemd/timesyncd.conf.d/provision.conf",
    "/etc/ssh/sshd_config.d/00-provision.conf",
    "/etc/systemd/logind.conf.d/provision.conf",
    "/etc/systemd/system/provision-tensorboard.service",
)
CA_DIR = "/usr/local/share/ca-certificates/"


def write_tool_inputs(
    host: dict, files: list, kind: str, work: Path, port: int, kh: str, gpu: dict | None = None
) -> dict:
    """Vars, inventories and ansible.cfg for the other tools, for sshd on PORT."""
    root = work / "files"
    ca_files = [path for path, *_ in files if path.startswith(CA_DIR)]
    from provision.steps.base import ESSENTIALS  # the same list base installs

    variables = {
        "packages": list(ESSENTIALS),
        "files_root": str(root),
        "ca_files": ca_files,
        "managed_files": [
            {"path": path, "mode": "0" + mode, "owner": owner, "group": group}
            for path, mode, owner, group in files
            if path not in NAMED_FILES and not path.startswith(CA_DIR)
        ],
        "timesyncd_running": kind != "container",
        "tensorboard_user": host["user"],
        "gpu": bool(gpu),
        **(gpu or {}),
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


def ssh_true_walls(host: dict, port: int, known_hosts: str, runs: int) -> list[float]:
    """`ssh host true` with OpenSSH (the same key and known_hosts, no connection sharing)."""
    return [timed([*ssh_argv(host, port, known_hosts), "true"]) for _ in range(runs)]


def port_inventory(inventory: Path, host: dict, port: int, known_hosts: str, dest: Path) -> Path:
    """The testhost inventory with its ssh port and known_hosts moved to PORT's."""
    dest.write_text(
        inventory.read_text()
        .replace(f"ansible_port={host['port']} ", f"ansible_port={port} ")
        .replace(
            f"provision_known_hosts={host['known_hosts']}", f"provision_known_hosts={known_hosts}"
        )
    )
    return dest


def latency_rounds(ctx: dict, rtts: list[int], runs: int, notes: list[str]) -> dict[int, dict]:
    """For each RTT above 0: a delay line (tests/hosts/delay.py) in front of the host's sshd and
    RUNS interleaved no-op runs of every tool through it, plus `ssh host true`. {rtt: {tool:
    [walls]}}."""
    sys.path.insert(0, str(HOSTS))
    from delay import Line

    host, inventory, tools = ctx["host"], ctx["inventory"], ctx["tools"]
    rounds = {}
    for rtt in [r for r in rtts if r > 0]:
        log(f"{rtt} ms RTT: a delay line in front of sshd")
        with Line(("127.0.0.1", host["port"]), one_way_s=rtt / 2000) as line:
            kh = str(proxied_known_hosts(host, line.port, WORK / f"known_hosts-{line.port}"))
            inv = port_inventory(inventory, host, line.port, kh, WORK / f"inventory-{rtt}ms.ini")
            if tools:
                write_tool_inputs(host, ctx["files"], ctx["kind"], WORK, line.port, kh, ctx["gpu"])
            walls = {label: [] for label in LATENCY_COLUMNS}
            for i in range(runs):  # interleaved, so load spikes hit every tool alike
                walls["provision all"].append(
                    provision_run(inv, host["name"], WORK / "logs-rtt")[0]
                )
                plan = provision_run(inv, host["name"], WORK / "logs-rtt", "--plan")[0]
                walls["provision all --plan"].append(plan)
                if tools:
                    for label, argv_of in (
                        ("ansible-playbook", ansible_argv),
                        ("pyinfra", pyinfra_argv),
                    ):
                        out = WORK / f"{label}-{rtt}ms.out"
                        walls[label].append(
                            timed(
                                argv_of(WORK, line.port), env=ctx["env"], cwd=WORK, stdout_file=out
                            )
                        )
                        changed = changes_reported(out.read_text())
                        if changed:
                            notes.append(f"{label} no-op at {rtt} ms, run {i + 1}: {changed}")
                walls["ssh host true"] += ssh_true_walls(host, line.port, kh, 1)
                log(
                    f"{rtt} ms run {i + 1}: "
                    + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in walls.items() if v)
                )
        rounds[rtt] = walls
    return rounds


LATENCY_COLUMNS = (
    "provision all",
    "provision all --plan",
    "ansible-playbook",
    "pyinfra",
    "ssh host true",
)


def ratio_of(med: dict, other: str) -> str:
    """Provision's no-op median over another column's, at one RTT."""
    mine = med.get("provision all")
    return f"{mine / med[other]:.2f}x" if mine and med.get(other) else "-"


def latency_table(rounds: dict[int, dict]) -> str:
    """Medians per RTT, and provision's ratios to `ssh true`, Ansible and pyinfra."""
    head = " | ".join(f"{c} (s)" for c in LATENCY_COLUMNS)
    lines = [
        f"| RTT | {head} | provision / ssh true | provision / Ansible | provision / pyinfra |",
        "|---|" + "---|" * (len(LATENCY_COLUMNS) + 3),
    ]
    for rtt, walls in sorted(rounds.items()):
        med = {k: statistics.median(v) if v else None for k, v in walls.items()}
        cells = [f"{med[k]:.2f}" if med.get(k) else "-" for k in LATENCY_COLUMNS]
        lines.append(
            f"| {rtt} ms | {' | '.join(cells)} | {ratio_of(med, 'ssh host true')} "
            f"| {ratio_of(med, 'ansible-playbook')} | {ratio_of(med, 'pyinfra')} |"
        )
    return "\n".join(lines)


def targets(rounds: dict[int, dict], commands: str, start: dict, cause: str) -> list[str]:
    """Every target of issue 18 this run measures, with its value: met / missed."""
    med = {
        rtt: {k: statistics.median(v) for k, v in walls.items() if v}
        for rtt, walls in rounds.items()
    }

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    out = []
    zero = med.get(0, {})
    mine = zero.get("provision all")
    if mine and zero.get("ssh host true"):
        r = mine / zero["ssh host true"]
        out.append(
            f"| no-op, every step on, 0 ms: <= 2.5x `ssh host true` | {mine:.2f} s vs "
            f"{zero['ssh host true']:.2f} s = {r:.2f}x | {mark(r <= 2.5)} |"
        )
    if mine and zero.get("pyinfra"):
        r = mine / zero["pyinfra"]
        out.append(
            f"| no-op, every step on, 0 ms: <= 1/10 of pyinfra | {mine:.2f} s vs "
            f"{zero['pyinfra']:.2f} s = 1/{1 / r:.1f} | {mark(r <= 0.1)} |"
        )
    worst = max(int(c) for c in commands.split("/"))
    out.append(f"| no-op: <= 3 remote commands | {commands} | {mark(worst <= 3)} |")
    at50 = med.get(50, {})
    if at50.get("provision all"):
        w = at50["provision all"]
        ratios = ", ".join(
            f"1/{at50[t] / w:.1f} of {t}" for t in ("ansible-playbook", "pyinfra") if at50.get(t)
        )
        out.append(
            f"| no-op at 50 ms RTT: <= 1.0 s (and its ratios) | {w:.2f} s ({ratios}) "
            f"| {mark(w <= 1.0)} |"
        )
    else:
        out.append("| no-op at 50 ms RTT: <= 1.0 s | not measured (50 not in --rtt-ms) | - |")
    for label in ("provision --help", "provision list"):
        t = start["medians"][label]
        out.append(f"| `{label}` < 0.3 s | {t:.3f} s | {mark(t < 0.3)} |")
    rows = ["| target | measured | |", "|---|---|---|", *out]
    if any("**missed**" in line for line in out):
        rows += ["", f"Where the 0 ms no-op's time went (its transcript): {cause}"]
    return rows


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
        "--gpu-off", action="store_true", help="the integration tier's settings (GPU steps off)"
    )
    parser.add_argument(
        "--rtt-ms",
        help="round-trip times to measure at, comma-separated (default: 0,20,50 for the "
        "container kind, 0 for the vm)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="the container bench at 0/20/50 ms, then parallel hosts, fresh runs, lab cache",
    )
    parser.add_argument(
        "--parallel", type=int, metavar="N", help="only: no-op on N container hosts vs one"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    WORK.mkdir(parents=True, exist_ok=True)
    if args.parallel:  # bench/parallel.py: N hosts, each behind a delay line, vs one
        import parallel

        rtt = float((args.rtt_ms or "20").split(",")[-1])
        report = parallel.run(args.parallel, rtt, args.runs)
        print(report)
        write_section(args.results, "parallel", report)
        return
    if args.all:
        args.kind, args.rtt_ms = "container", args.rtt_ms or "0,20,50"
    default_rtts = "0,20,50" if args.kind == "container" else "0"
    rtts = sorted({int(r) for r in (args.rtt_ms or default_rtts).split(",")} | {0})
    with contextlib.ExitStack() as stack:
        settings = {}
        if not args.gpu_off and not args.inventory:
            log("serving the GPU stack's stand-ins on 127.0.0.1")
            settings = stack.enter_context(gpu_sources(WORK / "sources"))
        report = host_bench(args, settings, rtts)
    print(report)
    write_section(args.results, f"{args.kind} host", report)
    log(f"wrote {args.results}")
    if args.all:
        other_sections(args)


def other_sections(args) -> None:
    """The other helpers' sections (bench/parallel.py, fresh.py, labcache.py), each imported
    only now and skipped with a note when its module is missing; then the file's header."""
    import importlib

    sys.path.insert(0, str(BENCH))
    skipped = []
    for module, title, call in (
        ("parallel", "parallel hosts", lambda m: m.run(hosts=16, rtt_ms=20, runs=args.runs)),
        ("fresh", "fresh runs", lambda m: m.run(args.runs)),
        ("labcache", "lab cache", lambda m: m.run()),
    ):
        try:
            found = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            skipped.append(f"bench/{module}.py is missing: no {title} section this run")
            log(skipped[-1])
            continue
        log(f"section: {title}")
        section = call(found)
        print(section)
        write_section(args.results, title, section)
    text = args.results.read_text()
    body = text[text.index("\n## ") :] if "\n## " in text else ""
    header = HEADER + (
        f"\nLast `python3 bench/run.py --all`: {datetime.date.today().isoformat()}, machine: "
        f"{machine()}.\n" + "".join(f"\n- {s}" for s in skipped) + ("\n" if skipped else "")
    )
    args.results.write_text(header + body)


def host_bench(args, settings: dict[str, str], rtts: list[int]) -> str:
    """The one-host bench: start-up, fresh run, no-op runs of every tool at 0 ms and through a
    delay line at each other RTT; the section of results.md."""
    log("start-up timings")
    start = startup()
    if not args.skip_tools:
        ensure_venv()
    inventory = args.inventory or host_up(args.name, args.kind, settings)
    host = read_inventory(inventory)
    # The playbook and the deploy know the stack fixture's whole GPU state, not a part of it
    on = inventory_settings(inventory)
    gpu_on = all(on.get(f"{s}.enabled") == "true" for s in ("driver", "cuda", "conda", "pytorch"))
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
        noop_cause = fresh_overhead(transcript, walls[-1])
        reads_cause = slowest_reads(host, transcript)
        if reads_cause:
            noop_cause += f" Timed read by read: {reads_cause}."
        breakdown = command_breakdown(transcript)
        files = managed_files(transcript)
        gpu = None
        if gpu_on:
            gpu = gpu_vars(host, inventory_settings(inventory))
            marker = f"{ENV_PATH}/provision-pytorch.json"  # an upload, not a file-state read
            if marker not in [f[0] for f in files]:
                files.append(
                    (marker, *ssh_out(host, f"sudo stat -c '%a %U %G' -- {marker}").split())
                )
        forwarder = CountingForwarder(host["port"])
        proxy_kh = str(proxied_known_hosts(host, forwarder.port, WORK / "known_hosts-proxy"))
        proxy_inv = port_inventory(
            inventory, host, forwarder.port, proxy_kh, WORK / "inventory-proxy.ini"
        )
        forwarder.reset()
        provision_run(proxy_inv, name, WORK / "logs-bytes")
        provision_bytes = (forwarder.sent, forwarder.received)
        commands = "/".join(map(str, sorted(counts)))
        rows.append(summarize("provision all", walls, commands, provision_bytes))
        zero = {"provision all": walls}
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
        zero["provision all --plan"] = walls
        versions = {}
        env = tool_env(WORK)
        if not args.skip_tools:
            root = WORK / "files"
            shutil.rmtree(root, ignore_errors=True)
            for path, mode, owner, group in files:
                dest = root / path.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(ssh_cat(host, path))
                named = path in NAMED_FILES or path.startswith(CA_DIR)
                if named and (mode, owner, group) != ("644", "root", "root"):
                    notes.append(f"{path} is {mode} {owner}:{group}; the tools write 0644 root")
            for port, kh in ((host["port"], host["known_hosts"]), (forwarder.port, proxy_kh)):
                write_tool_inputs(host, files, args.kind, WORK, port, kh, gpu)
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
                zero[label] = walls
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
        zero["ssh host true"] = ssh_true_walls(host, host["port"], host["known_hosts"], args.runs)
        rows.append(summarize("ssh host true (OpenSSH)", zero["ssh host true"], 1, None))
        ctx = {
            "host": host,
            "inventory": inventory,
            "tools": not args.skip_tools,
            "files": files,
            "kind": args.kind,
            "gpu": gpu,
            "env": env,
        }
        rounds = {0: zero, **latency_rounds(ctx, rtts, args.runs, notes)}
    finally:
        if forwarder:
            forwarder.close()
        if not args.inventory and not args.keep:
            host_down(args.name)
    info = {
        "breakdown": breakdown,
        "start": start,
        "fresh": fresh_commands,
        "versions": versions,
        "notes": notes,
        "gpu": gpu_on,
        "rounds": rounds,
        "targets": targets(rounds, commands, start, noop_cause),
    }
    return render(args, rows, info)


HEADER = """# Benchmark results

Written by `python3 bench/run.py`; one section per host kind, the latest run of each.
Medians and ratios only: these machines are noisy (2 cores shared with CI and TCG VMs).
"""


def write_section(path: Path, title: str, section: str) -> None:
    """Replace the section titled `## TITLE` of results.md (or, for the older callers, the one
    whose title starts with TITLE and a space) in its place, keeping the others; a new one
    goes at the end."""
    text = path.read_text() if path.exists() else HEADER
    parts = re.split(r"(?m)^(?=## )", text)

    def same(part: str) -> bool:
        heading = part.split("\n", 1)[0].rstrip()
        return heading == f"## {title}" or heading.startswith(f"## {title} ")

    out, placed = [], False
    for part in parts:
        if not same(part):
            out.append(part)
        elif not placed:  # in its place (a duplicate of it is dropped)
            out.append(section.rstrip("\n") + "\n\n")
            placed = True
    if not placed:
        out[-1] = out[-1].rstrip("\n") + "\n\n"
        out.append(section)
    path.write_text("".join(out).rstrip("\n") + "\n")


STAND_INS = (
    "Every step on, with the settings of tests/container/test_gpu_stack_on_container.py's "
    "`stack` fixture, on stand-ins served on 127.0.0.1 for the run: driver (Debian's 535 "
    "packages, `driver.require_gpu=false`, no GPU), cuda from the FIXTURE signed apt "
    "repository (tests/hosts/aptrepo.py, not NVIDIA's), conda from the FIXTURE installer "
    "(tests/hosts/condafixture.py, not Miniforge), pytorch with the REAL torch 2.13.0 CPU "
    "wheel (/opt/wheels as find-links, its dependencies from PyPI), and base, users, ssh, "
    "autostart, tensorboard as the integration tier has them."
)


def render(args, rows, info) -> str:
    today = datetime.date.today().isoformat()
    start, versions, notes = info["start"], info["versions"], info["notes"]
    rtts = ",".join(str(r) for r in sorted(info["rounds"]))
    state = STAND_INS if info["gpu"] else "The integration tier's settings, GPU steps off."
    out = [
        f"## {args.kind} host",
        "",
        f"{today}, `python3 bench/run.py --kind {args.kind} --runs {args.runs} --rtt-ms {rtts}"
        f"{' --gpu-off' if args.gpu_off else ''}` on a {args.kind} test host. "
        f"Machine: {machine()}.",
        f"Tools: {versions.get('ansible', '-')}, {versions.get('pyinfra', '-')}.",
        "",
        state,
        "",
        f"No-op re-runs of the same desired state at 0 ms (127.0.0.1, no relay), {args.runs} "
        "runs each (medians; the bytes and Ansible/pyinfra command counts come from one extra "
        "run through a counting forwarder with -vvv / --debug):",
        "",
        table(rows),
        "",
        "Latency: no-op runs through a delay line in front of the host's sshd "
        "(tests/hosts/delay.py, a user-space TCP relay that holds each chunk for half the RTT "
        "each way: this kernel has no `tc netem`); 0 ms is the direct connection above. "
        f"{args.runs} runs per tool and RTT, interleaved. Ansible keeps its OpenSSH "
        "ControlPersist master (60 s) between its runs, as configured by default; `ssh host "
        "true` is OpenSSH with `-o ControlMaster=no`.",
        "",
        latency_table(info["rounds"]),
        "",
        "Targets (issue 18):",
        "",
        *info["targets"],
        "",
        f"Fresh `provision all` on the new host: {info['fresh']}",
        "",
        "What provision's no-op run sends:",
        "",
    ]
    out += [f"- {count} x {kind}" for kind, count in info["breakdown"].items()]
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

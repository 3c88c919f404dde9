"""`provision status`'s read: one read-only script per host per refresh (SCRIPT) and the pure
parsers that turn its `@@name` sections into a HostStatus. The NVIDIA PCI walk and the
module's version line are provision.facts.gpu's, read one way for every user. The notebook
services (the jupyter step's lab or hub unit) and the hub's running per-user servers are read
from systemd, one `systemctl show` for all of them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from provision.facts import smi, split_sections
from provision.facts.gpu import PCI_SCRIPT, is_display, module_version

GPU_FIELDS = (
    "index,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw,power.limit,"
    "uuid"
)
APP_FIELDS = "gpu_uuid,pid,used_memory"
SMI_TIMEOUT_S = 20  # a wedged GPU can make nvidia-smi hang for minutes

# The jupyter step's units (provision/steps/jupyter.py, jupyter_hub.py) and the transient unit
# jupyterhub-systemdspawner starts per user (its default unit_name_template).
NOTEBOOK_UNITS = {
    "provision-jupyter.service": "jupyterlab",
    "provision-jupyterhub.service": "jupyterhub",
}
SERVER_GLOB = "jupyter-*-singleuser.service"
NOTEBOOK_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "User",
    "MainPID",
    "MemoryCurrent",
    "MemoryMax",
    "CPUUsageNSec",
    "ActiveEnterTimestampMonotonic",
)
_SHOW = " ".join(f"-p {p}" for p in NOTEBOOK_PROPERTIES) + " " + " ".join(NOTEBOOK_UNITS)

# Without systemd (a container, a chroot) or without the units, the sections stay empty.
NOTEBOOK_SCRIPT = f"""echo @@notebooks
if command -v systemctl >/dev/null 2>&1; then
  servers=$(timeout 10 systemctl list-units --type=service --state=running --plain \\
      --no-legend '{SERVER_GLOB}' 2>/dev/null | while read -r unit _; do
    case "$unit" in *[!-A-Za-z0-9:_.@\\\\]*) ;; {SERVER_GLOB}) echo "$unit";; esac
  done)
  shown=$(set -f; timeout 10 systemctl show {_SHOW} $servers \\
      2>/dev/null)
  printf '%s\\n' "$shown"
  # procps' ps refuses a list with a trailing separator ("improper list"): commas between
  pids=$(printf '%s\\n' "$shown" | sed -n 's/^MainPID=\\([1-9][0-9]*\\)$/\\1/p' \\
      | paste -sd, -)
  echo @@notebook-ages
  if [ -n "$pids" ]; then ps -o pid=,etimes= -p "$pids" 2>/dev/null; fi
fi"""

# A Slurm cluster's nodes and jobs as this box's Slurm client sees them (the cluster step):
# sinfo -N one line per node and partition (`%t` the short state: idle, alloc, mix, drain,
# down*, ...; `%G` its gres; `%E` the reason it is down or drained), squeue one per job (`%b`
# the gres it asked for per node, e.g. gres:gpu:1 or N/A; `%N` its nodes; `%r` why it waits).
SLURM_SCRIPT = """echo @@slurm-nodes
if command -v sinfo >/dev/null 2>&1; then
  timeout 10 sinfo -h -N -o '%N|%t|%G|%E' 2>/dev/null | sort -u
  echo @@slurm-jobs
  timeout 10 squeue -h -o '%i|%u|%T|%D|%b|%N|%r' 2>/dev/null
fi"""

# POSIX sh, read-only, no sudo. Each section starts with a line "@@name"; parse() splits them.
SCRIPT = f"""export LC_ALL=C
echo @@loadavg; cat /proc/loadavg
echo @@uptime; cat /proc/uptime
echo @@reboot
if [ -e /var/run/reboot-required ]; then
  echo required; cat /var/run/reboot-required.pkgs 2>/dev/null
fi
echo @@df; timeout 10 df -P -k -T 2>/dev/null
echo @@pci; {PCI_SCRIPT}
echo @@module; head -n 1 /proc/driver/nvidia/version 2>/dev/null
echo @@smi
if command -v nvidia-smi >/dev/null 2>&1; then
  {smi.query("gpu", GPU_FIELDS, SMI_TIMEOUT_S)}
  rc=$?; echo "@@smi-exit"; echo $rc
  if [ $rc = 0 ]; then
    apps=$({smi.query("compute-apps", APP_FIELDS, SMI_TIMEOUT_S)})
    echo @@apps; printf '%s\\n' "$apps"
    echo @@owners
    printf '%s\\n' "$apps" | while IFS=, read -r uuid pid mem; do
      pid=$(printf %s "$pid" | tr -d ' ')
      case "$pid" in ''|*[!0-9]*) continue;; esac
      echo "$pid $(ps -o user:32=,comm= -p "$pid" 2>/dev/null)"
    done
  fi
else
  echo @@smi-exit; echo 127
fi
{NOTEBOOK_SCRIPT}
{SLURM_SCRIPT}
true
"""

# Filesystems worth showing: real disks and network shares, not pseudo or boot partitions.
SKIP_FS_TYPES = {
    "tmpfs",
    "devtmpfs",
    "squashfs",
    "overlay",
    "efivarfs",
    "vfat",
    "proc",
    "sysfs",
    "ramfs",
    "devpts",
    "fuse.lxcfs",
    "fuse.snapfuse",
}
SKIP_MOUNT_PREFIXES = ("/boot", "/snap", "/run", "/dev", "/sys", "/proc", "/var/lib/docker")


@dataclass
class Gpu:
    index: int
    name: str
    utilization_pct: float | None
    memory_used_mib: float | None
    memory_total_mib: float | None
    temperature_c: float | None
    power_draw_w: float | None
    power_limit_w: float | None
    uuid: str = ""


@dataclass
class GpuProcess:
    gpu_index: int | None
    pid: int
    user: str
    command: str
    memory_mib: float | None


@dataclass
class Disk:
    mount: str
    fs_type: str
    size_bytes: int
    free_bytes: int

    @property
    def used_pct(self) -> float:
        if not self.size_bytes:
            return 0.0
        return 100.0 * (self.size_bytes - self.free_bytes) / self.size_bytes


@dataclass
class NotebookService:
    """The jupyter step's unit on the box (it exists: LoadState is not "not-found")."""

    unit: str  # provision-jupyter.service or provision-jupyterhub.service
    kind: str  # "jupyterlab" (lab mode) or "jupyterhub" (hub mode)
    state: str  # its ActiveState ("active", "failed", ...); "?" when not one systemd has
    user: str = ""  # the unit's User= (the lab's login user); "" when unset or not a user name


@dataclass
class NotebookServer:
    """A running per-user server of the hub: a `jupyter-USER-singleuser.service` unit."""

    user: str  # its User= (or the name in the unit's); "?" when not a plain user name
    memory_bytes: int | None  # MemoryCurrent; None when not accounted
    memory_max_bytes: int | None  # MemoryMax; None when there is no limit ("infinity")
    cpu_s: float | None  # CPUUsageNSec in seconds; None when not accounted
    up_s: float | None  # how long it has been running; None when not known


@dataclass
class SlurmNode:
    """A node of the box's Slurm cluster, as sinfo shows it."""

    name: str
    state: str  # sinfo's short state: idle, alloc, mix, drain, down* ...
    gres: str  # e.g. gpu:2, or "(null)"
    reason: str  # why it is down or drained ("none" otherwise)


@dataclass
class SlurmJob:
    """A job of the cluster, as squeue shows it."""

    job_id: str
    user: str
    state: str  # RUNNING, PENDING, ...
    nodes: int
    gres: str  # per node, e.g. gres:gpu:1; N/A without
    where: str  # its nodes when running
    reason: str  # why it waits ("None" when running)


@dataclass
class HostStatus:
    host: str
    error: str = ""  # the host could not be reached or the script failed
    gpus: list[Gpu] = field(default_factory=list)
    processes: list[GpuProcess] = field(default_factory=list)
    gpu_reason: str = ""  # why there is no GPU table ("" when there is one)
    disks: list[Disk] = field(default_factory=list)
    load: tuple[float, float, float] | None = None
    uptime_s: float | None = None
    reboot_required: bool = False
    reboot_reasons: list[str] = field(default_factory=list)
    notebook_services: list[NotebookService] = field(default_factory=list)
    notebook_servers: list[NotebookServer] = field(default_factory=list)
    slurm_nodes: list[SlurmNode] = field(default_factory=list)
    slurm_jobs: list[SlurmJob] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        data["reachable"] = not self.error
        for disk, obj in zip(data["disks"], self.disks, strict=True):
            disk["used_pct"] = round(obj.used_pct, 1)
        return data


# --- parsing (pure) -------------------------------------------------------------------------


def sections(text: str) -> dict[str, list[str]]:
    """The script's output split at its "@@name" lines, each section as its lines."""
    return {name: body.splitlines() for name, body in split_sections(text).items()}


number = smi.number  # an nvidia-smi value; None for "[N/A]" and the like


def parse_gpus(lines: list[str]) -> list[Gpu]:
    """`nvidia-smi --query-gpu=GPU_FIELDS --format=csv,noheader,nounits` lines."""
    gpus = []
    for line in lines:
        if not line.strip():
            continue
        cells = smi.cells(line)
        if not cells[0].isdigit():
            continue  # a warning nvidia-smi printed between the rows
        # A name with a comma would shift the columns: rejoin the middle.
        extra = len(cells) - 9
        if extra < 0:
            raise ValueError(f"unexpected nvidia-smi line: {line!r}")
        name = ", ".join(cells[1 : 2 + extra])
        rest = cells[2 + extra :]
        gpus.append(
            Gpu(
                index=int(cells[0]),
                name=name,
                utilization_pct=number(rest[0]),
                memory_used_mib=number(rest[1]),
                memory_total_mib=number(rest[2]),
                temperature_c=number(rest[3]),
                power_draw_w=number(rest[4]),
                power_limit_w=number(rest[5]),
                uuid=rest[6],
            )
        )
    return gpus


def parse_processes(app_lines: list[str], owner_lines: list[str], gpus: list[Gpu]):
    """Compute processes (`--query-compute-apps=APP_FIELDS`) with owners from `ps`."""
    owners: dict[int, tuple[str, str]] = {}
    for line in owner_lines:
        parts = line.split(None, 2)
        if parts and parts[0].isdigit():
            user = parts[1] if len(parts) > 1 else "?"
            owners[int(parts[0])] = (user, parts[2].strip() if len(parts) > 2 else "?")
    index_of = {g.uuid: g.index for g in gpus}
    processes = []
    for line in app_lines:
        cells = smi.cells(line)
        if len(cells) != 3 or not cells[1].isdigit():
            continue  # "No running processes found" on old drivers, or nothing at all
        pid = int(cells[1])
        user, command = owners.get(pid, ("?", "?"))  # gone, or in another PID namespace
        processes.append(GpuProcess(index_of.get(cells[0]), pid, user, command, number(cells[2])))
    return processes


def parse_disks(lines: list[str]) -> list[Disk]:
    """`df -P -k -T`: the real filesystems, / first."""
    disks = []
    seen = set()
    for line in lines[1:]:  # the header
        parts = line.split(None, 6)
        if len(parts) < 7 or not parts[2].isdigit():
            continue
        source, fs_type, size_k, _used, avail_k, _pct, mount = parts
        if fs_type in SKIP_FS_TYPES or (source, mount) in seen:
            continue
        if mount != "/" and mount.startswith(SKIP_MOUNT_PREFIXES):
            continue
        seen.add((source, mount))
        disks.append(Disk(mount, fs_type, int(size_k) * 1024, int(avail_k) * 1024))
    return sorted(disks, key=lambda d: (d.mount != "/", d.mount))


def has_gpu(pci_lines: list[str]) -> bool:
    """Whether the PCI section lists a display controller. The class is the last field:
    PCI_SCRIPT prints "slot device class", recordings of the older script "slot class"."""
    return any(is_display(line.split()[-1]) for line in pci_lines if len(line.split()) > 1)


def gpu_reason(smi_exit: int, smi_lines: list[str], pci_lines: list[str], module: str) -> str:
    """Why nvidia-smi gave no GPU table, in words a box owner acts on."""
    gpu = has_gpu(pci_lines)
    text = "\n".join(smi_lines).strip()
    if smi_exit == 127:
        if not gpu:
            return "no NVIDIA GPU"
        return "NVIDIA GPU found but no driver installed (nvidia-smi missing): run provision driver"
    if "version mismatch" in text:
        lib = re.search(r"NVML library version:\s*(\S+)", text)
        mod = module_version(module)
        versions = ", ".join(
            v for v in (mod and f"module {mod}", lib and f"library {lib.group(1)}") if v
        )
        return (
            "driver/library version mismatch"
            + (f" ({versions})" if versions else "")
            + (": reboot needed")
        )
    if not gpu and ("No devices were found" in text or "couldn't communicate" in text):
        return "no NVIDIA GPU"
    if smi_exit == 9 or "couldn't communicate with the NVIDIA driver" in text:
        return "driver not loaded: reboot needed?"
    if "No devices were found" in text:
        return "no GPU visible to the driver (nvidia-smi: No devices were found)"
    if smi_exit == 124:
        return f"nvidia-smi failed: no answer within {SMI_TIMEOUT_S}s (GPU hung?)"
    first = next((line.strip() for line in smi_lines if line.strip()), f"exit {smi_exit}")
    return f"nvidia-smi failed: {first}"


USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")  # a plain account name (adduser's, no dots)
SERVER_RE = re.compile(r"jupyter-(.+)-singleuser\.service")
ACTIVE_STATES = {
    "active",
    "reloading",
    "refreshing",
    "inactive",
    "failed",
    "activating",
    "deactivating",
    "maintenance",
}
_UINT_RE = re.compile(r"[0-9]{1,20}")


def _uint(value: str | None) -> int | None:
    """A systemd uint64 property: None for "[not set]", "infinity", UINT64_MAX (older
    systemd's unset) or anything that is not plain digits."""
    if value is None or not _UINT_RE.fullmatch(value.strip()):
        return None
    n = int(value.strip())
    return n if n < 2**63 else None


def _user(value: str | None) -> str:
    value = (value or "").strip()
    return value if USER_RE.fullmatch(value) else ""


def unit_blocks(lines: list[str]) -> list[dict[str, str]]:
    """`systemctl show -p A -p B unit1 unit2`: one block of KEY=value lines per unit, blank
    lines between them; the first value of a key in a block counts."""
    blocks: list[dict[str, str]] = [{}]
    for line in lines:
        if not line.strip():
            if blocks[-1]:
                blocks.append({})
            continue
        key, sep, value = line.partition("=")
        if sep:
            blocks[-1].setdefault(key.strip(), value)
    return [b for b in blocks if b]


def parse_ages(lines: list[str]) -> dict[int, int]:
    """`ps -o pid=,etimes=`: seconds since each process started."""
    ages = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and all(_UINT_RE.fullmatch(p) for p in parts):
            ages[int(parts[0])] = int(parts[1])
    return ages


def parse_notebooks(lines: list[str], age_lines: list[str], uptime_s: float | None = None):
    """The @@notebooks section (`systemctl show` of the jupyter step's two units and of the
    running `jupyter-*-singleuser.service` units) → (services, servers). The host's text is
    data: unknown units are dropped, names that are not plain account names become "?",
    numbers that are not plain digits None."""
    ages = parse_ages(age_lines)
    services: list[NotebookService] = []
    servers: list[NotebookServer] = []
    seen: set[str] = set()
    for block in unit_blocks(lines):
        unit = block.get("Id", "").strip()
        if unit in seen:
            continue
        seen.add(unit)
        load = block.get("LoadState", "").strip()
        state = block.get("ActiveState", "").strip()
        state = state if state in ACTIVE_STATES else "?"
        if unit in NOTEBOOK_UNITS:
            if load and load != "not-found":
                services.append(
                    NotebookService(unit, NOTEBOOK_UNITS[unit], state, _user(block.get("User")))
                )
            continue
        match = SERVER_RE.fullmatch(unit)
        if not match or state != "active":
            continue  # not a server, or stopped between list-units and show
        user = _user(block.get("User")) or _user(match.group(1)) or "?"
        cpu_ns = _uint(block.get("CPUUsageNSec"))
        pid = _uint(block.get("MainPID"))
        up_s: float | None = ages.get(pid) if pid else None
        started_us = _uint(block.get("ActiveEnterTimestampMonotonic"))
        if up_s is None and started_us and uptime_s is not None:
            # CLOCK_MONOTONIC against /proc/uptime (which counts suspend): near enough
            up_s = uptime_s - started_us / 1e6 if uptime_s >= started_us / 1e6 else None
        servers.append(
            NotebookServer(
                user=user,
                memory_bytes=_uint(block.get("MemoryCurrent")),
                memory_max_bytes=_uint(block.get("MemoryMax")),
                cpu_s=None if cpu_ns is None else cpu_ns / 1e9,
                up_s=None if up_s is None else float(up_s),
            )
        )
    services.sort(key=lambda s: s.kind != "jupyterhub")
    servers.sort(key=lambda s: s.user)
    return services, servers


def parse_slurm(node_lines: list[str], job_lines: list[str]):
    """sinfo's and squeue's lines (SLURM_SCRIPT) -> ([SlurmNode], [SlurmJob]); a line with the
    wrong number of fields is dropped (host text: data only)."""
    nodes = {}
    for line in node_lines:
        parts = line.split("|", 3)
        if len(parts) == 4 and parts[0]:
            nodes.setdefault(parts[0], SlurmNode(*(p.strip() for p in parts)))
    jobs = []
    for line in job_lines:
        parts = line.split("|", 6)
        if len(parts) == 7 and parts[0] and parts[3].strip().isdigit():
            i, user, state, count, gres, where, reason = (p.strip() for p in parts)
            jobs.append(SlurmJob(i, user, state, int(count), gres, where, reason))
    return sorted(nodes.values(), key=lambda n: n.name), jobs


def parse(host: str, text: str) -> HostStatus:
    """The status script's output → HostStatus."""
    s = sections(text)
    status = HostStatus(host)
    load = (s.get("loadavg") or [""])[0].split()
    if len(load) >= 3:
        status.load = (float(load[0]), float(load[1]), float(load[2]))
    up = (s.get("uptime") or [""])[0].split()
    if up:
        status.uptime_s = float(up[0])
    reboot = [line.strip() for line in s.get("reboot", []) if line.strip()]
    if reboot and reboot[0] == "required":
        status.reboot_required = True
        status.reboot_reasons = list(dict.fromkeys(reboot[1:]))
    status.disks = parse_disks(s.get("df", []))
    exit_lines = s.get("smi-exit", [])
    smi_exit = int(exit_lines[0]) if exit_lines and exit_lines[0].strip().isdigit() else 255
    smi_lines = s.get("smi", [])
    if smi_exit == 0:
        status.gpus = parse_gpus(smi_lines)
        status.processes = parse_processes(s.get("apps", []), s.get("owners", []), status.gpus)
        if not status.gpus:
            status.gpu_reason = "no GPU visible to the driver"
    else:
        module = (s.get("module") or [""])[0]
        status.gpu_reason = gpu_reason(smi_exit, smi_lines, s.get("pci", []), module)
        if "reboot needed" in status.gpu_reason and "version mismatch" in status.gpu_reason:
            status.reboot_required = True
            status.reboot_reasons.append("NVIDIA driver/library mismatch")
    status.notebook_services, status.notebook_servers = parse_notebooks(
        s.get("notebooks", []), s.get("notebook-ages", []), status.uptime_s
    )
    status.slurm_nodes, status.slurm_jobs = parse_slurm(
        s.get("slurm-nodes", []), s.get("slurm-jobs", [])
    )
    return status


def gather(host: str, remote) -> HostStatus:
    """Run the script once on an open Remote and parse it."""
    result = remote.probe(SCRIPT)
    if not result.ok:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return HostStatus(host, error=f"status script exited {result.exit_code}: {last}")
    try:
        return parse(host, result.stdout)
    except ValueError as exc:
        return HostStatus(host, error=f"unexpected status output: {exc}")

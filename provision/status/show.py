"""`provision status`'s tables (pure): the GPUs of every host (utilisation, memory,
temperature, power, processes and their owners), then each host's uptime, load, free disk and
pending reboot, then, where a host has one, its notebook service and the hub's running user
servers, then the Slurm clusters the boxes are in (nodes, jobs), each once. Cells are the
host's text: made printable before they are measured."""

from __future__ import annotations

import re

from provision.output import printable
from provision.status.read import GpuProcess, HostStatus, NotebookServer


def size(n_bytes: float) -> str:
    """1.8T, 120G, 512M: df -h style."""
    value = float(n_bytes)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if value < 1024 or unit == "P":
            return f"{value:.0f}{unit}" if value >= 10 or unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {mins}m" if hours else f"{mins}m"


def _opt(value: float | None, fmt: str = "{:.0f}") -> str:
    return "N/A" if value is None else fmt.format(value)


def _gib(mib: float | None) -> str:
    return "N/A" if mib is None else f"{mib / 1024:.1f}"


def _process_text(p: GpuProcess) -> str:
    mem = f" {_gib(p.memory_mib)}G" if p.memory_mib is not None else ""
    return f"{p.user}:{p.command}({p.pid}){mem}"


def _cpu(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 60 else duration(seconds)


def _server_text(server: NotebookServer) -> str:
    """alice (1.2G of 4.0G, CPU 3m, up 2h 5m): memory used of its limit, CPU time, age."""
    used, limit = server.memory_bytes, server.memory_max_bytes
    parts = []
    if used is not None or limit is not None:
        mem = "?" if used is None else size(used)
        parts.append(f"{mem} of {size(limit)}" if limit is not None else mem)
    if server.cpu_s is not None:
        parts.append(f"CPU {_cpu(server.cpu_s)}")
    if server.up_s is not None:
        parts.append(f"up {duration(server.up_s)}")
    return f"{server.user} ({', '.join(parts)})" if parts else server.user


def notebooks_text(st: HostStatus) -> str:
    """jupyterhub active; 2 user servers: alice (...), bob (...). "" when the box has neither
    notebook service nor user server."""
    if not st.notebook_services and not st.notebook_servers:
        return ""
    # The lab runs as one user: name it; the hub runs as root, its users are the servers.
    services = ", ".join(
        f"{s.kind} ({s.user}) {s.state}"
        if s.kind == "jupyterlab" and s.user
        else f"{s.kind} {s.state}"
        for s in st.notebook_services
    )
    servers = ""
    n = len(st.notebook_servers)
    if n:
        listed = ", ".join(_server_text(s) for s in st.notebook_servers)
        servers = f"{n} user server{'s' if n > 1 else ''}: {listed}"
    elif any(s.kind == "jupyterhub" for s in st.notebook_services):
        servers = "no user servers"
    return "; ".join(t for t in (services, servers) if t)


def table(header: list[str], rows: list[list[str]], right: frozenset[int] = frozenset()):
    """Aligned columns; a row of two cells is [first column, text over the rest]. Cells are
    the host's text (GPU and process names): made printable before they are measured."""
    rows = [[printable(c) for c in r] for r in rows]
    full = [r for r in [header, *rows] if len(r) == len(header)]
    widths = [max(len(r[i]) for r in full) for i in range(len(header))]
    widths[0] = max(len(r[0]) for r in [header, *rows])
    lines = []
    for row in [header, *rows]:
        if len(row) != len(header):
            lines.append(f"{row[0]:<{widths[0]}}  {row[1]}".rstrip())
            continue
        cells = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def render(statuses: list[HostStatus], name_width: int = 40) -> str:
    """Two tables: the GPUs of every host, then each host's load, uptime, disks, reboot; a
    third of the notebook services and user servers where any host has them."""
    gpu_rows = []
    for st in statuses:
        if st.error:
            gpu_rows.append([st.host, "-  unreachable (see below)"])
            continue
        if not st.gpus:
            gpu_rows.append([st.host, "-  " + st.gpu_reason])
            continue
        for g in st.gpus:
            procs = [p for p in st.processes if p.gpu_index == g.index]
            mem = f"{_gib(g.memory_used_mib)}/{_gib(g.memory_total_mib)}G"
            power = f"{_opt(g.power_draw_w)}/{_opt(g.power_limit_w)}W"
            gpu_rows.append(
                [
                    st.host,
                    str(g.index),
                    g.name[:name_width],
                    _opt(g.utilization_pct, "{:.0f}%"),
                    mem,
                    _opt(g.temperature_c, "{:.0f}C"),
                    power,
                    ", ".join(_process_text(p) for p in procs) or "-",
                ]
            )
        unmapped = [p for p in st.processes if p.gpu_index is None]
        if unmapped:
            others = ", ".join(_process_text(p) for p in unmapped)
            gpu_rows.append([st.host, "?", "", "", "", "", "", others])
    host_rows = []
    for st in statuses:
        if st.error:
            host_rows.append([st.host, "error: " + st.error])
            continue
        load = " ".join(f"{x:.2f}" for x in st.load) if st.load else "?"
        disks = ", ".join(
            f"{d.mount} {size(d.free_bytes)} of {size(d.size_bytes)}" for d in st.disks
        )
        reboot = "no"
        if st.reboot_required:
            reasons = ", ".join(st.reboot_reasons)
            reboot = f"REQUIRED ({reasons})" if reasons else "REQUIRED"
        host_rows.append([st.host, duration(st.uptime_s), load, disks or "?", reboot])
    gpu_header = ["HOST", "GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "PROCESSES"]
    lines = table(gpu_header, gpu_rows, right=frozenset({3, 4, 5, 6}))
    lines.append("")
    lines += table(["HOST", "UP", "LOAD 1/5/15", "DISK FREE", "REBOOT"], host_rows)
    notebook_rows = [[st.host, notebooks_text(st)] for st in statuses if not st.error]
    notebook_rows = [row for row in notebook_rows if row[1]]
    if notebook_rows:
        lines.append("")
        lines += table(["HOST", "NOTEBOOKS"], notebook_rows)
    lines += cluster_lines(statuses)
    return "\n".join(lines) + "\n"


def _gpus(gres: str) -> str:
    """gres (gpu:2, gpu:a100:2(S:0), gres:gpu:1, gres/gpu=1) -> "2"; "-" without GPUs."""
    m = re.search(r"gpu(?::[A-Za-z0-9_.-]+)?[:=]([0-9]+)", gres)
    return m[1] if m else "-"


def cluster_lines(statuses: list[HostStatus]) -> list[str]:
    """The Slurm clusters the boxes are in: each one's nodes (state, GPUs, the reason a node is
    down or drained) and jobs (user, state, GPUs per node, where it runs or why it waits).
    Every box of a cluster sees the same; it is shown once, from the first box of it."""
    lines: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for st in statuses:
        key = tuple(n.name for n in st.slurm_nodes)
        if not key or key in seen:
            continue
        seen.add(key)
        node_rows = [
            [n.name, n.state, _gpus(n.gres), "" if n.reason.lower() == "none" else n.reason]
            for n in st.slurm_nodes
        ]
        lines.append("")
        lines += table([f"SLURM NODE (seen from {st.host})", "STATE", "GPUS", "REASON"], node_rows)
        job_rows = [
            [j.job_id, j.user, j.state, str(j.nodes), _gpus(j.gres),
             j.where if j.state == "RUNNING" else j.reason]
            for j in st.slurm_jobs
        ]  # fmt: skip
        lines.append("")
        if job_rows:
            lines += table(["JOB", "USER", "STATE", "NODES", "GPUS/NODE", "WHERE / WHY"], job_rows)
        else:
            lines.append("no jobs running or queued")
    return lines

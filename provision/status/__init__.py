"""`provision status`: what each box is doing right now, across hosts, read-only.

One shell script per host per refresh (`read.SCRIPT`) prints marked sections: load, uptime,
the pending-reboot flag, `df`, the NVIDIA PCI devices, the loaded kernel module's version and
two `nvidia-smi --format=csv,noheader,nounits` queries (GPUs, then compute processes with
their owners from `ps`), and the jupyter step's units with the hub's running user servers
(one `systemctl show`), and the Slurm cluster's nodes and jobs (`sinfo`, `squeue`) where
the box has a Slurm client. `parse` turns that text into a HostStatus and `render` (`show`) into
a table; both are pure, and unit-tested on recorded outputs (tests/data/status/). When there
is no GPU table, HostStatus.gpu_reason says why: no NVIDIA GPU, no driver, driver not loaded,
a driver/library mismatch (reboot needed) or the nvidia-smi error itself. `Poller` (`poll`)
keeps the connections of `--watch` open.
"""

from provision.status.poll import Poller
from provision.status.read import (
    APP_FIELDS,
    GPU_FIELDS,
    SCRIPT,
    SMI_TIMEOUT_S,
    Disk,
    Gpu,
    GpuProcess,
    HostStatus,
    gather,
    gpu_reason,
    has_gpu,
    number,
    parse,
    parse_disks,
    parse_gpus,
    parse_processes,
    sections,
)
from provision.status.show import duration, render, size, table

__all__ = [
    "APP_FIELDS",
    "GPU_FIELDS",
    "SCRIPT",
    "SMI_TIMEOUT_S",
    "Disk",
    "Gpu",
    "GpuProcess",
    "HostStatus",
    "Poller",
    "duration",
    "gather",
    "gpu_reason",
    "has_gpu",
    "number",
    "parse",
    "parse_disks",
    "parse_gpus",
    "parse_processes",
    "render",
    "sections",
    "size",
    "table",
]

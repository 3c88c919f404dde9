"""doctor: read-only findings about a box (GPUs, PCIe, RAM, power, storage, boot safety,
reachability), each ok / warn / fail (or skip) with a one-line reason and the fix.

Read (`gather`): one POSIX sh script as the login user (sysfs, /proc, lsblk, df, ss,
nvidia-smi when present) and, where sudo works without a prompt (or with the given password),
a second one as root for what needs it (`lspci -vv` link registers, `dmidecode`, `sshd -T`,
netplan files of mode 0600); the cards, the driver module and packages are the host facts'
(provision.facts.gpu). Decide: pure `parse` (text -> `DoctorData`, in `parsers`) and pure
`findings(data, settings, facts)` (-> `Finding`s): `rules` is the table of checks, found in
`hardware`, `boot` and `access`. Show (`report`): a table or JSON; `provision doctor` exits 1
when any finding failed. Works on a fresh box before any step ran.
"""

from provision.doctor.finding import (
    STATUSES,
    Box,
    Finding,
    GpuInfo,
    Service,
    gpu_infos,
    has_tensor_cores,
    library_version,
)
from provision.doctor.gather import (
    ROOT_SCRIPT,
    USER_SCRIPT,
    can_sudo,
    gather,
    parse,
    user_script,
)
from provision.doctor.hardware import LOAD_HINT
from provision.doctor.parsers import (
    DoctorData,
    Link,
    Listener,
    SmiGpu,
    gen_of_speed,
    parse_addresses,
    parse_cpu,
    parse_default_iface,
    parse_df,
    parse_listeners,
    parse_lspci_links,
    parse_mok_key,
    parse_mounts,
    parse_nvidia_smi,
    parse_sb_state,
    parse_sshd_config,
    parse_sshd_t,
    parse_sysfs_links,
    slot_key,
)
from provision.doctor.report import failed, render, to_json
from provision.doctor.rules import RULES, default_settings, findings, host_findings, services_of
from provision.doctor.settings import SETTINGS, Settings, SettingsGroup

__all__ = [
    "LOAD_HINT",
    "ROOT_SCRIPT",
    "RULES",
    "SETTINGS",
    "STATUSES",
    "USER_SCRIPT",
    "Box",
    "DoctorData",
    "Finding",
    "GpuInfo",
    "Link",
    "Listener",
    "Service",
    "Settings",
    "SettingsGroup",
    "SmiGpu",
    "can_sudo",
    "default_settings",
    "failed",
    "findings",
    "gather",
    "gen_of_speed",
    "gpu_infos",
    "has_tensor_cores",
    "host_findings",
    "library_version",
    "parse",
    "parse_addresses",
    "parse_cpu",
    "parse_default_iface",
    "parse_df",
    "parse_listeners",
    "parse_lspci_links",
    "parse_mok_key",
    "parse_mounts",
    "parse_nvidia_smi",
    "parse_sb_state",
    "parse_sshd_config",
    "parse_sshd_t",
    "parse_sysfs_links",
    "render",
    "services_of",
    "slot_key",
    "to_json",
    "user_script",
]

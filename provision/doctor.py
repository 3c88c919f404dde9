"""doctor: read-only findings about a box (GPUs, PCIe, RAM, power, storage, boot safety,
reachability), each ok / warn / fail (or skip) with a one-line reason and the fix.

Read: `gather` runs one POSIX sh script as the login user (sysfs, /proc, lsblk, df, ss,
nvidia-smi when present) and, where sudo works without a prompt (or with the given password),
a second one as root for what needs it (`lspci -vv` link registers, `dmidecode`, `sshd -T`,
netplan files of mode 0600). Decide: pure `parse` (text -> `DoctorData`) and pure
`findings(data, settings, facts)` (-> `Finding`s). Do: nothing; `provision doctor` prints a
table or JSON and exits 1 when any finding failed. Works on a fresh box before any step ran.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import click

from provision import compat
from provision.facts import Facts, split_sections
from provision.output import printable
from provision.settings import absolute_path, setting


def _not_negative(value: int) -> None:
    if value < 0:
        raise ValueError(f"{value} must be 0 or more")


@dataclass(frozen=True)
class Settings:
    """Settings of `provision doctor` (inventory keys `doctor.<field>`)."""

    psu_watts: int = setting(
        0, "the power supply's rating in W (0: the power check is skipped)", _not_negative
    )
    cpu_tdp_watts: int = setting(
        0, "the CPU's TDP in W (0: estimated from the core count)", _not_negative
    )
    data_mount: str = setting("", "a data disk that must be mounted here", absolute_path)
    min_free_gb: int = setting(
        50, "free space wanted on / for conda, CUDA and wheels (GB)", _not_negative
    )


@dataclass(frozen=True)
class SettingsGroup:
    """Settings that belong to a command rather than a step (`doctor.psu_watts`)."""

    name: str
    settings: type

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


SETTINGS = SettingsGroup("doctor", Settings)

# ---------------------------------------------------------------------------------------------
# Read: the gather scripts (read-only, POSIX sh, every section best effort)
# ---------------------------------------------------------------------------------------------

NVIDIA_SMI_FIELDS = (
    "index,name,pci.bus_id,memory.total,power.limit,pcie.link.gen.current,pcie.link.gen.max,"
    "pcie.link.width.current,pcie.link.width.max,driver_version"
)
DKMS_KEYS = ("/var/lib/dkms/mok.pub", "/var/lib/shim-signed/mok/MOK.der")
# Files that configure a static address: netplan, ifupdown, systemd-networkd, NetworkManager.
STATIC_CONFIG = r"""
grep -lE '^[[:space:]]*addresses:' /etc/netplan/*.yaml 2>/dev/null
grep -lE '^[[:space:]]*iface[[:space:]].*inet6?[[:space:]]+static' /etc/network/interfaces \
  /etc/network/interfaces.d/* 2>/dev/null
grep -liE '^[[:space:]]*Address=' /etc/systemd/network/*.network 2>/dev/null
grep -lE '^[[:space:]]*method=manual' /etc/NetworkManager/system-connections/* 2>/dev/null
"""

GATHER_SCRIPT = (
    r"""
echo @@nvidia-smi; if command -v nvidia-smi >/dev/null 2>&1; then
  timeout 30 nvidia-smi --query-gpu=FIELDS --format=csv,noheader,nounits 2>&1; rc=$?
  echo @@nvidia-smi-exit; echo $rc; fi
echo @@pcie; for d in /sys/bus/pci/devices/*; do
  [ "$(cat "$d/vendor" 2>/dev/null)" = 0x10de ] || continue
  case "$(cat "$d/class" 2>/dev/null)" in 0x03*) ;; *) continue;; esac
  echo "${d##*/}|$(cat "$d/current_link_speed" 2>/dev/null)|$(cat "$d/current_link_width" \
    2>/dev/null)|$(cat "$d/max_link_speed" 2>/dev/null)|$(cat "$d/max_link_width" 2>/dev/null)"
done
echo @@lspci-vv; command -v lspci >/dev/null 2>&1 && lspci -vv -nn -d 10de: 2>/dev/null
echo @@df-root; df -B1 -P / 2>/dev/null | tail -n 1
echo @@cpu; nproc 2>/dev/null; grep -m1 '^model name' /proc/cpuinfo
  grep -E '^(physical id|cpu cores)' /proc/cpuinfo | sort -u
echo @@mokutil; command -v mokutil >/dev/null 2>&1 && mokutil --sb-state 2>&1
echo @@mok-key; if command -v mokutil >/dev/null 2>&1; then for k in KEYS; do
  [ -e "$k" ] && mokutil --test-key "$k" 2>&1; done; fi
echo @@modules; grep -E '^(nouveau|nvidia) ' /proc/modules 2>/dev/null | cut -d' ' -f1
echo @@headers; k=$(uname -r); echo "$k"; [ -e "/lib/modules/$k/build" ] && echo present
echo @@reboot-pkgs; cat /var/run/reboot-required.pkgs 2>/dev/null
echo @@dkms; command -v dkms >/dev/null 2>&1 && dkms status 2>/dev/null | grep -i nvidia
echo @@mounts; cat /proc/self/mounts 2>/dev/null
echo @@route; ip -o -4 route show default 2>/dev/null
echo @@addr4; ip -o -4 addr show scope global 2>/dev/null
echo @@static-config; STATIC
echo @@sshd-config; for f in /etc/ssh/sshd_config.d/*.conf /etc/ssh/sshd_config; do
  [ -r "$f" ] && { echo "# file: $f"; cat "$f"; }; done
echo @@listen; ss -Hltn 2>/dev/null
echo @@end
""".replace("FIELDS", NVIDIA_SMI_FIELDS)
    .replace("KEYS", " ".join(DKMS_KEYS))
    .replace("STATIC", STATIC_CONFIG.strip())
)

# As root (sudo -n, or with the given password): what the login user cannot read. Its
# sections replace the login user's where they are not empty.
ROOT_SCRIPT = r"""
echo @@lspci-vv; command -v lspci >/dev/null 2>&1 && lspci -vv -nn -d 10de: 2>/dev/null
echo @@dmidecode; command -v dmidecode >/dev/null 2>&1 && dmidecode -t processor 2>/dev/null
echo @@sshd-t; sshd -T 2>/dev/null | grep -E '^(passwordauthentication|permitrootlogin) '
echo @@static-config; STATIC
echo @@end
""".replace("STATIC", STATIC_CONFIG.strip())


def can_sudo(facts: Facts, has_password: bool) -> bool:
    """Whether the root script can run without a prompt."""
    return facts.uid == 0 or facts.sudo == "nopasswd" or (facts.sudo == "password" and has_password)


def gather(remote, facts: Facts) -> str:
    """Run the gather scripts; the root one only where sudo works. Returns the merged text."""
    remote.is_root = facts.uid == 0
    text = remote.run(GATHER_SCRIPT, sudo=False, check=False).stdout
    has_password = bool(remote.connection.sudo_password)
    if can_sudo(facts, has_password):
        root = remote.run(ROOT_SCRIPT, sudo=True, check=False)
        if root.ok:
            text += "\n@@root\n" + root.stdout
    return text


# ---------------------------------------------------------------------------------------------
# Parse: text -> dataclasses (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmiGpu:
    """One line of `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`."""

    index: int
    name: str
    bus_id: str
    memory_mib: int | None
    power_limit_w: float | None
    gen_current: int | None
    gen_max: int | None
    width_current: int | None
    width_max: int | None
    driver_version: str


@dataclass(frozen=True)
class Link:
    """A PCIe link: the card's maximum (LnkCap) and what it trained to (LnkSta)."""

    slot: str  # "0000:01:00.0"
    gen: int | None
    width: int | None
    max_gen: int | None
    max_width: int | None


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket from `ss -Hltn`."""

    address: str  # "0.0.0.0", "127.0.0.1", "::", "*"
    port: int


@dataclass(frozen=True)
class DoctorData:
    """Everything the doctor gathered beyond the standard facts."""

    smi_present: bool = False
    smi_exit: int = 0
    smi_output: str = ""  # nvidia-smi's text when it failed
    smi_gpus: tuple[SmiGpu, ...] = ()
    links: dict[str, Link] = field(default_factory=dict)  # by slot key "0000:01:00.0"
    root_free_bytes: int | None = None
    root_size_bytes: int | None = None
    threads: int = 0
    cpu_model: str = ""
    cores: int = 0  # physical cores (dmidecode, else /proc/cpuinfo), 0 when unknown
    sb_state: str = ""  # enabled | disabled | bios | "" (no mokutil)
    mok_enrolled: bool | None = None  # the DKMS signing key: None when no key on disk
    modules: tuple[str, ...] = ()
    kernel: str = ""
    headers: bool = False
    reboot_packages: tuple[str, ...] = ()
    dkms_nvidia: tuple[str, ...] = ()
    mounts: dict[str, tuple[str, str]] = field(default_factory=dict)  # target -> (source, fs)
    default_iface: str = ""
    addresses: tuple[tuple[str, str, bool], ...] = ()  # (iface, address/prefix, dynamic)
    static_config: tuple[str, ...] = ()  # files that configure a static address
    sshd: dict[str, str] = field(default_factory=dict)  # passwordauthentication, permitrootlogin
    sshd_source: str = ""  # "sshd -T" or "config files"
    listeners: tuple[Listener, ...] = ()


GT_PER_GEN = {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6}


def gen_of_speed(text: str) -> int | None:
    """PCIe generation from a link speed: "8GT/s", "16.0 GT/s PCIe", "2.5 GT/s"."""
    match = re.search(r"(\d+(?:\.\d+)?)\s*GT/s", text)
    return GT_PER_GEN.get(float(match[1])) if match else None


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def _float(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def slot_key(slot: str) -> str:
    """A PCI address with its domain as sysfs writes it: 0000:01:00.0 (nvidia-smi: 8 digits)."""
    text = slot.strip().lower()
    parts = text.split(":")
    if len(parts) == 3:
        return f"{int(parts[0], 16):04x}:{parts[1]}:{parts[2]}"
    if len(parts) == 2:
        return f"0000:{text}"
    return text


def parse_nvidia_smi(text: str) -> tuple[SmiGpu, ...]:
    """The CSV lines of the query (no header, no units); other lines are ignored."""
    gpus = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 10 or not cells[0].isdigit():
            continue
        gpus.append(
            SmiGpu(
                index=int(cells[0]),
                name=cells[1],
                bus_id=slot_key(cells[2]),
                memory_mib=_int(cells[3]),
                power_limit_w=_float(cells[4]),
                gen_current=_int(cells[5]),
                gen_max=_int(cells[6]),
                width_current=_int(cells[7]),
                width_max=_int(cells[8]),
                driver_version=cells[9],
            )
        )
    return tuple(gpus)


def parse_lspci_links(text: str) -> dict[str, Link]:
    """LnkCap/LnkSta of each device in `lspci -vv -nn` (display controllers only)."""
    links: dict[str, Link] = {}
    slot = ""
    cap: tuple[int | None, int | None] = (None, None)
    for line in text.splitlines():
        if line and not line[0].isspace():
            slot = slot_key(line.split()[0]) if re.search(r"\[03[0-9a-f]{2}\]", line) else ""
            cap = (None, None)
            continue
        if not slot:
            continue
        body = line.strip()
        width = re.search(r"Width x(\d+)", body)
        if body.startswith("LnkCap:"):
            cap = (gen_of_speed(body), int(width[1]) if width else None)
        elif body.startswith("LnkSta:"):
            links[slot] = Link(slot, gen_of_speed(body), int(width[1]) if width else None, *cap)
    return links


def parse_sysfs_links(text: str) -> dict[str, Link]:
    """`slot|current_link_speed|current_link_width|max_link_speed|max_link_width` lines."""
    links = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) != 5:
            continue
        slot = slot_key(parts[0])
        links[slot] = Link(
            slot, gen_of_speed(parts[1]), _int(parts[2]), gen_of_speed(parts[3]), _int(parts[4])
        )
    return links


def parse_df(text: str) -> tuple[int | None, int | None]:
    """(available, size) in bytes from `df -B1 -P /`'s last line."""
    fields = text.split()
    if len(fields) >= 6 and fields[1].isdigit() and fields[3].isdigit():
        return int(fields[3]), int(fields[1])
    return None, None


def parse_cpu(text: str, dmidecode: str) -> tuple[int, str, int]:
    """(threads, model, physical cores) from nproc + /proc/cpuinfo, cores from dmidecode."""
    threads, model = 0, ""
    sockets: set[str] = set()
    per_socket = 0
    for line in text.splitlines():
        key, sep, value = (part.strip() for part in line.partition(":"))
        if not sep and key.isdigit():
            threads = int(key)
        elif key == "model name":
            model = " ".join(value.split())
        elif key == "physical id":
            sockets.add(value)
        elif key == "cpu cores" and value.isdigit():
            per_socket = int(value)  # every socket of a board has the same CPU model
    cores = per_socket * max(1, len(sockets))
    dmi_cores = [int(m) for m in re.findall(r"^\s*Core Count:\s*(\d+)", dmidecode, re.M)]
    if dmi_cores and sum(dmi_cores) > 0:
        cores = sum(dmi_cores)
    return threads, model, cores


def parse_sb_state(text: str) -> str:
    """`mokutil --sb-state`: enabled | disabled | bios (no EFI variables) | "" (unknown)."""
    low = text.lower()
    if "secureboot enabled" in low:
        return "enabled"
    if "secureboot disabled" in low:
        return "disabled"
    if "not supported" in low:
        return "bios"
    return ""


def parse_mok_key(text: str) -> bool | None:
    """`mokutil --test-key KEY`: True when enrolled, None when there was no key to test."""
    low = text.lower()
    if "already enrolled" in low:
        return True
    if "not enrolled" in low:
        return False
    return None


def parse_mounts(text: str) -> dict[str, tuple[str, str]]:
    """/proc/self/mounts -> {target: (source, fstype)}; octal escapes (\\040) decoded."""
    mounts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), parts[1])
            mounts[target] = (parts[0], parts[2])
    return mounts


def parse_addresses(text: str) -> tuple[tuple[str, str, bool], ...]:
    """`ip -o -4 addr show scope global` -> (iface, address/prefix, dynamic i.e. DHCP)."""
    result = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet":
            result.append((parts[1], parts[3], "dynamic" in parts))
    return tuple(result)


def parse_default_iface(text: str) -> str:
    """The interface of the first default route (`ip -o -4 route show default`)."""
    match = re.search(r"\bdev\s+(\S+)", text)
    return match[1] if match else ""


def parse_sshd_t(text: str) -> dict[str, str]:
    """`sshd -T` lines (lower-case keywords, one value each)."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value:
            values[key.lower()] = value.strip().lower()
    return values


def parse_sshd_config(text: str) -> dict[str, str]:
    """sshd's first-match rule over the drop-ins (read first) and sshd_config; `Match`
    blocks are ignored."""
    values: dict[str, str] = {}
    in_match = False
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        key = words[0].lower()
        if key == "match":
            in_match = words[1].lower() != "all"
            continue
        if not in_match and key in ("passwordauthentication", "permitrootlogin"):
            values.setdefault(key, words[1].lower())
    return values


def parse_listeners(text: str) -> tuple[Listener, ...]:
    """`ss -Hltn` lines: State Recv-Q Send-Q Local:Port Peer:Port."""
    result = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local = parts[3] if parts[0] == "LISTEN" else parts[2]
        address, _, port = local.rpartition(":")
        if port.isdigit():
            address = address.strip("[]").split("%", 1)[0]
            result.append(Listener(address, int(port)))
    return tuple(result)


def parse(text: str) -> DoctorData:
    """The gather scripts' output (login user's sections, then root's after @@root)."""
    user_text, _, root_text = text.partition("\n@@root\n")
    s = split_sections(user_text)
    root = split_sections(root_text)
    for key, value in root.items():
        if value.strip():
            s[key] = value
    links = parse_sysfs_links(s.get("pcie", ""))
    # lspci's registers win where root could read them (unprivileged lspci shows no caps).
    links.update(parse_lspci_links(s.get("lspci-vv", "")))
    smi_exit = _int(s.get("nvidia-smi-exit", "0").strip() or "0")
    free, size = parse_df(s.get("df-root", ""))
    threads, model, cores = parse_cpu(s.get("cpu", ""), s.get("dmidecode", ""))
    headers = s.get("headers", "").splitlines()
    sshd = parse_sshd_t(s.get("sshd-t", ""))
    sshd_source = "sshd -T" if sshd else "config files"
    if not sshd:
        sshd = parse_sshd_config(s.get("sshd-config", ""))
    return DoctorData(
        smi_present="nvidia-smi-exit" in s,
        smi_exit=smi_exit if smi_exit is not None else 0,
        smi_output=s.get("nvidia-smi", ""),
        smi_gpus=parse_nvidia_smi(s.get("nvidia-smi", "")),
        links=links,
        root_free_bytes=free,
        root_size_bytes=size,
        threads=threads,
        cpu_model=model,
        cores=cores,
        sb_state=parse_sb_state(s.get("mokutil", "")),
        mok_enrolled=parse_mok_key(s.get("mok-key", "")),
        modules=tuple(s.get("modules", "").split()),
        kernel=headers[0].strip() if headers else "",
        headers="present" in headers[1:],
        reboot_packages=tuple(s.get("reboot-pkgs", "").split()),
        dkms_nvidia=tuple(x for x in s.get("dkms", "").splitlines() if x.strip()),
        mounts=parse_mounts(s.get("mounts", "")),
        default_iface=parse_default_iface(s.get("route", "")),
        addresses=parse_addresses(s.get("addr4", "")),
        static_config=tuple(sorted({x for x in s.get("static-config", "").split() if x})),
        sshd=sshd,
        sshd_source=sshd_source if sshd else "",
        listeners=parse_listeners(s.get("listen", "")),
    )


# ---------------------------------------------------------------------------------------------
# Decide: findings (pure)
# ---------------------------------------------------------------------------------------------

STATUSES = ("ok", "skip", "warn", "fail")
GIB = 1024**3
BASE_WATTS = 100  # board, RAM, disks, fans
WATTS_PER_CORE = 10  # the CPU estimate without doctor.cpu_tdp_watts
PSU_WARN = 0.8  # a PSU is happiest below 80 % of its rating
RAM_SLACK = 0.94  # MemTotal is a few % below the installed RAM (firmware, kernel)
FREE_FAIL_GB = 5  # below this apt and dpkg stop working
NO_TENSOR_CORES = re.compile(r"GTX 16\d\d")  # Turing GTX 16xx: no tensor cores
LOAD_HINT = "an idle card may drop its link speed; check under load"


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report."""

    area: str
    status: str  # ok | skip | warn | fail
    reason: str
    fix: str = ""


@dataclass(frozen=True)
class GpuInfo:
    """A card on the box: its slot, the table's entry (None: unknown) and nvidia-smi's line."""

    slot: str
    device_id: str
    model: compat.Gpu | None
    smi: SmiGpu | None
    lspci_name: str

    @property
    def name(self) -> str:
        if self.model:
            return self.model.name
        if self.smi:
            return self.smi.name
        return self.lspci_name or f"10de:{self.device_id}"

    @property
    def vram_gib(self) -> float | None:
        if self.smi and self.smi.memory_mib:
            return self.smi.memory_mib / 1024
        return self.model.vram_gb if self.model else None


def gpu_infos(data: DoctorData, facts: Facts) -> list[GpuInfo]:
    """The NVIDIA display controllers in slot order, with what is known about each."""
    by_bus = {g.bus_id: g for g in data.smi_gpus}
    infos = []
    for device in sorted(facts.gpus, key=lambda d: slot_key(d.slot)):
        key = slot_key(device.slot)
        name = re.search(r"\[([^\]]*)\] \[10de:", device.name)
        infos.append(
            GpuInfo(
                slot=key,
                device_id=device.device_id,
                model=compat.gpu_by_id(device.device_id),
                smi=by_bus.get(key),
                lspci_name=name[1] if name else "",
            )
        )
    return infos


def _short(slot: str) -> str:
    return slot.removeprefix("0000:")


def _gb(n_bytes: float) -> str:
    """Memory (RAM, VRAM, swap) in binary GB, as cards and DIMMs are sold."""
    return f"{n_bytes / GIB:.0f} GB" if n_bytes >= 10 * GIB else f"{n_bytes / GIB:.1f} GB"


def _disk_gb(n_bytes: float) -> str:
    """Disk space in decimal GB, as doctor.min_free_gb counts it."""
    return f"{n_bytes / 1e9:.0f} GB" if n_bytes >= 1e10 else f"{n_bytes / 1e9:.1f} GB"


SOURCE_SHORT = {"ubuntu": "Ubuntu's signed modules", "nvidia": "NVIDIA's repo", "debian": "Debian"}


def has_tensor_cores(gpu: compat.Gpu) -> bool:
    """Volta and newer, except the Turing GTX 16xx cards."""
    volta = compat.ARCH_ORDER.index("volta")
    return compat.ARCH_ORDER.index(gpu.arch) >= volta and not NO_TENSOR_CORES.search(gpu.name)


def _driver_packages(facts: Facts) -> dict[str, str]:
    """Installed NVIDIA driver packages -> version."""
    from provision.facts.gpu import DRIVER_PREFIXES, NOT_DRIVER

    return {
        name: pkg.version
        for name, pkg in facts.packages.items()
        if pkg.installed and name.startswith(DRIVER_PREFIXES) and not name.startswith(NOT_DRIVER)
    }


def _upstream(version: str) -> str:
    return version.split(":")[-1].split("-")[0].split("~")[0]


def module_version(facts: Facts) -> str:
    """The loaded kernel module's version from /proc/driver/nvidia/version ("" if none)."""
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", facts.nvidia_driver)
    return match[1] if match else ""


def library_version(facts: Facts) -> str:
    """The user-space libraries' version from the installed packages ("" if none)."""
    for prefix in ("libnvidia-compute-", "libcuda1", "libnvidia-ml1", "nvidia-utils-"):
        for name, pkg in sorted(facts.packages.items()):
            if pkg.installed and name.startswith(prefix):
                return _upstream(pkg.version)
    return ""


def request_of(settings: dict) -> compat.Request:
    """The user's explicit GPU-stack choices from a host's settings (driver, cuda, pytorch)."""
    driver, cuda, torch = settings["driver"], settings["cuda"], settings["pytorch"]
    return compat.Request(
        branch=driver.branch,
        flavour=driver.flavour,
        source=driver.source,
        cuda=cuda.version,
        torch_index=torch.index,
        torch_version=torch.version,
    )


def findings(
    data: DoctorData,
    settings: Settings,
    facts: Facts,
    *,
    request: compat.Request | None = None,
    tensorboard_port: int = 6006,
    tensorboard_bind_all: bool = False,
) -> list[Finding]:
    """Every finding for one box, in the order of the report."""
    request = request or compat.Request()
    gpus = gpu_infos(data, facts)
    choice, stack = _stack(gpus, facts, request)
    out: list[Finding] = []
    out += _gpu_findings(gpus)
    if gpus:
        out.append(stack)
        out += _pcie_findings(data, gpus)
    out.append(_cpu(data))
    out += _memory(gpus, facts)
    out.append(_power(data, settings, gpus))
    out += _storage(data, settings, facts)
    source = _driver_source(choice, request, facts)
    out.append(_secure_boot(data, facts, gpus, source))
    out.append(_nouveau(data, facts, gpus))
    out.append(_headers(data, facts, source))
    out.append(_reboot(data, facts))
    if gpus:
        out.append(_held(facts))
        out.append(_mismatch(data, facts))
    out.append(_address(data))
    out.append(_sshd(data))
    out.append(_tensorboard(data, tensorboard_port, tensorboard_bind_all))
    return out


def _gpu_findings(gpus: list[GpuInfo]) -> list[Finding]:
    if not gpus:
        return [
            Finding(
                "GPU",
                "warn",
                "no NVIDIA GPU found (no display controller with vendor 10de on the PCI bus)",
                "seat the card and its power cables; in a VM pass the GPU through; then "
                "`lspci -nn -d 10de:` lists it",
            )
        ]
    out = []
    for number, gpu in enumerate(gpus):
        area = f"GPU {number}"
        where = f"{_short(gpu.slot)}, 10de:{gpu.device_id}"
        if gpu.model is None:
            out.append(
                Finding(
                    area,
                    "warn",
                    f"{gpu.name} ({where}) is not in compat's card table",
                    "give the architecture: provision compat --host HOST --arch ampere "
                    "(or 8.6), and set driver.branch if needed",
                )
            )
            continue
        vram = gpu.vram_gib
        tensor = "tensor cores" if has_tensor_cores(gpu.model) else "no tensor cores"
        vram_text = "VRAM unknown" if vram is None else f"{vram:.0f} GB VRAM"
        arch = compat.ARCH_TITLES[gpu.model.arch]
        out.append(
            Finding(
                area,
                "ok",
                f"{gpu.name} ({where}): {arch}, {vram_text}, compute {gpu.model.compute}, {tensor}",
            )
        )
    return out


def _stack(
    gpus: list[GpuInfo], facts: Facts, request: compat.Request
) -> tuple[compat.Choice | None, Finding]:
    from provision.errors import ConfigError

    known = [g.model for g in gpus if g.model]
    if gpus and not known:
        return None, Finding(
            "GPU stack",
            "warn",
            "no card compat knows: it cannot choose the driver, CUDA and PyTorch",
            "provision compat --host HOST --arch <architecture or compute capability>",
        )
    try:
        choice = compat.choose(known, facts.os_key, request)
    except ConfigError as exc:
        return None, Finding(
            "GPU stack",
            "fail",
            f"compat refuses: {exc.message}",
            exc.hint or "see `provision compat --host HOST`",
        )
    return choice, Finding(
        "GPU stack",
        "ok",
        f"compat chooses driver {choice.driver_branch} ({choice.flavour}, "
        f"{SOURCE_SHORT.get(choice.source, choice.source)}), CUDA {choice.cuda or 'none'}, "
        f"PyTorch index {choice.torch_index}"
        + (f" (torch <= {choice.torch_max})" if choice.torch_max else ""),
    )


def _pcie_findings(data: DoctorData, gpus: list[GpuInfo]) -> list[Finding]:
    out = []
    for number, gpu in enumerate(gpus):
        area = f"PCIe {number}"
        link = data.links.get(gpu.slot)
        smi = gpu.smi
        if link is None or link.width is None:
            out.append(
                Finding(
                    area,
                    "skip",
                    f"{_short(gpu.slot)}: link width and speed not readable "
                    "(no sysfs link files, lspci -vv needs root)",
                    "run doctor as a user with sudo, or check `sudo lspci -vv -s SLOT`",
                )
            )
            continue
        max_width = link.max_width or (smi.width_max if smi else None) or 16
        max_gen = link.max_gen or (smi.gen_max if smi else None)
        gen = link.gen
        if smi and smi.gen_current:
            gen = smi.gen_current
        shown = f"x{link.width} (of x{max_width}), gen {gen or '?'} (of {max_gen or '?'})"
        problems = []
        if link.width < max_width or link.width < 16 <= max_width:
            problems.append(f"the link runs at x{link.width} of the card's x{max_width}")
        if gen and max_gen and gen < max_gen:
            problems.append(f"gen {gen} of {max_gen}: {LOAD_HINT}")
        if not problems:
            out.append(Finding(area, "ok", f"{_short(gpu.slot)}: {shown}"))
            continue
        width_fix = (
            "move the card to a slot wired x16 (the board manual lists the electrical width; "
            "M.2 or other cards may share lanes)"
        )
        gen_fix = "check under load (nvidia-smi -q -d PCIE while training); if it stays low, "
        gen_fix += "reseat the card, drop a riser, or set the slot's PCIe gen in the firmware"
        out.append(
            Finding(
                area,
                "warn",
                f"{_short(gpu.slot)}: " + "; ".join(problems),
                width_fix if link.width < max_width or link.width < 16 <= max_width else gen_fix,
            )
        )
    return out


def _cpu(data: DoctorData) -> Finding:
    if not data.threads and not data.cpu_model:
        return Finding("CPU", "skip", "the CPU was not readable (/proc/cpuinfo)")
    cores = f"{data.cores} cores, " if data.cores else ""
    return Finding(
        "CPU", "ok", f"{data.cpu_model or 'unknown model'}: {cores}{data.threads} threads"
    )


def _memory(gpus: list[GpuInfo], facts: Facts) -> list[Finding]:
    ram = facts.mem_total_kb * 1024
    vram = [g.vram_gib for g in gpus]
    if not gpus:
        ram_finding = Finding(
            "RAM", "ok", f"{_gb(ram)} RAM (no GPU: the 2 x VRAM rule does not apply yet)"
        )
    elif None in vram:
        ram_finding = Finding(
            "RAM",
            "skip",
            f"{_gb(ram)} RAM; the VRAM of an unknown card is not known (needs nvidia-smi)",
            "install the driver (provision driver) and run doctor again",
        )
    else:
        total = sum(v for v in vram if v) * GIB
        wanted = 2 * total
        text = f"{_gb(ram)} RAM for {_gb(total)} VRAM (rule: 2 x VRAM = {_gb(wanted)})"
        if ram >= RAM_SLACK * wanted:
            ram_finding = Finding("RAM", "ok", text)
        else:
            ram_finding = Finding(
                "RAM",
                "warn",
                text + ": data loaders and pinned memory will swap",
                f"add RAM to at least {_gb(wanted)}, or use fewer DataLoader workers",
            )
    if facts.swap_total_kb > 0:
        swap = Finding("swap", "ok", f"{_gb(facts.swap_total_kb * 1024)} swap")
    else:
        swap = Finding(
            "swap",
            "warn",
            "no swap: running out of RAM kills the job (OOM killer) instead of slowing it",
            "sudo fallocate -l 16G /swapfile && sudo chmod 600 /swapfile && sudo mkswap "
            "/swapfile && sudo swapon /swapfile; add `/swapfile none swap sw 0 0` to /etc/fstab",
        )
    return [ram_finding, swap]


def _power(data: DoctorData, settings: Settings, gpus: list[GpuInfo]) -> Finding:
    if not settings.psu_watts:
        return Finding(
            "power",
            "skip",
            "skipped: the PSU rating is not set",
            "set doctor.psu_watts=850 (your PSU's rating) in the inventory",
        )
    limits = [g.smi.power_limit_w if g.smi else None for g in gpus]
    if None in limits:
        return Finding(
            "power",
            "skip",
            "skipped: the GPUs' power limits need nvidia-smi (the driver)",
            "install the driver (provision driver) and run doctor again",
        )
    gpu_w = round(sum(w for w in limits if w))
    if settings.cpu_tdp_watts:
        cpu_w, cpu_text = settings.cpu_tdp_watts, f"CPU {settings.cpu_tdp_watts} W"
    else:
        cores = data.cores or data.threads
        cpu_w = WATTS_PER_CORE * cores
        cpu_text = f"CPU ~{cpu_w} W (estimate: {cores} cores x {WATTS_PER_CORE} W)"
    total = gpu_w + cpu_w + BASE_WATTS
    share = total / settings.psu_watts
    text = (
        f"{total} W of a {settings.psu_watts} W PSU ({share:.0%}): GPUs {gpu_w} W + "
        f"{cpu_text} + {BASE_WATTS} W base"
    )
    fix = (
        f"a PSU of at least {int(total / PSU_WARN / 50 + 0.999) * 50} W, or lower the GPU "
        "power limit (sudo nvidia-smi -pl WATTS)"
    )
    if not settings.cpu_tdp_watts:
        fix += "; set doctor.cpu_tdp_watts for a better estimate"
    if share > 1:
        return Finding("power", "fail", text + ": above the PSU's rating", fix)
    if share > PSU_WARN:
        return Finding("power", "warn", text + f": above {PSU_WARN:.0%}", fix)
    return Finding("power", "ok", text)


def _root_disk(facts: Facts):
    return next((d for d in facts.disks if d.mountpoint == "/"), None)


def _storage(data: DoctorData, settings: Settings, facts: Facts) -> list[Finding]:
    out = []
    root = _root_disk(facts)
    if root is None:
        why = "a container's root" if facts.in_container else "no block device"
        out.append(Finding("root disk", "skip", f"/ is not on a block device lsblk shows ({why})"))
    elif root.rotational:
        out.append(
            Finding(
                "root disk",
                "warn",
                f"/ is on a rotational disk ({root.name}): conda, pip and datasets crawl on an HDD",
                "install the OS on an SSD/NVMe and keep the HDD for bulk data "
                "(a VM's virtual disk may just report rotational)",
            )
        )
    else:
        out.append(Finding("root disk", "ok", f"/ is on an SSD ({root.name}, not rotational)"))
    free = data.root_free_bytes
    if free is None:
        out.append(Finding("free space", "skip", "df / gave nothing"))
    else:
        text = f"{_disk_gb(free)} free on /"
        if data.root_size_bytes:
            text += f" of {_disk_gb(data.root_size_bytes)}"
        fix = (
            "free space (sudo apt-get clean; conda clean -a; pip cache purge) or grow the "
            f"root filesystem; conda, CUDA and wheels want {settings.min_free_gb} GB"
        )
        if free < FREE_FAIL_GB * 10**9:
            out.append(Finding("free space", "fail", text + ": apt and dpkg will fail", fix))
        elif free < settings.min_free_gb * 10**9:
            out.append(
                Finding(
                    "free space",
                    "warn",
                    text + f" (doctor.min_free_gb = {settings.min_free_gb})",
                    fix,
                )
            )
        else:
            out.append(Finding("free space", "ok", text))
    if settings.data_mount:
        mount = data.mounts.get(settings.data_mount)
        if mount is None:
            out.append(
                Finding(
                    "data disk",
                    "fail",
                    f"nothing is mounted at {settings.data_mount} (doctor.data_mount)",
                    f"mount the disk at {settings.data_mount} and add it to /etc/fstab by UUID "
                    "(blkid shows it), with nofail",
                )
            )
        else:
            out.append(
                Finding(
                    "data disk", "ok", f"{settings.data_mount}: {mount[0]} ({mount[1]}) mounted"
                )
            )
    return out


def _driver_source(choice, request: compat.Request, facts: Facts) -> str:
    if choice is not None:
        return choice.source
    if request.source:
        return request.source
    info = compat.OS_TABLE.get(facts.os_key)
    return info.sources[0] if info else ""


def _secure_boot(data: DoctorData, facts: Facts, gpus: list[GpuInfo], source: str) -> Finding:
    state = data.sb_state or facts.secure_boot
    how = "mokutil" if data.sb_state else "EFI variables"
    if state == "disabled":
        return Finding(
            "Secure Boot", "ok", f"off ({how}): unsigned (DKMS) driver modules load as well"
        )
    if state == "bios":
        return Finding("Secure Boot", "ok", "legacy BIOS boot: no Secure Boot, any module loads")
    if state != "enabled":
        return Finding(
            "Secure Boot",
            "warn",
            "state unknown (no mokutil, EFI variables not readable)",
            "sudo apt-get install mokutil; mokutil --sb-state",
        )
    mok_fix = (
        "enrol the DKMS key: sudo mokutil --import /var/lib/dkms/mok.pub, reboot, "
        "'Enroll MOK' at the console, then driver.mok_enrolled=true; or driver.source=ubuntu "
        "(signed modules), or Secure Boot off"
    )
    if "nvidia" in data.modules:
        return Finding("Secure Boot", "ok", "on, and the nvidia module is loaded (it is signed)")
    if source == "ubuntu":
        return Finding(
            "Secure Boot", "ok", "on: Ubuntu's signed precompiled nvidia modules will load"
        )
    if data.mok_enrolled:
        return Finding("Secure Boot", "ok", "on; the DKMS signing key is enrolled (MOK)")
    if not gpus:
        return Finding(
            "Secure Boot",
            "ok",
            "on: once a driver is installed it must be signed (Ubuntu's modules, or a "
            "DKMS key enrolled as MOK)",
        )
    if data.dkms_nvidia:
        return Finding(
            "Secure Boot",
            "fail",
            "on, and the nvidia module built by DKMS is signed with a key that is not "
            "enrolled: the kernel refuses to load it",
            mok_fix,
        )
    return Finding(
        "Secure Boot",
        "warn",
        f"on: the driver from {source or 'DKMS'} is built by DKMS and loads only once its "
        "signing key is enrolled (MOK)",
        mok_fix,
    )


def _nouveau(data: DoctorData, facts: Facts, gpus: list[GpuInfo]) -> Finding:
    if "nouveau" not in data.modules:
        return Finding("nouveau", "ok", "not loaded")
    fix = (
        "provision driver blacklists nouveau and runs update-initramfs -u; then reboot "
        "(a blacklist without the initramfs and the reboot does nothing)"
    )
    if _driver_packages(facts):
        return Finding(
            "nouveau",
            "fail",
            "loaded although the NVIDIA driver is installed: the nvidia module cannot bind "
            "the card",
            fix,
        )
    return Finding(
        "nouveau",
        "warn" if gpus else "ok",
        "loaded: it drives the card now and must go before the nvidia driver can load",
        fix,
    )


def _headers(data: DoctorData, facts: Facts, source: str) -> Finding:
    kernel = data.kernel or facts.kernel
    if facts.in_container:
        return Finding("headers", "skip", "in a container the kernel belongs to its host")
    if data.headers:
        return Finding("headers", "ok", f"installed for the running kernel {kernel}")
    return Finding(
        "headers",
        "warn",
        f"none for the running kernel {kernel}: DKMS cannot build the nvidia module for it"
        + (" (Ubuntu's signed modules do not need them)" if source == "ubuntu" else ""),
        f"sudo apt-get install linux-headers-{kernel} (provision driver does on DKMS paths)",
    )


def _reboot(data: DoctorData, facts: Facts) -> Finding:
    if not facts.reboot_required:
        return Finding("reboot", "ok", "no reboot pending")
    pkgs = ", ".join(dict.fromkeys(data.reboot_packages))
    return Finding(
        "reboot",
        "warn",
        "a reboot is pending" + (f" (for {pkgs})" if pkgs else "")
        + ": the running kernel or libraries are not the installed ones",
        "sudo reboot when no job runs (or provision all --allow-reboot)",
    )  # fmt: skip


def _held(facts: Facts) -> Finding:
    packages = _driver_packages(facts)
    if not packages:
        return Finding("held packages", "ok", "no NVIDIA driver packages installed yet")
    loose = sorted(n for n in packages if not facts.packages[n].held)
    if not loose:
        return Finding("held packages", "ok", f"all {len(packages)} NVIDIA driver packages held")
    shown = ", ".join(loose[:4]) + (f" and {len(loose) - 4} more" if len(loose) > 4 else "")
    return Finding(
        "held packages",
        "warn",
        f"not held: {shown}: an upgrade can replace the libraries under the loaded module "
        "(Driver/library version mismatch)",
        "sudo apt-mark hold " + " ".join(loose[:4]) + (" ..." if len(loose) > 4 else "")
        + " (provision driver holds them)",
    )  # fmt: skip


def _mismatch(data: DoctorData, facts: Facts) -> Finding:
    module = module_version(facts)
    library = library_version(facts)
    if data.smi_present and "version mismatch" in data.smi_output.lower():
        return Finding(
            "driver",
            "fail",
            "nvidia-smi: Driver/library version mismatch"
            + (f" (module {module} loaded, libraries {library})" if module and library else ""),
            "reboot to load the new module (sudo reboot); hold the packages afterwards",
        )
    if module and library and module != library:
        return Finding(
            "driver",
            "fail",
            f"Driver/library version mismatch: module {module} loaded, libraries {library}",
            "reboot to load the new module (sudo reboot); hold the packages afterwards",
        )
    if not module:
        if _driver_packages(facts):
            return Finding(
                "driver",
                "warn",
                "installed but the nvidia module is not loaded",
                "reboot; if it still is not loaded, `sudo modprobe nvidia` says why "
                "(Secure Boot, nouveau, a failed DKMS build)",
            )
        return Finding("driver", "ok", "no NVIDIA driver installed yet (provision driver)")
    if data.smi_present and data.smi_exit != 0:
        first = data.smi_output.strip().splitlines()[:1]
        return Finding(
            "driver",
            "fail",
            f"module {module} loaded but nvidia-smi fails: {first[0] if first else 'no output'}",
            "sudo dmesg | grep -i nvrm shows the kernel side; reinstall with provision driver",
        )
    return Finding(
        "driver",
        "ok",
        f"module {module} loaded" + (", libraries match" if library else "")
        + (", nvidia-smi works" if data.smi_present else ""),
    )  # fmt: skip


def _address(data: DoctorData) -> Finding:
    iface = data.default_iface
    if not iface:
        return Finding(
            "address",
            "warn",
            "no default route: the box cannot reach the internet (apt, pip)",
            "configure the network (provision network: network.interface, address, gateway)",
        )
    mine = [a for a in data.addresses if a[0] == iface]
    configured = f" (configured in {', '.join(data.static_config)})" if data.static_config else ""
    if not mine:
        return Finding("address", "skip", f"{iface} has no IPv4 address")
    dynamic = [a for a in mine if a[2]]
    if dynamic:
        return Finding(
            "address",
            "warn",
            f"{dynamic[0][1]} on {iface} is leased by DHCP: the address can change and the "
            "inventory then points elsewhere",
            "give it a static address: network.interface, network.address and "
            "network.gateway, then provision network (or a DHCP reservation on the router)",
        )
    return Finding("address", "ok", f"{mine[0][1]} on {iface} is static{configured}")


def _sshd(data: DoctorData) -> Finding:
    if not data.sshd:
        return Finding(
            "sshd",
            "skip",
            "sshd's settings were not readable (sshd -T needs root)",
            "run doctor as a user with sudo",
        )
    # OpenSSH's defaults when nothing sets them: password login on, root by key only.
    password = data.sshd.get("passwordauthentication", "yes")
    root = data.sshd.get("permitrootlogin", "prohibit-password")
    problems = []
    if password == "yes":
        problems.append("password login is on")
    if root == "yes":
        problems.append("root may log in with a password")
    source = f" ({data.sshd_source})"
    if not problems:
        return Finding(
            "sshd", "ok", f"keys only, PermitRootLogin {root}{source}"
        )  # fmt: skip
    return Finding(
        "sshd",
        "warn",
        "; ".join(problems) + ": bots guess passwords all day" + source,
        "put your key on the box (ssh-copy-id), then provision ssh (00-provision.conf: "
        "PasswordAuthentication no, PermitRootLogin prohibit-password)",
    )


LOOPBACK = ("127.", "::1", "::ffff:127.")


def _tensorboard(data: DoctorData, port: int, bind_all: bool) -> Finding:
    area = "TensorBoard"
    mine = [x for x in data.listeners if x.port == port]
    if not mine:
        return Finding(area, "ok", f"nothing listens on port {port}")
    open_on = sorted({x.address for x in mine if not x.address.startswith(LOOPBACK)})
    if not open_on:
        return Finding(area, "ok", f"port {port} listens on loopback only (use provision tunnel)")
    where = ", ".join(a if a not in ("*", "0.0.0.0", "::") else f"{a} (every address)"
                      for a in open_on)  # fmt: skip
    if bind_all:
        return Finding(
            area, "ok", f"port {port} is open on {where}, as tensorboard.bind_all asks"
        )  # fmt: skip
    return Finding(
        area,
        "warn",
        f"port {port} is open on {where}: anyone on the network sees the runs (no login)",
        "tensorboard.bind_all=false and provision tensorboard; reach it with provision tunnel",
    )


# ---------------------------------------------------------------------------------------------
# Show
# ---------------------------------------------------------------------------------------------

COLOURS = {"ok": "green", "skip": "cyan", "warn": "yellow", "fail": "red"}


def failed(items: Iterable[Finding]) -> bool:
    """Whether any finding failed (exit 1)."""
    return any(f.status == "fail" for f in items)


def render(host: str, items: list[Finding]) -> str:
    """The table for one host: area, status, reason; the fix on the next line."""
    width = max([len(f.area) for f in items] + [8])
    lines = [click.style(host, bold=True)]
    for f in items:
        # Reasons and fixes quote the host (a GPU's name, a unit's state): printable first.
        status = click.style(f"{f.status:<4}", fg=COLOURS[f.status])
        lines.append(f"  {f.area:<{width}}  {status}  {printable(f.reason)}")
        if f.fix and f.status != "ok":
            fix = click.style("fix: " + printable(f.fix), dim=True)
            lines.append(f"  {'':<{width}}        {fix}")
    counts = {s: sum(f.status == s for f in items) for s in STATUSES}
    lines.append("  " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def to_json(items: list[Finding]) -> list[dict[str, str]]:
    """The findings as JSON-friendly dicts."""
    return [asdict(f) for f in items]
